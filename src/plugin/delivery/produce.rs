//! Building a record's JSON on the delivery thread, queueing it for librdkafka
//! (back-pressure when its queue is full), retries with backoff, and records
//! Kafka refuses for good.

use super::{Delivery, Pending, Spooled};
use super::super::{
    OUTAGE_SUMMARY_EVERY, QUEUED_PAYLOAD_BUDGET, RECORD_ID_HEADER, REFUSED_DIR, RETRY_FIRST, RETRY_MAX, STALLED_PAYLOAD_BUDGET,
    STALLED_WINDOW,
};
use crate::kafka::{self, Cause, ProduceError};
use crate::metrics::FailureKind;
use crate::record::{self, RecordOptions};
use crate::slurm::log;
use crate::snapshot::{Event, JobSnapshot};
use crate::spool;
use std::cmp::Reverse;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Who refused a record: librdkafka before sending it (its own
/// message.max.bytes), or the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refuser {
    Librdkafka,
    Broker,
}

/// The broker's default limit on a record batch (its message.max.bytes, the
/// default of every topic's max.message.bytes).
const BROKER_DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

impl Delivery {
    /// Builds the record's JSON text and queues it. `memory_only`: the hot path
    /// could not spool its snapshot (it counted it in `memory_only`).
    pub(super) fn publish(&mut self, job: &mut JobSnapshot, event: Event, id: u64, owner: Option<u64>, memory_only: bool) {
        if job.user_name.is_none() {
            job.user_name = self.names.user(job.user_id);
        }
        if job.group_name.is_none() {
            job.group_name = self.names.group(job.group_id);
        }
        let options = RecordOptions {
            release: self.release,
            send_script: self.settings.params.send_script,
            send_comment: self.settings.params.send_comment,
        };
        let mut script = std::mem::take(&mut self.script_buffer);
        let have_script = record::wants_script(job, event, &options) && self.read_script(job, &mut script);
        let payload = record::build_record(job, event, have_script.then_some(&script[..]), &options);
        self.script_buffer = script;
        let on_disk = self.add(id, job.job_id, event, payload, owner, owner.is_none());
        if let Some(pending) = self.records.get_mut(&id) {
            pending.time = super::figures::event_time(job, event);
        }
        if memory_only {
            if on_disk {
                self.counters.memory_only.fetch_sub(1, Ordering::Relaxed);
            } else if let Some(pending) = self.records.get_mut(&id) {
                pending.memory_only = true;
            }
        }
    }

    /// Spools a record's JSON text and queues the record. `new_record`: it has no
    /// snapshot entry, so its payload entry owns it. True when it is on disk.
    pub(super) fn add(&mut self, id: u64, job_id: u32, event: Event, payload: Vec<u8>, owner: Option<u64>, new_record: bool) -> bool {
        let mut owner = owner;
        let mut payload_at = None;
        let topic = self.topic_for(event).clone();
        if self.outstanding() == 0 {
            self.waiting_since = Instant::now();
        }
        // During an outage the record will wait: its text is spooled compressed.
        let compress = self.kafka_stalled();
        // A record whose snapshot the spool did not take (it reached
        // spool_max_mb, or could not be written) has its text written only
        // while the spool has room: past the limit it stays in memory, as the
        // limit's error line says, rather than growing the spool (and
        // StateSaveLocation's disk) without bound during an outage.
        let room = |hot: &super::super::hot_spool::HotSpool| !new_record || hot.has_room(payload.len() as u64 + spool::PAYLOAD_ENTRY_OVERHEAD);
        if let (Some(log), Some(hot)) = (self.log.as_mut(), self.hot.as_ref().filter(|hot| room(hot))) {
            log.follow(hot.segment());
            match log.append_payload(id, job_id, event as u8, topic.to_bytes(), &payload, new_record, compress) {
                Ok(at) => {
                    hot.wrote(super::super::hot_spool::TEXTS);
                    hot.bytes.fetch_add(u64::from(at.len) + spool::PAYLOAD_ENTRY_OVERHEAD, Ordering::Relaxed);
                    payload_at = Some(at);
                    if let (Some(snapshot_segment), false) = (owner, new_record) {
                        *self.built.entry(snapshot_segment).or_default() += 1;
                    }
                    if new_record {
                        owner = Some(at.segment);
                    }
                }
                Err(e) => hot.failed(super::super::hot_spool::TEXTS, &format!("cannot write to the spool in {}: {e}", hot.dir.display())),
            }
        }
        let keep_in_memory = payload_at.is_none() || self.queued_bytes + payload.len() <= self.payload_budget(compress);
        if !keep_in_memory {
            // Past the budget, in the spool: a spooled entry, no `Pending`.
            if let (Some(owner), Some(at)) = (owner, payload_at) {
                if self.queue.push_spooled(id, &Spooled { job_id, event, topic: topic.clone(), owner, at }) {
                    return true;
                }
            }
        } else {
            self.queued_bytes += payload.len();
        }
        let pending = Pending {
            job_id,
            event,
            topic,
            owner,
            payload_at,
            payload: keep_in_memory.then_some(payload),
            attempts: 0,
            memory_only: false,
            in_flight: false,
            time: super::super::unix_now(),
        };
        self.records.insert(id, pending);
        self.queue.push_held(id);
        owner.is_some()
    }

