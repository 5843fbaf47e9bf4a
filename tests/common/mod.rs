// SPDX-License-Identifier: GPL-2.0-or-later
//! Shared helpers for the integration tests: the C stand-in for slurmctld
//! (tests/host/slurmctld.c), librdkafka's mock cluster and a consumer, the state
//! file format, temporary directories, and waiting for conditions with a deadline.
//!
//! Nothing here sleeps for a fixed time to "let things settle": every wait polls
//! a condition and gives up at a deadline with a message saying what was awaited.
#![allow(dead_code)]

use jobcomp_kafka::release::JobcompApi;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Where things are
// ---------------------------------------------------------------------------

/// target/<profile>: the test binary is target/<profile>/deps/<name>-<hash>.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("cannot find the target directory from {}", exe.display()))
}

/// The plugin cargo built for this test run.
///
/// `cargo test` builds the cdylib into target/<profile>/deps/ next to the test
/// binary, but copies it up to target/<profile>/ only on `cargo build`: the copy
/// up there may be stale, so deps/ comes first.
pub fn plugin_so() -> PathBuf {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let fresh = exe.parent().map(|deps| deps.join("libjobcomp_kafka.so"));
        let uplifted = target_dir().join("libjobcomp_kafka.so");
        let so = fresh.filter(|p| p.is_file()).unwrap_or(uplifted);
        assert!(
            so.is_file(),
            "the plugin libjobcomp_kafka.so is missing next to {}: cargo builds it (crate-type \
             cdylib) for integration tests; run `cargo test --test plugin_host` from the crate root",
            exe.display()
        );
        so
    })
    .clone()
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------
// The release this crate was built for
// ---------------------------------------------------------------------------

/// What the tests need to know about the target release.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub version_number: u32,
    pub api: JobcompApi,
    pub layout_tag: &'static str,
    pub major: u8,
    pub minor: u8,
}

pub fn target() -> Target {
    let release = jobcomp_kafka::target::RELEASE;
    Target {
        version_number: release.version_number(),
        api: release.api(),
        layout_tag: jobcomp_kafka::target::LAYOUT.tag(),
        major: release.major,
        minor: release.minor,
    }
}

impl Target {
    fn at_least(&self, major: u8, minor: u8) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// The -D flag that selects the operation set in the C host.
    pub fn api_define(&self) -> &'static str {
        match self.api {
            JobcompApi::LogRecordWithLocation => "-DJK_API_22_05",
            JobcompApi::LogRecord => "-DJK_API_23_02",
            JobcompApi::StartAndEnd => "-DJK_API_25_05",
        }
    }

    /// The exported symbols a plugin of this API must have, and nothing else.
    pub fn plugin_symbols(&self) -> BTreeSet<&'static str> {
        let mut set: BTreeSet<&str> =
            ["plugin_name", "plugin_type", "plugin_version", "init", "fini", "jobcomp_p_set_location", "jobcomp_p_get_jobs"]
                .into_iter()
                .collect();
        match self.api {
            JobcompApi::StartAndEnd => {
                set.insert("jobcomp_p_record_job_end");
                set.insert("jobcomp_p_record_job_start");
            }
            _ => {
                set.insert("jobcomp_p_log_record");
            }
        }
        set
    }

    /// Slurm's protocol version of the series, as the state file starts with it
    /// (anchor-behaviour.md; 22.05 is SLURM_22_05_PROTOCOL_VERSION = 38 << 8).
    pub fn protocol_version(&self) -> u16 {
        match (self.major, self.minor) {
            (22, 5) => 0x2600,
            (23, 2) => 0x2700,
            (23, 11) => 0x2800,
            (24, 5) => 0x2900,
            (24, 11) => 0x2a00,
            (25, 5) => 0x2b00,
            (25, 11) => 0x2c00,
            (26, 5) => 0x2d00,
            other => panic!("no protocol version known for series {other:?}"),
        }
    }

    /// 25.05+ state files carry a u32 event per message.
    pub fn state_has_event(&self) -> bool {
        self.at_least(25, 5)
    }

    /// 23.11+ job records carry an identity with the user and group names.
    pub fn has_identity(&self) -> bool {
        self.at_least(23, 11)
    }

    /// Up to 24.11 the batch script goes into every batch job's record; from
    /// 25.05 only with JobCompParams send_script.
    pub fn script_by_default(&self) -> bool {
        !self.at_least(25, 5)
    }

    /// "partition" is part_ptr->name from 25.05 (the job's requested list before).
    pub fn partition_from_part_ptr(&self) -> bool {
        self.at_least(25, 5)
    }

    /// failed_node exists in the job record from 23.02.
    pub fn has_failed_node(&self) -> bool {
        self.at_least(23, 2)
    }
}

// ---------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------

/// A directory removed on drop (kept when JK_KEEP_TMP is set, for debugging).
pub struct TempDir(PathBuf);

static TEMP_SEQ: AtomicUsize = AtomicUsize::new(0);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("jk-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("JK_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            eprintln!("kept {}", self.0.display());
        }
    }
}

