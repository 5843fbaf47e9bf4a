// SPDX-License-Identifier: GPL-2.0-or-later
//! The plugin loaded the way slurmctld loads it, against librdkafka's mock cluster.
//!
//! Each test compiles (once) tests/host/slurmctld.c for the release this crate
//! targets, starts it as a child process named `slurmctld` with
//! target/<profile>/libjobcomp_kafka.so, drives it through stdin, and checks what
//! reaches a mock Kafka cluster hosted in this test process, what the plugin logs
//! and what it leaves in StateSaveLocation.
//!
//! Every test prints a line with its numbers (produced / delivered / duplicated /
//! corrupt / lost); run with `--nocapture` to see them.

mod common;

use common::*;
use jobcomp_kafka::release::JobcompApi;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);

fn ids(range: std::ops::RangeInclusive<u32>) -> BTreeSet<u32> {
    range.collect()
}

/// Job ids of the messages, in topic order.
fn job_ids(messages: &[Msg]) -> Vec<u32> {
    messages
        .iter()
        .map(|m| m.json().and_then(|j| j["jobid"].as_u64()).expect("jobid") as u32)
        .collect()
}

fn str_field<'a>(record: &'a Value, key: &str) -> Option<&'a str> {
    record.get(key).and_then(Value::as_str)
}

// ---------------------------------------------------------------------------

