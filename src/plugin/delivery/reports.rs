//! Delivery reports from librdkafka and what follows from them: records
//! retired, acknowledgements appended to the spool (fully delivered segments
//! deleted), and the spool's syncs.

use super::super::sync_thread::{SyncJob, Syncer};
use super::Delivery;
use super::produce::Refuser;
use crate::kafka::{self, Cause, Outcome};
use crate::metrics::FailureKind;
use crate::slurm::log;
use crate::snapshot::Event;
use crate::spool;
use std::sync::atomic::Ordering;

impl Delivery {
    pub(super) fn serve_reports(&mut self, timeout_ms: i32) {
        let reports = self.producer().map(|producer| producer.poll(timeout_ms)).unwrap_or_default();
        for report in reports {
            self.handle_report(report);
        }
        self.write_acks();
    }

    pub(super) fn handle_report(&mut self, report: kafka::Report) {
        let id = report.opaque;
        match report.outcome {
            Outcome::Delivered { partition, offset } => {
                let Some(pending) = self.records.remove(&id) else { return };
                if std::mem::take(&mut self.silence_noticed) {
                    log::info(&format!(
                        "Kafka acknowledges records again after {} s; {} record(s) still waiting",
                        self.waiting_since.elapsed().as_secs(),
                        self.outstanding()
                    ));
                }
                self.waiting_since = std::time::Instant::now();
                self.spilled_in_this_outage = false;
                self.handled_since_trim += 1;
                if let Some(payload) = &pending.payload {
                    self.queued_bytes -= payload.len();
                }
                if pending.memory_only {
                    self.counters.memory_only.fetch_sub(1, Ordering::Relaxed);
                }
                self.stats.delivered(&pending.topic, pending.event);
                match pending.event {
                    // Only kept where a finish record can be pinned to it.
                    Event::Start if self.one_topic_for_both_events() => {
                        self.job_partitions.started(pending.job_id, partition)
                    }
                    Event::Start => {}
                    Event::Finish => self.job_partitions.forget(pending.job_id),
                }
                if !self.denied_topics.is_empty() {
                    self.denied_topics.remove(&report.topic);
                }
                if !self.missing_topics.is_empty() {
                    self.topic_found(&report.topic);
                }
                if self.settings.debug {
                    log::info(&format!(
                        "job {} record delivered to {} [{partition}] at offset {offset}",
                        pending.job_id, report.topic
                    ));
                }
                self.acks.push((id, pending.owner));
            }
            Outcome::Purged { in_flight } => {
                // fini: stays pending (state file, or the spool when it was in flight).
                if let Some(pending) = self.records.get_mut(&id) {
                    pending.in_flight = in_flight;
                }
                if let Some(payload) = report.payload {
                    self.keep_payload(id, payload);
                }
            }
            Outcome::TimedOut => {
                self.stats.failed(FailureKind::TimedOut);
                if let Some(payload) = report.payload {
                    self.keep_payload(id, payload);
                }
                self.failed(id, "delivery timed out (message.timeout.ms)");
            }
            Outcome::Failed { reason, cause } if cause.is_refusal() => {
                let payload = report.payload.or_else(|| self.take_payload(id)).unwrap_or_default();
                self.set_aside(id, &payload, &reason, cause, Refuser::Broker);
            }
            Outcome::Failed { reason, cause: Cause::TopicMissing } => {
                if let Some(payload) = report.payload {
                    self.keep_payload(id, payload);
                }
                self.topic_missing(id, &reason);
            }
            Outcome::Failed { reason, .. } => {
                self.stats.failed(FailureKind::of_reason(&reason));
                if let Some(payload) = report.payload {
                    self.keep_payload(id, payload);
                }
                self.failed(id, &reason);
            }
        }
    }

    /// Writes the acknowledgements and deletes fully delivered segments.
    pub(super) fn write_acks(&mut self) {
        if self.acks.is_empty() {
            return;
        }
        let acks = std::mem::take(&mut self.acks);
        if self.acks_dropped_for_tests {
            return;
        }
        let (Some(log), Some(hot)) = (self.log.as_mut(), self.hot.as_ref()) else { return };
        let ids: Vec<u64> = acks.iter().filter(|(_, owner)| owner.is_some()).map(|(id, _)| *id).collect();
        let owners: Vec<u64> = acks.iter().filter_map(|(_, owner)| *owner).collect();
        log.follow(hot.segment());
        if let Err(e) = log.append_acks(&ids, &owners) {
            // Not fatal: these records may be produced once more after a crash.
            log::error(&format!("cannot record deliveries in the spool ({e}); they may be sent twice after a crash"));
            return;
        }
        let (_, freed) = log.retire(hot.segment());
        let _ = hot.bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(freed)));
    }

    /// fdatasync of the spool files (power loss). True when it worked.
    pub(super) fn sync_spool(&mut self) -> bool {
        let (Some(log), Some(hot)) = (self.log.as_ref(), self.hot.as_ref()) else { return false };
        let files: Vec<std::fs::File> = log.sync_handle().into_iter().collect();
        hot.sync(&files)
    }

    /// The periodic sync, on its own thread: an fdatasync takes milliseconds
    /// (more under other I/O), during which new records would wait. Skipped
    /// while the previous one still runs.
    /// True when the sync was handed to the sync thread (or done here) and the
    /// last one worked; false when it must be tried again at the next turn.
    pub(super) fn sync_spool_in_background(&mut self) -> bool {
        let (Some(log), Some(hot)) = (self.log.as_ref(), self.hot.as_ref()) else { return false };
        let last_failed = hot.sync_failing.load(Ordering::Relaxed);
        if self.syncer.is_none() {
            self.syncer = Syncer::start(hot.clone());
        }
        let Some(syncer) = self.syncer.as_ref() else {
            return self.sync_spool();
        };
        if syncer.busy.load(Ordering::Acquire) {
            return false;
        }
        let mut delivery_files: Vec<std::fs::File> = log.sync_handle().into_iter().collect();
        // Snapshot segments the hot path has left and whose every record has
        // its JSON text spooled: after this sync they are no longer needed (a
        // long outage then keeps each record once, as its compressed text). The
        // texts are in .dlv files of the same segment or later ones: all synced
        // first.
        for (segment, entries) in hot.prep.take_closed() {
            self.closed.insert(segment, entries);
        }
        let built = &self.built;
        let done: Vec<u64> =
            self.closed.iter().filter(|(segment, entries)| built.get(segment).copied().unwrap_or(0) >= **entries).map(|(s, _)| *s).collect();
        if let Some(&first) = done.first() {
            delivery_files.extend(log.older_files_from(first));
        }
        let then_delete = done.iter().map(|&segment| spool::segment_path(log.dir(), segment, spool::Suffix::Snap)).collect();
        for segment in &done {
            self.closed.remove(segment);
            self.built.remove(segment);
        }
        syncer.busy.store(true, Ordering::Release);
        syncer.sender.send(SyncJob { delivery_files, then_delete }).is_ok() && !last_failed
    }
}