/// JobCompParams for a run whose fini must find nothing left to save once
/// every record reached Kafka: fini waits for the delivery reports (up to
/// 30 s) instead of the default 500 ms, so that on a slow machine (valgrind, a
/// loaded CI) an acknowledgement that is merely late is not saved for the next
/// start. A test of flush_timeout itself sets its own.
pub fn waiting_for_reports(params: &str) -> String {
    if params.is_empty() {
        "flush_timeout=30000".to_string()
    } else {
        format!("{params},flush_timeout=30000")
    }
}

/// File names in `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

/// Polls `condition` every 20 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut condition: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// The C host
// ---------------------------------------------------------------------------

/// Compiles tests/host/slurmctld.c for the target release into `dir/slurmctld`.
pub fn compile_host(dir: &Path, expected_version: u32) -> PathBuf {
    compile_host_for(dir, target().layout_tag, expected_version)
}

/// As [`compile_host`], with the structs of layout `layout_tag` (the layout
/// guard's tests give the plugin records of another layout than its own).
pub fn compile_host_for(dir: &Path, layout_tag: &str, expected_version: u32) -> PathBuf {
    let t = target();
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    // Built under a temporary name and renamed: concurrent test runs never see a
    // half-written binary, and a running host keeps its own inode.
    let tmp = dir.join(format!("slurmctld.build-{}", std::process::id()));
    let out = dir.join("slurmctld");
    let header = format!("slurm-headers/layout_{layout_tag}.h");
    let output = run(Command::new("cc")
        .current_dir(manifest_dir())
        .args(["-O1", "-g", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-include", &header, t.api_define()])
        .arg(format!("-DEXPECTED_VERSION={expected_version:#x}"))
        .arg("tests/host/slurmctld.c")
        .arg("-o")
        .arg(&tmp)
        .args(["-rdynamic", "-ldl", "-lpthread"]))
        .unwrap_or_else(|e| panic!("cannot run the C compiler `cc` ({e}); install gcc (build-essential)"));
    assert!(
        output.status.success(),
        "compiling tests/host/slurmctld.c with {header} {} failed:\n{}",
        t.api_define(),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&tmp, &out).expect("rename the host binary into place");
    out
}

/// The host for the target release, compiled once per test run, named slurmctld.
pub fn host_binary() -> &'static Path {
    static HOST: OnceLock<PathBuf> = OnceLock::new();
    HOST.get_or_init(|| {
        let dir = target_dir().join("jk-host").join(target().layout_tag);
        compile_host(&dir, target().version_number)
    })
}

/// Percent-encodes bytes for a host command value (everything but [A-Za-z0-9._/:-]).
pub fn pct(bytes: impl AsRef<[u8]>) -> String {
    let mut out = String::new();
    for &b in bytes.as_ref() {
        if b.is_ascii_alphanumeric() || b"._/:-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One result line of the host.
#[derive(Clone, Debug)]
pub struct Reply {
    pub line: String,
    pub rc: i32,
}

impl Reply {
    /// The value of ` key=value` in the reply's extra fields.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.line.split(' ').find_map(|part| part.strip_prefix(key)?.strip_prefix('='))
    }

    pub fn number(&self, key: &str) -> i64 {
        self.field(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no numeric {key}= in {:?}", self.line))
    }
}

/// JK_HOST_STARTS (set by ci/memcheck.sh): one line "PID TEST-BINARY" appended
/// per host started, so that memcheck can require one valgrind log per host
/// (a host that ran without the wrapper has none). Whether or not a wrapper
/// is in use: the list is what the wrapper's logs are checked against.
fn register_host_start(pid: u32) {
    let Some(path) = std::env::var_os("JK_HOST_STARTS") else { return };
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    // One write of a short line to an O_APPEND file: lines of parallel tests
    // and of test binaries run one after the other do not mix.
    let line = format!("{pid} {}\n", binary.split('-').next().unwrap_or(&binary));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .unwrap_or_else(|e| panic!("cannot append to JK_HOST_STARTS {}: {e}", Path::new(&path).display()));
}

/// A running C host (a slurmctld stand-in with the plugin loaded).
pub struct Host {
    child: Child,
    stdin: Option<ChildStdin>,
    replies: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    log_reader: Option<std::thread::JoinHandle<()>>,
    pub load_line: String,
}

/// Generous: fini may wait for flush_timeout and librdkafka's shutdown.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

impl Host {
    /// Starts `exe PLUGIN` and waits for its "ok load" line.
    pub fn start(exe: &Path) -> Host {
        Host::start_with_env(exe, &[])
    }

    /// `start` with extra environment variables for the host (e.g.
    /// JK_HOST_PROGRESS). Every host of the suite is spawned here.
    pub fn start_with_env(exe: &Path, env: &[(&str, &std::ffi::OsStr)]) -> Host {
        // JK_HOST_WRAPPER (e.g. "valgrind --log-file=..."): run the host under a
        // tool; it must keep the host's pid, stdio and exit (ci/memcheck.sh).
        let wrapper = std::env::var("JK_HOST_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(tool) => Command::new(tool),
            None => Command::new(exe),
        };
        if !wrapper.trim().is_empty() {
            command.args(words).arg(exe);
        }
        let mut child = spawn(
            command
                .envs(env.iter().map(|(k, v)| (*k, *v)))
                .arg(plugin_so())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        register_host_start(child.id());
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (send, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let log_reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end_matches('\n').to_string();
                        if std::env::var_os("JK_HOST_LOG").is_some() {
                            eprintln!("host| {line}");
                        }
                        sink.lock().unwrap().push(line);
                    }
                }
            }
        });
        let mut host = Host { child, stdin, replies, log, log_reader: Some(log_reader), load_line: String::new() };
        host.load_line = host.next_line("load");
        assert!(host.load_line.starts_with("ok load rc=0"), "host failed to load the plugin: {}", host.load_line);
        host
    }

    /// Starts the target host (named slurmctld).
    pub fn slurmctld() -> Host {
        Host::start(host_binary())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn next_line(&mut self, what: &str) -> String {
        match self.replies.recv_timeout(REPLY_TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!("host gave no reply to {what:?} within {REPLY_TIMEOUT:?}; log:\n{}", self.log_text())
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().ok();
                panic!("host exited ({status:?}) instead of answering {what:?}; log:\n{}", self.log_text())
            }
        }
    }

    /// Sends one command and returns its "ok" reply (panics on "err").
    pub fn cmd(&mut self, line: &str) -> Reply {
        let stdin = self.stdin.as_mut().expect("host stdin closed");
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).unwrap_or_else(|e| {
            panic!("cannot write {line:?} to the host: {e}; log:\n{}", self.log_text())
        });
        let name = line.split_whitespace().next().unwrap_or("").to_string();
        let reply = self.next_line(line);
        let prefix = format!("ok {name} rc=");
        let Some(rest) = reply.strip_prefix(&prefix) else {
            panic!("host refused {line:?}: {reply}")
        };
        let rc = rest.split(' ').next().and_then(|v| v.parse().ok()).expect("rc");
        Reply { line: reply, rc }
    }

    /// Sends a command that must return rc 0.
    pub fn ok(&mut self, line: &str) -> Reply {
        let reply = self.cmd(line);
        assert_eq!(reply.rc, 0, "{line:?} returned {}; log:\n{}", reply.line, self.log_text());
        reply
    }

    /// Sets slurm_conf fields (values percent-encoded here).
    pub fn conf(&mut self, pairs: &[(&str, &str)]) {
        let mut line = String::from("conf");
        for (key, value) in pairs {
            line.push_str(&format!(" {key}={}", pct(value)));
        }
        self.ok(&line);
    }

    /// Sends a command without waiting for a reply (abort).
    pub fn send_only(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("host stdin closed");
        let _ = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
    }

    /// Waits for the host to exit; its log is complete afterwards.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.stdin = None;
        let status = wait_for(timeout, || self.child.try_wait().ok().flatten())
            .unwrap_or_else(|| panic!("host did not exit within {timeout:?}"));
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
        status
    }

    /// `quit` (exit without fini) and wait for the process; returns its whole log.
    pub fn quit(mut self) -> Vec<String> {
        self.cmd("quit");
        let status = self.wait_exit(Duration::from_secs(10));
        assert!(status.success(), "host exited with {status}");
        self.log()
    }

    /// The plugin's log lines so far (stderr is read by a thread: a line written
    /// before a reply may arrive after it; use `wait_log`, or `quit` first).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn log_text(&self) -> String {
        self.log().join("\n")
    }

    /// Lines containing all of `needles`.
    pub fn log_count(&self, needles: &[&str]) -> usize {
        self.log.lock().unwrap().iter().filter(|l| needles.iter().all(|n| l.contains(n))).count()
    }

    /// Waits until at least `n` log lines contain all of `needles`.
    pub fn wait_log(&self, needles: &[&str], n: usize, timeout: Duration) -> bool {
        wait_for(timeout, || (self.log_count(needles) >= n).then_some(())).is_some()
    }

    /// User + system CPU time of the host process so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("read /proc/pid/stat");
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let after = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Our own child only, by its handle.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Child processes and the mock brokers' listeners
// ---------------------------------------------------------------------------