/// dlopen + symbols + version as slurmctld checks them; init/set_location/
/// get_jobs/fini; the .so exports the plugin symbols and nothing else.
#[test]
fn loads_like_slurmctld() {
    let t = target();
    let rig = Rig::new("jk_load", &[]);
    let mut host = rig.host("");
    let expected = format!("type=jobcomp/kafka version={:#08x}", t.version_number);
    assert!(host.load_line.contains(&expected), "{} lacks {expected}", host.load_line);
    assert_eq!(host.cmd("init").rc, 0, "init; log:\n{}", host.log_text());
    assert_eq!(host.cmd("set_location").rc, 0);
    let jobs = host.cmd("get_jobs");
    assert_eq!(jobs.field("list"), Some("null"), "get_jobs returns NULL");
    assert_eq!(host.cmd("fini").rc, 0);
    // A second init after fini (slurmctld regaining control) works as well.
    assert_eq!(host.cmd("init").rc, 0, "init after fini; log:\n{}", host.log_text());
    host.ok("fini");
    let log = host.quit();
    let errors: Vec<&String> = error_lines(&log);
    assert!(errors.is_empty(), "an idle start/stop logs no error: {errors:?}");

    // Exported dynamic symbols: exactly the plugin's, nothing from librdkafka.
    let nm = run(Command::new("nm").args(["-D", "--defined-only"]).arg(plugin_so())).expect("run nm (binutils)");
    assert!(nm.status.success(), "nm failed: {}", String::from_utf8_lossy(&nm.stderr));
    let text = String::from_utf8_lossy(&nm.stdout);
    let exported: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(|name| name.split('@').next().unwrap_or(name))
        .collect();
    let rd: Vec<&&str> = exported.iter().filter(|s| s.starts_with("rd_kafka")).collect();
    assert!(rd.is_empty(), "librdkafka symbols exported: {rd:?}");
    assert_eq!(exported, t.plugin_symbols(), "exported symbols of {}", plugin_so().display());
    println!("exports: {exported:?}");

    // A host of another release refuses the plugin (plugin_version is checked).
    let tmp = TempDir::new("jk_badversion");
    let other = compile_host(tmp.path(), t.version_number + 1);
    let out = run(Command::new(&other).arg(plugin_so())).expect("run host");
    assert_eq!(out.status.code(), Some(2), "version mismatch must exit 2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("plugin_version"));
}

// ---------------------------------------------------------------------------

struct JobSpec {
    id: u32,
    uid: u32,
    gid: u32,
    user: String,
    group: String,
    name: Vec<u8>,
    partition: String,
    nodes: String,
    state: u32,
    state_name: &'static str,
    exit_code: u32,
    exit_text: &'static str,
    cpus: u32,
    work_dir: Vec<u8>,
    script: Option<String>,
}

impl JobSpec {
    fn command(&self) -> String {
        let mut line = format!(
            "job id={} user_id={} group_id={} user_name={} group_name={} raw={} partition={} nodes={} \
             state={} exit_code={} cpus={} work_dir={}",
            self.id,
            self.uid,
            self.gid,
            pct(&self.user),
            pct(&self.group),
            self.name.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            pct(&self.partition),
            pct(&self.nodes),
            self.state,
            self.exit_code,
            self.cpus,
            pct(&self.work_dir),
        );
        if let Some(script) = &self.script {
            line.push_str(&format!(" batch=1 script={}", pct(script)));
        }
        line
    }
}

fn fifty_jobs() -> Vec<JobSpec> {
    const STATES: [(u32, &str); 9] = [
        (3, "COMPLETED"),
        (5, "FAILED"),
        (4, "CANCELLED"),
        (6, "TIMEOUT"),
        (7, "NODE_FAIL"),
        (8, "PREEMPTED"),
        (9, "BOOT_FAIL"),
        (10, "DEADLINE"),
        (11, "OUT_OF_MEMORY"),
    ];
    // (wait status, "exit:signal")
    const EXITS: [(u32, &str); 4] = [(0, "0:0"), (3 << 8, "3:0"), (9, "0:9"), (255 << 8, "255:0")];
    let work_dirs: [&[u8]; 7] = [
        b"/home/alice",
        b"/home/a \"quoted\" dir/x",
        b"C:\\back\\slash",
        b"tab\there\nnew line",
        "/data/ünïcødé ✓ 日本".as_bytes(),
        b"/bad\xffutf8\xfe",
        b"/ctl\x01\x1f",
    ];
    (0..50u32)
        .map(|i| {
            let (state, state_name) = STATES[i as usize % STATES.len()];
            let (exit_code, exit_text) = EXITS[i as usize % EXITS.len()];
            let uid = i % 3; // root, daemon, bin exist on Debian
            let name = if i == 7 { b"n\xc3(x bad utf8".to_vec() } else { format!("job-{i} \"x\"").into_bytes() };
            JobSpec {
                id: 1000 + i,
                uid,
                gid: i % 2,
                user: format!("idu{uid}"),
                group: format!("idg{}", i % 2),
                name,
                partition: if i % 2 == 0 { "debug".into() } else { "long,debug".into() },
                nodes: format!("node[{:02}-{:02}]", i, i + 1),
                state,
                state_name,
                exit_code,
                exit_text,
                cpus: 1 + i % 4,
                work_dir: work_dirs[i as usize % work_dirs.len()].to_vec(),
                script: (i == 11).then(|| "#!/bin/sh\necho \"hi\" \\ done\n".to_string()),
            }
        })
        .collect()
}

/// 50 records: one message each, valid JSON, key = job id, fields as set.
#[test]
fn delivers_50_jobs_with_their_fields() {
    let t = target();
    let rig = Rig::new("jk_deliver", &[]);
    let mut host = rig.started(&waiting_for_reports(""));
    // init names the build: the project's version (Cargo.toml) and the Slurm release.
    let banner = format!("jobcomp-kafka {} (built for Slurm {}) starting", env!("CARGO_PKG_VERSION"), jobcomp_kafka::target::RELEASE);
    assert_eq!(host.log_count(&[&banner]), 1, "no {banner:?} at init; log:\n{}", host.log_text());
    let jobs = fifty_jobs();
    for job in &jobs {
        assert_eq!(host.cmd(&job.command()).rc, 0, "job {}", job.id);
    }
    let stats = host.ok("stats");
    let (locks, unlocks) = (stats.number("assoc_lock"), stats.number("assoc_unlock"));
    println!("assoc_mgr lock/unlock calls: {locks}/{unlocks}");
    assert_eq!(locks, unlocks, "assoc_mgr_lock and assoc_mgr_unlock in pairs");
    assert!(locks >= 1, "the association walk holds assoc_mgr's lock");
    assert_eq!(stats.number("assoc_held"), 0);
    assert_eq!(stats.number("assoc_misuse"), 0);
    assert_eq!(stats.number("assoc_not_read"), 0, "the association lock is a read lock");

    let seen = rig.kafka.wait_count(&rig.cluster, 50, 20 * SEC);
    assert!(seen >= 50, "only {seen} of 50 records reached Kafka; log:\n{}", host.log_text());
    host.ok("fini");
    let messages = rig.kafka.read_all(&rig.cluster);
    let tally = Tally::of(&messages, jobs.iter().map(|j| j.id));
    println!("delivery: {tally}");
    assert_eq!(messages.len(), 50, "{tally}");
    assert_eq!((tally.delivered, tally.duplicated, tally.corrupt), (50, 0, 0), "{tally}");
    assert!(!rig.state_file().exists(), "nothing to save when everything was delivered");

    for m in &messages {
        let record = m.json().unwrap_or_else(|| panic!("invalid JSON: {}", String::from_utf8_lossy(&m.payload)));
        let id = record["jobid"].as_u64().unwrap() as u32;
        assert_eq!(m.key_text(), id.to_string(), "message key = job id");
        let job = jobs.iter().find(|j| j.id == id).unwrap();
        let ctx = format!("job {id}: {record}");
        assert_eq!(record["user_id"], job.uid, "{ctx}");
        assert_eq!(record["group_id"], job.gid, "{ctx}");
        let (user, group) = if t.has_identity() {
            (Some(job.user.clone()), Some(job.group.clone()))
        } else {
            (user_name(job.uid), group_name(job.gid))
        };
        assert_eq!(str_field(&record, "username").map(str::to_string), user, "{ctx}");
        assert_eq!(str_field(&record, "groupname").map(str::to_string), group, "{ctx}");
        assert_eq!(str_field(&record, "job_name"), Some(&*String::from_utf8_lossy(&job.name)), "{ctx}");
        assert_eq!(str_field(&record, "work_dir"), Some(&*String::from_utf8_lossy(&job.work_dir)), "{ctx}");
        // The host's part_ptr is partition "debug"; job.partition the requested list.
        let partition = if t.partition_from_part_ptr() { "debug" } else { job.partition.as_str() };
        assert_eq!(str_field(&record, "partition"), Some(partition), "{ctx}");
        assert_eq!(str_field(&record, "nodes"), Some(job.nodes.as_str()), "{ctx}");
        assert_eq!(str_field(&record, "state"), Some(job.state_name), "{ctx}");
        assert_eq!(str_field(&record, "exit_code"), Some(job.exit_text), "{ctx}");
        assert_eq!(str_field(&record, "derived_ec"), Some("0:0"), "{ctx}");
        assert_eq!(record["total_cpus"], job.cpus, "{ctx}");
        assert_eq!(record["total_nodes"], 1, "{ctx}");
        assert_eq!(str_field(&record, "@start"), Some("2024-05-01T10:00:00"), "{ctx}");
        assert_eq!(str_field(&record, "@end"), Some("2024-05-01T11:01:01"), "{ctx}");
        assert_eq!(record["elapsed"], 3661, "{ctx}");
        assert_eq!(str_field(&record, "@submit"), Some("2024-05-01T09:58:00"), "{ctx}");
        assert_eq!(str_field(&record, "alloc_node"), Some("login1"), "{ctx}");
        assert_eq!(str_field(&record, "std_in"), Some("/dev/null"), "{ctx}");
        assert_eq!(str_field(&record, "cluster"), Some("jk_deliver"), "{ctx}");
        assert_eq!(str_field(&record, "qos"), Some("normal"), "{ctx}");
        assert_eq!(str_field(&record, "account"), Some("physics"), "{ctx}");
        assert_eq!(str_field(&record, "parent_accounts"), Some("/root/physics/physics"), "{ctx}");
        assert_eq!(record["time_limit"], 3600, "{ctx}");
        assert!(record.get("array_job_id").is_none(), "no array fields for a plain job: {ctx}");
        if t.has_failed_node() {
            assert!(record["failed_node"].is_null(), "{ctx}");
        }
        let script = str_field(&record, "script");
        match (&job.script, t.script_by_default()) {
            (Some(text), true) => assert_eq!(script, Some(text.as_str()), "batch script sent: {ctx}"),
            _ => assert_eq!(script, None, "{ctx}"),
        }
    }
    // The raw text escapes what json-c escapes; invalid UTF-8 became U+FFFD.
    let raw: Vec<String> = messages.iter().map(|m| String::from_utf8(m.payload.clone()).expect("UTF-8 payload")).collect();
    assert!(raw.iter().any(|r| r.contains(r#""work_dir":"\/home\/a \"quoted\" dir\/x""#)), "escaped quotes and slashes");
    assert!(raw.iter().any(|r| r.contains(r#""work_dir":"tab\there\nnew line""#)), "escaped tab and newline");
    assert!(raw.iter().any(|r| r.contains("\u{FFFD}")), "invalid UTF-8 replaced");
    host.quit();
}

// ---------------------------------------------------------------------------

/// topic= and poll_interval= are taken (the start-up line shows
/// poll_interval=1 s, the reconfigure line the new poll_interval=3 s); a
/// reconfigure (set_location) that changes the topic sends later records to
/// the new topic. (What poll_interval paces, the outage summary, is not timed
/// here.)
#[test]
fn topic_poll_interval_and_reconfigure() {
    let rig = Rig::new("jk_topics", &[]);
    rig.kafka.create_topic("jk_first", 1);
    rig.kafka.create_topic("jk_second", 1);
    let mut host = rig.host("topic=jk_first,poll_interval=1");
    host.conf(&[("debug", "1")]);
    host.ok("init");
    host.ok("set_location");

    host.ok("jobs 5 1");
    assert_eq!(rig.kafka.wait_count("jk_first", 5, 20 * SEC), 5);
    // With DebugFlags=JobComp each delivery report is logged, naming the topic.
    // (How soon after poll_interval is a speed figure for `make bench`; that
    // the interval is honoured is shorter_poll_interval_applies_at_once_after_reconfigure.)
    let reported = host.wait_log(&["delivered", "jk_first"], 5, 60 * SEC);
    assert!(reported, "5 delivery reports logged; log:\n{}", host.log_text());

    // Reconfigure: JobCompParams re-read through set_location.
    host.conf(&[("params", "topic=jk_second,poll_interval=3")]);
    host.ok("set_location");
    host.ok("jobs 5 6");
    assert_eq!(rig.kafka.wait_count("jk_second", 5, 20 * SEC), 5, "log:\n{}", host.log_text());
    host.ok("fini");
    let first = rig.kafka.read_all("jk_first");
    let second = rig.kafka.read_all("jk_second");
    let default = rig.kafka.read_all(&rig.cluster);
    println!(
        "topics: jk_first={:?} jk_second={:?} {}={}",
        job_ids(&first),
        job_ids(&second),
        rig.cluster,
        default.len()
    );
    assert_eq!(job_ids(&first), vec![1, 2, 3, 4, 5]);
    assert_eq!(job_ids(&second), vec![6, 7, 8, 9, 10]);
    assert!(default.is_empty(), "nothing goes to the ClusterName topic when topic= is set");
    let log = host.quit();
    let problems: Vec<&String> =
        log.iter().filter(|l| l.contains("poll_interval") && (l.starts_with("error:") || l.contains("warning"))).collect();
    assert!(problems.is_empty(), "a valid poll_interval is accepted: {problems:?}");
    // The values in use, as the start-up and reconfigure lines give them.
    assert_eq!(settings_lines(&log, "started: "), ["poll_interval=1 s"], "log:\n{}", log.join("\n"));
    assert_eq!(settings_lines(&log, "reconfigured: "), ["poll_interval=3 s"], "log:\n{}", log.join("\n"));
}

/// The poll_interval=... part of every log line containing `what` (the
/// start-up line "started: ", the reconfigure line "reconfigured: ").
fn settings_lines(log: &[String], what: &str) -> Vec<String> {
    log.iter()
        .filter(|l| l.contains(what))
        .map(|l| {
            l.split(", ")
                .find(|part| part.starts_with("poll_interval="))
                .unwrap_or_else(|| panic!("no poll_interval= in {l:?}"))
                .to_string()
        })
        .collect()
}

/// An invalid poll_interval (0: SchedMD's plugin spins a core at 100% with it)
/// is one error line, and the default (2 s) is the interval in use, as the
/// start-up line shows; records flow. That no core spins is not timed here
/// (CPU time on a shared machine is no test): `make bench` measures it.
#[test]
fn invalid_poll_interval_is_reported_and_the_default_applies() {
    let rig = Rig::new("jk_badpoll", &[]);
    let mut host = rig.started("poll_interval=0");
    assert!(
        host.wait_log(&["error:", "poll_interval=0"], 1, 5 * SEC),
        "error line naming poll_interval=0; log:\n{}",
        host.log_text()
    );
    host.ok("job id=1");
    assert_eq!(rig.kafka.wait_count(&rig.cluster, 1, 20 * SEC), 1);
    host.ok("fini");
    let log = host.quit();
    let errors: Vec<&String> = error_lines(&log);
    assert_eq!(errors.len(), 1, "one error line, for poll_interval=0: {errors:?}");
    assert!(errors[0].contains("poll_interval"), "{errors:?}");
    assert_eq!(settings_lines(&log, "started: "), ["poll_interval=2 s"], "log:\n{}", log.join("\n"));
}

// ---------------------------------------------------------------------------

/// Broker down, no requeue: records time out, fini saves them; the next start
/// delivers every one exactly once, byte for byte, and clears the state file.
#[test]
fn broker_down_saves_state_and_next_start_replays_once() {
    let t = target();
    let reference = &reference_records("jk_down", "", &["jobs 20 1"], &["jk_down"])[0];
    let rig = Rig::new("jk_down", &[("message.timeout.ms", "1000")]);
    let mut host = rig.started("");
    rig.kafka.down();
    host.ok("jobs 20 1");
    // Every record times out at least once (message.timeout.ms=1000).
    host.wait_log(&["timed out"], 20, 15 * SEC);
    host.ok("fini");
    let log = host.quit();
    let visible: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("timed out") && (l.starts_with("error:") || l.contains("warning:")))
        .collect();
    assert!(!visible.is_empty(), "the outage is visible at warning level or above; log:\n{}", log.join("\n"));

    let bytes = std::fs::read(rig.state_file()).expect("the state file exists after fini");
    assert!(bytes.len() >= 6);
    let version = u16::from_be_bytes([bytes[0], bytes[1]]);
    let count = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    assert_eq!(version, t.protocol_version(), "protocol version of the release");
    assert_eq!(count, 20, "message count");
    let (_, saved) = decode_state(&bytes, t.state_has_event()).expect("well-formed state file");
    assert_eq!(saved.iter().map(|m| m.job_id).collect::<BTreeSet<_>>(), ids(1..=20));
    for m in &saved {
        let json: Value = serde_json::from_slice(&m.payload).expect("saved payload is valid JSON");
        assert_eq!(json["jobid"], m.job_id);
        assert_eq!(m.event, 1);
    }

    rig.kafka.up();
    let mut host = rig.started("");
    rig.kafka.wait_ids(&rig.cluster, &ids(1..=20), 30 * SEC);
    host.ok("fini");
    host.quit();
    let messages = rig.kafka.read_all(&rig.cluster);
    // The broker was down from before the first record: none was in flight.
    assert_exact("broker down, replayed at next start", &messages, reference, &BTreeSet::new(), 0);
    let tally = Tally::of(&messages, 1..=20);
    println!("broker down, replayed at next start: saved={} {tally}", saved.len());
    assert!(tally.lost.is_empty() && tally.corrupt == 0, "{tally}");
    assert_eq!(tally.duplicated, 0, "replayed exactly once: {tally}");
    for m in &messages {
        let original = saved.iter().find(|s| s.job_id.to_string() == m.key_text()).expect("saved message");
        assert_eq!(m.payload, original.payload, "replayed byte for byte (job {})", original.job_id);
    }
    let left: Vec<String> =
        names_in(&rig.state).into_iter().filter(|n| n == STATE_FILE || n.ends_with(".replaying")).collect();
    assert!(left.is_empty(), "state file and claim gone after the replay: {left:?}");
}

/// Broker down with requeue_on_msg_timeout: everything arrives once the broker
/// is back (duplicates counted).
#[test]
fn broker_down_with_requeue_delivers_everything() {
    let t = target();
    let reference = &reference_records("jk_requeue", "", &["jobs 20 1"], &["jk_requeue"])[0];
    let rig = Rig::new("jk_requeue", &[("message.timeout.ms", "1000")]);
    let mut host = rig.started("requeue_on_msg_timeout");
    rig.kafka.down();
    host.ok("jobs 20 1");
    // Each record times out at least once while the broker is down.
    let requeued = host.wait_log(&["timed out"], 20, 15 * SEC);
    let lines = host.log_count(&["timed out"]);
    assert!(requeued, "20 timeouts seen (got {lines}); log:\n{}", host.log_text());
    rig.kafka.up();
    rig.kafka.wait_ids(&rig.cluster, &ids(1..=20), 30 * SEC);
    host.ok("fini");
    host.quit();
    let messages = rig.kafka.read_all(&rig.cluster);
    let tally = Tally::of(&messages, 1..=20);
    let saved = match std::fs::read(rig.state_file()) {
        Ok(bytes) => decode_state(&bytes, t.state_has_event()).expect("well-formed").1,
        Err(_) => Vec::new(),
    };
    println!("requeue: timeout lines={lines} saved at fini={} {tally}", saved.len());
    // The broker went down before the first record: none was ever in flight.
    assert_exact("requeue after timeouts", &messages, reference, &BTreeSet::new(), 0);
    assert!(tally.lost.is_empty(), "0 lost with requeue_on_msg_timeout: {tally}");
    assert_eq!(tally.corrupt, 0, "{tally}");
}

/// A slow broker (2 s round trip) and flush_timeout=100: fini purges what is
/// not acknowledged. Records purged before they were sent go to the state file;
/// records purged while in flight (they may have reached the broker) stay in the
/// spool with their record id. The next start delivers both: every job at least
/// once, and every duplicate carries the same jobcomp.record_id and bytes as its
/// first copy, so a consumer can drop it.
#[test]
fn purge_on_fini_with_slow_broker_saves_and_replays() {
    let t = target();
    let reference = &reference_records("jk_purge", "", &["job id=1000", "jobs 20 1"], &["jk_purge"])[0];
    let rig = Rig::new("jk_purge", &[("message.timeout.ms", "30000")]);
    let mut host = rig.started("flush_timeout=100");
    // Connection and metadata first, so that the records below are in flight.
    host.ok("job id=1000");
    assert_eq!(rig.kafka.wait_count(&rig.cluster, 1, 20 * SEC), 1);
    rig.kafka.rtt(Duration::from_millis(2000));
    host.ok("jobs 20 1");
    host.ok("sleep 300");
    let started = Instant::now();
    host.ok("fini");
    let fini_took = started.elapsed();
    let kept_in_spool = host.log_text().contains("stay in the spool");
    host.quit();
    let saved = match std::fs::read(rig.state_file()) {
        Ok(bytes) => decode_state(&bytes, t.state_has_event()).expect("well-formed state file").1,
        Err(_) => Vec::new(),
    };
    assert!(
        !saved.is_empty() || kept_in_spool,
        "records not acknowledged within flush_timeout are saved (state file) or kept (spool)"
    );

    rig.kafka.rtt(Duration::ZERO);
    let all = ids(1..=20).into_iter().chain([1000]).collect::<BTreeSet<_>>();
    let (mut host, recovered) = rig.started_taking_over(&waiting_for_reports(""), &all);
    assert_eq!(recovered, 20, "the 20 records not acknowledged before fini are taken over; log:\n{}", host.log_text());
    host.ok("fini");
    host.quit();
    let messages = rig.kafka.read_all(&rig.cluster);
    let tally = Tally::of(&messages, all.iter().copied());
    // In-flight records stay in the spool with their id, and only records never
    // sent go through the state file: every duplicate is recognisable.
    let same_id_duplicates = assert_duplicates_recognisable(&messages);
    // Job 1000 was acknowledged before the slow-down; 1-20 may have been in
    // flight when fini purged them, once each.
    let extra = assert_exact("purge at fini, then a new start", &messages, reference, &ids(1..=20), 1);
    assert_eq!(extra.copies, same_id_duplicates);
    println!(
        "purge at fini (rtt 2 s, flush_timeout 100 ms): fini took {fini_took:?}, saved to state file={}, \
         in flight kept in spool={kept_in_spool}, duplicates with the same record id={same_id_duplicates} {tally}",
        saved.len()
    );
    assert!(tally.lost.is_empty(), "every job at least once: {tally}");
    assert_eq!(tally.corrupt, 0, "{tally}");
    assert!(!rig.state_file().exists(), "nothing left to save after the replay");
}

// ---------------------------------------------------------------------------

fn hand_payload(id: u32) -> Vec<u8> {
    format!(r#"{{"jobid":{id},"note":"hand-made \/ record","n":{id}}}"#).into_bytes()
}

fn corrupt_copies(state: &std::path::Path) -> Vec<String> {
    names_in(state)
        .into_iter()
        .filter(|n| {
            n.strip_prefix("jobcomp_kafka_state.corrupt.")
                .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit() || c == '-'))
        })
        .collect()
}

/// A damaged state file: init still succeeds, an error names the file, the file
/// is set aside as jobcomp_kafka_state.corrupt.<time>, and the complete messages
/// before the damage are delivered.
#[test]
fn corrupt_state_file_is_set_aside_and_good_messages_replayed() {
    let t = target();
    let (version, with_event) = (t.protocol_version(), t.state_has_event());
    let saved = |id: u32| Saved { event: 1, job_id: id, payload: hand_payload(id) };

    // (a) truncated in the middle of the 4th message.
    let mut truncated = encode_state(version, with_event, &[saved(101), saved(102), saved(103), saved(104)]);
    truncated.truncate(truncated.len() - 25);
    // (b) two good messages, then garbage where the 3rd should be.
    let mut garbage = encode_state(version, with_event, &[saved(201), saved(202)]);
    garbage[2..6].copy_from_slice(&3u32.to_be_bytes());
    garbage.extend((0..40u8).map(|i| i.wrapping_mul(97) ^ 0xa5));
    // (c) not a state file at all.
    let text = b"this is not a jobcomp/kafka state file\n".to_vec();

    for (case, bytes, good) in [
        ("truncated", truncated, ids(101..=103)),
        ("garbage", garbage, ids(201..=202)),
        ("text", text, BTreeSet::new()),
    ] {
        let rig = Rig::new(&format!("jk_corrupt_{case}"), &[]);
        std::fs::write(rig.state_file(), &bytes).unwrap();
        let (messages, log) = rig.replay("", &good, 20 * SEC);
        let tally = Tally::of(&messages, good.iter().copied());
        println!("corrupt state file ({case}): {tally}");
        let path = rig.state_file().display().to_string();
        assert!(
            log.iter().any(|l| l.starts_with("error:") && l.contains(&path)),
            "{case}: an error line names {path}; log:\n{}",
            log.join("\n")
        );
        let aside = corrupt_copies(&rig.state);
        assert_eq!(aside.len(), 1, "{case}: set aside once: {:?}", names_in(&rig.state));
        assert_eq!(std::fs::read(rig.state.join(&aside[0])).unwrap(), bytes, "{case}: the copy is the damaged file");
        assert!(!rig.state_file().exists(), "{case}: the damaged file is not read again");
        assert!(tally.lost.is_empty() && tally.unexpected.is_empty(), "{case}: {tally}");
        assert_eq!((tally.duplicated, tally.corrupt), (0, 0), "{case}: {tally}");
        for m in &messages {
            let id: u32 = m.key_text().parse().unwrap();
            assert_eq!(m.payload, hand_payload(id), "{case}: job {id} byte for byte");
        }
    }
}

/// A state file assembled by hand in the C plugin's format is replayed.
#[test]
fn c_plugin_state_file_is_replayed() {
    let t = target();
    let rig = Rig::new("jk_cformat", &[]);
    let start_topic = format!("{}-job-start", rig.cluster);
    rig.kafka.create_topic(&start_topic, 1);
    let mut messages = vec![
        Saved { event: 1, job_id: 301, payload: hand_payload(301) },
        Saved {
            event: 1,
            job_id: 302,
            payload: r#"{"jobid":302,"work_dir":"\/home\/\u00e9l\u00e8ve","name":"caf\u00e9 ✓"}"#.as_bytes().to_vec(),
        },
        Saved { event: 1, job_id: 303, payload: hand_payload(303) },
    ];
    if t.state_has_event() {
        messages.push(Saved { event: 2, job_id: 304, payload: br#"{"jobid":304,"state":null}"#.to_vec() });
    }
    let bytes = encode_state(t.protocol_version(), t.state_has_event(), &messages);
    std::fs::write(rig.state_file(), &bytes).unwrap();

    let (delivered, log) = rig.replay("", &ids(301..=303), 20 * SEC);
    let tally = Tally::of(&delivered, 301..=303);
    println!("C-format state file: {tally}");
    assert!(tally.lost.is_empty() && tally.unexpected.is_empty(), "{tally}");
    assert_eq!((tally.duplicated, tally.corrupt), (0, 0), "{tally}");
    for m in &delivered {
        let original = messages.iter().find(|s| s.job_id.to_string() == m.key_text()).unwrap();
        assert_eq!(m.payload, original.payload, "job {} byte for byte", original.job_id);
    }
    if t.state_has_event() {
        let starts = rig.kafka.read_all(&start_topic);
        assert_eq!(job_ids(&starts), vec![304], "a saved start event goes to the start topic");
    }
    let errors: Vec<&String> = error_lines(&log);
    assert!(errors.is_empty(), "a sound file replays without errors: {errors:?}");
    let left: Vec<String> =
        names_in(&rig.state).into_iter().filter(|n| n == STATE_FILE || n.ends_with(".replaying")).collect();
    assert!(left.is_empty(), "state file and claim gone after the replay: {left:?}");
}

// ---------------------------------------------------------------------------

// A bad JobCompLoc: tests/startup_without_kafka.rs (init succeeds, records wait).

// ---------------------------------------------------------------------------

/// Loaded by another program (sacct --completion): init succeeds, no
/// connection, no state file touched. The same steps under the name slurmctld
/// do connect (so the check can fail).
#[test]
fn inert_outside_slurmctld() {
    let tmp = TempDir::new("jk_inert");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let loc = tmp.path().join("kafka.conf");
    std::fs::write(
        &loc,
        format!("bootstrap.servers={}\nmessage.timeout.ms=2000\n", listener.local_addr().unwrap()),
    )
    .unwrap();
    let run = |exe: &std::path::Path, state: &std::path::Path| -> Host {
        let mut host = Host::start(exe);
        host.conf(&[
            ("cluster", "jk_inert"),
            ("loc", &loc.to_string_lossy()),
            ("state", &state.to_string_lossy()),
            ("params", ""),
        ]);
        assert_eq!(host.cmd("init").rc, 0);
        assert_eq!(host.cmd("set_location").rc, 0);
        assert_eq!(host.cmd("job id=7").rc, 0, "records are accepted (and dropped) when inert");
        host
    };

    let sacct = tmp.path().join("sacct");
    std::fs::copy(host_binary(), &sacct).unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let before = encode_state(target().protocol_version(), target().state_has_event(), &[Saved {
        event: 1,
        job_id: 5,
        payload: hand_payload(5),
    }]);
    std::fs::write(state.join(STATE_FILE), &before).unwrap();

    let mut host = run(&sacct, &state);
    host.ok("sleep 700");
    host.ok("fini");
    host.quit();
    let connected = listener.accept().is_ok();
    println!("as sacct: connection made={connected}, state dir={:?}", names_in(&state));
    assert!(!connected, "no connection to the broker from an inert plugin");
    assert_eq!(names_in(&state), vec![STATE_FILE.to_string()], "no file created or removed");
    assert_eq!(std::fs::read(state.join(STATE_FILE)).unwrap(), before, "state file untouched");

    // Control: the same under the name slurmctld connects.
    let other_state = tmp.path().join("state2");
    std::fs::create_dir_all(&other_state).unwrap();
    let _host = run(host_binary(), &other_state);
    let accepted = wait_for(10 * SEC, || listener.accept().ok());
    println!("as slurmctld: connection made={}", accepted.is_some());
    assert!(accepted.is_some(), "the active plugin connects to bootstrap.servers");
}

// ---------------------------------------------------------------------------

/// kill -9 in the middle of a run, with records still in memory (slow broker):
/// the host dies, the next init works, and the spool (every record on disk
/// before the record call returns) brings back every record, byte for byte.
/// Precondition asserted: at the kill, at least one record's delivery had not
/// been reported (DebugFlags=JobComp logs each report), so the spool, not the
/// first run, must bring it. Only those 10 records can be in flight: only they
/// may come twice, with their record id and bytes, once more at most.
/// 25.05+: start events too (enable_job_start), to the start topic.
#[test]
fn kill_9_then_next_start_works() {
    let t = target();
    let starts = t.api == JobcompApi::StartAndEnd;
    let params = if starts { "enable_job_start" } else { "" };
    let start_topic = "jk_kill-job-start";
    let mut before_kill = vec!["jobs 10 1".to_string()];
    if starts {
        before_kill.extend((21..=25).map(|id| format!("start_job id={id}")));
    }
    let commands: Vec<&str> = before_kill.iter().map(String::as_str).chain(["job id=11"]).collect();
    let reference = reference_records("jk_kill", params, &commands, &["jk_kill", start_topic]);

    let rig = Rig::new("jk_kill", &[]);
    rig.kafka.create_topic(start_topic, 1);
    rig.kafka.rtt(Duration::from_millis(1000));
    let mut host = rig.host(params);
    host.conf(&[("debug", "1")]);
    host.ok("init");
    host.ok("set_location");
    for command in &before_kill {
        host.ok(command);
    }
    host.send_only("abort");
    let status = host.wait_exit(10 * SEC);
    assert_eq!(status.signal(), Some(9), "host died of SIGKILL: {status}");
    // The log is readable (a line that must be there), then: how many
    // deliveries had been reported before the kill.
    assert!(host.log_count(&["jobcomp/kafka"]) >= 1, "the host's log is seen; log:\n{}", host.log_text());
    let reported = host.log_count(&["delivered"]);
    let submitted = before_kill.len() - 1 + 10;
    println!("kill -9: {reported} of {submitted} deliveries reported before the kill");
    assert!(reported < submitted, "precondition: records still undelivered at the kill; log:\n{}", host.log_text());
    drop(host);
    let before = rig.kafka.count(&rig.cluster).unwrap_or(0);
    rig.kafka.rtt(Duration::ZERO);

    let mut host = rig.started(params);
    host.ok("job id=11");
    rig.kafka.wait_ids(&rig.cluster, &ids(1..=11), 30 * SEC);
    if starts {
        rig.kafka.wait_ids(start_topic, &ids(21..=25), 30 * SEC);
    }
    host.ok("sleep 1000");
    host.ok("fini");
    host.quit();
    let messages = rig.kafka.read_all(&rig.cluster);
    let extra = assert_exact("kill -9, end records", &messages, &reference[0], &ids(1..=10), 1);
    let mut start_extra = Extra::default();
    if starts {
        start_extra = assert_exact("kill -9, start records", &rig.kafka.read_all(start_topic), &reference[1], &ids(21..=25), 1);
    } else {
        assert!(reference[1].is_empty());
    }
    println!(
        "kill -9 with {submitted} records in memory ({before} had reached Kafka), then a new start: all {} \
         records byte-exact; extra copies of in-flight records: {} end, {} start",
        reference[0].len() + reference[1].len(),
        extra.copies,
        start_extra.copies
    );
}

// ---------------------------------------------------------------------------

/// 25.05+: start events go to <ClusterName>-job-start with enable_job_start,
/// and cost nothing without it. Before 25.05 the API has no start event: the
/// plugin exports no record_job_start (make unit runs this file for a 26.05
/// build too, so the 25.05 branch is always exercised).
#[test]
fn start_events_where_the_api_has_them() {
    let t = target();
    if t.api != JobcompApi::StartAndEnd {
        assert!(!t.plugin_symbols().contains("jobcomp_p_record_job_start"));
        let nm = run(Command::new("nm").args(["-D", "--defined-only"]).arg(plugin_so())).expect("nm");
        let text = String::from_utf8_lossy(&nm.stdout);
        assert!(nm.status.success() && text.contains("jobcomp_p_log_record"), "nm sees the exports: {text}");
        assert!(!text.contains("record_job_start"), "no start event before 25.05: {text}");
        println!("start events: none in the {}.{:02} API (no record_job_start exported)", t.major, t.minor);
        return;
    }
    let rig = Rig::new("jk_start", &[]);
    let start_topic = format!("{}-job-start", rig.cluster);
    rig.kafka.create_topic(&start_topic, 1);

    let mut host = rig.started("");
    assert_eq!(host.cmd("start_job id=1").rc, 0);
    host.ok("job id=1");
    assert_eq!(rig.kafka.wait_count(&rig.cluster, 1, 20 * SEC), 1);
    host.ok("fini");
    host.quit();
    assert_eq!(rig.kafka.count(&start_topic), Some(0), "no start record without enable_job_start");

    let mut host = rig.started("enable_job_start");
    assert_eq!(host.cmd("start_job id=2").rc, 0);
    assert_eq!(rig.kafka.wait_count(&start_topic, 1, 20 * SEC), 1, "log:\n{}", host.log_text());
    host.ok("fini");
    host.quit();
    let starts = rig.kafka.read_all(&start_topic);
    let record = starts[0].json().expect("valid JSON");
    println!("start event: {record}");
    assert_eq!(record["jobid"], 2);
    assert!(record["state"].is_null(), "a start record has state null");
    assert!(record.get("exit_code").is_none(), "no finish-only fields in a start record");
}

// ---------------------------------------------------------------------------

/// kill -9 while saved records are being replayed: they are on disk (claim file
/// or spool) and the next start delivers each exactly once, under one record
/// id. Killed at once after init (the kill lands anywhere in the replay);
/// after the claim was released; and killed after the records were spooled but
/// before the claim was removed (made certain by putting the claim back after
/// the kill: the records are then in both the claim and the spool).
#[test]
fn replay_claim_survives_kill_9() {
    let t = target();
    for (case, wait_for_release, claim_left_behind) in
        [("at once", false, false), ("after the claim is released", true, false), ("claim left behind", true, true)]
    {
        let name = match (wait_for_release, claim_left_behind) {
            (false, _) => "jk_claim",
            (true, false) => "jk_claim_late",
            (true, true) => "jk_claim_left",
        };
        let rig = Rig::new(name, &[]);
        let saved: Vec<Saved> = (401..=405).map(|id| Saved { event: 1, job_id: id, payload: hand_payload(id) }).collect();
        let state_bytes = encode_state(t.protocol_version(), t.state_has_event(), &saved);
        std::fs::write(rig.state_file(), &state_bytes).unwrap();
        rig.kafka.down();
        let mut host = rig.started("");
        let during = names_in(&rig.state);
        let claim = rig.state.join(format!("{STATE_FILE}.replaying"));
        if wait_for_release {
            let released = wait_for(10 * SEC, || (!claim.exists()).then_some(()));
            assert!(released.is_some(), "the claim is released once its records are safe in the spool");
        }
        host.send_only("abort");
        assert_eq!(host.wait_exit(10 * SEC).signal(), Some(9));
        drop(host);
        if claim_left_behind {
            std::fs::write(&claim, &state_bytes).unwrap();
        }

        rig.kafka.up();
        let (messages, log) = rig.replay("", &ids(401..=405), 20 * SEC);
        let tally = Tally::of(&messages, 401..=405);
        println!("replay killed {case} (state dir then: {during:?}), then a new start: {tally}");
        // The broker was down: nothing was in flight, so no copy at all.
        let hand: std::collections::BTreeMap<u32, Vec<u8>> = (401..=405).map(|id| (id, hand_payload(id))).collect();
        let extra = assert_exact(case, &messages, &hand, &BTreeSet::new(), 0);
        if claim_left_behind {
            assert!(
                log.iter().any(|line| line.contains("5 record(s) of the state file were already in the spool")),
                "{case}: the skipped copies are logged:\n{}",
                log.join("\n")
            );
        }
        println!("replay killed {case}: extra copies {}", extra.copies);
        assert!(tally.lost.is_empty(), "{case}: {tally}");
        assert_eq!(tally.corrupt, 0, "{case}: {tally}");
        for m in &messages {
            assert_eq!(m.payload, hand_payload(m.key_text().parse().unwrap()), "{case}: byte for byte");
        }
        let left: Vec<String> =
            names_in(&rig.state).into_iter().filter(|n| n == STATE_FILE || n.ends_with(".replaying")).collect();
        assert!(left.is_empty(), "{case}: state file and claim gone after the replay: {left:?}");
    }
}

/// librdkafka's queue full (queue.buffering.max.messages) during an outage:
/// records wait in the plugin's backlog, are saved at fini and delivered at the
/// next start; none is dropped (SchedMD's plugin drops them). The record
/// call's time is printed (asserted nowhere: `make bench` measures it).
#[test]
fn queue_full_keeps_records() {
    let t = target();
    let reference = &reference_records("jk_qfull", "", &["jobs 2000 1"], &["jk_qfull"])[0];
    let rig = Rig::new("jk_qfull", &[("queue.buffering.max.messages", "10"), ("message.timeout.ms", "30000")]);
    rig.kafka.down();
    let mut host = rig.started("");
    host.ok("jobs 2000 1");
    let stats = host.ok("stats");
    let (calls, total_us, max_us) =
        (stats.number("record_calls"), stats.number("record_us_total"), stats.number("record_us_max"));
    host.ok("fini");
    let log = host.quit();
    let mean_us = total_us as f64 / calls.max(1) as f64;
    // Printed only: the hot path's speed is a figure of `make bench`, not a test.
    println!("hot path with the broker down: {calls} record calls, mean {mean_us:.1} us, max {max_us} us");
    assert_eq!(calls, 2000, "every record call returned");

    let bytes = std::fs::read(rig.state_file()).expect("state file after fini");
    let (_, saved) = decode_state(&bytes, t.state_has_event()).expect("well-formed");
    let saved_ids: BTreeSet<u32> = saved.iter().map(|m| m.job_id).collect();
    println!("queue full: saved={} distinct={}", saved.len(), saved_ids.len());
    assert_eq!(saved_ids, ids(1..=2000), "every record saved; log tail:\n{}", log[log.len().saturating_sub(5)..].join("\n"));

    rig.kafka.up();
    // The next start without the small queue (see backlog_drains_without_waiting_for_poll_interval).
    rig.write_properties(&[]);
    let (messages, _) = rig.replay("", &ids(1..=2000), 20 * SEC);
    let tally = Tally::of(&messages, 1..=2000);
    println!("queue full, replayed at next start: {tally}");
    assert_exact("queue full, replayed at next start", &messages, reference, &BTreeSet::new(), 0);
    assert!(tally.lost.is_empty(), "{tally}");
    assert_eq!((tally.duplicated, tally.corrupt), (0, 0), "{tally}");
}

/// A record larger than message.max.bytes: an error line names it, the other
/// records flow, and it is set aside in <StateSaveLocation>/jobcomp_kafka_refused/
/// with its exact bytes (an administrator can send it by hand), not saved and
/// replayed at every start for ever.
#[test]
fn oversized_record() {
    let t = target();
    let params = if t.script_by_default() { "" } else { "send_script" };
    let commands = ["job id=1 batch=1 script_len=200000", "job id=2"];
    // The exact record of job 1, from a run whose producer takes large messages.
    let reference = {
        let rig = Rig::new("jk_big", &[("message.max.bytes", "1000000")]);
        let mut host = rig.started(params);
        for c in commands {
            host.ok(c);
        }
        rig.kafka.wait_ids(&rig.cluster, &ids(1..=2), 30 * SEC);
        host.ok("fini");
        host.quit();
        payloads_by_job(&rig.kafka.read_all(&rig.cluster))
    };
    assert!(reference[&1].len() > 200000, "the reference record of job 1 holds the script");

    let rig = Rig::new("jk_big", &[("message.max.bytes", "100000")]);
    let mut host = rig.started(params);
    for c in commands {
        host.ok(c);
    }
    assert!(rig.kafka.wait_count(&rig.cluster, 1, 20 * SEC) >= 1);
    let refused_dir = rig.state.join("jobcomp_kafka_refused");
    let set_aside = wait_for(30 * SEC, || (names_in(&refused_dir).len() == 1).then_some(()));
    host.ok("fini");
    let log = host.quit();
    let errors: Vec<&String> = log.iter().filter(|l| l.starts_with("error:") && l.contains("job 1")).collect();
    let refused = names_in(&refused_dir);
    println!("oversized record: errors={errors:?} refused={refused:?} state dir={:?}", names_in(&rig.state));
    assert!(set_aside.is_some(), "the refused record is set aside; log:\n{}", log.join("\n"));
    assert_eq!(errors.len(), 1, "the oversized record is reported once: {errors:?}");
    assert!(errors[0].contains(&refused_dir.display().to_string()), "the error line names where it is: {errors:?}");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].starts_with("1.") && refused[0].ends_with(".json"), "<job>.<record id>.json: {refused:?}");
    let kept = std::fs::read(refused_dir.join(&refused[0])).unwrap();
    assert!(kept == reference[&1], "the refused file holds the record's exact bytes ({} bytes, want {})", kept.len(), reference[&1].len());
    assert!(!rig.state_file().exists(), "the refused record is not saved for a replay");

    // The next start: job 1 is not produced again. This one refuses job 4 and
    // then ends without fini (a crash, or 23.11+ reconfigure), once the
    // spool's acknowledgements are written (spool_sync_interval, 1 s).
    let mut host = rig.started(params);
    host.ok("job id=3");
    host.ok("job id=4 batch=1 script_len=200000");
    let both = wait_for(30 * SEC, || (names_in(&refused_dir).len() == 2).then_some(()));
    assert!(both.is_some(), "job 4 set aside too: {:?}; log:\n{}", names_in(&refused_dir), host.log_text());
    host.ok("sleep 1500");
    let log = host.quit();
    let errors: Vec<&String> = error_lines(&log);
    assert!(errors.len() == 1 && errors[0].contains("job 4"), "only job 4 is refused in the second run: {errors:?}");
    let refused = names_in(&refused_dir);

    // The third start: neither refused record comes back.
    let mut host = rig.started(&waiting_for_reports(params));
    host.ok("job id=5");
    rig.kafka.wait_ids(&rig.cluster, &ids(2..=3).into_iter().chain([5]).collect(), 30 * SEC);
    host.ok("sleep 500");
    host.ok("fini");
    let log = host.quit();
    assert!(log.iter().any(|l| l.contains("jobcomp/kafka")), "the second start's log is seen: {log:?}");
    let errors: Vec<&String> = error_lines(&log);
    println!("third start: errors={errors:?} state dir={:?}", names_in(&rig.state));
    assert!(errors.is_empty(), "nothing refused again: {errors:?}");
    let messages = rig.kafka.read_all(&rig.cluster);
    assert_eq!(job_ids(&messages), vec![2, 3, 5], "the normal records are delivered once, the refused ones never");
    assert_eq!(names_in(&refused_dir), refused, "each refused record is set aside once");
    assert!(!rig.state_file().exists(), "nothing saved for a later start");

    // The limit raised in JobCompLoc: `jobcomp-kafka resend` sends both, with
    // their record ids, and removes their files.
    rig.write_properties(&[("message.max.bytes", "1000000")]);
    let args: Vec<String> = ["-d", &rig.state.to_string_lossy(), "resend", "--loc", &rig.loc.to_string_lossy()]
        .iter()
        .map(|a| a.to_string())
        .collect();
    let sent = jobcomp_kafka::ops::cli::run(&args);
    println!("resend: {sent:?}");
    assert_eq!(sent.code, 0, "resend sends every refused record: {sent:?}");
    let messages = rig.kafka.wait_ids(&rig.cluster, &ids(1..=5), 30 * SEC);
    assert_eq!(job_ids(&messages), vec![2, 3, 5, 1, 4], "the refused records follow, once each");
    let by_job = payloads_by_job(&messages);
    assert!(by_job[&1] == reference[&1], "job 1's record is delivered byte for byte as it was refused");
    for (name, m) in refused.iter().zip(&messages[3..]) {
        let id = name.split('.').nth(1).unwrap();
        assert_eq!(m.header("jobcomp.record_id").as_deref(), Some(id), "{name}: the record id it was refused with");
        assert_eq!(m.key_text(), name.split('.').next().unwrap(), "{name}: keyed by its job id");
    }
    assert!(names_in(&refused_dir).is_empty(), "the sent files are removed");
}

/// The oversized record's error line says what a site needs: the job, the
/// record's size, the limit that refused it (librdkafka's message.max.bytes
/// here) and how to raise both limits, and the command that sends it after.
#[test]
fn an_oversized_record_names_its_size_the_limit_and_the_remedy() {
    let t = target();
    let params = waiting_for_reports(if t.script_by_default() { "" } else { "send_script" });
    let rig = Rig::new("jk_big_line", &[("message.max.bytes", "100000")]);
    let mut host = rig.started(&params);
    host.ok("job id=7 batch=1 script_len=300000");
    host.ok("job id=8");
    rig.kafka.wait_ids(&rig.cluster, &ids(8..=8), 30 * SEC);
    let refused_dir = rig.state.join("jobcomp_kafka_refused");
    assert!(wait_for(30 * SEC, || (names_in(&refused_dir).len() == 1).then_some(())).is_some());
    host.ok("fini");
    let log = host.quit();
    let size = std::fs::metadata(refused_dir.join(&names_in(&refused_dir)[0])).unwrap().len();
    let errors = error_lines(&log);
    println!("oversized record line: {errors:?}");
    assert_eq!(errors.len(), 1, "one error line: {errors:?}");
    let line = errors[0];
    let loc = rig.loc.to_string_lossy();
    for needle in [
        "job 7".to_string(),
        format!("{size} bytes"),
        "message.max.bytes=100000".to_string(),
        format!("max.message.bytes (kafka-configs.sh --alter --entity-type topics --entity-name {}", rig.cluster),
        "librdkafka refuses it before any broker sees it".to_string(),
        format!("message.max.bytes in JobCompLoc ({loc})"),
        format!("jobcomp-kafka resend --loc {loc}`"),
    ] {
        assert!(line.contains(&needle), "the line names {needle:?}: {line}");
    }
}

/// A record the broker refuses as too large (MESSAGE_TOO_LARGE, the topic's
/// max.message.bytes; injected into the mock's next produce request, with
/// idempotence on as by default): it is set aside with an error line naming
/// the broker's limit, and the records behind it are delivered once each.
#[test]
fn a_record_the_broker_refuses_as_too_large_does_not_hold_up_the_rest() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let rig = Rig::new("jk_big_broker", &[]);
    let mut host = rig.started(&waiting_for_reports(""));
    host.ok("job id=1");
    rig.kafka.wait_ids(&rig.cluster, &ids(1..=1), 30 * SEC);
    rig.kafka.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE]);
    host.ok("job id=2");
    let refused_dir = rig.state.join("jobcomp_kafka_refused");
    let set_aside = wait_for(30 * SEC, || (names_in(&refused_dir).len() == 1).then_some(()));
    for id in 3..=6 {
        host.ok(&format!("job id={id}"));
    }
    let messages = rig.kafka.wait_ids(&rig.cluster, &[1, 3, 4, 5, 6].into(), 30 * SEC);
    host.ok("fini");
    let log = host.quit();
    let errors = error_lines(&log);
    println!("broker refusal: errors={errors:?} refused={:?}", names_in(&refused_dir));
    assert!(set_aside.is_some(), "job 2 is set aside; log:\n{}", log.join("\n"));
    assert!(names_in(&refused_dir)[0].starts_with("2."), "{:?}", names_in(&refused_dir));
    assert_eq!(job_ids(&messages), vec![1, 3, 4, 5, 6], "the others are delivered once each, in order");
    assert_eq!(errors.len(), 1, "one error line: {errors:?}");
    assert!(
        errors[0].contains("job 2: the broker refuses its record (Broker: Message size too large)")
            && errors[0].contains("above topic jk_big_broker's max.message.bytes"),
        "{}",
        errors[0]
    );
}

/// A topic that does not exist, on a broker that does not create topics
/// (auto.create.topics.enable=false): the records wait, one error line names
/// the topic and the remedy, and once the topic is created they are delivered
/// once each, without a restart. topic.metadata.propagation.max.ms is cut
/// from 30 s to 1 s only to keep the test short: it is how long librdkafka
/// waits for a topic to appear before it fails the records it holds.
#[test]
fn records_for_a_missing_topic_wait_until_it_is_created() {
    use rdkafka::types::RDKafkaRespErr;
    let rig = Rig::new("jk_no_topic", &[("topic.metadata.propagation.max.ms", "1000")]);
    rig.kafka.topic_error(&rig.cluster, RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    let mut host = rig.started(&waiting_for_reports(""));
    for id in 1..=5 {
        host.ok(&format!("job id={id}"));
    }
    let reported = host.wait_log(&["does not exist"], 1, 30 * SEC);
    // More records, and more attempts, while the topic is missing.
    for id in 6..=10 {
        host.ok(&format!("job id={id}"));
    }
    host.ok("sleep 3000");
    rig.kafka.topic_error(&rig.cluster, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR);
    let messages = rig.kafka.wait_ids(&rig.cluster, &ids(1..=10), 120 * SEC);
    host.ok("fini");
    let log = host.quit();
    let errors = error_lines(&log);
    let tally = Tally::of(&messages, 1..=10);
    println!("missing topic: {tally}; errors={errors:?}");
    assert!(reported, "the missing topic is reported; log:\n{}", log.join("\n"));
    assert!(tally.lost.is_empty() && tally.duplicated == 0 && tally.corrupt == 0, "{tally}");
    assert_eq!(errors.len(), 1, "one error line for the missing topic, not one per record or attempt: {errors:?}");
    for needle in ["jk_no_topic", "does not exist", "create it", "auto.create.topics.enable", "without a restart"] {
        assert!(errors[0].contains(needle), "the line says {needle:?}: {}", errors[0]);
    }
    assert!(log.iter().any(|l| l.contains("Kafka topic jk_no_topic exists now")), "its end is logged");
    assert!(!rig.state_file().exists(), "nothing left for a later start");
}

/// DebugFlags=JobComp logs the librdkafka properties, but never a secret's value
/// (SchedMD's plugin prints sasl.password in clear).
#[test]
fn debug_logging_hides_secrets() {
    let rig = Rig::new("jk_secret", &[("sasl.password", "TopSecret123"), ("ssl.key.password", "Other456"), ("sasl.username", "bob")]);
    let mut host = rig.host("");
    host.conf(&[("debug", "1")]);
    assert_eq!(host.cmd("init").rc, 0);
    host.ok("job id=1");
    assert_eq!(rig.kafka.wait_count(&rig.cluster, 1, 20 * SEC), 1);
    host.ok("fini");
    let log = host.quit();
    let shown: Vec<&String> = log.iter().filter(|l| l.contains("sasl.password") || l.contains("sasl.username")).collect();
    println!("property lines: {shown:?}");
    assert!(!shown.is_empty(), "DebugFlags=JobComp logs the properties");
    let leaked: Vec<&String> = log.iter().filter(|l| l.contains("TopSecret123") || l.contains("Other456")).collect();
    assert!(leaked.is_empty(), "secrets in the log: {leaked:?}");
}

/// Records waiting because librdkafka's queue was full go out as soon as it has
/// room, not one queue-full per poll_interval. poll_interval=3600 makes the
/// difference an event, not a stopwatch reading: a plugin that waits for the
/// interval between batches of 10 would need 19 hours; the bound is 120 s.
#[test]
fn backlog_drains_without_waiting_for_poll_interval() {
    let rig = Rig::new("jk_drain", &[("queue.buffering.max.messages", "10")]);
    let mut host = rig.started("poll_interval=3600");
    let started = Instant::now();
    host.ok("jobs 200 1");
    let seen = rig.kafka.wait_count(&rig.cluster, 200, 120 * SEC);
    let took = started.elapsed();
    println!("backlog drain: {seen} of 200 records in Kafka after {took:?}");
    assert_eq!(seen, 200, "200 records through a 10-message queue with poll_interval=3600; log:\n{}", host.log_text());
    let messages = rig.kafka.read_all(&rig.cluster);
    let tally = Tally::of(&messages, 1..=200);
    assert!(tally.lost.is_empty() && tally.duplicated == 0 && tally.corrupt == 0, "{tally}");
    host.ok("fini");
    host.quit();
}

/// After a reconfigure from poll_interval=3600 to 1 the new interval is the
/// one in use (the reconfigure line), and a delivery report is served and
/// logged (within a generous 60 s, far below the old interval).
///
/// NOT proven here: that the shorter interval applies at once. The
/// delivery thread serves reports every tick while a record is queued or in
/// flight, whatever poll_interval is; poll_interval only paces the outage
/// summary, itself at most once per 60 s (OUTAGE_SUMMARY_EVERY). A mutation
/// that ignores the new interval until the old one ran out (src/plugin.rs,
/// `next_poll` kept on reconfigure) passes this test; catching it takes an
/// outage of over a minute, left to a slower test.
#[test]
fn delivery_reports_are_served_after_a_reconfigure_from_a_long_poll_interval() {
    let rig = Rig::new("jk_repoll", &[]);
    let mut host = rig.host("poll_interval=3600");
    host.conf(&[("debug", "1")]);
    host.ok("init");
    host.ok("set_location");
    host.conf(&[("params", "poll_interval=1")]);
    host.ok("set_location");
    host.ok("job id=1");
    assert_eq!(rig.kafka.wait_count(&rig.cluster, 1, 20 * SEC), 1);
    // The old interval (an hour) against a generous bound (60 s): an event, not
    // a stopwatch reading.
    let arrived = Instant::now();
    let reported = host.wait_log(&["delivered"], 1, 60 * SEC);
    println!("poll_interval 3600 -> 1 by reconfigure: delivery report logged={reported} after {:?}", arrived.elapsed());
    host.ok("fini");
    let log = host.quit();
    assert!(reported, "the delivery report is served, long before the old interval of an hour");
    assert_eq!(settings_lines(&log, "started: "), ["poll_interval=3600 s"], "log:\n{}", log.join("\n"));
    assert_eq!(settings_lines(&log, "reconfigured: "), ["poll_interval=1 s"], "log:\n{}", log.join("\n"));
}

/// A record with NULL strings and pointers (no partition record, qos,
/// association, names), an array task and a missing batch script file.
#[test]
fn sparse_job_record() {
    let t = target();
    let rig = Rig::new("jk_sparse", &[]);
    let mut host = rig.started(if t.script_by_default() { "" } else { "send_script" });
    host.ok(
        "job id=77 name=%00 nodes=%00 alloc_node=%00 partition=%00 part_name=%00 work_dir=%00 std_in=%00 \
         std_out=%00 qos=%00 account=%00 user_name=%00 array_job_id=70 array_task_id=7 het_job_id=4294967294 \
         time_limit=4294967295 batch=1 script=%23!/bin/sh%0Aarray%0A",
    );
    // A batch job whose script file is gone (purged job): no script, no error.
    host.ok("job id=78 batch=1");
    rig.kafka.wait_count(&rig.cluster, 2, 20 * SEC);
    host.ok("fini");
    let log = host.quit();
    let messages = rig.kafka.read_all(&rig.cluster);
    assert_eq!(job_ids(&messages), vec![77, 78], "log:\n{}", log.join("\n"));
    let record = messages[0].json().expect("valid JSON");
    println!("sparse record: {record}");
    for key in ["partition", "alloc_node", "nodes", "container"] {
        assert!(record.get(key).is_some_and(Value::is_null), "{key} present as null: {record}");
    }
    for key in ["work_dir", "std_in", "std_out", "qos", "cluster", "parent_accounts", "account", "job_name", "time_limit"] {
        assert!(record.get(key).is_none(), "{key} omitted: {record}");
    }
    for key in ["pack_job_id", "het_job_id"] {
        assert!(record.get(key).is_none(), "{key} omitted when het_job_id is NO_VAL: {record}");
    }
    assert_eq!(record["array_job_id"], 70);
    assert_eq!(record["array_task_id"], 7);
    // The script of an array task is the array master's (hash.0/job.70/script).
    assert_eq!(str_field(&record, "script"), Some("#!/bin/sh\narray\n"), "{record}");
    assert_eq!(str_field(&record, "username"), Some("root"), "uid 0 resolved by name: {record}");
    let second = messages[1].json().expect("valid JSON");
    assert!(second.get("script").is_none(), "no script when the file is gone: {second}");
    let errors: Vec<&String> = error_lines(&log);
    assert!(errors.is_empty(), "{errors:?}");
}

/// Scheduling policy (stat field 41) and name of every thread of `pid`.
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).expect("the host's threads") {
        let task = entry.unwrap().path();
        let (Ok(name), Ok(stat)) = (std::fs::read_to_string(task.join("comm")), std::fs::read_to_string(task.join("stat")))
        else {
            continue; // the thread ended meanwhile
        };
        // Fields after the ")" that closes the name: field 3 is the first.
        let after_name = &stat[stat.rfind(')').expect("stat has a name") + 2..];
        let policy: u32 = after_name.split_whitespace().nth(41 - 3).and_then(|f| f.parse().ok()).expect("policy field");
        found.push((name.trim().to_string(), policy));
    }
    found
}

/// The plugin's threads and librdkafka's run as SCHED_BATCH (never preempting
/// slurmctld's threads when they wake); slurmctld's own threads keep theirs.
#[test]
fn plugin_threads_give_way_to_slurmctld() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    let rig = Rig::new("jk_sched", &[]);
    let mut host = rig.started("spool_sync_interval=1");
    host.ok("jobs 5 1");
    rig.kafka.wait_ids(&rig.cluster, &ids(1..=5), 20 * SEC);
    host.ok("sleep 1500"); // the sync thread has started
    let threads = thread_policies(host.pid());
    println!("threads: {threads:?}");
    let ours: Vec<&(String, u32)> = threads.iter().filter(|(n, _)| n.starts_with("jobcomp_")).collect();
    let librdkafka: Vec<&(String, u32)> = threads.iter().filter(|(n, _)| n.starts_with("rdk:")).collect();
    assert_eq!(ours.len(), 2, "delivery and sync threads: {threads:?}");
    assert!(librdkafka.len() >= 2, "librdkafka's main and broker threads: {threads:?}");
    for (name, policy) in ours.iter().chain(librdkafka.iter()) {
        assert_eq!(*policy, SCHED_BATCH, "{name}");
    }
    let main = threads.iter().find(|(n, _)| !n.starts_with("jobcomp_") && !n.starts_with("rdk:")).expect("the host's main thread");
    assert_eq!(main.1, SCHED_OTHER, "the host's own thread is left alone: {main:?}");
    host.ok("fini");
    host.quit();
}

