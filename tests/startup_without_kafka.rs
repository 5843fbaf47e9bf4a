// SPDX-License-Identifier: GPL-2.0-or-later
//! A JobCompLoc that cannot be turned into a Kafka producer (issue 15): init
//! still succeeds, the spool takes every record, the error line is repeated
//! with the number of records waiting, and once the file is fixed (a restart,
//! or set_location) every waiting record is delivered once, byte-exact. Kill -9
//! and fini in that mode lose nothing.
//!
//! The plugin is loaded by the C host (tests/host/slurmctld.c) against
//! librdkafka's mock cluster, as in tests/plugin_host.rs. The reminder period
//! (10 minutes) is shortened with the test-only JOBCOMP_KAFKA_TEST_REMINDER_MS,
//! which every host started here inherits.
//!
//! "Byte-exact" is checked two ways: the delivered bytes equal those fini saved
//! to the state file, and the same job records logged again once Kafka is set
//! up (the host builds identical job records for the same job ids) produce
//! exactly the bytes that were delivered from the spool.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);
const REMINDER_MS: &str = "400";
/// In every reminder line.
const REMINDER: &str = "record(s) wait in the spool until then";
/// In every "Kafka is not set up" line, with the remedy.
const NOT_SET_UP: &str = "Kafka is not set up: fix JobCompLoc, then restart slurmctld or run scontrol reconfigure";

fn shorten_reminder() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| std::env::set_var("JOBCOMP_KAFKA_TEST_REMINDER_MS", REMINDER_MS));
}

/// A host with the rig's cluster name and StateSaveLocation, JobCompLoc = `loc`
/// (`None`: not set), JobCompParams `params`; not initialised yet.
fn host_with_loc(rig: &Rig, loc: Option<&Path>, params: &str) -> Host {
    shorten_reminder();
    let mut host = Host::slurmctld();
    host.conf(&[("cluster", &rig.cluster), ("state", &rig.state.to_string_lossy()), ("params", params)]);
    if let Some(loc) = loc {
        host.conf(&[("loc", &loc.to_string_lossy())]);
    }
    host
}

/// The error lines that say Kafka is not set up and contain every needle.
fn not_set_up_lines(host: &Host, needles: &[&str]) -> Vec<String> {
    host.log()
        .into_iter()
        .filter(|l| l.starts_with("error:") && l.contains(NOT_SET_UP) && needles.iter().all(|n| l.contains(n)))
        .collect()
}

/// Messages of `topic` by job id.
fn by_job(messages: &[Msg]) -> BTreeMap<u32, Vec<&Msg>> {
    let mut map: BTreeMap<u32, Vec<&Msg>> = BTreeMap::new();
    for m in messages {
        if let Ok(id) = m.key_text().parse() {
            map.entry(id).or_default().push(m);
        }
    }
    map
}

/// Every job of `ids` in `messages` exactly twice (the one that waited, and the
/// same job logged again once Kafka was set up) with identical bytes, and valid.
fn assert_pairs_identical(messages: &[Msg], ids: &BTreeSet<u32>, what: &str) {
    let jobs = by_job(messages);
    assert_eq!(jobs.keys().copied().collect::<BTreeSet<u32>>(), *ids, "{what}: job ids in the topic");
    for (id, copies) in &jobs {
        assert_eq!(copies.len(), 2, "{what}: job {id}: {} message(s), expected the waiting one and the new one", copies.len());
        assert!(copies[0].json().is_some(), "{what}: job {id}: not valid JSON");
        assert_eq!(
            copies[0].payload, copies[1].payload,
            "{what}: job {id}: the record that waited differs from the same job's record built with Kafka set up"
        );
        assert_ne!(
            copies[0].header("jobcomp.record_id"),
            copies[1].header("jobcomp.record_id"),
            "{what}: job {id}: two records, two record ids"
        );
    }
}

/// Waits for every job of `ids` in `topic`; asserts each arrived once, valid.
fn assert_delivered_once(rig: &Rig, topic: &str, ids: &BTreeSet<u32>, what: &str) -> Vec<Msg> {
    let messages = rig.kafka.wait_ids(topic, ids, 30 * SEC);
    let tally = Tally::of(&messages, ids.iter().copied());
    println!("{what}: {tally}");
    assert!(tally.lost.is_empty() && tally.duplicated == 0 && tally.corrupt == 0, "{what}: {tally}");
    messages
}

/// One more start with the fixed file: nothing is produced a second time (no
/// "producing ... again" line, no state file after its fini, and the topic
/// still holds `messages` after 2 s).
fn assert_not_produced_again(rig: &Rig, messages: i64) {
    let mut host = rig.started("");
    std::thread::sleep(2 * SEC);
    host.ok("fini");
    let log = host.quit();
    assert_took_nothing_over(&log, &rig.state_file(), "the start after the one that delivered");
    assert_eq!(rig.kafka.count(&rig.cluster), Some(messages), "nothing produced a second time");
}