/// Held (shared) while a child process is spawned, and (exclusive) while a
/// mock broker goes down or up. Taking a broker down closes its listening
/// socket and binds a new one to the same port at once; a child forked by
/// another test thread at that moment still holds the old socket until it
/// execs, the bind fails and librdkafka aborts the whole test process
/// (`rd_kafka_mock_broker_cmd` assertion; seen in CI on metrics_host, whose
/// two tests run side by side). Every child of a host test goes through
/// `spawn` or `run` below.
static SPAWN_VS_LISTENERS: RwLock<()> = RwLock::new(());

/// `command.spawn()`, never while a mock broker's listener is being replaced.
pub fn spawn(command: &mut Command) -> std::io::Result<Child> {
    let _shared = SPAWN_VS_LISTENERS.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    command.spawn()
}

/// `command.output()` (stdout and stderr captured), spawned by `spawn`.
pub fn run(command: &mut Command) -> std::io::Result<std::process::Output> {
    spawn(command.stdout(Stdio::piped()).stderr(Stdio::piped()))?.wait_with_output()
}

/// Runs `change` (a broker going down or up) while no child is being spawned.
fn with_no_spawn_in_flight<T>(change: impl FnOnce() -> T) -> T {
    let _exclusive = SPAWN_VS_LISTENERS.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    change()
}

