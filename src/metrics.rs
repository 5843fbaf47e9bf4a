//! Metrics for Prometheus, written by the plugin's delivery thread to the file
//! JobCompParams `metrics_file=<path>` names, in the text exposition format, for
//! node_exporter's textfile collector (a plugin inside slurmctld must not open
//! a port of its own).
//!
//! - [`LatencyHistogram`]: log_record's time, the one figure the hot path
//!   updates: a cheap clock read (the TSC, no system call) before and after,
//!   one relaxed atomic add per bucket and sum. Nothing else on the hot path.
//! - [`Figures`] and [`render`]: what the file says, as plain data, formatted by
//!   pure code (unit-tested against hand-written text).
//! - [`MetricsFile`]: the file, rewritten atomically (temporary file in the same
//!   directory, then rename) so that the collector never reads half a file.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Every metric's name starts with this.
pub const PREFIX: &str = "slurm_jobcomp_kafka_";

/// Upper bounds (seconds) of log_record's time histogram. log_record takes a
/// few microseconds when all is well; the upper buckets catch a stall (a page
/// fault waiting on the file system, a contended lock).
pub const LATENCY_BOUNDS: [f64; 12] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 1e-1, 1.0,
];

/// The clock the hot path reads: the CPU's time-stamp counter when it runs at a
/// constant rate in every power state (`constant_tsc` and `nonstop_tsc`; one
/// instruction, never a system call), else the monotonic clock (through the
/// vDSO on Linux). Ticks are converted to seconds with a rate measured once.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    tsc: bool,
    base: Instant,
    /// Ticks per second.
    rate: f64,
}

impl Clock {
    /// Picks the clock, and measures the TSC's rate against the monotonic clock
    /// over `calibration` (both ends read back to back, so the sleep's length
    /// does not matter: the error is the reads' latency over the interval).
    pub fn new(calibration: Duration) -> Clock {
        let base = Instant::now();
        if !tsc_is_invariant() {
            return Clock { tsc: false, base, rate: 1e9 };
        }
        let (t0, c0) = (Instant::now(), read_tsc());
        std::thread::sleep(calibration);
        let (t1, c1) = (Instant::now(), read_tsc());
        let seconds = t1.duration_since(t0).as_secs_f64();
        let ticks = c1.wrapping_sub(c0) as f64;
        if seconds <= 0.0 || ticks <= 0.0 {
            return Clock { tsc: false, base, rate: 1e9 };
        }
        Clock { tsc: true, base, rate: ticks / seconds }
    }

    /// A clock counting nanoseconds (tests; hosts without an invariant TSC).
    pub fn monotonic() -> Clock {
        Clock { tsc: false, base: Instant::now(), rate: 1e9 }
    }

    #[inline]
    pub fn now(&self) -> u64 {
        if self.tsc {
            read_tsc()
        } else {
            self.base.elapsed().as_nanos() as u64
        }
    }

    pub fn ticks(&self, seconds: f64) -> u64 {
        (seconds * self.rate).round() as u64
    }

    pub fn seconds(&self, ticks: u64) -> f64 {
        ticks as f64 / self.rate
    }

    pub fn is_tsc(&self) -> bool {
        self.tsc
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn read_tsc() -> u64 {
    // SAFETY: rdtsc has no preconditions; every x86_64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn read_tsc() -> u64 {
    0
}

fn tsc_is_invariant() -> bool {
    if !cfg!(target_arch = "x86_64") {
        return false;
    }
    let Ok(cpuinfo) = fs::read_to_string("/proc/cpuinfo") else { return false };
    let Some(flags) = cpuinfo.lines().find(|l| l.starts_with("flags")) else { return false };
    let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
    has("constant_tsc") && has("nonstop_tsc")
}

/// log_record's time: counts per bucket (not cumulative: one add per call;
/// [`LatencyHistogram::read`] accumulates), and the sum, in clock ticks.
pub struct LatencyHistogram {
    pub clock: Clock,
    bounds: [u64; LATENCY_BOUNDS.len()],
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum: AtomicU64,
}

/// A histogram as the file shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// (upper bound in seconds, observations at or below it), cumulative.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl LatencyHistogram {
    pub fn new(clock: Clock) -> LatencyHistogram {
        LatencyHistogram {
            clock,
            bounds: LATENCY_BOUNDS.map(|s| clock.ticks(s)),
            buckets: Default::default(),
            sum: AtomicU64::new(0),
        }
    }

    /// The hot path's part: the time since `started` (a [`Clock::now`]). Relaxed
    /// atomics only: no lock, no system call.
    #[inline]
    pub fn observe_since(&self, started: u64) {
        let ticks = self.clock.now().wrapping_sub(started);
        let bucket = self.bounds.iter().position(|&b| ticks <= b).unwrap_or(self.bounds.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(ticks, Ordering::Relaxed);
    }

    pub fn read(&self) -> Histogram {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BOUNDS.len());
        for (i, bound) in LATENCY_BOUNDS.iter().enumerate() {
            total += self.buckets[i].load(Ordering::Relaxed);
            buckets.push((*bound, total));
        }
        total += self.buckets[LATENCY_BOUNDS.len()].load(Ordering::Relaxed);
        Histogram { buckets, count: total, sum_seconds: self.clock.seconds(self.sum.load(Ordering::Relaxed)) }
    }
}

/// Why a delivery failed, as the metrics count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// message.timeout.ms passed without an acknowledgement.
    TimedOut = 0,
    /// The broker answered with an error (not a refusal for good).
    BrokerRefused = 1,
    /// librdkafka's own error (connection lost, no broker reachable, ...).
    Transport = 2,
}