// ---------------------------------------------------------------------------

struct Case {
    name: &'static str,
    /// JobCompLoc (None: not set).
    loc: Option<PathBuf>,
    /// Text the error line must contain (file, line, property).
    needles: Vec<String>,
}

/// Every kind of bad JobCompLoc: the records are spooled, the line naming the
/// problem and the remedy is repeated with the number of records waiting, fini
/// saves them, and the next start with a fixed file delivers them once, with the
/// bytes fini saved, and identical to the same jobs' records built with Kafka set up.
#[test]
fn every_kind_of_bad_job_comp_loc_keeps_the_records() {
    let rig = Rig::new("jk_badloc", &[]);
    let dir = rig.tmp.path();
    let file = |name: &str, text: &str| -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let good = format!("bootstrap.servers={}\n", rig.kafka.bootstrap);
    let missing = dir.join("missing.conf");
    let directory = dir.join("a-directory.conf");
    std::fs::create_dir_all(&directory).unwrap();
    let no_equals = file("no-equals.conf", &format!("{good}this line has no equals sign\n"));
    let no_broker = file("no-broker.conf", "# nothing but\nmessage.timeout.ms=5000\n");
    let misspelt = file("misspelt.conf", &format!("# brokers\n{good}mesage.timeout.ms=5000\n"));
    let bad_value = file("bad-value.conf", &format!("{good}message.timeout.ms=soon\n"));
    let no_producer = file(
        "no-producer.conf",
        &format!("{good}security.protocol=ssl\nssl.ca.location={}\n", dir.join("no-such-ca.pem").display()),
    );
    let p = |path: &Path| path.display().to_string();
    let cases = vec![
        Case { name: "JobCompLoc not set", loc: None, needles: vec!["JobCompLoc is not set".into()] },
        Case { name: "missing file", loc: Some(missing.clone()), needles: vec![p(&missing), "Cannot read".into()] },
        Case { name: "unreadable (a directory)", loc: Some(directory.clone()), needles: vec![p(&directory), "Cannot read".into()] },
        Case { name: "line without =", loc: Some(no_equals.clone()), needles: vec![format!("{}:2:", p(&no_equals))] },
        Case { name: "no bootstrap.servers", loc: Some(no_broker.clone()), needles: vec![p(&no_broker), "bootstrap.servers".into()] },
        Case {
            name: "misspelt property",
            loc: Some(misspelt.clone()),
            needles: vec![format!("{}:3:", p(&misspelt)), "librdkafka rejected property mesage.timeout.ms".into()],
        },
        Case {
            name: "invalid value",
            loc: Some(bad_value.clone()),
            needles: vec![format!("{}:2:", p(&bad_value)), "librdkafka rejected property message.timeout.ms".into()],
        },
        Case {
            name: "producer cannot be created",
            loc: Some(no_producer.clone()),
            needles: vec![p(&no_producer), "cannot create the Kafka producer".into()],
        },
    ];

    let mut first_job = 1;
    for case in cases {
        let topic = format!("jk_badloc_{first_job}");
        rig.kafka.create_topic(&topic, 1);
        let params = format!("topic={topic}");
        let ids: BTreeSet<u32> = (first_job..first_job + 3).collect();
        let needles: Vec<&str> = case.needles.iter().map(String::as_str).collect();

        // 1. Kafka cannot be set up: init and set_location succeed, the spool takes the records.
        let mut host = host_with_loc(&rig, case.loc.as_deref(), &params);
        host.ok("init");
        host.ok("set_location");
        assert_eq!(host.cmd(&format!("jobs 3 {first_job}")).rc, 0, "{}: records are taken", case.name);
        // Twice with the 3 records: the line is repeated.
        let waiting = host.wait_log(&[NOT_SET_UP, "; 3 record(s) wait in the spool"], 2, 10 * SEC);
        let lines = not_set_up_lines(&host, &needles);
        println!("{}: {} error line(s); last: {}", case.name, lines.len(), lines.last().map(String::as_str).unwrap_or("-"));
        assert!(waiting, "{}: the line repeated with 3 records waiting; log:\n{}", case.name, host.log_text());
        assert!(
            lines.len() >= 2 && lines.iter().all(|l| l.contains(REMINDER) && l.contains("repeated every 400 ms")),
            "{}: the error line names {needles:?} and is repeated; log:\n{}",
            case.name,
            host.log_text()
        );
        assert_eq!(rig.kafka.count(&topic), Some(0), "{}: nothing produced", case.name);

        // 2. fini hands them over to the state file, as after an outage.
        host.ok("fini");
        let log = host.quit();
        assert!(
            log.iter().any(|l| l.contains("saved 3 undelivered record(s)")),
            "{}: fini saves the 3 records; log:\n{}",
            case.name,
            log.join("\n")
        );
        let (_, saved) = decode_state(&std::fs::read(rig.state_file()).unwrap(), target().state_has_event())
            .unwrap_or_else(|e| panic!("{}: state file: {e}", case.name));
        let saved: BTreeMap<u32, Vec<u8>> = saved.into_iter().map(|s| (s.job_id, s.payload)).collect();
        assert_eq!(saved.keys().copied().collect::<BTreeSet<u32>>(), ids, "{}: saved job ids", case.name);

        // 3. The file fixed, the next start delivers them, byte for byte as saved.
        let mut host = rig.started(&params);
        let messages = assert_delivered_once(&rig, &topic, &ids, &format!("{}: after the fix", case.name));
        for m in &messages {
            let id: u32 = m.key_text().parse().unwrap();
            assert_eq!(m.payload, saved[&id], "{}: job {id}: delivered bytes differ from the saved ones", case.name);
        }
        // The same jobs again, with Kafka set up: the same bytes.
        host.ok(&format!("jobs 3 {first_job}"));
        rig.kafka.wait_count(&topic, 6, 20 * SEC);
        host.ok("fini");
        host.quit();
        assert_pairs_identical(&rig.kafka.read_all(&topic), &ids, case.name);
        first_job += 10;
    }
}