// ---------------------------------------------------------------------------
// Kafka: librdkafka's mock cluster and a consumer
// ---------------------------------------------------------------------------

/// One message read back from the mock cluster.
#[derive(Clone, Debug)]
pub struct Msg {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Msg {
    /// The value of header `name` as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    pub fn key_text(&self) -> String {
        self.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default()
    }

    /// The record as JSON (None when the payload is not valid JSON).
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.payload).ok()
    }
}

/// A mock cluster in this test process.
pub struct Kafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
    pub bootstrap: String,
    /// For metadata and watermarks; replaced when the brokers come back up (a
    /// client that lived through the outage can stay stuck on a dead connection).
    consumer: std::cell::RefCell<BaseConsumer>,
}

impl Kafka {
    pub fn new(brokers: i32) -> Kafka {
        let cluster = MockCluster::new(brokers).expect("rd_kafka_mock_cluster_new");
        let bootstrap = cluster.bootstrap_servers();
        let consumer = std::cell::RefCell::new(consumer(&bootstrap));
        Kafka { cluster, bootstrap, consumer }
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) {
        self.cluster.create_topic(topic, partitions, 1).expect("rd_kafka_mock_topic_create");
    }

    /// The error metadata requests get for `topic` (NO_ERROR: none). The mock
    /// creates every topic a producer asks about; UNKNOWN_TOPIC_OR_PART makes
    /// it answer as a broker with auto.create.topics.enable=false does about a
    /// topic that does not exist, and NO_ERROR afterwards as once it is created.
    pub fn topic_error(&self, topic: &str, error: rdkafka::types::RDKafkaRespErr) {
        self.cluster.topic_error(topic, error).expect("rd_kafka_mock_topic_set_error");
    }

    /// The next `errors.len()` requests of `api` get these errors, one each.
    pub fn request_errors(&self, api: rdkafka::types::RDKafkaApiKey, errors: &[rdkafka::types::RDKafkaRespErr]) {
        self.cluster.request_errors(api, errors);
    }

    /// All brokers refuse connections (and drop the open ones).
    pub fn down(&self) {
        with_no_spawn_in_flight(|| self.cluster.broker_down(-1)).expect("rd_kafka_mock_broker_set_down");
    }

    pub fn up(&self) {
        with_no_spawn_in_flight(|| self.cluster.broker_up(-1)).expect("rd_kafka_mock_broker_set_up");
        *self.consumer.borrow_mut() = consumer(&self.bootstrap);
    }

    pub fn rtt(&self, delay: Duration) {
        self.cluster.broker_round_trip_time(-1, delay).expect("rd_kafka_mock_broker_set_rtt");
    }

    /// The partitions of `topic` (retried: the cluster may just be coming back up).
    fn partitions(&self, topic: &str) -> Vec<i32> {
        let mut last_error = String::new();
        let found = wait_for(Duration::from_secs(20), || {
            match self.consumer.borrow().fetch_metadata(Some(topic), Duration::from_secs(2)) {
                Ok(metadata) => {
                    let t = metadata.topics().iter().find(|t| t.name() == topic)?;
                    let ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                    (!ids.is_empty()).then_some(ids)
                }
                Err(e) => {
                    last_error = e.to_string();
                    None
                }
            }
        });
        found.unwrap_or_else(|| panic!("no metadata for topic {topic} within 20 s: {last_error}"))
    }

    /// Messages stored in `topic` (sum of high watermarks; None while unreachable).
    pub fn count(&self, topic: &str) -> Option<i64> {
        let mut total = 0;
        for p in self.partitions(topic) {
            let (low, high) = self.consumer.borrow().fetch_watermarks(topic, p, Duration::from_secs(2)).ok()?;
            total += high - low;
        }
        Some(total)
    }

    /// Waits until `topic` holds at least `n` messages; returns the count seen last.
    pub fn wait_count(&self, topic: &str, n: i64, timeout: Duration) -> i64 {
        let mut last = 0;
        wait_for(timeout, || {
            last = self.count(topic).unwrap_or(last);
            (last >= n).then_some(())
        });
        last
    }