impl FailureKind {
    pub const ALL: [FailureKind; 3] = [FailureKind::TimedOut, FailureKind::BrokerRefused, FailureKind::Transport];

    pub fn label(self) -> &'static str {
        match self {
            FailureKind::TimedOut => "timed_out",
            FailureKind::BrokerRefused => "broker_refused",
            FailureKind::Transport => "transport",
        }
    }

    /// From librdkafka's description of the error: its own (local) errors are
    /// described as "Local: ..." (rd_kafka_err2str), a broker's error code by
    /// the broker error's name.
    pub fn of_reason(reason: &str) -> FailureKind {
        if reason.starts_with("Local:") {
            FailureKind::Transport
        } else {
            FailureKind::BrokerRefused
        }
    }
}

/// Figures per (topic, event).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PerTopic {
    pub topic: String,
    pub event: &'static str,
    pub delivered: u64,
    pub refused: u64,
    pub waiting: u64,
    pub waiting_bytes: u64,
}

/// Everything the metrics file says, as plain data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    pub version: String,
    pub slurm_release: String,
    /// Records taken by log_record, per event label.
    pub taken: Vec<(&'static str, u64)>,
    pub topics: Vec<PerTopic>,
    pub failures: [u64; 3],
    /// Files in jobcomp_kafka_refused/ (set aside, this run or earlier).
    pub refused_files: u64,
    pub lost: u64,
    pub memory_only: u64,
    /// Age of the oldest waiting record (0 when none waits).
    pub oldest_waiting_age_seconds: i64,
    /// Unix time of the last acknowledged delivery (0: none since start).
    pub last_delivery_time: i64,
    pub spool_disk_bytes: u64,
    pub latency: Option<Histogram>,
    /// Unix time the file was written.
    pub written_at: i64,
}

/// A label value as the exposition format wants it: backslash, double quote
/// and line feed escaped.
fn label_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A float in the exposition format (Go's ParseFloat reads Rust's shortest form).
fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{value}")
    }
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(self.0, "# TYPE {PREFIX}{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.0, "{PREFIX}{name}");
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"{}\"", label_value(value));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn per_topic(&mut self, name: &str, kind: &str, help: &str, topics: &[PerTopic], value: fn(&PerTopic) -> u64) {
        self.head(name, kind, help);
        for t in topics {
            self.sample(name, &[("topic", &t.topic), ("event", t.event)], value(t));
        }
    }
}