/// Without the test override the line is repeated every 10 minutes, and says so.
#[test]
fn the_reminder_period_is_ten_minutes_by_default() {
    let rig = Rig::new("jk_period", &[]);
    std::fs::write(&rig.loc, "bootstrap.servers=127.0.0.1:9\nno.such.property=1\n").unwrap();
    // Not through host_with_loc: this host must not inherit the override.
    let mut host = Host::start(&{
        let exe = rig.tmp.path().join("slurmctld");
        let script = format!(
            "#!/bin/sh\nexec env -u JOBCOMP_KAFKA_TEST_REMINDER_MS {} \"$@\"\n",
            host_binary().display()
        );
        std::fs::write(&exe, script).unwrap();
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        exe
    });
    rig.configure(&mut host, "");
    host.ok("init");
    host.ok("set_location");
    let line = wait_for(10 * SEC, || not_set_up_lines(&host, &["no.such.property"]).into_iter().next());
    println!("{}", line.as_deref().unwrap_or("(no line)"));
    assert!(line.is_some_and(|l| l.contains("repeated every 600 s")), "log:\n{}", host.log_text());
    host.ok("fini");
    host.quit();
}

/// set_location while Kafka is not set up reads JobCompLoc again (22.05 and
/// 23.02 run it in-process on `scontrol reconfigure`): the same problem is not
/// logged again, another one at once, and once the file is fixed the waiting
/// records are produced at once, byte-exact; nothing is left for the state file.
#[test]
fn set_location_sets_kafka_up_once_the_file_is_fixed() {
    let rig = Rig::new("jk_retry", &[]);
    let misspelt = format!("bootstrap.servers={}\nmesage.timeout.ms=5000\n", rig.kafka.bootstrap);
    std::fs::write(&rig.loc, &misspelt).unwrap();
    let mut host = host_with_loc(&rig, Some(&rig.loc), "");
    host.ok("init");
    host.ok("set_location");
    host.ok("jobs 5 1");
    assert!(host.wait_log(&[NOT_SET_UP, "; 5 record(s) wait"], 1, 10 * SEC), "log:\n{}", host.log_text());

    // Another problem: said at once (well before the next reminder would have said the old one).
    std::fs::write(&rig.loc, format!("bootstrap.servers={}\nmessage.timeout.ms=soon\n", rig.kafka.bootstrap)).unwrap();
    host.ok("set_location");
    assert!(
        host.wait_log(&[NOT_SET_UP, "message.timeout.ms", "5 record(s) wait"], 1, 5 * SEC),
        "the new problem is reported; log:\n{}",
        host.log_text()
    );
    let before_fix = not_set_up_lines(&host, &[]).len();

    // Fixed: set_location sets Kafka up and the 5 records are produced.
    rig.write_properties(&[]);
    host.ok("set_location");
    assert!(host.wait_log(&["Kafka is set up from", "records waiting in the spool are produced now"], 1, 5 * SEC));
    assert_delivered_once(&rig, &rig.cluster, &(1..=5).collect(), "set_location after the fix");
    println!("reminder lines before the fix: {before_fix}");
    let after = host.log_count(&[NOT_SET_UP]);
    std::thread::sleep(Duration::from_millis(3 * REMINDER_MS.parse::<u64>().unwrap()));
    assert_eq!(host.log_count(&[NOT_SET_UP]), after, "the reminder stops once Kafka is set up");

    host.ok("jobs 5 1");
    rig.kafka.wait_count(&rig.cluster, 10, 20 * SEC);
    host.ok("fini");
    let log = host.quit();
    assert_pairs_identical(&rig.kafka.read_all(&rig.cluster), &(1..=5).collect(), "set_location retry");
    assert!(!log.iter().any(|l| l.contains("undelivered record(s)")), "nothing left for the state file");
    assert!(!rig.state_file().exists() || decode_state(&std::fs::read(rig.state_file()).unwrap(), target().state_has_event()).unwrap().1.is_empty());
}

