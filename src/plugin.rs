//! The plugin's life cycle: init, set_location (reconfigure), the record hand-off
//! from the hot path, the delivery thread, and fini's hand-over to the state file.
//!
//! Hot path (`submit`, under slurmctld's job write lock): take a record id,
//! append the job snapshot to the spool with one write() (no fsync), push it onto
//! an unbounded channel. Nothing else.
//!
//! Delivery thread: names, the batch script, the JSON text (also appended to the
//! spool, so a record produced again later is byte-identical), `produce`, and
//! delivery reports. A record leaves the spool only when Kafka acknowledged it.
//! A full librdkafka queue is back-pressure (records wait, their payloads read
//! back from the spool when memory is tight); a failed or timed-out delivery is
//! retried with a backoff. Nothing is dropped, short of a full disk *and* the
//! in-memory limit.
//!
//! fini: purge, flush, then every record not yet acknowledged is written to the
//! C plugin's state file (so SchedMD's plugin could take over), and the spool is
//! emptied. init reads that file and the spool (after a crash) and produces
//! everything again.

use crate::config::{self, Params, Problem};
use crate::kafka::{self, Outcome, ProduceError, Producer};
use crate::names::NameCache;
use crate::record::{self, RecordOptions};
use crate::release::Release;
use crate::slurm::log;
use crate::snapshot::{codec, Event, JobSnapshot};
use crate::spool::{self, DeliveryLog, Location, SnapshotLog, SnapshotPrep, SpoolLock};
use crate::state_file::{self, SavedMessage};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{Mutex, RwLock};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the plugin reads from slurm_conf.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostSettings {
    pub cluster_name: String,
    pub job_comp_loc: Option<String>,
    pub job_comp_params: Option<String>,
    pub state_save_location: Option<PathBuf>,
    pub jobcomp_debug: bool,
}

/// Records handed over by at most this many at a time before delivery reports are
/// served again.
const BATCH: usize = 1024;
/// Records that could not be spooled (disk full, unwritable) are kept in memory,
/// at most this many; beyond, they are counted as lost.
pub const MEMORY_ONLY_LIMIT: usize = 100_000;
/// At fini, up to this many undelivered records are moved from the spool into
/// the state file (SchedMD's format); a larger backlog stays in the spool.
pub const STATE_FILE_HANDOVER_LIMIT: usize = 10_000;
/// Payloads waiting for librdkafka are kept in memory up to this many bytes;
/// beyond, they are read back from the spool when their turn comes.
const QUEUED_PAYLOAD_BUDGET: usize = 64 << 20;
/// Records librdkafka refuses for good (too large, invalid) are written here,
/// under StateSaveLocation, one file per record, for an administrator to act on.
pub const REFUSED_DIR: &str = "jobcomp_kafka_refused";
/// Active for this long after the last record; then it sleeps until woken.
const ACTIVE_WINDOW: Duration = Duration::from_secs(2);
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How often a summary of records waiting for Kafka is logged during an outage.
const OUTAGE_SUMMARY_EVERY: Duration = Duration::from_secs(60);
/// A topic name as librdkafka takes it, shared rather than copied per record.
type Topic = Arc<CStr>;

/// Kafka header carrying the record's id: stable across crashes and restarts of
/// slurmctld, so that a consumer can drop a duplicate.
pub const RECORD_ID_HEADER: &CStr = c"jobcomp.record_id";

enum Command {
    /// A new record: where its snapshot is in the spool, or (spool not
    /// writable) the snapshot's encoded bytes themselves.
    Record { encoded: Option<Vec<u8>>, job_id: u32, event: Event, id: u64, snapshot: Option<Location> },
    Reconfigure(Box<Settings>),
    Stop,
}

/// The settings the delivery thread works with (re-sent on reconfigure).
#[derive(Clone, Debug)]
struct Settings {
    params: Params,
    /// Shared with every pending record (no copy per record).
    topic: Topic,
    start_topic: Topic,
    debug: bool,
}

/// The hot path's side of the spool.
struct HotSpool {
    dir: PathBuf,
    writer: Mutex<SnapshotLog>,
    /// The delivery thread's side of the snapshot segments (space made ready
    /// ahead of the writer, syncing).
    prep: SnapshotPrep,
    /// The segment the writer appends to, published after each append so that
    /// the delivery thread need not take the writer's lock (the hot path's) to
    /// learn it.
    segment: AtomicU64,
    /// Approximate size of the spool on disk.
    bytes: AtomicU64,
    max_bytes: AtomicU64,
    failing: AtomicBool,
    /// The last sync failed (logged once until it works again).
    sync_failing: AtomicBool,
    _lock: SpoolLock,
}

/// Why a record was not spooled.
enum NotSpooled {
    /// `encode` found no record to read.
    NothingToRead,
    /// The spool cannot take it now: it is kept in memory only, as these bytes.
    InMemory { job_id: u32, snapshot: Vec<u8> },
}