    /// The batch script file as slurmctld saved it (NUL-terminated; the record
    /// leaves the NUL out), read into `script` (its buffer is reused from
    /// record to record); false when the file is gone (the job record was
    /// purged) or unreadable.
    pub(super) fn read_script(&self, job: &JobSnapshot, script: &mut Vec<u8>) -> bool {
        let owner = job.script_owner_id();
        let Some(dir) = self.state_dir.as_ref() else { return false };
        let path = dir.join(format!("hash.{}/job.{}/script", owner % 10, owner));
        script.clear();
        let Ok(mut file) = std::fs::File::open(&path) else { return false };
        // Neither std::fs::read nor read_to_end: for a File they first ask its
        // size and position (statx, lseek), two system calls more per record
        // for a file read whole anyway. Plain reads until the end: two for a
        // script below 16 KiB.
        let mut chunk = [0u8; 16 << 10];
        loop {
            match std::io::Read::read(&mut file, &mut chunk) {
                Ok(0) => return true,
                Ok(n) => script.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// The JSON text of a pending record: from memory, else from the spool.
    pub(super) fn take_payload(&mut self, id: u64) -> Option<Vec<u8>> {
        let pending = self.records.get_mut(&id)?;
        if let Some(payload) = pending.payload.take() {
            self.queued_bytes -= payload.len();
            return Some(payload);
        }
        let at = pending.payload_at?;
        match self.log.as_mut()?.read(&at) {
            Ok(payload) => Some(payload),
            Err(e) => {
                log::error(&format!("job {}: cannot read its record back from the spool: {e}", pending.job_id));
                None
            }
        }
    }

    /// How many bytes of waiting records' texts are kept in memory: less
    /// during an outage (`stalled`), when they will wait anyway.
    pub(super) fn payload_budget(&self, stalled: bool) -> usize {
        if let Some(budget) = self.payload_budget_for_tests {
            budget
        } else if stalled {
            STALLED_PAYLOAD_BUDGET
        } else {
            QUEUED_PAYLOAD_BUDGET
        }
    }

    pub(super) fn keep_payload(&mut self, id: u64, payload: Vec<u8>) {
        let budget = self.payload_budget(self.kafka_stalled());
        if let Some(pending) = self.records.get_mut(&id) {
            if pending.payload.is_none() && (pending.payload_at.is_none() || self.queued_bytes + payload.len() <= budget) {
                self.queued_bytes += payload.len();
                pending.payload = Some(payload);
            }
        }
    }

    /// Hands queued records to librdkafka in order, until its queue is full.
    pub(super) fn drain_queue(&mut self) {
        // Kafka not set up: the queue waits (in the spool) as in an outage.
        if self.producer().is_none() {
            return;
        }
        // During an outage librdkafka gets a window, not the whole backlog.
        let window = if self.kafka_stalled() { STALLED_WINDOW } else { usize::MAX };
        while let Some(&front) = self.queue.front() {
            if self.producer().is_some_and(|p| p.queue_len() >= window) {
                break;
            }
            let id = front.id();
            if let Some(spooled) = self.queue.unpack(&front) {
                self.hold(id, spooled);
                self.queue.hold_front();
            }
            let Some(payload) = self.take_payload(id) else {
                // Acknowledged meanwhile, or unreadable (kept for fini's state file).
                self.queue.pop_front();
                continue;
            };
            let pending = &self.records[&id];
            let (job_id, event) = (pending.job_id, pending.event);
            let key = job_id.to_string();
            let id_text = id.to_string();
            let pinned = match event {
                Event::Finish => self.job_partitions.for_finish(job_id, self.one_topic_for_both_events()),
                Event::Start => None,
            };
            let Some(producer) = self.producer() else { return };
            let result = producer.produce_to(
                &pending.topic,
                pinned,
                key.as_bytes(),
                &payload,
                Some((RECORD_ID_HEADER, id_text.as_bytes())),
                id,
            );
            match result {
                Ok(()) => {
                    self.queue.pop_front();
                }
                Err(ProduceError::QueueFull) => {
                    self.keep_payload(id, payload);
                    break;
                }
                Err(ProduceError::Rejected { reason, cause }) if cause.is_refusal() => {
                    self.queue.pop_front();
                    self.set_aside(id, &payload, &reason, cause, Refuser::Librdkafka);
                }
                Err(ProduceError::Rejected { reason, cause: Cause::TopicMissing }) => {
                    self.queue.pop_front();
                    self.keep_payload(id, payload);
                    self.topic_missing(id, &reason);
                }
                Err(ProduceError::Rejected { reason, .. }) => {
                    self.queue.pop_front();
                    if pinned.is_some() {
                        // The start's partition is gone (the topic was
                        // recreated): the retry goes where the partitioner says.
                        self.job_partitions.forget(job_id);
                    }
                    self.stats.failed(FailureKind::of_reason(&reason));
                    self.keep_payload(id, payload);
                    self.failed(id, &format!("librdkafka refused it: {reason}"));
                }
            }
        }
    }

    /// A delivery failed: try again after a growing delay.
    pub(super) fn failed(&mut self, id: u64, why: &str) {
        if kafka::is_topic_authorization_failure(why) {
            self.topic_denied(id, why);
        } else {
            self.retry_later(id, why, true);
        }
    }

    /// The broker denies the plugin's principal WRITE on the record's topic:
    /// one error line per topic (until a record reaches it), whatever the
    /// number of records waiting for it; the record waits for the ACL.
    fn topic_denied(&mut self, id: u64, why: &str) {
        let principal = self.producer().map(|p| p.principal().to_string()).unwrap_or_default();
        let Some(pending) = self.records.get(&id) else { return };
        let topic = pending.topic.to_string_lossy().into_owned();
        if self.denied_topics.insert(topic.clone()) {
            log::error(&format!(
                "topic {topic}: the broker denies WRITE on it to the principal configured in JobCompLoc \
                 ({principal}): {why}. Records are kept and retried; grant it, e.g. kafka-acls --add \
                 --allow-principal User:<that principal> --operation Write --topic {topic}"
            ));
        }
        self.retry_later(id, why, false);
    }

    /// The record's topic does not exist: one error line per topic (until a
    /// record reaches it), and the record waits as in an outage.
    pub(super) fn topic_missing(&mut self, id: u64, why: &str) {
        let Some(pending) = self.records.get(&id) else { return };
        let topic = pending.topic.to_string_lossy().into_owned();
        if !self.missing_topics.contains(&topic) {
            log::error(&format!(
                "Kafka topic {topic} does not exist ({why}) and the broker does not create it: create it \
                 (kafka-topics.sh --create --topic {topic}) or enable auto.create.topics.enable on the brokers; \
                 its records wait in the spool and are sent once it exists, without a restart"
            ));
            self.missing_topics.insert(topic);
        }
        self.retry_later(id, why, false);
    }

    /// A record reached `topic`: if it was missing, say that it is there now.
    pub(super) fn topic_found(&mut self, topic: &str) {
        if self.missing_topics.remove(topic) {
            log::info(&format!("Kafka topic {topic} exists now: its waiting records are being sent"));
        }
    }

    /// Queues the record again after a growing delay. `announce`: the first
    /// failure of an outage gets a warning line naming the job.
    fn retry_later(&mut self, id: u64, why: &str, announce: bool) {
        let Some(pending) = self.records.get_mut(&id) else { return };
        pending.attempts += 1;
        let delay = RETRY_FIRST.saturating_mul(1 << pending.attempts.min(6)).min(RETRY_MAX);
        if announce && pending.attempts == 1 && self.failures_since_summary == 0 {
            log::warning(&format!(
                "job {}: record not delivered ({why}); it is kept and retried (further failures are summarised every minute)",
                pending.job_id
            ));
        } else {
            log::debug(&format!("job {}: record not delivered ({why}); retry in {delay:?}", pending.job_id));
        }
        self.failures_since_summary += 1;
        self.last_failure = why.to_string();
        self.retry.push(Reverse((Instant::now() + delay, id)));
    }

    /// A record Kafka can never accept as it is (e.g. larger than
    /// message.max.bytes): retrying cannot help, so it is written to
    /// `<StateSaveLocation>/jobcomp_kafka_refused/<job>.<record id>.json` for an
    /// administrator (raise the limit, then `jobcomp-kafka resend`) and retired.
    /// The records behind it are not held up.
    pub(super) fn set_aside(&mut self, id: u64, payload: &[u8], reason: &str, cause: Cause, refuser: Refuser) {
        let Some(pending) = self.records.remove(&id) else { return };
        if let Some(kept) = &pending.payload {
            self.queued_bytes -= kept.len();
        }
        if pending.memory_only {
            self.counters.memory_only.fetch_sub(1, Ordering::Relaxed);
        }
        let written = self.state_dir.as_ref().map(|dir| {
            let dir = dir.join(REFUSED_DIR);
            let path = dir.join(format!("{}.{id}.json", pending.job_id));
            std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, payload)).map(|_| path)
        });
        match written {
            Some(Ok(path)) => {
                self.stats.refused(&pending.topic, pending.event);
                let topic = pending.topic.to_string_lossy().into_owned();
                let why = self.refusal(&topic, payload.len(), reason, cause, refuser);
                log::error(&format!(
                    "job {}: {why}; it is saved in {} and not retried: {}",
                    pending.job_id,
                    path.display(),
                    self.resend_hint(&topic, payload),
                ));
                self.acks.push((id, pending.owner));
            }
            Some(Err(e)) => {
                log::error(&format!(
                    "job {}: Kafka refuses its record ({reason}) and it cannot be set aside ({e}); kept for retries",
                    pending.job_id
                ));
                self.records.insert(id, pending);
                self.retry.push(Reverse((Instant::now() + RETRY_MAX, id)));
            }
            None => {
                log::error(&format!("job {}: Kafka refuses its record ({reason}); dropped (no StateSaveLocation)", pending.job_id));
            }
        }
    }

    /// Who refused a record of `size` bytes and why, with the limit and how
    /// to raise it when it is too large (the error line's first part).
    fn refusal(&self, topic: &str, size: usize, reason: &str, cause: Cause, refuser: Refuser) -> String {
        let topic_limit = format!(
            "topic {topic}'s max.message.bytes (kafka-configs.sh --alter --entity-type topics --entity-name {topic} \
             --add-config max.message.bytes=N)"
        );
        match (cause, refuser) {
            (Cause::TooLarge, Refuser::Librdkafka) => {
                let limit = self.producer().and_then(|p| p.property("message.max.bytes")).unwrap_or_else(|| "?".into());
                format!(
                    "its record is {size} bytes, above message.max.bytes={limit} of the producer, so librdkafka \
                     refuses it before any broker sees it; raise message.max.bytes in JobCompLoc ({}) and {topic_limit} \
                     above {size}",
                    self.job_comp_loc
                )
            }
            (Cause::TooLarge, Refuser::Broker) => {
                // A record below the broker's default limit may have been
                // refused with the batch it was sent in (librdkafka does not
                // split a refused batch).
                let batch = if size < BROKER_DEFAULT_MAX_MESSAGE_BYTES {
                    "; if that is above it already, the batch was too large: set batch.size in JobCompLoc below it"
                } else {
                    ""
                };
                format!(
                    "the broker refuses its record ({reason}): it is {size} bytes, above {topic_limit}; raise that \
                     above {size}, and message.max.bytes in JobCompLoc ({}) if it is not{batch}",
                    self.job_comp_loc
                )
            }
            _ => format!("Kafka refuses its record ({reason})"),
        }
    }

    /// The command that sends a refused record once the limit is raised.
    fn resend_hint(&self, topic: &str, payload: &[u8]) -> String {
        let default_topic = crate::ops::resend::topic_of(payload, None);
        let topic_option = if default_topic.as_deref() == Some(topic) { String::new() } else { format!(" --topic {topic}") };
        format!("once the limit is raised, `jobcomp-kafka resend --loc {}{topic_option}` sends it", self.job_comp_loc)
    }

    pub(super) fn requeue_due(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((due, id))) = self.retry.peek().copied() {
            if due > now {
                break;
            }
            self.retry.pop();
            if self.records.contains_key(&id) {
                self.queue.push_held(id);
            }
        }
    }

