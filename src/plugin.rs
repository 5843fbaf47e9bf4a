//! The plugin's life cycle: init, set_location (reconfigure), the record hand-off
//! from the hot path, the delivery thread, and fini's hand-over to the state file.
//!
//! The hot path (`submit`) only pushes a snapshot onto an unbounded channel. The
//! delivery thread does everything else: names, the batch script, the JSON text,
//! `produce`, and delivery reports (served at least every poll_interval, and
//! after every batch of records). Nothing is dropped: a message librdkafka could
//! not take yet (queue full) waits in a backlog; one that failed for good, timed
//! out without requeue_on_msg_timeout, or was purged at fini is written to the
//! state file and produced again at the next init.

use crate::config::{self, Params, Problem};
use crate::kafka::{self, MessageTag, Outcome, ProduceError, Producer, Report};
use crate::names::NameCache;
use crate::record::{self, RecordOptions};
use crate::release::Release;
use crate::slurm::log;
use crate::snapshot::{Event, JobSnapshot};
use crate::state_file::{self, SavedMessage};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::RwLock;
use std::collections::VecDeque;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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

enum Command {
    Record(Box<JobSnapshot>, Event),
    Reconfigure(Box<Settings>),
    Stop,
}

/// The settings the delivery thread works with (re-sent on reconfigure).
#[derive(Clone, Debug)]
struct Settings {
    params: Params,
    topic: CString,
    start_topic: CString,
    debug: bool,
}

struct Running {
    release: Release,
    sender: Sender<Command>,
    thread: JoinHandle<Leftovers>,
    producer: Arc<Producer>,
    settings: Settings,
    host: HostSettings,
    claim: Option<PathBuf>,
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
    let c = |text: String| CString::new(text.replace('\0', "")).unwrap_or_default();
    Settings { params, topic: c(topic), start_topic: c(start_topic), debug: host.jobcomp_debug }
}