impl HotSpool {
    /// Spools the snapshot `encode` writes (see `submit`); the job id and
    /// where the snapshot is.
    fn append(
        &self,
        id: u64,
        event: Event,
        encode: impl FnOnce(&mut Vec<u8>) -> Option<u32>,
    ) -> Result<(u32, Location), NotSpooled> {
        let mut writer = self.writer.lock();
        let job_id = writer.stage(id, event as u8, encode).ok_or(NotSpooled::NothingToRead)?;
        let len = writer.staged_len() as u64;
        let max = self.max_bytes.load(Ordering::Relaxed);
        if self.bytes.load(Ordering::Relaxed) + len > max {
            self.failed(&format!("the spool in {} reached spool_max_mb={}", self.dir.display(), max >> 20));
            return Err(NotSpooled::InMemory { job_id, snapshot: writer.staged_body().to_vec() });
        }
        match writer.write_staged() {
            Ok(location) => {
                self.segment.store(location.segment, Ordering::Release);
                self.bytes.fetch_add(len, Ordering::Relaxed);
                if self.failing.swap(false, Ordering::Relaxed) {
                    log::info(&format!("the spool in {} is writable again", self.dir.display()));
                }
                Ok((job_id, location))
            }
            Err(e) => {
                self.failed(&format!("cannot write to the spool in {}: {e}", self.dir.display()));
                Err(NotSpooled::InMemory { job_id, snapshot: writer.staged_body().to_vec() })
            }
        }
    }

    /// fdatasync of the whole spool: the hot path's segment files first, and
    /// their pages faulted in again right after (writeback write-protects them,
    /// and a store of the hot path before that would fault, and may wait on the
    /// file system, in slurmctld's thread); then `delivery_files` and the
    /// directory. One error line per run of failures. True when all is synced.
    fn sync(&self, delivery_files: &[std::fs::File]) -> bool {
        let snapshots = self.prep.sync_handles();
        let synced = snapshots.iter().try_for_each(|file| file.sync_data());
        let _ = self.prep.prepare(true);
        match synced.and_then(|()| spool::sync(delivery_files, &self.dir)) {
            Ok(()) => {
                if self.sync_failing.swap(false, Ordering::Relaxed) {
                    log::info(&format!("the spool in {} can be synced again", self.dir.display()));
                }
                true
            }
            Err(e) => {
                if !self.sync_failing.swap(true, Ordering::Relaxed) {
                    log::error(&format!("cannot sync the spool in {}: {e}", self.dir.display()));
                }
                false
            }
        }
    }

    fn failed(&self, why: &str) {
        if !self.failing.swap(true, Ordering::Relaxed) {
            log::error(&format!(
                "{why}; new records are kept in memory (at most {MEMORY_ONLY_LIMIT}) until it can be written again, \
                 and are lost if slurmctld stops before they are delivered"
            ));
        }
    }

    fn segment(&self) -> u64 {
        self.segment.load(Ordering::Acquire)
    }
}

/// Counters shared by the hot path and the delivery thread.
#[derive(Default)]
struct Counters {
    /// Records on no disk (spool failing), not yet delivered.
    memory_only: AtomicUsize,
    /// Records lost because neither the spool nor memory could take them.
    lost: AtomicU64,
}

struct Running {
    release: Release,
    sender: Sender<Command>,
    thread: JoinHandle<()>,
    settings: Settings,
    host: HostSettings,
    next_id: Arc<AtomicU64>,
    spool: Option<Arc<HotSpool>>,
    counters: Arc<Counters>,
}

static RUNNING: RwLock<Option<Running>> = RwLock::new(None);

/// Whether start events are wanted (25.05+ enable_job_start): checked before a
/// start event reads anything, so that a disabled start event costs nothing.
static START_EVENTS: AtomicBool = AtomicBool::new(false);

pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn log_problems(problems: &[Problem]) {
    for problem in problems {
        match problem {
            Problem::Warning(text) => log::warning(text),
            Problem::Error(text) => log::error(text),
        }
    }
}

fn settings_from(host: &HostSettings, release: Release) -> Settings {
    let (params, problems) = config::parse_params(host.job_comp_params.as_deref(), release);
    log_problems(&problems);
    let (topic, start_topic, problems) = config::resolve_topics(&params, &host.cluster_name);
    log_problems(&problems);
    let c = |text: String| Topic::from(CString::new(text.replace('\0', "")).unwrap_or_default());
    Settings { params, topic: c(topic), start_topic: c(start_topic), debug: host.jobcomp_debug }
}

