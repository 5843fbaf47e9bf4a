//! The delivery thread (`jobcomp_kafka`): takes the records the hot path
//! spooled, builds their JSON, hands them to librdkafka, serves delivery
//! reports and writes the acknowledgements to the spool.
//!
//! - this file: the thread's loop, start-up (what the last run left) and commands;
//! - `produce`: building records, queueing them for librdkafka, retries, refused records;
//! - `reports`: delivery reports, acknowledgements, the spool's syncs;
//! - `already_delivered`: after a crash, recovered records Kafka already holds are retired;
//! - `handover`: fini's purge, flush and hand-over to the state file;
//! - `job_partitions`: a job's finish record to the partition of its start record;
//! - `waiting`: the queue of records waiting for librdkafka, 32 bytes each.

mod already_delivered;
mod figures;
mod handover;
mod job_partitions;
mod produce;
mod reports;
mod waiting;

pub(super) use figures::{counters_for, Stats};
pub(super) use waiting::WaitingQueue;
use waiting::{Spooled, Waiting};
use super::bell::Bell;
use super::hot_spool::HotSpool;
use super::sync_thread::Syncer;
use super::{Command, Counters, Settings, Topic, BATCH, STALLED_AFTER};
use crate::kafka::{self, Producer};
use crate::names::NameCache;
use crate::release::Release;
use crate::slurm::log;
use crate::snapshot::{codec, Event, JobSnapshot};
use crate::spool::{self, DeliveryLog, Location};
use crate::state_file::SavedMessage;
use crossbeam_channel::Receiver;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records taken from the channel or acknowledged since the memory freed
/// behind them was last returned to the system (`return_freed_memory`).
const TRIM_AFTER: usize = 100_000;

/// Returns the heap's free pages to the system. A burst leaves the channel's
/// blocks, the records' entries and their texts freed but kept by malloc in
/// its arenas (in slurmctld's RssAnon) after the delivery thread has caught
/// up; malloc_trim gives them back. Called once per `TRIM_AFTER` records,
/// on this thread, never on the hot path.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What the delivery thread produces before new records.
pub(super) struct Startup {
    /// From a state file (fini of the last run, or SchedMD's plugin).
    pub(super) replay: Vec<SavedMessage>,
    /// From the spool (a run that ended without fini).
    pub(super) recovered: Vec<spool::Outstanding>,
}

/// A record not yet acknowledged by Kafka.
pub(super) struct Pending {
    pub(super) job_id: u32,
    pub(super) event: Event,
    pub(super) topic: Topic,
    /// Segment whose count this record belongs to (`None`: not on disk).
    pub(super) owner: Option<u64>,
    /// Where the JSON text is in the spool.
    pub(super) payload_at: Option<Location>,
    /// The JSON text, when kept in memory.
    pub(super) payload: Option<Vec<u8>>,
    pub(super) attempts: u32,
    /// Counted in `Counters::memory_only` (on no disk) until delivered.
    pub(super) memory_only: bool,
    /// Purged while in flight at fini: it may have reached Kafka.
    pub(super) in_flight: bool,
    /// Unix time of the job event (0: not known yet; see `figures`).
    pub(super) time: i64,
}

/// The delivery thread's side of Kafka.
pub(super) enum Kafka {
    Producer(Producer),
    /// JobCompLoc could not be turned into a producer. Records are spooled and
    /// queued as during an outage; `problem` (the error line) is repeated
    /// every `reminder_every` with the number of records waiting.
    NotSetUp { problem: String, next_reminder: Instant },
}