/// The process ends without fini (23.11+ `scontrol reconfigure` re-execs
/// slurmctld that way; SchedMD's plugin drops its queue): the next start
/// delivers every record, once.
#[test]
fn exit_without_fini_loses_nothing() {
    let reference = &reference_records("jk_reexec", "", &["jobs 10 1"], &["jk_reexec"])[0];
    let rig = Rig::new("jk_reexec", &[]);
    rig.kafka.down();
    let mut host = rig.started("");
    host.ok("jobs 10 1");
    host.quit();
    rig.kafka.up();
    let (messages, _) = rig.replay("", &ids(1..=10), 20 * SEC);
    let tally = Tally::of(&messages, 1..=10);
    println!("exit without fini, then a new start: {tally}");
    assert_exact("exit without fini", &messages, reference, &BTreeSet::new(), 0);
    assert!(tally.lost.is_empty(), "{tally}");
    assert_eq!((tally.duplicated, tally.corrupt), (0, 0), "{tally}");
}

/// Two slurmctld processes on one StateSaveLocation (a backup controller taking
/// over while the primary still runs): the second one still starts (23.02+
/// slurmctld refuses to run when init fails), says why it runs without the
/// spool, and both deliver.
#[test]
fn two_controllers_one_state_directory() {
    let rig = Rig::new("jk_two", &[]);
    let mut first = rig.started("");
    first.ok("job id=1");
    let mut second = rig.host("");
    let rc = second.cmd("init").rc;
    second.ok("job id=2");
    rig.kafka.wait_ids(&rig.cluster, &ids(1..=2), 20 * SEC);
    first.ok("fini");
    second.ok("fini");
    let first_log = first.quit();
    let second_log = second.quit();
    let messages = rig.kafka.read_all(&rig.cluster);
    let tally = Tally::of(&messages, 1..=2);
    let state = rig.state.display().to_string();
    let errors: Vec<&String> = error_lines(&second_log);
    println!("second controller on the same StateSaveLocation: init rc={rc}, errors={errors:?}; {tally}");
    assert_eq!(rc, 0, "the second controller starts");
    assert!(errors.iter().any(|l| l.contains(&state)), "an error line names {state}: {errors:?}");
    assert!(error_lines(&first_log).is_empty(), "the first controller is undisturbed");
    assert!(tally.lost.is_empty() && tally.duplicated == 0, "{tally}");
}

/// Two controllers on one StateSaveLocation during an outage, both stopped:
/// the records both saved at fini are delivered at the next start.
#[test]
fn two_controllers_during_an_outage_lose_nothing() {
    let reference = &reference_records("jk_two_down", "", &["jobs 10 1"], &["jk_two_down"])[0];
    let rig = Rig::new("jk_two_down", &[("message.timeout.ms", "1000")]);
    rig.kafka.down();
    let mut first = rig.started("");
    first.ok("jobs 5 1");
    let mut second = rig.started("");
    second.ok("jobs 5 6");
    first.ok("fini");
    second.ok("fini");
    first.quit();
    second.quit();
    println!("state directory after both fini: {:?}", names_in(&rig.state));
    rig.kafka.up();
    let (messages, _) = rig.replay("", &ids(1..=10), 20 * SEC);
    let tally = Tally::of(&messages, 1..=10);
    println!("two controllers stopped during an outage, then a new start: {tally}");
    assert!(tally.lost.is_empty(), "lost {:?}: {tally}", tally.lost);
    assert_exact("two controllers during an outage", &messages, reference, &BTreeSet::new(), 0);
}
