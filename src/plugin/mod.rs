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
//!
//! Files, by what each part does:
//! - `lifecycle`: init, reconfigure (set_location), fini; the running instance.
//! - `hot_path`: `submit`, called under slurmctld's job write lock.
//! - `hot_spool`: the hot path's side of the spool (snapshot appends, syncs).
//! - `sync_thread`: the periodic fdatasync, off the delivery thread.
//! - `delivery`: the delivery thread (its loop and start-up in `delivery/mod.rs`;
//!   building and producing records in `produce`, delivery reports and
//!   acknowledgements in `reports`, fini's hand-over to the state file in `handover`).

mod bell;
mod delivery;
mod hot_path;
mod hot_spool;
mod lifecycle;
mod sync_thread;

pub use hot_path::{submit, NotTaken};
pub use lifecycle::{init, reconfigure, shutdown, start_events_enabled};

use crate::config::{self, Params, Problem};
use crate::release::Release;
use crate::slurm::log;
use crate::snapshot::Event;
use crate::spool::Location;
use std::ffi::{CStr, CString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
/// During an outage (see `STALLED_AFTER`) the payloads kept in memory are cut
/// to this: the texts are in the spool, and each waiting record then costs a
/// 32-byte entry (`delivery::waiting`) instead of its text.
const STALLED_PAYLOAD_BUDGET: usize = 4 << 20;
/// During an outage librdkafka is handed at most this many records until
/// Kafka acknowledges one again: its own copies of them are memory too.
const STALLED_WINDOW: usize = 1000;
/// Records librdkafka refuses for good (too large, invalid) are written here,
/// under StateSaveLocation, one file per record, for an administrator to act on.
pub const REFUSED_DIR: &str = "jobcomp_kafka_refused";
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How often the error line is repeated while Kafka is not set up (a wrong
/// JobCompLoc), with the number of records waiting.
const NOT_SET_UP_REMINDER_EVERY: Duration = Duration::from_secs(600);
/// Records have waited this long without Kafka acknowledging any: an outage.
/// New records are then spooled compressed (they are expected to wait too).
/// Longer than a slow broker's round trip, short against an outage.
const STALLED_AFTER: Duration = Duration::from_secs(2);
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
    /// Kafka could be set up after all (set_location found JobCompLoc fixed):
    /// the records waiting in the spool are produced now.
    KafkaSetUp(crate::kafka::Producer),
    /// Kafka still cannot be set up, for another reason than before: the
    /// reminder line says the new one (at once, then at its usual rate).
    KafkaNotSetUp(String),
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

/// Counters shared by the hot path and the delivery thread.
#[derive(Default)]
struct Counters {
    /// Records on no disk (spool failing), not yet delivered.
    memory_only: AtomicUsize,
    /// Records lost because neither the spool nor memory could take them.
    lost: AtomicU64,
    /// Records taken by `submit`, by event (`event_index`).
    taken: [AtomicU64; 2],
    /// `submit`'s time, when metrics are on (`metrics_file`).
    latency: Option<crate::metrics::LatencyHistogram>,
}

/// Index of an event in per-event arrays, and its label in the metrics.
fn event_index(event: Event) -> usize {
    match event {
        Event::Finish => 0,
        Event::Start => 1,
    }
}

fn event_label(event: Event) -> &'static str {
    match event {
        Event::Finish => "finish",
        Event::Start => "start",
    }
}

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

/// The settings line of the start-up and reconfigure log lines.
fn describe(settings: &Settings, release: Release) -> String {
    config::describe(
        &settings.params,
        release,
        &settings.topic.to_string_lossy(),
        &settings.start_topic.to_string_lossy(),
    )
}

fn settings_from(host: &HostSettings, release: Release) -> Settings {
    let (params, problems) = config::parse_params(host.job_comp_params.as_deref(), release);
    log_problems(&problems);
    let (topic, start_topic, problems) = config::resolve_topics(&params, &host.cluster_name);
    log_problems(&problems);
    let c = |text: String| Topic::from(CString::new(text.replace('\0', "")).unwrap_or_default());
    Settings { params, topic: c(topic), start_topic: c(start_topic), debug: host.jobcomp_debug }
}