/// init(): starts the producer and the delivery thread, and queues the records
/// saved by the previous run. An error names what is wrong.
pub fn init(host: HostSettings, release: Release) -> Result<(), String> {
    shutdown(release);
    log::set_jobcomp_debug(host.jobcomp_debug);
    kafka::set_log_sink(Some(log::librdkafka_line));
    let settings = settings_from(&host, release);

    let location = host
        .job_comp_loc
        .clone()
        .filter(|loc| !loc.trim().is_empty())
        .ok_or("JobCompLoc is not set: it must name a file of librdkafka properties (at least bootstrap.servers)")?;
    let properties = config::read_properties_file(&location).map_err(|e| e.to_string())?;
    if host.jobcomp_debug {
        for p in &properties {
            log::info(&format!("librdkafka property {}={}", p.key, config::display_value(p)));
        }
    }
    let producer = Producer::new(properties.iter().map(|p| (p.key.as_str(), p.value.as_str())))
        .map_err(|e| format!("{location}: {e}"))?;
    let producer = Arc::new(producer);

    let mut backlog = VecDeque::new();
    let mut claim = None;
    if let Some(dir) = &host.state_save_location {
        let replay = state_file::take_for_replay(dir, release, unix_now());
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
        for saved in replay.messages {
            let topic = topic_for(&settings, saved.event).clone();
            let tag = MessageTag { job_id: saved.job_id, event: saved.event, replayed: true };
            backlog.push_back(Pending { tag, topic, payload: saved.payload });
        }
        claim = replay.claim;
    } else {
        log::error("StateSaveLocation is not set: undelivered records cannot be saved at shutdown");
    }

    let (sender, receiver) = crossbeam_channel::unbounded();
    let replay_outstanding = backlog.len();
    let delivery = Delivery {
        producer: producer.clone(),
        receiver,
        release,
        settings: settings.clone(),
        state_dir: host.state_save_location.clone(),
        names: NameCache::default(),
        backlog,
        kept: Vec::new(),
        replay_outstanding,
        replay_kept: 0,
        claim: claim.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("jobcomp_kafka".into())
        .spawn(move || delivery.run())
        .map_err(|e| format!("cannot start the delivery thread: {e}"))?;

    START_EVENTS.store(settings.params.enable_job_start, Ordering::Relaxed);
    log::verbose(&format!(
        "publishing to topic {} ({})",
        settings.topic.to_string_lossy(),
        config::describe(&settings.params)
    ));
    *RUNNING.write() = Some(Running { release, sender, thread, producer, settings, host, claim });
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

/// The hot path's hand-off. Never blocks. False when the plugin is not running.
pub fn submit(snapshot: JobSnapshot, event: Event) -> bool {
    match RUNNING.read().as_ref() {
        Some(running) => running.sender.send(Command::Record(Box::new(snapshot), event)).is_ok(),
        None => false,
    }
}

/// True between a successful init and fini.
pub fn is_running() -> bool {
    RUNNING.read().is_some()
}

/// fini(): stop the delivery thread, purge, flush, destroy the producer, save what
/// was not delivered.
pub fn shutdown(release: Release) {
    let Some(running) = RUNNING.write().take() else { return };
    START_EVENTS.store(false, Ordering::Relaxed);
    let _ = running.sender.send(Command::Stop);
    let leftovers = running.thread.join().unwrap_or_else(|_| {
        log::error("the delivery thread stopped abnormally; records it held are lost");
        Leftovers::default()
    });
    let params = &running.settings.params;
    let producer = running.producer;

    let mut flags = kafka::PURGE_QUEUE;
    if params.purge_in_flight || params.requeue_purge_in_flight {
        flags |= kafka::PURGE_INFLIGHT;
    }
    if params.purge_non_blocking {
        flags |= kafka::PURGE_NON_BLOCKING;
    }
    producer.purge(flags);
    if !producer.flush(params.flush_timeout_ms) {
        // Still in flight after flush_timeout: take those back too rather than
        // lose them (they may reach the broker as well: a possible duplicate).
        producer.purge(kafka::PURGE_QUEUE | kafka::PURGE_INFLIGHT);
        producer.flush(1000);
    }
    let mut saved: Vec<SavedMessage> = leftovers.kept;
    let mut delivered = 0usize;
    for report in producer.take_reports() {
        match report.outcome {
            Outcome::Delivered { .. } => delivered += 1,
            _ => saved.push(saved_from_report(report)),
        }
    }
    saved.extend(leftovers.backlog.into_iter().map(|p| SavedMessage {
        event: p.tag.event,
        job_id: p.tag.job_id,
        payload: p.payload,
    }));
    let remaining = producer.queue_len();
    match Arc::try_unwrap(producer) {
        Ok(producer) => drop(producer),
        Err(_) => log::error("the producer is still referenced at fini; not destroyed"),
    }
    if remaining > 0 {
        log::error(&format!("{remaining} message(s) were still inside librdkafka at fini and are lost"));
    }
    save_state(running.host.state_save_location.as_deref(), release, &saved, running.claim.as_deref());
    log::verbose(&format!("stopped: {delivered} delivered during shutdown, {} saved for the next start", saved.len()));
}

fn save_state(dir: Option<&Path>, release: Release, saved: &[SavedMessage], claim: Option<&Path>) {
    let Some(dir) = dir else {
        if !saved.is_empty() {
            log::error(&format!("{} undelivered record(s) lost: StateSaveLocation is not set", saved.len()));
        }
        return;
    };
    match state_file::write(dir, release, saved) {
        Ok(()) => {
            if !saved.is_empty() {
                log::info(&format!(
                    "saved {} undelivered record(s) to {}",
                    saved.len(),
                    dir.join(state_file::STATE_FILE_NAME).display()
                ));
            }
            if let Some(claim) = claim {
                // The delivery thread may have removed it already (all delivered).
                match state_file::finish_replay(claim) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        log::error(&format!("cannot remove {}: {e}", claim.display()))
                    }
                    _ => {}
                }
            }
        }
        Err(e) => log::error(&format!(
            "cannot write {} ({e}): {} undelivered record(s) lost",
            dir.join(state_file::STATE_FILE_NAME).display(),
            saved.len()
        )),
    }
}

fn saved_from_report(report: Report) -> SavedMessage {
    SavedMessage { event: report.tag.event, job_id: report.tag.job_id, payload: report.payload.unwrap_or_default() }
}

fn topic_for(settings: &Settings, event: Event) -> &CString {
    match event {
        Event::Finish => &settings.topic,
        Event::Start => &settings.start_topic,
    }
}

/// A record librdkafka has not accepted yet.
struct Pending {
    tag: MessageTag,
    topic: CString,
    payload: Vec<u8>,
}

/// What the delivery thread hands back at fini.
#[derive(Default)]
struct Leftovers {
    backlog: VecDeque<Pending>,
    kept: Vec<SavedMessage>,
}

struct Delivery {
    producer: Arc<Producer>,
    receiver: Receiver<Command>,
    release: Release,
    settings: Settings,
    state_dir: Option<PathBuf>,
    names: NameCache,
    /// Accepted from slurmctld (or the state file), not yet accepted by librdkafka.
    backlog: VecDeque<Pending>,
    /// Failed for good or timed out without requeue: saved at fini.
    kept: Vec<SavedMessage>,
    replay_outstanding: usize,
    replay_kept: usize,
    claim: Option<PathBuf>,
}

