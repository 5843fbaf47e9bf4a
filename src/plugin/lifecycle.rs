//! The plugin's life cycle: init (producer, spool, delivery thread), reconfigure
//! (set_location) and fini, and the one running instance the hot path looks at.

use super::delivery::{counters_for, Delivery, Kafka, Startup, Stats, WaitingQueue};
use super::bell::Bell;
use super::hot_spool::{open_spool, HotSpool};
use super::{describe, settings_from, unix_now, Command, Counters, HostSettings, Settings, NOT_SET_UP_REMINDER_EVERY};
use crate::config;
use crate::kafka::{self, Producer};
use crate::names::NameCache;
use crate::release::Release;
use crate::slurm::log;
use crate::spool::{self, DeliveryLog};
use crate::state_file;
use crossbeam_channel::Sender;
use parking_lot::RwLock;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(super) struct Running {
    pub(super) release: Release,
    pub(super) sender: Sender<Command>,
    /// Rung after every command: wakes the delivery thread if it is parked.
    pub(super) bell: Arc<Bell>,
    pub(super) thread: JoinHandle<()>,
    pub(super) settings: Settings,
    pub(super) host: HostSettings,
    pub(super) next_id: Arc<AtomicU64>,
    pub(super) spool: Option<Arc<HotSpool>>,
    pub(super) counters: Arc<Counters>,
    /// Why Kafka is not set up (`None`: it is); set_location tries again.
    pub(super) kafka_problem: Option<String>,
}

impl Running {
    /// A command for the delivery thread, which is woken if parked.
    pub(super) fn send(&self, command: Command) -> bool {
        let sent = self.sender.send(command).is_ok();
        self.bell.ring();
        sent
    }
}

pub(super) static RUNNING: RwLock<Option<Running>> = RwLock::new(None);

/// Whether start events are wanted (25.05+ enable_job_start): checked before a
/// start event reads anything, so that a disabled start event costs nothing.
pub(super) static START_EVENTS: AtomicBool = AtomicBool::new(false);