/// The metrics file's text.
pub fn render(f: &Figures) -> String {
    let mut out = Out(String::with_capacity(4096));
    out.head("info", "gauge", "The plugin's version and the Slurm release it was built for (always 1).");
    out.sample("info", &[("version", &f.version), ("slurm_release", &f.slurm_release)], 1);
    out.head("records_taken_total", "counter", "Records taken by log_record since slurmctld started.");
    for (event, count) in &f.taken {
        out.sample("records_taken_total", &[("event", event)], count);
    }
    out.per_topic("records_delivered_total", "counter", "Records Kafka acknowledged since slurmctld started.", &f.topics, |t| t.delivered);
    out.head("delivery_failures_total", "counter", "Failed delivery attempts (each is retried), by kind.");
    for kind in FailureKind::ALL {
        out.sample("delivery_failures_total", &[("kind", kind.label())], f.failures[kind as usize]);
    }
    out.per_topic(
        "records_refused_total",
        "counter",
        "Records Kafka refused for good (e.g. too large) and set aside in jobcomp_kafka_refused/, since slurmctld started.",
        &f.topics,
        |t| t.refused,
    );
    out.head("refused_files", "gauge", "Records set aside in jobcomp_kafka_refused/ (waiting for an administrator: jobcomp-kafka resend).");
    out.sample("refused_files", &[], f.refused_files);
    out.head("records_lost_total", "counter", "Records lost: neither the spool nor memory could hold them.");
    out.sample("records_lost_total", &[], f.lost);
    out.head("records_memory_only", "gauge", "Waiting records held in memory only (the spool could not take them).");
    out.sample("records_memory_only", &[], f.memory_only);
    out.per_topic("records_waiting", "gauge", "Records not yet acknowledged by Kafka.", &f.topics, |t| t.waiting);
    out.per_topic("records_waiting_bytes", "gauge", "Size of the waiting records' JSON text.", &f.topics, |t| t.waiting_bytes);
    out.head("oldest_waiting_record_age_seconds", "gauge", "Age of the oldest waiting record (since its job event); 0 when none waits.");
    out.sample("oldest_waiting_record_age_seconds", &[], f.oldest_waiting_age_seconds);
    out.head("last_delivery_timestamp_seconds", "gauge", "Unix time of the last record Kafka acknowledged; 0: none since slurmctld started.");
    out.sample("last_delivery_timestamp_seconds", &[], f.last_delivery_time);
    out.head("spool_disk_bytes", "gauge", "Size of the spool's files under StateSaveLocation.");
    out.sample("spool_disk_bytes", &[], f.spool_disk_bytes);
    if let Some(h) = &f.latency {
        let name = "log_record_duration_seconds";
        out.head(name, "histogram", "Time log_record takes in slurmctld's thread (the job write lock is held).");
        for (bound, count) in &h.buckets {
            out.sample(&format!("{name}_bucket"), &[("le", &number(*bound))], count);
        }
        out.sample(&format!("{name}_bucket"), &[("le", "+Inf")], h.count);
        out.sample(&format!("{name}_sum"), &[], number(h.sum_seconds));
        out.sample(&format!("{name}_count"), &[], h.count);
    }
    out.head("metrics_written_timestamp_seconds", "gauge", "Unix time this file was written (a stale file means a stopped plugin).");
    out.sample("metrics_written_timestamp_seconds", &[], f.written_at);
    out.0
}

/// The metrics file, rewritten whole each time.
#[derive(Debug)]
pub struct MetricsFile {
    path: PathBuf,
    temp: PathBuf,
}