    /// Reads `topic` again and again until every id of `ids` is in it (or
    /// `timeout` passes); returns the last read.
    pub fn wait_ids(&self, topic: &str, ids: &BTreeSet<u32>, timeout: Duration) -> Vec<Msg> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.read_all(topic);
            let tally = Tally::of(&messages, ids.iter().copied());
            if tally.lost.is_empty() || Instant::now() >= deadline {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every message in `topic`, read up to the high watermark of each partition.
    pub fn read_all(&self, topic: &str) -> Vec<Msg> {
        let consumer = consumer(&self.bootstrap);
        let mut ends = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for p in self.partitions(topic) {
            let (low, high) = wait_for(Duration::from_secs(20), || {
                consumer.fetch_watermarks(topic, p, Duration::from_secs(2)).ok()
            })
            .unwrap_or_else(|| panic!("no watermarks for {topic}/{p} within 20 s"));
            if high > low {
                ends.insert(p, high);
                assignment.add_partition_offset(topic, p, Offset::Beginning).expect("assignment");
            }
        }
        let mut messages = Vec::new();
        if ends.is_empty() {
            return messages;
        }
        consumer.assign(&assignment).expect("assign");
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while ends.iter().any(|(p, end)| next.get(p).copied().unwrap_or(0) < *end) {
            assert!(Instant::now() < deadline, "reading {topic} did not reach the end within 20 s");
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    next.insert(m.partition(), m.offset() + 1);
                    messages.push(Msg {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(|k| k.to_vec()),
                        payload: m.payload().unwrap_or_default().to_vec(),
                        headers: m
                            .headers()
                            .map(|h| {
                                h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect()
                            })
                            .unwrap_or_default(),
                    });
                }
                Some(Err(e)) => panic!("consuming {topic}: {e}"),
                None => {}
            }
        }
        messages
    }
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "jk-tests")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("reconnect.backoff.max.ms", "500")
        .set("socket.connection.setup.timeout.ms", "3000")
        .set("log_level", "3")
        .create()
        .expect("consumer")
}

// ---------------------------------------------------------------------------
// Counting what arrived
// ---------------------------------------------------------------------------

/// What a topic holds compared with the job ids that were produced.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub produced: usize,
    /// Messages in the topic.
    pub messages: usize,
    /// Distinct produced job ids found.
    pub delivered: usize,
    /// Messages beyond the first for a job id.
    pub duplicated: usize,
    /// Messages that are not valid JSON or whose key does not match their jobid.
    pub corrupt: usize,
    /// Produced job ids never found.
    pub lost: Vec<u32>,
    /// Job ids found that were never produced.
    pub unexpected: Vec<u32>,
    /// Of the duplicates: how many repeat a `jobcomp.record_id` header value
    /// already seen for their job (a consumer can drop those).
    pub same_record_id: usize,
}

impl Tally {
    pub fn of(messages: &[Msg], produced: impl IntoIterator<Item = u32>) -> Tally {
        let produced: BTreeSet<u32> = produced.into_iter().collect();
        let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
        let mut record_ids: BTreeSet<(u32, String)> = BTreeSet::new();
        let mut same_record_id = 0;
        let mut corrupt = 0;
        for m in messages {
            let id = m
                .json()
                .and_then(|j| j.get("jobid").and_then(|v| v.as_u64()))
                .filter(|id| m.key_text() == id.to_string());
            match id {
                Some(id) => {
                    *seen.entry(id as u32).or_default() += 1;
                    if let Some(record_id) = m.header("jobcomp.record_id") {
                        if !record_ids.insert((id as u32, record_id)) {
                            same_record_id += 1;
                        }
                    }
                }
                None => corrupt += 1,
            }
        }
        Tally {
            produced: produced.len(),
            messages: messages.len(),
            delivered: produced.iter().filter(|id| seen.contains_key(id)).count(),
            duplicated: seen.values().map(|n| n - 1).sum(),
            corrupt,
            lost: produced.iter().copied().filter(|id| !seen.contains_key(id)).collect(),
            unexpected: seen.keys().copied().filter(|id| !produced.contains(id)).collect(),
            same_record_id,
        }
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "produced={} delivered={} duplicated={} corrupt={} lost={} (messages in topic: {}",
            self.produced,
            self.delivered,
            self.duplicated,
            self.corrupt,
            self.lost.len(),
            self.messages
        )?;
        if self.duplicated > 0 {
            write!(f, "; duplicates with a repeated jobcomp.record_id: {}", self.same_record_id)?;
        }
        write!(f, ")")
    }
}

// ---------------------------------------------------------------------------
// The state file (anchor-behaviour.md), written and read independently of src/
// ---------------------------------------------------------------------------

pub const STATE_FILE: &str = "jobcomp_kafka_state";

/// One saved message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    pub event: u32,
    pub job_id: u32,
    pub payload: Vec<u8>,
}

/// The C plugin's format: big-endian u16 version, u32 count, then per message
/// [u32 event (25.05+)], u32 job id, u32 length including the NUL, bytes, NUL.
pub fn encode_state(version: u16, with_event: bool, messages: &[Saved]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&(messages.len() as u32).to_be_bytes());
    for m in messages {
        if with_event {
            out.extend_from_slice(&m.event.to_be_bytes());
        }
        out.extend_from_slice(&m.job_id.to_be_bytes());
        out.extend_from_slice(&(m.payload.len() as u32 + 1).to_be_bytes());
        out.extend_from_slice(&m.payload);
        out.push(0);
    }
    out
}