/// Opens the spool under StateSaveLocation; `None` (with an error line) when it
/// cannot be used: the plugin then keeps records in memory only.
fn open_spool(state_dir: &Path, params: &Params) -> Option<(Arc<HotSpool>, spool::Recovered)> {
    let dir = state_dir.join(spool::SPOOL_DIR);
    let fail = |why: String| {
        log::error(&format!(
            "{why}: running without the crash-safe spool; records not yet delivered are lost if slurmctld dies"
        ));
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        fail(format!("cannot create {}: {e}", dir.display()));
        return None;
    }
    let lock = match SpoolLock::acquire(&dir) {
        Ok(lock) => lock,
        Err(e) => {
            fail(format!("{} is locked by another process ({e}); is another slurmctld using this StateSaveLocation?", dir.display()));
            return None;
        }
    };
    let recovered = match spool::recover(&dir) {
        Ok(recovered) => recovered,
        Err(e) => {
            fail(format!("cannot read {}: {e}", dir.display()));
            return None;
        }
    };
    for line in &recovered.errors {
        log::error(line);
    }
    for line in &recovered.notes {
        log::verbose(line);
    }
    let snapshots = SnapshotLog::new(&dir, recovered.next_segment, segment_bytes(params));
    let hot = HotSpool {
        prep: snapshots.prep(),
        writer: Mutex::new(snapshots),
        segment: AtomicU64::new(recovered.next_segment),
        bytes: AtomicU64::new(spool::disk_usage(&dir)),
        max_bytes: AtomicU64::new(params.spool_max_mb << 20),
        failing: AtomicBool::new(false),
        sync_failing: AtomicBool::new(false),
        dir,
        _lock: lock,
    };
    Some((Arc::new(hot), recovered))
}

/// Segment size: a sixteenth of the spool limit, between 1 and 64 MiB.
fn segment_bytes(params: &Params) -> u64 {
    ((params.spool_max_mb << 20) / 16).clamp(1 << 20, 64 << 20)
}

/// init(): starts the producer and the delivery thread, which first produces
/// what a previous run left (state file, spool).
pub fn init(host: HostSettings, release: Release) -> Result<(), String> {
    shutdown();
    log::set_jobcomp_debug(host.jobcomp_debug);
    kafka::set_log_sink(Some(log::librdkafka_line));
    let settings = settings_from(&host, release);

    let location = host
        .job_comp_loc
        .clone()
        .filter(|loc| !loc.trim().is_empty())
        .ok_or("JobCompLoc is not set: it must name a file of librdkafka properties (at least bootstrap.servers)")?;
    let properties = config::read_properties_file(&location).map_err(|e| e.to_string())?;
    config::secrets_file_warning(&location, &properties).inspect(|w| log::warning(w));
    if host.jobcomp_debug {
        for p in &properties {
            log::info(&format!("librdkafka property {}={}", p.key, config::display_value(p)));
        }
    }
    let producer = Producer::new(properties.iter().map(|p| (p.key.as_str(), p.value.as_str())))
        .map_err(|e| format!("{location}: {e}"))?;

    let mut replay = state_file::Replay::default();
    let mut spool = None;
    match &host.state_save_location {
        Some(dir) => {
            replay = state_file::take_for_replay(dir, release, unix_now());
            for problem in &replay.problems {
                log::error(problem);
            }
            if !replay.messages.is_empty() {
                log::info(&format!(
                    "producing {} saved record(s) again from {}",
                    replay.messages.len(),
                    dir.join(state_file::STATE_FILE_NAME).display()
                ));
            }
            spool = open_spool(dir, &settings.params);
        }
        None => log::error("StateSaveLocation is not set: undelivered records cannot be kept across a restart"),
    }
    let (hot, recovered) = match spool {
        Some((hot, recovered)) => (Some(hot), recovered),
        None => (None, spool::Recovered::default()),
    };
    if !recovered.records.is_empty() {
        log::info(&format!(
            "producing {} record(s) again from the spool (slurmctld stopped without fini)",
            recovered.records.len()
        ));
    }
    // Ids grow across restarts: past every id in the spool, and past the clock
    // (microseconds), so that an emptied spool does not reuse ids.
    let now_us = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
    let next_id = Arc::new(AtomicU64::new((recovered.max_record_id + 1).max(now_us)));
    let counters = Arc::new(Counters::default());

    let (sender, receiver) = crossbeam_channel::unbounded();
    let delivery = Delivery {
        log: hot.as_ref().map(|h| DeliveryLog::new(&h.dir, recovered.next_segment, recovered.owned.clone())),
        hot: hot.clone(),
        producer,
        receiver,
        release,
        settings: settings.clone(),
        state_dir: host.state_save_location.clone(),
        names: NameCache::default(),
        records: HashMap::new(),
        queue: VecDeque::new(),
        retry: BinaryHeap::new(),
        acks: Vec::new(),
        queued_bytes: 0,
        counters: counters.clone(),
        next_id: next_id.clone(),
        claim: replay.claim.clone(),
        failures_since_summary: 0,
        last_failure: String::new(),
        last_summary: Instant::now(),
        syncer: None,
        reconfigured: false,
        last_record: Instant::now(),
        left_in_spool: 0,
    };
    let startup = Startup { replay: replay.messages, recovered: recovered.records };
    let thread = std::thread::Builder::new()
        .name("jobcomp_kafka".into())
        .spawn(move || {
            crate::background::lower_this_thread();
            delivery.run(startup)
        })
        .map_err(|e| format!("cannot start the delivery thread: {e}"))?;

    START_EVENTS.store(settings.params.enable_job_start, Ordering::Relaxed);
    log::verbose(&format!(
        "publishing to topic {} ({})",
        settings.topic.to_string_lossy(),
        config::describe(&settings.params)
    ));
    *RUNNING.write() = Some(Running { release, sender, thread, settings, host, next_id, spool: hot, counters });
    Ok(())
}

