//! fini: purge and flush librdkafka, then hand every record not yet
//! acknowledged over to the state file (SchedMD's format) and empty the spool.

use super::super::STATE_FILE_HANDOVER_LIMIT;
use super::Delivery;
use crate::kafka;
use crate::slurm::log;
use crate::spool;
use crate::state_file::{self, SavedMessage};
use std::path::Path;
use std::sync::atomic::Ordering;

impl Delivery {
    /// The records of a state file written after this process's init (by
    /// another controller sharing StateSaveLocation).
    pub(super) fn state_file_saved_since_init(&self, dir: &Path) -> Vec<SavedMessage> {
        let path = dir.join(state_file::STATE_FILE_NAME);
        let Ok(bytes) = std::fs::read(&path) else { return Vec::new() };
        let decoded = state_file::decode(&bytes, self.release);
        if let Some(problem) = decoded.problem {
            log::error(&format!("{}: {problem}; the file is kept as {}.old", path.display(), path.display()));
        }
        decoded.messages
    }

    pub(super) fn finish_claim(&mut self) {
        if let Some(claim) = self.claim.take() {
            if let Err(e) = state_file::finish_replay(&claim) {
                log::error(&format!("cannot remove {}: {e}", claim.display()));
            }
        }
    }

    /// fini: purge, flush, then hand every record not yet acknowledged over to
    /// the state file, and empty the spool.
    pub(super) fn finish(mut self) {
        if let Some(syncer) = self.syncer.take() {
            syncer.stop();
        }
        // Without a producer (Kafka not set up) nothing is in flight: every
        // pending record is handed over below, as after an outage.
        if let Some(producer) = self.producer() {
            let params = &self.settings.params;
            let mut flags = kafka::PURGE_QUEUE;
            if params.purge_in_flight || params.requeue_purge_in_flight {
                flags |= kafka::PURGE_INFLIGHT;
            }
            if params.purge_non_blocking {
                flags |= kafka::PURGE_NON_BLOCKING;
            }
            producer.purge(flags);
            if !producer.flush(params.flush_timeout_ms) {
                // Still in flight after flush_timeout: take those back too rather
                // than lose them (they may reach the broker as well: a possible duplicate).
                producer.purge(kafka::PURGE_QUEUE | kafka::PURGE_INFLIGHT);
                producer.flush(1000);
            }
            for report in producer.take_reports() {
                self.handle_report(report);
            }
        }
        self.write_acks();
        // The last figures: what was delivered at fini, what is left waiting.
        self.write_metrics();

        // A record purged while in flight may have reached Kafka already. If the
        // spool has it, it stays there with its record id, so that the copy
        // produced at the next start is recognisable as a duplicate. Every other
        // pending record goes to the state file (SchedMD's format) and leaves the spool.
        // A large backlog stays in the spool as it is: converting it would hold
        // slurmctld's shutdown for as long as it takes to rewrite it (42 s and
        // 7.7 GiB of memory for a million records), for the sake of a file that
        // only SchedMD's plugin needs.
        let spooled = self.log.is_some();
        let hand_over_all = !spooled || self.outstanding() <= STATE_FILE_HANDOVER_LIMIT;
        if hand_over_all {
            // At most STATE_FILE_HANDOVER_LIMIT: each spooled entry is held for it.
            for entry in self.queue.take_all() {
                if let Some(spooled) = self.queue.unpack(&entry) {
                    self.hold(entry.id(), spooled);
                }
            }
        }
        let mut ids: Vec<u64> = self
            .records
            .iter()
            .filter(|(_, p)| p.owner.is_none() || (hand_over_all && !(spooled && p.in_flight)))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let kept_in_spool = self.outstanding() - ids.len();
        let mut saved = Vec::with_capacity(ids.len());
        let mut handed_over = Vec::with_capacity(ids.len());
        for id in ids {
            let (job_id, event, owner) = (self.records[&id].job_id, self.records[&id].event, self.records[&id].owner);
            if let Some(payload) = self.take_payload(id) {
                saved.push(SavedMessage { event, job_id, payload });
                handed_over.push((id, owner));
            }
        }
        let Some(dir) = self.state_dir.clone() else {
            if !saved.is_empty() {
                log::error(&format!("{} undelivered record(s) lost: StateSaveLocation is not set", saved.len()));
            }
            return;
        };
        // A state file present now was not there at init (init claims it): another
        // controller sharing StateSaveLocation saved it. Keep its records too.
        let others = self.state_file_saved_since_init(&dir);
        let ours = saved.len();
        let all: Vec<SavedMessage> = others.into_iter().chain(saved).collect();
        match state_file::write(&dir, self.release, &all) {
            Ok(()) => {
                if !all.is_empty() {
                    log::info(&format!(
                        "saved {} undelivered record(s) to {}{}",
                        all.len(),
                        dir.join(state_file::STATE_FILE_NAME).display(),
                        if all.len() > ours { format!(" ({} of them from another controller's file)", all.len() - ours) } else { String::new() }
                    ));
                }
                if kept_in_spool == 0 && self.left_in_spool == 0 && handed_over.len() == self.outstanding() {
                    if let Some(log) = self.log.as_mut() {
                        log.remove_all();
                    }
                } else {
                    self.acks.extend(handed_over.iter().copied());
                    self.write_acks();
                    self.sync_spool();
                    if kept_in_spool > 0 && hand_over_all {
                        log::info(&format!(
                            "{kept_in_spool} record(s) were in flight at shutdown and stay in the spool: \
                             produced again at the next start with the same jobcomp.record_id (maybe a duplicate)"
                        ));
                    } else if kept_in_spool > 0 {
                        log::info(&format!(
                            "{kept_in_spool} undelivered record(s) stay in {} (more than {STATE_FILE_HANDOVER_LIMIT}: \
                             not copied to the state file); they are produced at the next start",
                            dir.join(spool::SPOOL_DIR).display()
                        ));
                    }
                }
                self.finish_claim();
            }
            Err(e) => log::error(&format!(
                "cannot write {} ({e}); the {} undelivered record(s) stay in {} and are produced at the next start",
                dir.join(state_file::STATE_FILE_NAME).display(),
                ours,
                dir.join(spool::SPOOL_DIR).display()
            )),
        }
        let lost = self.counters.lost.load(Ordering::Relaxed);
        if lost > 0 {
            log::error(&format!("{lost} record(s) were lost while neither the spool nor memory could hold them"));
        }
        log::verbose(&format!("stopped; {} record(s) handed to the next start", ours + kept_in_spool));
    }
}