/// init(): starts the producer and the delivery thread, which first produces
/// what a previous run left (state file, spool).
///
/// A JobCompLoc that cannot be turned into a producer (unset, missing,
/// unreadable, malformed, a property librdkafka rejects, a producer librdkafka
/// cannot create) does not make init
/// fail: the spool takes every record as usual, the delivery thread repeats the
/// error line with the number of records waiting, and the records are produced
/// once the file is fixed (restart, or reconfigure). SchedMD's plugin fails
/// init instead, and slurmctld then runs without a jobcomp plugin (22.05) or
/// does not start (23.02+). Without StateSaveLocation there is nowhere to keep
/// the records meanwhile: init fails then.
pub fn init(host: HostSettings, release: Release) -> Result<(), String> {
    shutdown();
    log::set_jobcomp_debug(host.jobcomp_debug);
    kafka::set_log_sink(Some(log::librdkafka_line));
    let settings = settings_from(&host, release);

    let kafka = set_up_kafka(&host);
    if let (Err(problem), None) = (&kafka, &host.state_save_location) {
        // Nowhere to keep the records until JobCompLoc is fixed.
        return Err(format!("{problem}; and StateSaveLocation is not set, so records could not be kept meanwhile"));
    }
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
    let next_id = Arc::new(AtomicU64::new(recovered.max_record_id.saturating_add(1).max(now_us)));
    let stats = Stats::open(settings.params.metrics_file.as_deref());
    let counters = Arc::new(counters_for(&stats));

    let (sender, receiver) = crossbeam_channel::unbounded();
    let bell = Arc::new(Bell::default());
    let kafka_problem = kafka.as_ref().err().cloned();
    let delivery = Delivery {
        log: hot.as_ref().map(|h| DeliveryLog::new(&h.dir, recovered.next_segment, recovered.owned.clone())),
        hot: hot.clone(),
        kafka: match kafka {
            Ok(producer) => Kafka::Producer(producer),
            Err(problem) => Kafka::NotSetUp { problem, next_reminder: Instant::now() },
        },
        reminder_every: not_set_up_reminder_period(),
        acks_dropped_for_tests: std::env::var_os("JOBCOMP_KAFKA_TEST_DROP_ACKS").is_some(),
        receiver,
        bell: bell.clone(),
        release,
        settings: settings.clone(),
        state_dir: host.state_save_location.clone(),
        names: NameCache::default(),
        records: HashMap::new(),
        queue: WaitingQueue::default(),
        retry: BinaryHeap::new(),
        acks: Vec::new(),
        queued_bytes: 0,
        counters: counters.clone(),
        next_id: next_id.clone(),
        claim: replay.claim.clone(),
        failures_since_summary: 0,
        last_failure: String::new(),
        denied_topics: Default::default(),
        next_renewal: Instant::now(),
        last_summary: Instant::now(),
        silence_noticed: false,
        syncer: None,
        reconfigured: false,
        spool_dirty: true,
        left_in_spool: 0,
        stats,
        scratch: Default::default(),
        script_buffer: Vec::new(),
        waiting_since: Instant::now(),
        built: HashMap::new(),
        closed: Default::default(),
        missing_topics: Default::default(),
        job_partitions: Default::default(),
        oldest_spooled_time: None,
        spilled_in_this_outage: false,
        handled_since_trim: 0,
        payload_budget_for_tests: std::env::var("JOBCOMP_KAFKA_TEST_PAYLOAD_BUDGET").ok().and_then(|b| b.parse().ok()),
        job_comp_loc: host.job_comp_loc.clone().unwrap_or_default(),
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
    log::verbose(&format!("started: {}", describe(&settings, release)));
    *RUNNING.write() =
        Some(Running { release, sender, bell, thread, settings, host, next_id, spool: hot, counters, kafka_problem });
    Ok(())
}

/// A producer from the JobCompLoc file, or the error line saying what is wrong
/// (file, line, property) and what to do about it.
fn set_up_kafka(host: &HostSettings) -> Result<Producer, String> {
    const REMEDY: &str = "fix JobCompLoc, then restart slurmctld or run scontrol reconfigure";
    let location = host.job_comp_loc.as_deref().unwrap_or("");
    let properties = config::read_properties_file(location).map_err(|e| format!("{e} Kafka is not set up: {REMEDY}"))?;
    config::secrets_file_warning(location, &properties).inspect(|w| log::warning(w));
    if host.jobcomp_debug {
        for p in &properties {
            log::info(&format!("librdkafka property {}={}", p.key, config::display_value(p)));
        }
    }
    Producer::new(kafka::with_plugin_defaults(properties.iter().map(|p| (p.key.as_str(), p.value.as_str())))).map_err(|e| {
        let line = e.property.as_deref().and_then(|key| properties.iter().find(|p| p.key == key));
        match line {
            Some(p) => format!("{location}:{}: {}. Kafka is not set up: {REMEDY}", p.line, e.reason),
            None => format!("{location}: {}. Kafka is not set up: {REMEDY}", e.reason),
        }
    })
}

/// How often the "Kafka is not set up" error line is repeated. Test-only
/// override: JOBCOMP_KAFKA_TEST_REMINDER_MS in slurmctld's environment (read
/// at init), so that the plugin-host tests need not wait ten minutes.
fn not_set_up_reminder_period() -> Duration {
    std::env::var("JOBCOMP_KAFKA_TEST_REMINDER_MS")
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
        .unwrap_or(NOT_SET_UP_REMINDER_EVERY)
}

/// set_location(): JobCompParams and DebugFlags are read again (reconfigure,
/// SIGUSR2). JobCompLoc is read at init only, as with SchedMD's plugin.
///
/// While Kafka is not set up (JobCompLoc was wrong at init), JobCompLoc is read
/// again too: once it works, the records waiting in the spool are produced.
/// On 22.05 and 23.02 this is how `scontrol reconfigure` applies a fixed file
/// (23.11+ re-exec slurmctld, which runs init again).
pub fn reconfigure(host: HostSettings) {
    // The producer is made outside the lock: the hot path takes it too.
    let problem = RUNNING.read().as_ref().and_then(|running| running.kafka_problem.clone());
    let retried = problem.map(|problem| (problem, set_up_kafka(&host)));
    let mut running = RUNNING.write();
    let Some(running) = running.as_mut() else { return };
    match retried {
        Some((_, Ok(producer))) if running.kafka_problem.is_some() => {
            running.kafka_problem = None;
            log::info(&format!(
                "Kafka is set up from {}: the records waiting in the spool are produced now",
                host.job_comp_loc.as_deref().unwrap_or("")
            ));
            running.send(Command::KafkaSetUp(producer));
        }
        Some((before, Err(now))) if now != before => {
            running.kafka_problem = Some(now.clone());
            running.send(Command::KafkaNotSetUp(now));
        }
        Some(_) => {}
        None if host.job_comp_loc != running.host.job_comp_loc => {
            log::warning("JobCompLoc changed: the new librdkafka properties take effect at the next slurmctld restart");
        }
        None => {}
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
    log::verbose(&format!("reconfigured: {}", describe(&settings, running.release)));
    running.send(Command::Reconfigure(Box::new(settings.clone())));
    running.settings = settings;
    running.host = host;
}

/// True when a start event should be recorded at all.
pub fn start_events_enabled() -> bool {
    START_EVENTS.load(Ordering::Relaxed)
}

/// fini(): the delivery thread purges, flushes and saves what is left.
pub fn shutdown() {
    let Some(running) = RUNNING.write().take() else { return };
    START_EVENTS.store(false, Ordering::Relaxed);
    running.send(Command::Stop);
    if running.thread.join().is_err() {
        log::error("the delivery thread stopped abnormally; undelivered records stay in the spool");
    }
}