/// kill -9 while Kafka is not set up: the spool's crash guarantee holds; the
/// next start with a fixed file produces every record once, byte-exact.
#[test]
fn kill_9_while_kafka_is_not_set_up_loses_nothing() {
    let rig = Rig::new("jk_kill_noks", &[]);
    std::fs::write(&rig.loc, format!("bootstrap.servers={}\nmesage.timeout.ms=5000\n", rig.kafka.bootstrap)).unwrap();
    let mut host = host_with_loc(&rig, Some(&rig.loc), "");
    host.ok("init");
    host.ok("set_location");
    host.ok("jobs 20 1");
    // Some of them built and queued by the delivery thread, the last ones maybe
    // not yet: kill -9 either way.
    host.ok("sleep 300");
    host.ok("jobs 20 21");
    host.send_only("abort");
    let status = host.wait_exit(10 * SEC);
    assert_eq!(status.signal(), Some(9), "host died of SIGKILL: {status}");
    drop(host);
    assert!(!rig.state_file().exists(), "no fini, no state file");

    rig.write_properties(&[]);
    let mut host = rig.started("");
    let ids: BTreeSet<u32> = (1..=40).collect();
    assert_delivered_once(&rig, &rig.cluster, &ids, "kill -9 with Kafka not set up, then a start with the file fixed");
    assert!(host.wait_log(&["producing 40 record(s) again from the spool"], 1, 5 * SEC), "log:\n{}", host.log_text());
    host.ok("jobs 40 1");
    rig.kafka.wait_count(&rig.cluster, 80, 30 * SEC);
    host.ok("fini");
    host.quit();
    assert_pairs_identical(&rig.kafka.read_all(&rig.cluster), &ids, "kill -9");

    // Delivered once means never again.
    assert_not_produced_again(&rig, 80);
}

/// fini while Kafka is not set up, twice in a row (the file still wrong at the
/// second start): the records of both runs wait, nothing is lost or doubled,
/// and the start with the fixed file delivers them all once.
#[test]
fn fini_while_kafka_is_not_set_up_twice_then_fixed() {
    let rig = Rig::new("jk_fini_noks", &[]);
    std::fs::write(&rig.loc, "bootstrap.servers=127.0.0.1:9\nno.such.property=1\n").unwrap();
    for (run, first) in [(1, 1), (2, 11)] {
        let mut host = host_with_loc(&rig, Some(&rig.loc), "");
        host.ok("init");
        host.ok("set_location");
        host.ok(&format!("jobs 10 {first}"));
        let waiting = format!("; {} record(s) wait", 10 * run);
        assert!(host.wait_log(&[NOT_SET_UP, &waiting], 1, 10 * SEC), "run {run}: log:\n{}", host.log_text());
        host.ok("fini");
        host.quit();
    }
    rig.write_properties(&[]);
    let mut host = rig.started("");
    assert_delivered_once(&rig, &rig.cluster, &(1..=20).collect(), "two runs with Kafka not set up, then fixed");
    host.ok("fini");
    host.quit();
    assert_not_produced_again(&rig, 20);
}

/// With nowhere to keep the records (no StateSaveLocation), a bad JobCompLoc
/// still fails init, with both problems named.
#[test]
fn no_state_save_location_and_no_kafka_fails_init() {
    shorten_reminder();
    let tmp = TempDir::new("jk_nostate");
    let loc = tmp.path().join("missing.conf");
    let mut host = Host::slurmctld();
    host.conf(&[("cluster", "jk_nostate"), ("loc", &loc.to_string_lossy()), ("params", "")]);
    let rc = host.cmd("init").rc;
    host.cmd("job id=1");
    host.ok("fini");
    let log = host.quit();
    let line = log.iter().find(|l| l.starts_with("error:") && l.contains(&*loc.to_string_lossy()) && l.contains("StateSaveLocation is not set"));
    println!("init rc={rc}: {}", line.map(String::as_str).unwrap_or("(no line)"));
    assert_ne!(rc, 0, "init fails");
    assert!(line.is_some(), "log:\n{}", log.join("\n"));
}