/// set_location(): JobCompParams and DebugFlags are read again (reconfigure,
/// SIGUSR2). JobCompLoc is read at init only, as with SchedMD's plugin.
pub fn reconfigure(host: HostSettings) {
    let mut running = RUNNING.write();
    let Some(running) = running.as_mut() else { return };
    if host.job_comp_loc != running.host.job_comp_loc {
        log::warning("JobCompLoc changed: the new librdkafka properties take effect at the next slurmctld restart");
    }
    if host == running.host {
        return;
    }
    log::set_jobcomp_debug(host.jobcomp_debug);
    let mut settings = settings_from(&host, running.release);
    // send_script / send_comment change the record's content: init only, as upstream.
    settings.params.send_script = running.settings.params.send_script;
    settings.params.send_comment = running.settings.params.send_comment;
    START_EVENTS.store(settings.params.enable_job_start, Ordering::Relaxed);
    if let Some(spool) = &running.spool {
        spool.max_bytes.store(settings.params.spool_max_mb << 20, Ordering::Relaxed);
    }
    log::verbose(&format!(
        "reconfigured: topic {} ({})",
        settings.topic.to_string_lossy(),
        config::describe(&settings.params)
    ));
    let _ = running.sender.send(Command::Reconfigure(Box::new(settings.clone())));
    running.settings = settings;
    running.host = host;
}

/// True when a start event should be recorded at all.
pub fn start_events_enabled() -> bool {
    START_EVENTS.load(Ordering::Relaxed)
}

/// Why `submit` did not take a record.
#[derive(Debug, PartialEq, Eq)]
pub enum NotTaken {
    /// No successful init (or after fini).
    NotRunning,
    /// `read` found no record to read.
    Unreadable,
    /// Neither the spool nor memory could hold it (counted, logged).
    Lost,
}

/// The hot path's hand-off: read the record (only when running) and spool it,
/// queue its place for the delivery thread. `encode` reads the job and appends
/// its snapshot (`snapshot::codec`) to the buffer it is given, returning the
/// job id (`None`: nothing to read); it runs under the spool writer's lock, so
/// the record goes from slurmctld's memory to the spool without an allocation.
/// One look at the plugin's state; never blocks on the network or fsync.
pub fn submit(event: Event, encode: impl FnOnce(&mut Vec<u8>) -> Option<u32>) -> Result<(), NotTaken> {
    let running = RUNNING.read();
    let Some(running) = running.as_ref() else { return Err(NotTaken::NotRunning) };
    let id = running.next_id.fetch_add(1, Ordering::Relaxed);
    let spooled = match running.spool.as_ref() {
        Some(spool) => spool.append(id, event, encode),
        None => {
            let mut bytes = Vec::new();
            match encode(&mut bytes) {
                Some(job_id) => Err(NotSpooled::InMemory { job_id, snapshot: bytes }),
                None => Err(NotSpooled::NothingToRead),
            }
        }
    };
    let command = match spooled {
        Ok((job_id, location)) => Command::Record { encoded: None, job_id, event, id, snapshot: Some(location) },
        Err(NotSpooled::NothingToRead) => return Err(NotTaken::Unreadable),
        Err(NotSpooled::InMemory { job_id, snapshot: bytes }) => {
            if running.counters.memory_only.fetch_add(1, Ordering::Relaxed) >= MEMORY_ONLY_LIMIT {
                running.counters.memory_only.fetch_sub(1, Ordering::Relaxed);
                let lost = running.counters.lost.fetch_add(1, Ordering::Relaxed) + 1;
                if lost.is_power_of_two() {
                    log::error(&format!(
                        "job {job_id}: record lost: the spool cannot be written and {MEMORY_ONLY_LIMIT} records already wait in memory ({lost} lost so far)"
                    ));
                }
                return Err(NotTaken::Lost);
            }
            Command::Record { encoded: Some(bytes), job_id, event, id, snapshot: None }
        }
    };
    running.sender.send(command).map_err(|_| NotTaken::NotRunning)
}