/// Parses a state file strictly: (version, messages), or what is wrong.
pub fn decode_state(bytes: &[u8], with_event: bool) -> Result<(u16, Vec<Saved>), String> {
    struct Reader<'a> {
        bytes: &'a [u8],
        pos: usize,
    }
    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            let slice = self.bytes.get(self.pos..self.pos + n).ok_or_else(|| format!("truncated at byte {}", self.pos))?;
            self.pos += n;
            Ok(slice)
        }
        fn u32(&mut self) -> Result<u32, String> {
            Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
        }
    }
    let mut r = Reader { bytes, pos: 0 };
    let version = u16::from_be_bytes(r.take(2)?.try_into().unwrap());
    let count = r.u32()?;
    let mut messages = Vec::new();
    for _ in 0..count {
        let event = if with_event { r.u32()? } else { 1 };
        let job_id = r.u32()?;
        let len = r.u32()? as usize;
        if len == 0 {
            return Err(format!("job {job_id}: length 0"));
        }
        let data = r.take(len)?;
        if data[len - 1] != 0 {
            return Err(format!("job {job_id}: no trailing NUL"));
        }
        messages.push(Saved { event, job_id, payload: data[..len - 1].to_vec() });
    }
    if r.pos != bytes.len() {
        return Err(format!("{} bytes after the last message", bytes.len() - r.pos));
    }
    Ok((version, messages))
}

// ---------------------------------------------------------------------------
// A complete set-up: mock cluster, state directory, JobCompLoc file
// ---------------------------------------------------------------------------

/// A mock cluster with a topic named after the cluster, a StateSaveLocation and
/// a JobCompLoc file pointing at the cluster.
pub struct Rig {
    pub kafka: Kafka,
    pub tmp: TempDir,
    pub state: PathBuf,
    pub loc: PathBuf,
    pub cluster: String,
}

impl Rig {
    /// `cluster` is also the default topic; `properties` as in `write_properties`.
    pub fn new(cluster: &str, properties: &[(&str, &str)]) -> Rig {
        let kafka = Kafka::new(1);
        kafka.create_topic(cluster, 1);
        let tmp = TempDir::new(cluster);
        let state = tmp.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let loc = tmp.path().join("kafka.conf");
        let rig = Rig { kafka, tmp, state, loc, cluster: cluster.to_string() };
        rig.write_properties(properties);
        rig
    }

    /// (Re)writes the JobCompLoc file: bootstrap.servers, message.timeout.ms=5000,
    /// reconnect.backoff.max.ms=500, socket.connection.setup.timeout.ms=3000, then
    /// `properties` (which may override those). Read by the next init.
    pub fn write_properties(&self, properties: &[(&str, &str)]) {
        let mut props: Vec<(String, String)> = vec![
            ("bootstrap.servers".into(), self.kafka.bootstrap.clone()),
            ("message.timeout.ms".into(), "5000".into()),
            ("reconnect.backoff.max.ms".into(), "500".into()),
            // A mock broker that is down keeps its port bound but not listening;
            // here (gVisor) a connect to it can hang instead of being refused, and
            // librdkafka's default 30 s setup timeout would outlast the test. Above
            // the largest round trip the tests set (2 s), which setup includes.
            ("socket.connection.setup.timeout.ms".into(), "3000".into()),
        ];
        for (k, v) in properties {
            props.retain(|(key, _)| key != k);
            props.push((k.to_string(), v.to_string()));
        }
        let text: String = props.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(&self.loc, format!("# written by tests/plugin_host.rs\n{text}")).unwrap();
    }

    /// A host (named slurmctld) with slurm_conf set; not initialised yet.
    pub fn host(&self, params: &str) -> Host {
        let mut host = Host::slurmctld();
        self.configure(&mut host, params);
        host
    }

    pub fn configure(&self, host: &mut Host, params: &str) {
        host.conf(&[
            ("cluster", &self.cluster),
            ("loc", &self.loc.to_string_lossy()),
            ("state", &self.state.to_string_lossy()),
            ("params", params),
        ]);
    }

    /// A started host: conf, init (rc 0) and set_location as slurmctld does.
    /// `started` with DebugFlags=JobComp (the plugin logs each delivery
    /// report), for a start that takes over what an earlier run left: waits
    /// until `ids` are in the topic and this start has had a delivery report
    /// for every record it took over (spool and state file) and did not find
    /// in the topic already (kafka::tail). Returns the host and the number it
    /// took over. A record an earlier run purged in flight may already be
    /// in the topic, so its id there proves nothing about this start.
    pub fn started_taking_over(&self, params: &str, ids: &BTreeSet<u32>) -> (Host, usize) {
        let mut host = self.host(params);
        host.ok("conf debug=1");
        host.ok("init");
        host.ok("set_location");
        self.kafka.wait_ids(&self.cluster, ids, Duration::from_secs(60));
        let log = host.log();
        let taken_over = |what: &str| -> usize {
            log.iter()
                .filter(|l| l.contains("producing ") && l.contains(what))
                .filter_map(|l| l.split("producing ").nth(1)?.split(' ').next()?.parse::<usize>().ok())
                .sum()
        };
        let recovered = taken_over("again from the spool") + taken_over("saved record(s) again from");
        // Records found already in Kafka at start (kafka::tail) are not
        // produced again; that line comes from the delivery thread, possibly
        // after the ids above were seen (they may have been there before).
        let already_there = |log: &[String]| -> usize {
            log.iter()
                .filter(|l| l.contains("record(s) recovered from the spool were already there"))
                .filter_map(|l| l.split(": ").nth(3)?.split(' ').next()?.parse::<usize>().ok())
                .sum()
        };
        let accounted = wait_for(Duration::from_secs(60), || {
            let log = host.log();
            let delivered = log.iter().filter(|l| l.contains("record delivered to")).count();
            (delivered + already_there(&log) >= recovered).then_some(())
        });
        assert!(
            accounted.is_some(),
            "this start's delivery reports of the {recovered} records it took over, less those it found in the topic; log:\n{}",
            host.log_text()
        );
        (host, recovered)
    }