impl MetricsFile {
    /// Checks that `path` can be written (its directory exists and takes a new
    /// file); the error says what is wrong.
    pub fn open(path: &Path) -> Result<MetricsFile, String> {
        if !path.is_absolute() {
            return Err(format!("metrics_file={} is not an absolute path", path.display()));
        }
        let Some(name) = path.file_name() else {
            return Err(format!("metrics_file={} names no file", path.display()));
        };
        let dir = path.parent().unwrap_or(Path::new("/"));
        // node_exporter reads only *.prom files: the temporary name is not one.
        let temp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
        let file = MetricsFile { path: path.to_path_buf(), temp };
        file.write("").map_err(|e| format!("metrics_file={}: cannot write in {}: {e}", path.display(), dir.display()))?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `text` to the temporary file, then renames it over the file.
    pub fn write(&self, text: &str) -> io::Result<()> {
        let result = (|| {
            let mut file = fs::File::create(&self.temp)?;
            file.write_all(text.as_bytes())?;
            drop(file);
            // Readable by node_exporter, which seldom runs as slurmctld's user.
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&self.temp, fs::Permissions::from_mode(0o644))?;
            fs::rename(&self.temp, &self.path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&self.temp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_exactly_as_specified() {
        let figures = Figures {
            version: "0.1.0".into(),
            slurm_release: "22.05.8".into(),
            taken: vec![("finish", 7), ("start", 2)],
            topics: vec![
                PerTopic { topic: "cl".into(), event: "finish", delivered: 5, refused: 1, waiting: 1, waiting_bytes: 1200 },
                PerTopic { topic: "a\"b\\c".into(), event: "start", delivered: 2, refused: 0, waiting: 0, waiting_bytes: 0 },
            ],
            failures: [3, 0, 4],
            refused_files: 2,
            lost: 0,
            memory_only: 0,
            oldest_waiting_age_seconds: 95,
            last_delivery_time: 1_700_000_000,
            spool_disk_bytes: 4096,
            latency: Some(Histogram { buckets: vec![(1e-6, 1), (2.5e-6, 4), (1.0, 9)], count: 10, sum_seconds: 0.5 }),
            written_at: 1_700_000_100,
        };
        let expected = r#"# HELP slurm_jobcomp_kafka_info The plugin's version and the Slurm release it was built for (always 1).
# TYPE slurm_jobcomp_kafka_info gauge
slurm_jobcomp_kafka_info{version="0.1.0",slurm_release="22.05.8"} 1
# HELP slurm_jobcomp_kafka_records_taken_total Records taken by log_record since slurmctld started.
# TYPE slurm_jobcomp_kafka_records_taken_total counter
slurm_jobcomp_kafka_records_taken_total{event="finish"} 7
slurm_jobcomp_kafka_records_taken_total{event="start"} 2
# HELP slurm_jobcomp_kafka_records_delivered_total Records Kafka acknowledged since slurmctld started.
# TYPE slurm_jobcomp_kafka_records_delivered_total counter
slurm_jobcomp_kafka_records_delivered_total{topic="cl",event="finish"} 5
slurm_jobcomp_kafka_records_delivered_total{topic="a\"b\\c",event="start"} 2
# HELP slurm_jobcomp_kafka_delivery_failures_total Failed delivery attempts (each is retried), by kind.
# TYPE slurm_jobcomp_kafka_delivery_failures_total counter
slurm_jobcomp_kafka_delivery_failures_total{kind="timed_out"} 3
slurm_jobcomp_kafka_delivery_failures_total{kind="broker_refused"} 0
slurm_jobcomp_kafka_delivery_failures_total{kind="transport"} 4
# HELP slurm_jobcomp_kafka_records_refused_total Records Kafka refused for good (e.g. too large) and set aside in jobcomp_kafka_refused/, since slurmctld started.
# TYPE slurm_jobcomp_kafka_records_refused_total counter
slurm_jobcomp_kafka_records_refused_total{topic="cl",event="finish"} 1
slurm_jobcomp_kafka_records_refused_total{topic="a\"b\\c",event="start"} 0
# HELP slurm_jobcomp_kafka_refused_files Records set aside in jobcomp_kafka_refused/ (waiting for an administrator: jobcomp-kafka resend).
# TYPE slurm_jobcomp_kafka_refused_files gauge
slurm_jobcomp_kafka_refused_files 2
# HELP slurm_jobcomp_kafka_records_lost_total Records lost: neither the spool nor memory could hold them.
# TYPE slurm_jobcomp_kafka_records_lost_total counter
slurm_jobcomp_kafka_records_lost_total 0
# HELP slurm_jobcomp_kafka_records_memory_only Waiting records held in memory only (the spool could not take them).
# TYPE slurm_jobcomp_kafka_records_memory_only gauge
slurm_jobcomp_kafka_records_memory_only 0
# HELP slurm_jobcomp_kafka_records_waiting Records not yet acknowledged by Kafka.
# TYPE slurm_jobcomp_kafka_records_waiting gauge
slurm_jobcomp_kafka_records_waiting{topic="cl",event="finish"} 1
slurm_jobcomp_kafka_records_waiting{topic="a\"b\\c",event="start"} 0
# HELP slurm_jobcomp_kafka_records_waiting_bytes Size of the waiting records' JSON text.
# TYPE slurm_jobcomp_kafka_records_waiting_bytes gauge
slurm_jobcomp_kafka_records_waiting_bytes{topic="cl",event="finish"} 1200
slurm_jobcomp_kafka_records_waiting_bytes{topic="a\"b\\c",event="start"} 0
# HELP slurm_jobcomp_kafka_oldest_waiting_record_age_seconds Age of the oldest waiting record (since its job event); 0 when none waits.
# TYPE slurm_jobcomp_kafka_oldest_waiting_record_age_seconds gauge
slurm_jobcomp_kafka_oldest_waiting_record_age_seconds 95
# HELP slurm_jobcomp_kafka_last_delivery_timestamp_seconds Unix time of the last record Kafka acknowledged; 0: none since slurmctld started.
# TYPE slurm_jobcomp_kafka_last_delivery_timestamp_seconds gauge
slurm_jobcomp_kafka_last_delivery_timestamp_seconds 1700000000
# HELP slurm_jobcomp_kafka_spool_disk_bytes Size of the spool's files under StateSaveLocation.
# TYPE slurm_jobcomp_kafka_spool_disk_bytes gauge
slurm_jobcomp_kafka_spool_disk_bytes 4096
# HELP slurm_jobcomp_kafka_log_record_duration_seconds Time log_record takes in slurmctld's thread (the job write lock is held).
# TYPE slurm_jobcomp_kafka_log_record_duration_seconds histogram
slurm_jobcomp_kafka_log_record_duration_seconds_bucket{le="0.000001"} 1
slurm_jobcomp_kafka_log_record_duration_seconds_bucket{le="0.0000025"} 4
slurm_jobcomp_kafka_log_record_duration_seconds_bucket{le="1"} 9
slurm_jobcomp_kafka_log_record_duration_seconds_bucket{le="+Inf"} 10
slurm_jobcomp_kafka_log_record_duration_seconds_sum 0.5
slurm_jobcomp_kafka_log_record_duration_seconds_count 10
# HELP slurm_jobcomp_kafka_metrics_written_timestamp_seconds Unix time this file was written (a stale file means a stopped plugin).
# TYPE slurm_jobcomp_kafka_metrics_written_timestamp_seconds gauge
slurm_jobcomp_kafka_metrics_written_timestamp_seconds 1700000100
"#;
        assert_eq!(render(&figures), expected);
    }

    #[test]
    fn no_histogram_without_a_clock() {
        let text = render(&Figures::default());
        assert!(!text.contains("log_record_duration"), "{text}");
    }

    #[test]
    fn the_histogram_counts_into_cumulative_buckets() {
        let clock = Clock::monotonic(); // ticks are nanoseconds
        let h = LatencyHistogram::new(clock);
        // Observe fixed durations by starting "in the past".
        for nanos in [500u64, 900, 2_000, 40_000, 5_000_000_000] {
            h.observe_since(clock.now().wrapping_sub(nanos));
        }
        let read = h.read();
        assert_eq!(read.count, 5);
        let at = |bound: f64| read.buckets.iter().find(|(b, _)| *b == bound).unwrap().1;
        // Each observation is at least its nominal duration (the clock moved on a little).
        assert!(at(1e-6) <= 2);
        assert!(at(5e-5) >= 3 && at(5e-5) <= 4, "{read:?}");
        assert_eq!(at(1.0), 4, "five seconds is above the last bound");
        assert!(read.sum_seconds >= 5.0);
        let mut last = 0;
        for (_, count) in &read.buckets {
            assert!(*count >= last, "cumulative");
            last = *count;
        }
    }

    #[test]
    fn the_tsc_rate_is_plausible() {
        let clock = Clock::new(Duration::from_millis(20));
        if clock.is_tsc() {
            // 100 MHz to 10 GHz.
            assert!(clock.rate > 1e8 && clock.rate < 1e10, "{}", clock.rate);
        }
        let t = clock.now();
        std::thread::sleep(Duration::from_millis(30));
        let seconds = clock.seconds(clock.now() - t);
        assert!(seconds >= 0.025, "{seconds}");
    }

    #[test]
    fn failure_kinds_follow_librdkafka_descriptions() {
        assert_eq!(FailureKind::of_reason("Local: Broker transport failure"), FailureKind::Transport);
        assert_eq!(FailureKind::of_reason("Broker: Not enough in-sync replicas"), FailureKind::BrokerRefused);
    }

    #[test]
    fn the_file_is_replaced_whole_and_a_bad_directory_is_refused() {
        let dir = std::env::temp_dir().join(format!("jk-metrics-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jobcomp.prom");
        let file = MetricsFile::open(&path).unwrap();
        file.write("a 1\n").unwrap();
        file.write("b 2\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "b 2\n");
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        let error = MetricsFile::open(&dir.join("missing/x.prom")).unwrap_err();
        assert!(error.contains("missing") && error.contains("cannot write"), "{error}");
        assert!(MetricsFile::open(Path::new("relative.prom")).unwrap_err().contains("absolute"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