    pub(super) fn outage_summary(&mut self) {
        if self.failures_since_summary == 0 {
            let silent_for = self.waiting_since.elapsed();
            if self.producer().is_some() && silence_notice_due(self.outstanding(), silent_for, self.last_summary.elapsed()) {
                log::warning(&format!(
                    "Kafka has acknowledged no record for {} s; {} record(s) are waiting, kept in the spool, and \
                     are sent as soon as it does (librdkafka keeps retrying them; its own lines above name the cause)",
                    silent_for.as_secs(),
                    self.outstanding()
                ));
                self.last_summary = Instant::now();
                self.silence_noticed = true;
            }
            return;
        }
        if self.last_summary.elapsed() < OUTAGE_SUMMARY_EVERY {
            return;
        }
        log::warning(&format!(
            "{} record(s) not yet delivered; {} delivery attempt(s) failed in the last {} s (last: {}); they are kept and retried",
            self.outstanding(),
            self.failures_since_summary,
            self.last_summary.elapsed().as_secs(),
            self.last_failure
        ));
        self.failures_since_summary = 0;
        self.last_summary = Instant::now();
    }
}

/// The outage line without failures: with no message.timeout.ms (the
/// plugin's default) librdkafka retries a record until Kafka takes it, so an
/// outage fails no delivery; records waiting and nothing acknowledged for a
/// minute is then the outage, said once a minute.
fn silence_notice_due(waiting: usize, silent_for: std::time::Duration, since_last_line: std::time::Duration) -> bool {
    waiting > 0 && silent_for >= OUTAGE_SUMMARY_EVERY && since_last_line >= OUTAGE_SUMMARY_EVERY
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_minute_of_silence_with_records_waiting_is_said_once_a_minute() {
        let minute = OUTAGE_SUMMARY_EVERY;
        let second = Duration::from_secs(1);
        assert!(silence_notice_due(5, minute, minute));
        assert!(!silence_notice_due(0, 10 * minute, 10 * minute), "nothing waiting: no outage to report");
        assert!(!silence_notice_due(5, minute - second, 10 * minute), "not yet a minute without an acknowledgement");
        assert!(!silence_notice_due(5, 10 * minute, minute - second), "said less than a minute ago");
    }
}