/// fini(): the delivery thread purges, flushes and saves what is left.
pub fn shutdown() {
    let Some(running) = RUNNING.write().take() else { return };
    START_EVENTS.store(false, Ordering::Relaxed);
    let _ = running.sender.send(Command::Stop);
    if running.thread.join().is_err() {
        log::error("the delivery thread stopped abnormally; undelivered records stay in the spool");
    }
}

/// Runs the spool's periodic fdatasync off the delivery thread.
struct Syncer {
    sender: Sender<Vec<std::fs::File>>,
    busy: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Syncer {
    fn start(hot: Arc<HotSpool>) -> Option<Syncer> {
        let (sender, receiver) = crossbeam_channel::bounded::<Vec<std::fs::File>>(1);
        let busy = Arc::new(AtomicBool::new(false));
        let done = busy.clone();
        let thread = std::thread::Builder::new()
            .name("jobcomp_sync".into())
            .spawn(move || {
                crate::background::lower_this_thread();
                for delivery_files in receiver {
                    hot.sync(&delivery_files);
                    done.store(false, Ordering::Release);
                }
            })
            .map_err(|e| log::error(&format!("cannot start the spool's sync thread ({e}); syncing on the delivery thread")))
            .ok()?;
        Some(Syncer { sender, busy, thread })
    }

    fn stop(self) {
        drop(self.sender);
        let _ = self.thread.join();
    }
}

/// What the delivery thread produces before new records.
struct Startup {
    /// From a state file (fini of the last run, or SchedMD's plugin).
    replay: Vec<SavedMessage>,
    /// From the spool (a run that ended without fini).
    recovered: Vec<spool::Outstanding>,
}

/// A record not yet acknowledged by Kafka.
struct Pending {
    job_id: u32,
    event: Event,
    topic: Topic,
    /// Segment whose count this record belongs to (`None`: not on disk).
    owner: Option<u64>,
    /// Where the JSON text is in the spool.
    payload_at: Option<Location>,
    /// The JSON text, when kept in memory.
    payload: Option<Vec<u8>>,
    attempts: u32,
    /// Counted in `Counters::memory_only` (on no disk) until delivered.
    memory_only: bool,
    /// Purged while in flight at fini: it may have reached Kafka.
    in_flight: bool,
}

struct Delivery {
    producer: Producer,
    receiver: Receiver<Command>,
    release: Release,
    settings: Settings,
    state_dir: Option<PathBuf>,
    names: NameCache,
    hot: Option<Arc<HotSpool>>,
    log: Option<DeliveryLog>,
    /// Every record not yet acknowledged, by id.
    records: HashMap<u64, Pending>,
    /// Ids waiting to be handed to librdkafka, in order.
    queue: VecDeque<u64>,
    /// Ids to try again once their time has come.
    retry: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Delivered ids (and their owning segments) not yet written to the spool.
    acks: Vec<(u64, Option<u64>)>,
    queued_bytes: usize,
    counters: Arc<Counters>,
    next_id: Arc<AtomicU64>,
    /// The state file taken for replay; removed once its records are spooled.
    claim: Option<PathBuf>,
    failures_since_summary: u64,
    last_failure: String,
    last_summary: Instant,
    /// The thread that runs the periodic fdatasync (`None` until first needed).
    syncer: Option<Syncer>,
    /// Settings changed: timers are re-armed with the new intervals.
    reconfigured: bool,
    /// When the last record came from the hot path (active/idle, see `run`).
    last_record: Instant,
    /// Records in the spool that this run could not take up (the spool must not
    /// be emptied at fini).
    left_in_spool: usize,
}

impl Delivery {
    fn run(mut self, startup: Startup) {
        self.start(startup);
        let poll_every = |s: &Settings| s.params.poll_interval;
        let mut next_poll = Instant::now() + poll_every(&self.settings);
        let mut next_sync = Instant::now() + self.settings.params.spool_sync_interval;
        loop {
            let mut wake = next_poll.min(next_sync);
            if let Some(Reverse((due, _))) = self.retry.peek() {
                wake = wake.min(*due);
            }
            // Idle (no record for a while, nothing queued or in flight): sleep on
            // the channel, so that an idle plugin costs nothing. Active: never
            // block on the channel but in librdkafka's poll below, a tick at a
            // time. A sender then never has to wake a sleeping receiver, which
            // would be a futex syscall on slurmctld's hot path for every record.
            let backlog = !self.queue.is_empty();
            let active = backlog || self.producer.queue_len() > 0 || self.last_record.elapsed() < ACTIVE_WINDOW;
            let mut stop = false;
            let mut received = 0usize;
            if !active {
                match self.receiver.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                    Ok(command) => {
                        stop = self.handle(command);
                        received += 1;
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => stop = true,
                }
            }
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
            if received > 0 {
                self.last_record = Instant::now();
            }
            if std::mem::take(&mut self.reconfigured) {
                let now = Instant::now();
                next_poll = next_poll.min(now + poll_every(&self.settings));
                next_sync = next_sync.min(now + self.settings.params.spool_sync_interval);
            }
            // Active and nothing arrived: sleep one tick (`tick_ms`). A record
            // then waits half a tick on average before it is built and produced
            // (what librdkafka's default linger.ms would have added: our
            // producer's default is linger.ms=0, see kafka::DEFAULT_PROPERTIES).
            // Each wake-up costs 40-70 us of CPU on the VMs this runs on
            // (bench/wakeup_cost.c), so the tick is the plugin's main CPU cost
            // at a trickle of jobs. Not in librdkafka's poll: that would wake
            // for every delivery report, a second wake-up per record; reports
            // wait for the tick like new records do.
            if active && received == 0 {
                std::thread::sleep(self.settings.params.tick.min(wake.saturating_duration_since(Instant::now())));
            }
            self.serve_reports(0);
            self.requeue_due();
            self.drain_queue();
            if let Some(hot) = &self.hot {
                // Errors show up on the hot path's next append, which reports them.
                let _ = hot.prep.prepare(false);
            }
            let now = Instant::now();
            if now >= next_poll {
                next_poll = now + poll_every(&self.settings);
                self.outage_summary();
            }
            if now >= next_sync {
                next_sync = now + self.settings.params.spool_sync_interval;
                self.sync_spool_in_background();
            }
        }
        self.finish();
    }