impl Delivery {
    fn run(mut self) -> Leftovers {
        self.drain_backlog();
        let mut next_poll = Instant::now() + self.settings.params.poll_interval;
        loop {
            let wait = next_poll.saturating_duration_since(Instant::now());
            let mut stop = false;
            match self.receiver.recv_timeout(wait) {
                Ok(command) => {
                    stop = self.handle(command);
                    // Take what else is waiting, up to a batch, before polling.
                    for _ in 1..BATCH {
                        if stop {
                            break;
                        }
                        match self.receiver.try_recv() {
                            Ok(command) => stop = self.handle(command),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            self.serve_reports(0);
            self.drain_backlog();
            if stop {
                break;
            }
            if Instant::now() >= next_poll {
                next_poll = Instant::now() + self.settings.params.poll_interval;
            }
        }
        Leftovers { backlog: std::mem::take(&mut self.backlog), kept: std::mem::take(&mut self.kept) }
    }

    /// True on Stop.
    fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::Record(snapshot, event) => {
                self.publish(*snapshot, event);
                false
            }
            Command::Reconfigure(settings) => {
                self.settings = *settings;
                false
            }
            Command::Stop => true,
        }
    }

    fn publish(&mut self, mut job: JobSnapshot, event: Event) {
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
        let tag = MessageTag { job_id: job.job_id, event, replayed: false };
        let topic = topic_for(&self.settings, event).clone();
        self.backlog.push_back(Pending { tag, topic, payload });
        self.drain_backlog();
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

    /// Hands queued records to librdkafka in order, until it says its queue is full.
    fn drain_backlog(&mut self) {
        while let Some(pending) = self.backlog.front() {
            let key = pending.tag.job_id.to_string();
            match self.producer.produce(&pending.topic, key.as_bytes(), &pending.payload, pending.tag) {
                Ok(()) => {
                    self.backlog.pop_front();
                }
                Err(ProduceError::QueueFull) => break,
                Err(ProduceError::Rejected(reason)) => {
                    let pending = self.backlog.pop_front().expect("front exists");
                    log::error(&format!(
                        "job {}: librdkafka refused the record ({reason}); kept for the state file",
                        pending.tag.job_id
                    ));
                    self.keep(pending.tag, pending.payload);
                }
            }
        }
    }

    fn keep(&mut self, tag: MessageTag, payload: Vec<u8>) {
        if tag.replayed {
            self.replay_kept += 1;
        }
        self.kept.push(SavedMessage { event: tag.event, job_id: tag.job_id, payload });
    }

    fn serve_reports(&mut self, timeout_ms: i32) {
        for report in self.producer.poll(timeout_ms) {
            let tag = report.tag;
            match report.outcome {
                Outcome::Delivered { partition, offset } => {
                    if self.settings.debug {
                        log::info(&format!(
                            "job {} record delivered to {} [{partition}] at offset {offset}",
                            tag.job_id, report.topic
                        ));
                    }
                    if tag.replayed {
                        self.replay_settled();
                    }
                }
                Outcome::TimedOut if self.settings.params.requeue_on_msg_timeout => {
                    log::verbose(&format!("job {}: delivery timed out, producing the record again", tag.job_id));
                    let topic = CString::new(report.topic).unwrap_or_else(|_| topic_for(&self.settings, tag.event).clone());
                    self.backlog.push_back(Pending { tag, topic, payload: report.payload.unwrap_or_default() });
                }
                outcome => {
                    let why = match &outcome {
                        Outcome::TimedOut => "delivery timed out (message.timeout.ms)".to_string(),
                        Outcome::Purged { .. } => "purged".to_string(),
                        Outcome::Failed { reason } => reason.clone(),
                        Outcome::Delivered { .. } => unreachable!(),
                    };
                    log::error(&format!(
                        "job {}: record not delivered to {}: {why}; kept for the state file",
                        tag.job_id, report.topic
                    ));
                    self.keep(tag, report.payload.unwrap_or_default());
                }
            }
        }
    }

    /// One replayed record is delivered; once all are and none had to be kept,
    /// the claimed state file is done with.
    fn replay_settled(&mut self) {
        self.replay_outstanding = self.replay_outstanding.saturating_sub(1);
        if self.replay_outstanding == 0 && self.replay_kept == 0 {
            if let Some(claim) = self.claim.take() {
                if let Err(e) = state_file::finish_replay(&claim) {
                    log::error(&format!("cannot remove {}: {e}", claim.display()));
                }
            }
        }
    }
}