    pub fn started(&self, params: &str) -> Host {
        let mut host = self.host(params);
        host.ok("init");
        host.ok("set_location");
        host
    }

    /// Starts a host on the state directory the last run left (spool, state
    /// file) and returns what reached the cluster's topic once the `expect`
    /// ids arrived (within `timeout`), after fini; and the host's log.
    pub fn replay(&self, params: &str, expect: &BTreeSet<u32>, timeout: Duration) -> (Vec<Msg>, Vec<String>) {
        let mut host = self.host(params);
        assert_eq!(host.cmd("init").rc, 0, "init succeeds despite what the last run left; log:\n{}", host.log_text());
        host.ok("set_location");
        self.kafka.wait_ids(&self.cluster, expect, timeout);
        host.ok("fini");
        let log = host.quit();
        (self.kafka.read_all(&self.cluster), log)
    }

    pub fn state_file(&self) -> PathBuf {
        self.state.join(STATE_FILE)
    }
}

// ---------------------------------------------------------------------------
// Name service
// ---------------------------------------------------------------------------

/// The user name of `uid` from the name service (getpwuid_r), as the plugin
/// resolves it for releases whose job record carries no identity.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    Some(unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }.to_string_lossy().into_owned())
}

pub fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    Some(unsafe { std::ffi::CStr::from_ptr(grp.gr_name) }.to_string_lossy().into_owned())
}

/// The jobcomp.record_id header of `m`: present, once, a decimal number.
pub fn record_id(m: &Msg) -> u64 {
    let values: Vec<&Vec<u8>> = m.headers.iter().filter(|(k, _)| k == "jobcomp.record_id").map(|(_, v)| v).collect();
    assert_eq!(values.len(), 1, "job {}: one jobcomp.record_id header, not {}: {:?}", m.key_text(), values.len(), m.headers);
    std::str::from_utf8(values[0])
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("job {}: jobcomp.record_id {:?} is not a number", m.key_text(), values[0]))
}

/// Checks that every duplicate of a job (same message key) carries the bytes and
/// the jobcomp.record_id of its first copy, as the plugin promises; returns how
/// many duplicates there are. Every message must carry a record id.
pub fn assert_duplicates_recognisable(messages: &[Msg]) -> usize {
    let mut first: std::collections::BTreeMap<Vec<u8>, (u64, Vec<u8>)> = Default::default();
    let mut duplicates = 0;
    for m in messages {
        let key = m.key.clone().unwrap_or_default();
        let id = record_id(m);
        match first.get(&key) {
            None => {
                first.insert(key, (id, m.payload.clone()));
            }
            Some((first_id, payload)) => {
                duplicates += 1;
                assert_eq!(payload, &m.payload, "job {}: a duplicate has other bytes", m.key_text());
                assert_eq!(first_id, &id, "job {}: a duplicate has another record id", m.key_text());
            }
        }
    }
    duplicates
}

// ---------------------------------------------------------------------------
// The exact records submitted
// ---------------------------------------------------------------------------

/// Payloads by job id; a job twice is an error (a reference holds one each).
pub fn payloads_by_job(messages: &[Msg]) -> BTreeMap<u32, Vec<u8>> {
    let mut out = BTreeMap::new();
    for m in messages {
        let id: u32 = m.key_text().parse().unwrap_or_else(|_| panic!("message key {:?} is not a job id", m.key_text()));
        assert!(out.insert(id, m.payload.clone()).is_none(), "reference: job {id} twice");
    }
    out
}

/// The records the host commands `commands` produce, each exactly as the plugin
/// writes it, from a clean run (broker up, no fault) on a cluster of the same
/// name: what a crash or restart test must find byte for byte. Returns the
/// payloads by job id of `topics` (the first is the cluster's own topic).
pub fn reference_records(cluster: &str, params: &str, commands: &[&str], topics: &[&str]) -> Vec<BTreeMap<u32, Vec<u8>>> {
    // No fault here: no delivery timeout either (a loaded machine is slow).
    let rig = Rig::new(cluster, &[("message.timeout.ms", "300000")]);
    for topic in topics {
        if *topic != cluster {
            rig.kafka.create_topic(topic, 1);
        }
    }
    let mut host = rig.started(params);
    for command in commands {
        host.ok(command);
    }
    // fini purges what is not sent yet: wait until one message per record call
    // is in the topics first.
    let calls = host.ok("stats").number("record_calls");
    let mut seen = 0;
    let all = wait_for(Duration::from_secs(180), || {
        seen = topics.iter().map(|topic| rig.kafka.count(topic).unwrap_or(0)).sum::<i64>();
        (seen >= calls).then_some(())
    });
    assert!(all.is_some(), "reference run: {seen} of {calls} records arrived; log:\n{}", host.log_text());
    host.ok("fini");
    host.quit();
    assert!(!rig.state_file().exists(), "reference run: everything delivered at fini");
    topics.iter().map(|topic| payloads_by_job(&rig.kafka.read_all(topic))).collect()
}