    /// Produces what the last run left: the spool's records first (older), then
    /// the state file's.
    fn start(&mut self, startup: Startup) {
        // Recovered records name a handful of topics: one shared copy of each.
        let mut topics: HashMap<Vec<u8>, Topic> = HashMap::new();
        for record in startup.recovered {
            let Some(event) = Event::from_u32(record.event as u32) else { continue };
            let owner = record.snapshot.or(record.payload).map(|l| l.segment);
            if record.payload.is_some() {
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
                };
                self.records.insert(record.record_id, pending);
                self.queue.push_back(record.record_id);
                continue;
            }
            let snapshot = record.snapshot.and_then(|at| self.log.as_mut()?.read(&at).ok());
            match snapshot.as_deref().and_then(codec::decode) {
                Some(job) => self.publish(job, event, record.record_id, owner, false),
                None => {
                    log::error(&format!(
                        "spool record {} (job {}) cannot be read back; it is dropped",
                        record.record_id, record.job_id
                    ));
                    self.acks.push((record.record_id, owner));
                }
            }
        }
        let replayed = startup.replay.len();
        let mut all_spooled = self.log.is_some();
        for saved in startup.replay {
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

    /// True on Stop.
    fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::Record { encoded, job_id, event, id, snapshot } => {
                let owner = snapshot.map(|at| at.segment);
                if let (Some(log), Some(owner)) = (self.log.as_mut(), owner) {
                    log.count_snapshot(owner);
                }
                let encoded = encoded.or_else(|| self.log.as_mut()?.read(snapshot.as_ref()?).ok());
                let job = encoded.as_deref().and_then(codec::decode);
                match job {
                    Some(job) => self.publish(job, event, id, owner, snapshot.is_none()),
                    None => {
                        // Left in the spool (not acknowledged): the next start retries it.
                        self.left_in_spool += 1;
                        log::error(&format!("job {job_id}: its spooled record cannot be read back now; it is produced at the next start"));
                    }
                }
                false
            }
            Command::Reconfigure(settings) => {
                self.settings = *settings;
                self.reconfigured = true;
                false
            }
            Command::Stop => true,
        }
    }

    fn topic_for(&self, event: Event) -> &Topic {
        match event {
            Event::Finish => &self.settings.topic,
            Event::Start => &self.settings.start_topic,
        }
    }