pub(super) struct Delivery {
    pub(super) kafka: Kafka,
    /// How often the error line of `Kafka::NotSetUp` is repeated.
    pub(super) reminder_every: Duration,
    pub(super) receiver: Receiver<Command>,
    pub(super) release: Release,
    pub(super) settings: Settings,
    pub(super) state_dir: Option<PathBuf>,
    pub(super) names: NameCache,
    pub(super) hot: Option<Arc<HotSpool>>,
    pub(super) log: Option<DeliveryLog>,
    /// The records not yet acknowledged that are held in full, by id: those
    /// handed to librdkafka, retried, with their text in memory or on no
    /// disk. The others are spooled entries of `queue` (see `waiting`);
    /// `outstanding()` counts both.
    pub(super) records: HashMap<u64, Pending>,
    /// Records waiting to be handed to librdkafka, in order.
    pub(super) queue: WaitingQueue,
    /// Ids to try again once their time has come.
    pub(super) retry: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Delivered ids (and their owning segments) not yet written to the spool.
    pub(super) acks: Vec<(u64, Option<u64>)>,
    pub(super) queued_bytes: usize,
    pub(super) counters: Arc<Counters>,
    pub(super) next_id: Arc<AtomicU64>,
    /// The state file taken for replay; removed once its records are spooled.
    pub(super) claim: Option<PathBuf>,
    pub(super) failures_since_summary: u64,
    pub(super) last_failure: String,
    /// Topics the broker denies this principal (a missing ACL), each named
    /// by one error line until a record to it is delivered again.
    pub(super) denied_topics: std::collections::HashSet<String>,
    /// When a producer that raised a fatal error may next be replaced.
    pub(super) next_renewal: Instant,
    pub(super) last_summary: Instant,
    /// The "acknowledged no record for N s" warning was logged: the next
    /// acknowledgement says that deliveries resumed.
    pub(super) silence_noticed: bool,
    /// The thread that runs the periodic fdatasync (`None` until first needed).
    pub(super) syncer: Option<Syncer>,
    /// Settings changed: timers are re-armed with the new intervals.
    pub(super) reconfigured: bool,
    /// Rung by the hot path (and every command) when this thread is parked.
    pub(super) bell: Arc<Bell>,
    /// Written since the last periodic sync was handed to the sync thread
    /// (an idle spool has no sync duty).
    pub(super) spool_dirty: bool,
    /// Records in the spool that this run could not take up (the spool must not
    /// be emptied at fini).
    pub(super) left_in_spool: usize,
    /// What the metrics file counts on this thread, and the file.
    pub(super) stats: Stats,
    /// The snapshot every new record is decoded into (its buffers are reused).
    pub(super) scratch: JobSnapshot,
    /// The buffer batch scripts are read into (reused).
    pub(super) script_buffer: Vec<u8>,
    /// Records whose JSON text is spooled, by the snapshot segment they came
    /// from; and the snapshot segments the hot path has left, with the number of
    /// snapshots in each. A left segment whose every snapshot has its text
    /// spooled is deleted after the next sync (see `sync_spool_in_background`).
    pub(super) built: HashMap<u64, usize>,
    pub(super) closed: BTreeMap<u64, usize>,
    /// Since when records wait without an acknowledgement from Kafka: the
    /// last acknowledgement, or the time the first of them came (see
    /// `kafka_stalled`).
    pub(super) waiting_since: Instant,
    /// Topics reported missing (one error line each until a record reaches it).
    pub(super) missing_topics: HashSet<String>,
    /// The JobCompLoc file, for the remedies of error lines.
    pub(super) job_comp_loc: String,
    /// Test-only (JOBCOMP_KAFKA_TEST_DROP_ACKS in slurmctld's environment at
    /// init): acknowledgements are never written to the spool, as when
    /// slurmctld dies between Kafka's acknowledgement and the spool's line,
    /// so that a test can crash it with delivered records still outstanding.
    pub(super) acks_dropped_for_tests: bool,
    /// Records taken or acknowledged since `return_freed_memory` (see `TRIM_AFTER`).
    pub(super) handled_since_trim: usize,
    /// The queued texts were cut to the outage's budget (once per outage:
    /// reset by an acknowledgement).
    pub(super) spilled_in_this_outage: bool,
    /// The time of the oldest spooled entry's record, by id, once read from the spool.
    pub(super) oldest_spooled_time: Option<(u64, i64)>,
    /// Test-only (JOBCOMP_KAFKA_TEST_PAYLOAD_BUDGET=<bytes> in slurmctld's
    /// environment at init): the in-memory payload budget, outage or not; at
    /// 0 every spooled record waits as a spooled entry, so that the host
    /// suites take that path with a few records instead of 64 MiB of them.
    pub(super) payload_budget_for_tests: Option<usize>,
    /// The partition of each running job's start record (one topic for both).
    pub(super) job_partitions: job_partitions::JobPartitions,
}
impl Delivery {
    pub(super) fn run(mut self, startup: Startup) {
        self.start(startup);
        // Kafka not set up (a bad JobCompLoc): its error line comes now, with
        // the records recovered, before any command; a fini right after init
        // must not leave the log without it.
        self.remind_not_set_up(Instant::now());
        let poll_every = |s: &Settings| s.params.poll_interval;
        let mut next_poll = Instant::now() + poll_every(&self.settings);
        let mut next_sync = Instant::now() + self.settings.params.spool_sync_interval;
        let metrics_every = |s: &Settings| s.params.metrics_interval;
        let mut next_metrics = Instant::now() + metrics_every(&self.settings);
        self.write_metrics();
        loop {
            // The next periodic duty, of those that have something to do: the
            // spool's sync only when something was written since the last one;
            // librdkafka's callbacks (errors, logs queued for the poll) every
            // poll_interval while there is a producer, with the outage summary;
            // the metrics file when there is one; a retry's back-off; the
            // not-set-up reminder.
            let mut wake: Option<Instant> = None;
            let mut due = |at: Instant| wake = Some(wake.map_or(at, |w| w.min(at)));
            if self.spool_dirty && self.log.is_some() {
                due(next_sync);
            }
            if self.failures_since_summary > 0 || self.producer().is_some() {
                due(next_poll);
            }
            if self.stats.file.is_some() {
                due(next_metrics);
            }
            if let Some(Reverse((at, _))) = self.retry.peek() {
                due(*at);
            }
            if let Kafka::NotSetUp { next_reminder, .. } = &self.kafka {
                due(*next_reminder);
            }
            // Busy: records wait for librdkafka's queue, or are in flight (their
            // delivery reports to come). Then the thread ticks (`tick_ms`),
            // serving reports and taking new records a tick at a time.
            // Otherwise it has nothing to do: it parks until the hot path rings
            // the bell (the one FUTEX_WAKE of an idle-to-busy transition) or
            // its next duty falls due; no tick while idle. Without a producer a
            // backlog waits: nothing to tick for.
            let busy = self.producer().is_some_and(|producer| !self.queue.is_empty() || producer.queue_len() > 0);
            if !busy {
                let receiver = &self.receiver;
                self.bell.park(wake, || !receiver.is_empty());
            }
            let mut stop = false;
            let mut received = 0usize;
            while !stop && received < BATCH {
                match self.receiver.try_recv() {
                    Ok(command) => {
                        stop = self.handle(command);
                        received += 1;
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => stop = true,
                }
            }
            if stop {
                break;
            }
            self.handled_since_trim += received;
            if self.handled_since_trim >= TRIM_AFTER && self.receiver.is_empty() {
                self.handled_since_trim = 0;
                return_freed_memory();
            }
            if std::mem::take(&mut self.reconfigured) {
                let now = Instant::now();
                next_poll = next_poll.min(now + poll_every(&self.settings));
                next_sync = next_sync.min(now + self.settings.params.spool_sync_interval);
                next_metrics = next_metrics.min(now + metrics_every(&self.settings));
            }
            // Busy and nothing arrived: sleep one tick. A record that comes
            // meanwhile waits for the tick (the bell is rung only for a parked
            // thread); one that comes while the thread is parked is taken at
            // once. Not in librdkafka's poll: that would wake for every
            // delivery report, a second wake-up per record; reports wait for
            // the tick like new records do.
            if busy && received == 0 {
                let tick = self.settings.params.tick;
                std::thread::sleep(wake.map_or(tick, |w| tick.min(w.saturating_duration_since(Instant::now()))));
            }
            if received > 0 || self.outstanding() > 0 {
                // Snapshots appended, texts or acknowledgements to write.
                self.spool_dirty = true;
            }
            self.serve_reports(0);
            self.renew_after_fatal_error();
            self.requeue_due();
            self.drain_queue();
            if !self.spilled_in_this_outage && self.queued_bytes > self.payload_budget(true) && self.kafka_stalled() {
                // An outage: the texts kept in memory for a quick hand-over
                // are in the spool too; their records become spooled entries.
                self.spilled_in_this_outage = true;
                self.spill_to_spooled_entries();
                // Up to the 64 MiB budget of texts was just freed.
                return_freed_memory();
            }
            if let Some(hot) = &self.hot {
                // Errors show up on the hot path's next append, which reports them.
                let _ = hot.prep.prepare(false);
            }
            let now = Instant::now();
            if now >= next_poll {
                next_poll = now + poll_every(&self.settings);
                self.outage_summary();
            }
            self.remind_not_set_up(now);
            if now >= next_sync {
                next_sync = now + self.settings.params.spool_sync_interval;
                if self.spool_dirty {
                    self.spool_dirty = !self.sync_spool_in_background();
                }
            }
            if now >= next_metrics {
                next_metrics = now + metrics_every(&self.settings);
                self.write_metrics();
            }
        }
        self.finish();
    }

    /// Produces what the last run left: the spool's records first (older), then
    /// the state file's.
    pub(super) fn start(&mut self, startup: Startup) {
        // Recovered records name a handful of topics: one shared copy of each.
        let mut topics: HashMap<Vec<u8>, Topic> = HashMap::new();
        // The recovered records a state-file message may be a copy of.
        let mut spooled_payloads = Vec::new();
        // Recovered with their JSON text: they may have reached Kafka before the crash.
        let mut maybe_produced = Vec::new();
        for record in startup.recovered {
            let Some(event) = Event::from_u32(record.event as u32) else { continue };
            let owner = record.snapshot.or(record.payload).map(|l| l.segment);
            if let Some(at) = record.payload {
                if !startup.replay.is_empty() {
                    spooled_payloads.push((record.job_id, event, at));
                }
                // The topic it was produced to, even if a reconfigure changed it since.
                let topic = match record.topic.as_deref() {
                    Some(name) => match topics.get(name) {
                        Some(topic) => topic.clone(),
                        None => {
                            let topic = CString::new(name).map(Topic::from).unwrap_or_else(|_| self.topic_for(event).clone());
                            topics.insert(name.to_vec(), topic.clone());
                            topic
                        }
                    },
                    None => self.topic_for(event).clone(),
                };
                let pending = Pending {
                    job_id: record.job_id,
                    event,
                    topic,
                    owner,
                    payload_at: record.payload,
                    payload: None,
                    attempts: 0,
                    memory_only: false,
                    in_flight: false,
                    time: 0,
                };
                self.records.insert(record.record_id, pending);
                self.queue.push_held(record.record_id);
                maybe_produced.push(record.record_id);
                continue;
            }
            let snapshot = record.snapshot.and_then(|at| self.log.as_mut()?.read(&at).ok());
            match snapshot.as_deref().and_then(codec::decode) {
                Some(mut job) => self.publish(&mut job, event, record.record_id, owner, false),
                None => {
                    log::error(&format!(
                        "spool record {} (job {}) cannot be read back; it is dropped",
                        record.record_id, record.job_id
                    ));
                    self.acks.push((record.record_id, owner));
                }
            }
        }
        let replay = self.without_spooled_copies(startup.replay, &spooled_payloads);
        self.retire_records_already_in_kafka(&maybe_produced);
        // Those not found wait in the spool: 32 bytes each from now on.
        self.spill_to_spooled_entries();
        let replayed = replay.len();
        let mut all_spooled = self.log.is_some();
        for saved in replay {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            all_spooled &= self.add(id, saved.job_id, saved.event, saved.payload, None, true);
        }
        self.write_acks();
        if replayed > 0 && all_spooled && self.sync_spool() {
            // The state file's records are in the spool now: the claim is done with.
            self.finish_claim();
        }
        self.drain_queue();
    }

    /// The state file's messages less those the spool already holds, byte for
    /// byte. Replaying a state file spools its messages (under new record ids)
    /// and only then removes the claim file; a slurmctld killed in between
    /// leaves each message twice, in the claim and in the spool, and producing
    /// both would deliver the record twice under two record ids. The spool's
    /// copy is the one kept. Only payloads of the claim's job ids are read.
    fn without_spooled_copies(
        &mut self,
        replay: Vec<SavedMessage>,
        spooled: &[(u32, Event, Location)],
    ) -> Vec<SavedMessage> {
        if replay.is_empty() || spooled.is_empty() {
            return replay;
        }
        let job_ids: HashSet<u32> = replay.iter().map(|m| m.job_id).collect();
        let mut copies: HashMap<(u32, Event), Vec<Vec<u8>>> = HashMap::new();
        for &(job_id, event, at) in spooled.iter().filter(|(job_id, _, _)| job_ids.contains(job_id)) {
            if let Some(payload) = self.log.as_mut().and_then(|log| log.read(&at).ok()) {
                copies.entry((job_id, event)).or_default().push(payload);
            }
        }
        let before = replay.len();
        let kept: Vec<SavedMessage> = replay
            .into_iter()
            .filter(|m| {
                let Some(spooled) = copies.get_mut(&(m.job_id, m.event)) else { return true };
                match spooled.iter().position(|p| *p == m.payload) {
                    Some(i) => {
                        spooled.swap_remove(i);
                        false
                    }
                    None => true,
                }
            })
            .collect();
        if kept.len() < before {
            log::info(&format!(
                "{} record(s) of the state file were already in the spool (slurmctld stopped during the last \
                 replay); each is produced once",
                before - kept.len()
            ));
        }
        kept
    }

    /// True on Stop.
    pub(super) fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::Record { encoded, job_id, event, id, snapshot } => {
                let owner = snapshot.map(|at| at.segment);
                if let (Some(log), Some(owner)) = (self.log.as_mut(), owner) {
                    log.count_snapshot(owner);
                }
                let mut job = std::mem::take(&mut self.scratch);
                let decoded = match (encoded, snapshot) {
                    (Some(bytes), _) => codec::decode_into(&bytes, &mut job),
                    (None, Some(at)) => self.read_snapshot_into(&at, &mut job),
                    (None, None) => false,
                };
                if decoded {
                    self.publish(&mut job, event, id, owner, snapshot.is_none());
                } else {
                    // Left in the spool (not acknowledged): the next start retries it.
                    self.left_in_spool += 1;
                    log::error(&format!("job {job_id}: its spooled record cannot be read back now; it is produced at the next start"));
                }
                self.scratch = job;
                false
            }
            Command::Reconfigure(settings) => {
                if settings.params.metrics_file != self.settings.params.metrics_file {
                    log::warning("JobCompParams metrics_file changed: the new file is written from the next slurmctld restart");
                }
                self.settings = *settings;
                self.reconfigured = true;
                false
            }
            Command::KafkaSetUp(producer) => {
                // The waiting records are a backlog now: produced in this very
                // turn of the loop (drain_queue), in their order.
                self.kafka = Kafka::Producer(producer);
                false
            }
            Command::KafkaNotSetUp(problem) => {
                self.kafka = Kafka::NotSetUp { problem, next_reminder: Instant::now() };
                false
            }
            Command::Stop => true,
        }
    }

    /// Decodes a snapshot the hot path spooled into `job`: read through its
    /// mapping while the segment is mapped (no system call, no copy), else from
    /// the file. False when it cannot be read or decoded.
    fn read_snapshot_into(&mut self, at: &Location, job: &mut JobSnapshot) -> bool {
        if let Some(decoded) = self.hot.as_ref().and_then(|hot| hot.prep.with_mapped(at, |bytes| codec::decode_into(bytes, job))) {
            return decoded;
        }
        match self.log.as_mut().map(|log| log.read(at)) {
            Some(Ok(bytes)) => codec::decode_into(&bytes, job),
            _ => false,
        }
    }

    /// Kafka is not set up, or has acknowledged nothing for `STALLED_AFTER`
    /// while records waited: an outage, in which new records will wait too.
    pub(super) fn kafka_stalled(&self) -> bool {
        self.producer().is_none() || (self.outstanding() > 0 && self.waiting_since.elapsed() >= STALLED_AFTER)
    }

    /// librdkafka's fatal errors (the broker refused the idempotent producer's
    /// id: no WRITE ACL at all) end a producer for good. The records wait
    /// (librdkafka purged its queue); at most once a minute a new producer is
    /// made from the same JobCompLoc and every waiting record is queued again,
    /// in order. A record that was in flight may then be delivered twice.
    fn renew_after_fatal_error(&mut self) {
        let now = Instant::now();
        if now < self.next_renewal || !self.producer().is_some_and(|p| p.is_fatal()) {
            return;
        }
        self.next_renewal = now + super::RETRY_MAX;
        let reports = self.producer().map(|producer| {
            producer.purge(kafka::PURGE_QUEUE | kafka::PURGE_INFLIGHT | kafka::PURGE_NON_BLOCKING);
            producer.poll(0)
        });
        for report in reports.unwrap_or_default() {
            self.handle_report(report);
        }
        if self.producer().is_some_and(|p| p.fatal_was_cluster_authorization()) {
            // Its error line named the principal and the missing WRITE: the
            // topic denials that follow are the same story, not a new line.
            for topic in [&self.settings.topic, &self.settings.start_topic] {
                self.denied_topics.insert(topic.to_string_lossy().into_owned());
            }
        }
        let Some(renewed) = self.producer().map(|producer| producer.renew()) else { return };
        match renewed {
            Ok(renewed) => {
                log::debug("a new Kafka producer after a fatal error");
                self.kafka = Kafka::Producer(renewed);
                // Every record again, in order: the held ones and the spooled
                // entries that were waiting behind them.
                let mut entries: Vec<Waiting> = self.queue.take_all().into_iter().filter(|e| !e.is_held()).collect();
                entries.extend(self.records.keys().map(|&id| Waiting::held(id)));
                entries.sort_unstable_by_key(|e| e.id());
                self.queue.extend(entries);
                self.retry.clear();
            }
            Err(e) => log::error(&format!("cannot make a new Kafka producer after a fatal error: {}", e.reason)),
        }
    }

    pub(super) fn producer(&self) -> Option<&Producer> {
        match &self.kafka {
            Kafka::Producer(producer) => Some(producer),
            Kafka::NotSetUp { .. } => None,
        }
    }

    /// While Kafka is not set up: the error line again, with the number of
    /// records waiting, when it is due.
    fn remind_not_set_up(&mut self, now: Instant) {
        let waiting = self.outstanding();
        let Kafka::NotSetUp { problem, next_reminder } = &mut self.kafka else { return };
        if now < *next_reminder {
            return;
        }
        *next_reminder = now + self.reminder_every;
        log::error(&format!(
            "{problem}; {waiting} record(s) wait in the spool until then (this line is repeated every {})",
            if self.reminder_every.subsec_nanos() == 0 {
                format!("{} s", self.reminder_every.as_secs())
            } else {
                format!("{} ms", self.reminder_every.as_millis())
            }
        ));
    }

    /// Records not yet acknowledged: held ones and spooled entries.
    pub(super) fn outstanding(&self) -> usize {
        self.records.len() + self.queue.spooled_len()
    }

    /// Held records that wait in the queue and are in the spool become
    /// spooled entries; the texts of those kept in memory too are let go.
    /// (After start's read-back, and once at the start of an outage.)
    fn spill_to_spooled_entries(&mut self) {
        for entry in self.queue.take_all() {
            if !entry.is_held() {
                self.queue.extend([entry]);
                continue;
            }
            let Some(pending) = self.records.get(&entry.id()) else {
                // Acknowledged or retired meanwhile: nothing to hand over.
                continue;
            };
            if let Some(spooled) = spooled_form(pending) {
                if self.queue.push_spooled(entry.id(), &spooled) {
                    if let Some(payload) = self.records.remove(&entry.id()).and_then(|p| p.payload) {
                        self.queued_bytes -= payload.len();
                    }
                    continue;
                }
            }
            self.queue.extend([entry]);
        }
        self.records.shrink_to_fit();
    }

    /// A spooled entry's record becomes held: it is about to be handed to
    /// librdkafka (or to the state file).
    fn hold(&mut self, id: u64, spooled: Spooled) {
        let pending = Pending {
            job_id: spooled.job_id,
            event: spooled.event,
            topic: spooled.topic,
            owner: Some(spooled.owner),
            payload_at: Some(spooled.at),
            payload: None,
            attempts: 0,
            memory_only: false,
            in_flight: false,
            time: 0,
        };
        self.records.insert(id, pending);
    }

    /// Start and finish records go to one topic (see `job_partitions`).
    pub(super) fn one_topic_for_both_events(&self) -> bool {
        self.settings.start_topic == self.settings.topic
    }

    pub(super) fn topic_for(&self, event: Event) -> &Topic {
        match event {
            Event::Finish => &self.settings.topic,
            Event::Start => &self.settings.start_topic,
        }
    }
}

/// The spooled-entry form of a held record that is in the spool and was never
/// tried (its text in memory, if any, is a copy); `None` for any other (it
/// stays held).
fn spooled_form(pending: &Pending) -> Option<Spooled> {
    if pending.attempts > 0 || pending.memory_only || pending.in_flight {
        return None;
    }
    Some(Spooled {
        job_id: pending.job_id,
        event: pending.event,
        topic: pending.topic.clone(),
        owner: pending.owner?,
        at: pending.payload_at?,
    })
}