/// What `assert_exact` found beyond the records themselves.
#[derive(Debug, Default)]
pub struct Extra {
    /// Copies beyond the first, in total.
    pub copies: usize,
    /// Job ids that came more than once.
    pub jobs: BTreeSet<u32>,
}

/// Checks a topic against the exact records submitted: every expected job
/// arrives with exactly the expected bytes and a record id; nothing else
/// arrives; a job arrives more than once only if it is in `may_repeat` (its
/// record was in flight), every copy with the bytes and the record id of the
/// first, and at most `max_copies` copies beyond the first per job. Returns the
/// extra copies (to be reported by the caller).
pub fn assert_exact(
    what: &str,
    messages: &[Msg],
    expected: &BTreeMap<u32, Vec<u8>>,
    may_repeat: &BTreeSet<u32>,
    max_copies: usize,
) -> Extra {
    let mut first: BTreeMap<u32, (u64, usize)> = BTreeMap::new();
    let mut extra = Extra::default();
    for m in messages {
        let job: u32 = m
            .key_text()
            .parse()
            .unwrap_or_else(|_| panic!("{what}: a message whose key {:?} is not a job id", m.key_text()));
        let want = expected.get(&job).unwrap_or_else(|| panic!("{what}: job {job} arrived but was never submitted"));
        assert!(
            m.payload == *want,
            "{what}: job {job} is not byte-identical to the record submitted:\n got  {}\n want {}",
            String::from_utf8_lossy(&m.payload),
            String::from_utf8_lossy(want)
        );
        let id = record_id(m);
        match first.get_mut(&job) {
            None => {
                first.insert(job, (id, 1));
            }
            Some((first_id, n)) => {
                *n += 1;
                extra.copies += 1;
                extra.jobs.insert(job);
                assert_eq!(*first_id, id, "{what}: job {job} came again under another record id");
                assert!(may_repeat.contains(&job), "{what}: job {job} came {n} times but was never in flight");
                assert!(*n <= max_copies + 1, "{what}: job {job} came {n} times (at most {} allowed)", max_copies + 1);
            }
        }
    }
    let lost: Vec<u32> = expected.keys().copied().filter(|j| !first.contains_key(j)).collect();
    assert!(lost.is_empty(), "{what}: records lost: jobs {lost:?}");
    let ids: BTreeSet<u64> = first.values().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), first.len(), "{what}: two jobs share a record id");
    assert!(extra.copies <= may_repeat.len() * max_copies, "{what}: {} extra copies", extra.copies);
    extra
}

/// The subset of `all` with the job ids in `jobs`.
pub fn only(all: &BTreeMap<u32, Vec<u8>>, jobs: impl IntoIterator<Item = u32>) -> BTreeMap<u32, Vec<u8>> {
    jobs.into_iter().map(|j| (j, all.get(&j).unwrap_or_else(|| panic!("no reference for job {j}")).clone())).collect()
}

/// A start that must take nothing over from an earlier run, ended with fini:
/// its log is the one meant (the start-up line), it has no "producing N ...
/// again" line (init logs one for what it takes from the state file or the
/// spool, before it returns), and fini left no state file at `state_file`.
/// Unlike counting messages after a wait, this does not depend on how soon a
/// second copy would have arrived.
pub fn assert_took_nothing_over(log: &[String], state_file: &Path, what: &str) {
    let _ = error_lines(log);
    let again: Vec<&String> = log.iter().filter(|l| l.contains("producing ") && l.contains(" again from ")).collect();
    assert!(again.is_empty(), "{what}: this start produced records again: {again:?}");
    assert!(!state_file.exists(), "{what}: fini left a state file {}", state_file.display());
}

/// The error lines of a host's log, after proving the log is the one meant:
/// it holds the plugin's start-up line (a line that must be there), so an
/// empty or lost log cannot pass a "no error" check.
pub fn error_lines(log: &[String]) -> Vec<&String> {
    assert!(
        log.iter().any(|l| l.contains("jobcomp/kafka: started: topic=")),
        "the plugin's start-up line is not in the log read ({} lines): the log is not seen",
        log.len()
    );
    log.iter().filter(|l| l.starts_with("error:")).collect()
}

// ---------------------------------------------------------------------------
// The plugin's metrics file (JobCompParams metrics_file)
// ---------------------------------------------------------------------------

/// The value of the sample whose line starts with `series` (name and labels).
pub fn metrics_sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.parse().ok()
    })
}

/// The metrics file's text; empty while it does not exist.
pub fn read_metrics(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until the file's `series` equals `value`; the file's last text.
pub fn wait_metric(path: &Path, series: &str, value: f64, timeout: Duration) -> String {
    let found = wait_for(timeout, || {
        let text = read_metrics(path);
        (metrics_sample(&text, series) == Some(value)).then_some(text)
    });
    found.unwrap_or_else(|| panic!("{series} never reached {value}; the file:\n{}", read_metrics(path)))
}