    /// Builds the record's JSON text and queues it. `memory_only`: the hot path
    /// could not spool its snapshot (it counted it in `memory_only`).
    fn publish(&mut self, mut job: JobSnapshot, event: Event, id: u64, owner: Option<u64>, memory_only: bool) {
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
        let script = if record::wants_script(&job, event, &options) { self.read_script(&job) } else { None };
        let payload = record::build_record(&job, event, script.as_deref(), &options);
        let on_disk = self.add(id, job.job_id, event, payload, owner, owner.is_none());
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
    fn add(&mut self, id: u64, job_id: u32, event: Event, payload: Vec<u8>, owner: Option<u64>, new_record: bool) -> bool {
        let mut owner = owner;
        let mut payload_at = None;
        let topic = self.topic_for(event).clone();
        if let (Some(log), Some(hot)) = (self.log.as_mut(), self.hot.as_ref()) {
            log.follow(hot.segment());
            match log.append_payload(id, job_id, event as u8, topic.to_bytes(), &payload, new_record) {
                Ok(at) => {
                    hot.bytes.fetch_add(payload.len() as u64 + 40, Ordering::Relaxed);
                    payload_at = Some(at);
                    if new_record {
                        owner = Some(at.segment);
                    }
                }
                Err(e) => hot.failed(&format!("cannot write to the spool in {}: {e}", hot.dir.display())),
            }
        }
        let keep_in_memory = payload_at.is_none() || self.queued_bytes + payload.len() <= QUEUED_PAYLOAD_BUDGET;
        if keep_in_memory {
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
        };
        self.records.insert(id, pending);
        self.queue.push_back(id);
        owner.is_some()
    }

    /// The batch script as slurmctld saved it (NUL-terminated); `None` when the
    /// file is gone (the job record was purged) or unreadable.
    fn read_script(&self, job: &JobSnapshot) -> Option<Vec<u8>> {
        let owner = job.script_owner_id();
        let path = self.state_dir.as_ref()?.join(format!("hash.{}/job.{}/script", owner % 10, owner));
        let mut script = std::fs::read(&path).ok()?;
        if let Some(end) = script.iter().position(|b| *b == 0) {
            script.truncate(end);
        }
        Some(script)
    }

    /// The JSON text of a pending record: from memory, else from the spool.
    fn take_payload(&mut self, id: u64) -> Option<Vec<u8>> {
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

    fn keep_payload(&mut self, id: u64, payload: Vec<u8>) {
        if let Some(pending) = self.records.get_mut(&id) {
            if pending.payload.is_none() && (pending.payload_at.is_none() || self.queued_bytes + payload.len() <= QUEUED_PAYLOAD_BUDGET) {
                self.queued_bytes += payload.len();
                pending.payload = Some(payload);
            }
        }
    }

    /// Hands queued records to librdkafka in order, until its queue is full.
    fn drain_queue(&mut self) {
        while let Some(&id) = self.queue.front() {
            let Some(payload) = self.take_payload(id) else {
                // Acknowledged meanwhile, or unreadable (kept for fini's state file).
                self.queue.pop_front();
                continue;
            };
            let pending = &self.records[&id];
            let key = pending.job_id.to_string();
            let id_text = id.to_string();
            let result = self.producer.produce(
                &pending.topic,
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
                Err(ProduceError::Rejected { reason, refused: true }) => {
                    self.queue.pop_front();
                    self.set_aside(id, &payload, &reason);
                }
                Err(ProduceError::Rejected { reason, refused: false }) => {
                    self.queue.pop_front();
                    self.keep_payload(id, payload);
                    self.failed(id, &format!("librdkafka refused it: {reason}"));
                }
            }
        }
    }

    /// A delivery failed: try again after a growing delay.
    fn failed(&mut self, id: u64, why: &str) {
        let Some(pending) = self.records.get_mut(&id) else { return };
        pending.attempts += 1;
        let delay = RETRY_FIRST.saturating_mul(1 << pending.attempts.min(6)).min(RETRY_MAX);
        if pending.attempts == 1 && self.failures_since_summary == 0 {
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
    /// administrator (raise the limit, then send it by hand) and retired.
    fn set_aside(&mut self, id: u64, payload: &[u8], reason: &str) {
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
                log::error(&format!(
                    "job {}: Kafka refuses its record ({reason}); it is saved in {} and will not be sent again",
                    pending.job_id,
                    path.display()
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

    fn requeue_due(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((due, id))) = self.retry.peek().copied() {
            if due > now {
                break;
            }
            self.retry.pop();
            if self.records.contains_key(&id) {
                self.queue.push_back(id);
            }
        }
    }

    fn serve_reports(&mut self, timeout_ms: i32) {
        for report in self.producer.poll(timeout_ms) {
            self.handle_report(report);
        }
        self.write_acks();
    }

    fn handle_report(&mut self, report: kafka::Report) {
        let id = report.opaque;
        match report.outcome {
            Outcome::Delivered { partition, offset } => {
                let Some(pending) = self.records.remove(&id) else { return };
                if let Some(payload) = &pending.payload {
                    self.queued_bytes -= payload.len();
                }
                if pending.memory_only {
                    self.counters.memory_only.fetch_sub(1, Ordering::Relaxed);
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
                if let Some(payload) = report.payload {
                    self.keep_payload(id, payload);
                }
                self.failed(id, "delivery timed out (message.timeout.ms)");
            }
            Outcome::Failed { reason, refused: true } => {
                let payload = report.payload.or_else(|| self.take_payload(id)).unwrap_or_default();
                self.set_aside(id, &payload, &reason);
            }
            Outcome::Failed { reason, refused: false } => {
                if let Some(payload) = report.payload {
                    self.keep_payload(id, payload);
                }
                self.failed(id, &reason);
            }
        }
    }

    /// Writes the acknowledgements and deletes fully delivered segments.
    fn write_acks(&mut self) {
        if self.acks.is_empty() {
            return;
        }
        let acks = std::mem::take(&mut self.acks);
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
    fn sync_spool(&mut self) -> bool {
        let (Some(log), Some(hot)) = (self.log.as_ref(), self.hot.as_ref()) else { return false };
        let files: Vec<std::fs::File> = log.sync_handle().into_iter().collect();
        hot.sync(&files)
    }

    /// The periodic sync, on its own thread: an fdatasync takes milliseconds
    /// (more under other I/O), during which new records would wait. Skipped
    /// while the previous one still runs.
    fn sync_spool_in_background(&mut self) {
        let (Some(log), Some(hot)) = (self.log.as_ref(), self.hot.as_ref()) else { return };
        if self.syncer.is_none() {
            self.syncer = Syncer::start(hot.clone());
        }
        let Some(syncer) = self.syncer.as_ref() else {
            self.sync_spool();
            return;
        };
        if syncer.busy.load(Ordering::Acquire) {
            return;
        }
        let files: Vec<std::fs::File> = log.sync_handle().into_iter().collect();
        syncer.busy.store(true, Ordering::Release);
        let _ = syncer.sender.send(files);
    }

    fn outage_summary(&mut self) {
        if self.failures_since_summary == 0 || self.last_summary.elapsed() < OUTAGE_SUMMARY_EVERY {
            return;
        }
        log::warning(&format!(
            "{} record(s) not yet delivered; {} delivery attempt(s) failed in the last {} s (last: {}); they are kept and retried",
            self.records.len(),
            self.failures_since_summary,
            self.last_summary.elapsed().as_secs(),
            self.last_failure
        ));
        self.failures_since_summary = 0;
        self.last_summary = Instant::now();
    }

    /// The records of a state file written after this process's init (by
    /// another controller sharing StateSaveLocation).
    fn state_file_saved_since_init(&self, dir: &Path) -> Vec<SavedMessage> {
        let path = dir.join(state_file::STATE_FILE_NAME);
        let Ok(bytes) = std::fs::read(&path) else { return Vec::new() };
        let decoded = state_file::decode(&bytes, self.release);
        if let Some(problem) = decoded.problem {
            log::error(&format!("{}: {problem}; the file is kept as {}.old", path.display(), path.display()));
        }
        decoded.messages
    }

    fn finish_claim(&mut self) {
        if let Some(claim) = self.claim.take() {
            if let Err(e) = state_file::finish_replay(&claim) {
                log::error(&format!("cannot remove {}: {e}", claim.display()));
            }
        }
    }

    /// fini: purge, flush, then hand every record not yet acknowledged over to
    /// the state file, and empty the spool.
    fn finish(mut self) {
        if let Some(syncer) = self.syncer.take() {
            syncer.stop();
        }
        let params = self.settings.params.clone();
        let mut flags = kafka::PURGE_QUEUE;
        if params.purge_in_flight || params.requeue_purge_in_flight {
            flags |= kafka::PURGE_INFLIGHT;
        }
        if params.purge_non_blocking {
            flags |= kafka::PURGE_NON_BLOCKING;
        }
        self.producer.purge(flags);
        if !self.producer.flush(params.flush_timeout_ms) {
            // Still in flight after flush_timeout: take those back too rather
            // than lose them (they may reach the broker as well: a possible duplicate).
            self.producer.purge(kafka::PURGE_QUEUE | kafka::PURGE_INFLIGHT);
            self.producer.flush(1000);
        }
        for report in self.producer.take_reports() {
            self.handle_report(report);
        }
        self.write_acks();

        // A record purged while in flight may have reached Kafka already. If the
        // spool has it, it stays there with its record id, so that the copy
        // produced at the next start is recognisable as a duplicate. Every other
        // pending record goes to the state file (SchedMD's format) and leaves the spool.
        // A large backlog stays in the spool as it is: converting it would hold
        // slurmctld's shutdown for as long as it takes to rewrite it (42 s and
        // 7.7 GiB of memory for a million records), for the sake of a file that
        // only SchedMD's plugin needs.
        let spooled = self.log.is_some();
        let hand_over_all = !spooled || self.records.len() <= STATE_FILE_HANDOVER_LIMIT;
        let mut ids: Vec<u64> = self
            .records
            .iter()
            .filter(|(_, p)| p.owner.is_none() || (hand_over_all && !(spooled && p.in_flight)))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let kept_in_spool = self.records.len() - ids.len();
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
                if kept_in_spool == 0 && self.left_in_spool == 0 && handed_over.len() == self.records.len() {
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
