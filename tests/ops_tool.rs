// SPDX-License-Identifier: GPL-2.0-or-later
//! `jobcomp-kafka` (src/ops) on StateSaveLocations made with the plugin's own
//! writers: the spool's SnapshotLog and DeliveryLog, the state file's writer,
//! and a refused record as the delivery thread sets it aside. The status, dump
//! and verify commands of docs/operating.md's synopsis are run here; resend by
//! tests/e2e/test_monitoring.py.

use jobcomp_kafka::ops::cli::{self, EXIT_PROBLEMS, EXIT_TOO_OLD, EXIT_UNREADABLE};
use jobcomp_kafka::ops::inspect::{self, StateDir};
use jobcomp_kafka::plugin::REFUSED_DIR;
use jobcomp_kafka::snapshot::{codec, Event, JobSnapshot};
use jobcomp_kafka::spool::{self, segment_path, DeliveryLog, SnapshotLog, Suffix, SPOOL_DIR};
use jobcomp_kafka::state_file::{self, SavedMessage};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jk-ops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn payload(job: u32, end: &str) -> Vec<u8> {
    format!(r#"{{"jobid":{job},"cluster":"c1","@start":"2024-05-01T10:00:00","@end":"{end}"}}"#).into_bytes()
}

/// Records 1-4 snapshot + payload (2 acknowledged), record 5 snapshot only (a
/// crash before the delivery thread built it), a state file of one message, one
/// refused record.
fn make_state_dir(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    let spool_dir = dir.join(SPOOL_DIR);
    std::fs::create_dir_all(&spool_dir).unwrap();
    let mut snaps = SnapshotLog::new(&spool_dir, 0, 1 << 20);
    let mut dlv = DeliveryLog::new(&spool_dir, 0, BTreeMap::new());
    let ends = ["2024-05-01T11:00:00", "2024-05-01T11:00:10", "2024-05-01T11:00:20", "2024-05-01T11:00:30"];
    for (i, end) in ends.iter().enumerate() {
        let id = 100 + i as u64;
        let job = 10 + i as u32;
        let at = snaps.append(id, job, Event::Finish as u8, b"not decoded: a payload follows").unwrap();
        dlv.count_snapshot(at.segment);
        dlv.follow(snaps.segment());
        dlv.append_payload(id, job, Event::Finish as u8, b"c1-topic", &payload(job, end), false, false).unwrap();
    }
    dlv.append_acks(&[101, 103], &[0, 0]).unwrap();
    let job = JobSnapshot { job_id: 99, end_time: 1_714_561_300, start_time: 1_714_557_600, ..JobSnapshot::default() };
    let mut body = Vec::new();
    codec::encode(&job, &mut body);
    snaps.append(200, 99, Event::Finish as u8, &body).unwrap();
    drop(snaps);
    let saved = SavedMessage { event: Event::Finish, job_id: 7, payload: payload(7, "2024-04-30T00:00:00") };
    state_file::write(&dir, jobcomp_kafka::target::RELEASE, &[saved]).unwrap();
    std::fs::create_dir_all(dir.join(REFUSED_DIR)).unwrap();
    std::fs::write(dir.join(REFUSED_DIR).join("55.300.json"), payload(55, "2024-05-01T12:00:00")).unwrap();
    dir
}

fn run(args: &[&str]) -> cli::Outcome {
    cli::run(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

fn line_with<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("no line {start}: in\n{text}"))
}

#[test]
fn status_counts_what_waits_and_checks_the_age() {
    let dir = make_state_dir("status");
    let d = dir.to_str().unwrap();
    let out = run(&["-d", d, "status"]);
    assert_eq!(out.code, 0, "{out:?}");
    let text = &out.stdout;
    // 100 and 102 (payloads), 200 (snapshot only); 101 and 103 acknowledged.
    assert!(line_with(text, "waiting:").starts_with("waiting: 3 record(s), "), "{text}");
    let oldest = line_with(text, "oldest:");
    let prefix = "oldest: job 10, record 100, finish, topic c1-topic, 2024-05-01T11:00:00Z, waiting ";
    assert!(oldest.starts_with(prefix), "{oldest}");
    let age: i64 = oldest[prefix.len()..].trim_end_matches(" s").parse().unwrap();
    assert!((age - (jobcomp_kafka::plugin::unix_now() - 1_714_561_200)).abs() <= 2, "{oldest}");
    assert!(line_with(text, "newest:").starts_with("newest: job 99, record 200, finish, topic (the configured one), 2024-05-01T11:01:40Z"), "{text}");
    assert_eq!(line_with(text, "state file:"), "state file: 1 record(s) handed over at fini (produced at the next start)");
    assert!(line_with(text, "refused:").starts_with("refused: 1 record(s)"));
    assert!(line_with(text, "spool:").ends_with("not locked (no slurmctld uses it now)"), "{text}");

    // The monitoring check: the oldest record (2024) is older than a day.
    let out = run(&["-d", d, "status", "--max-age", "86400"]);
    assert_eq!(out.code, EXIT_TOO_OLD, "{out:?}");
    assert!(out.stdout.contains("CRITICAL"));
    let out = run(&["-d", d, "status", "--max-age", "100000000000"]);
    assert_eq!(out.code, 0, "{out:?}");

    // The lock holder: this process, holding the plugin's own lock.
    let lock = spool::SpoolLock::acquire(&dir.join(SPOOL_DIR)).unwrap();
    let out = run(&["-d", d, "status"]);
    let me = std::process::id();
    let spool_line = line_with(&out.stdout, "spool:");
    println!("{}", out.stdout);
    assert!(spool_line.contains(&format!("locked by pid {me} (")), "{spool_line}");
    drop(lock);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dump_gives_each_record_with_its_ids_topic_and_time() {
    let dir = make_state_dir("dump");
    let out = run(&["-d", dir.to_str().unwrap(), "dump"]);
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<serde_json::Value> = out.stdout.lines().map(|l| serde_json::from_str(l).expect(l)).collect();
    let summary: Vec<(String, Option<u64>, u64, Option<String>)> = lines
        .iter()
        .map(|l| {
            (
                l["state"].as_str().unwrap().to_string(),
                l["record_id"].as_u64(),
                l["job_id"].as_u64().unwrap(),
                l["topic"].as_str().map(String::from),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("waiting".into(), Some(100), 10, Some("c1-topic".into())),
            ("waiting".into(), Some(102), 12, Some("c1-topic".into())),
            ("waiting".into(), Some(200), 99, None),
            ("saved".into(), None, 7, None),
            ("refused".into(), Some(300), 55, None),
        ]
    );
    assert_eq!(lines[0]["time"], 1_714_561_200);
    assert_eq!(lines[0]["record"]["@end"], "2024-05-01T11:00:00");
    // The snapshot-only record is built as the plugin would build it.
    assert_eq!(lines[2]["record"]["jobid"], 99);
    assert_eq!(lines[2]["time"], 1_714_561_300);
    let only_refused = run(&["-d", dir.to_str().unwrap(), "dump", "--refused"]);
    assert_eq!(only_refused.stdout.lines().count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn verify_finds_a_flipped_bit_with_its_file_and_offset() {
    let dir = make_state_dir("verify");
    let d = dir.to_str().unwrap();
    let clean = run(&["-d", d, "verify"]);
    assert_eq!(clean.code, 0, "{clean:?}");
    assert!(clean.stdout.contains("no damage"), "{}", clean.stdout);
    let path = segment_path(&dir.join(SPOOL_DIR), 0, Suffix::Dlv);
    let mut bytes = std::fs::read(&path).unwrap();
    let second_entry = bytes.windows(2).rposition(|w| w == b"12").unwrap(); // inside job 12's JSON
    bytes[second_entry] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let out = run(&["-d", d, "verify"]);
    assert_eq!(out.code, EXIT_PROBLEMS, "{out:?}");
    let damage = line_with(&out.stdout, "DAMAGE");
    assert!(damage.starts_with(&format!("DAMAGE {}: byte ", path.display())), "{damage}");
    let offset: usize = damage.split("byte ").nth(1).unwrap().split(':').next().unwrap().parse().unwrap();
    assert!(offset <= second_entry && second_entry - offset < 200, "offset {offset} is the start of the damaged entry ({second_entry})");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn clear_errors_for_a_wrong_directory_and_another_format() {
    let empty = temp_dir("empty");
    let out = run(&["-d", empty.to_str().unwrap(), "status"]);
    assert_eq!(out.code, EXIT_UNREADABLE);
    assert!(out.stderr.contains("not a StateSaveLocation the jobcomp/kafka plugin has used"), "{}", out.stderr);
    let out = run(&["-d", "/nonexistent/state", "status"]);
    assert!(out.stderr.contains("no such directory"), "{}", out.stderr);

    let dir = make_state_dir("format");
    let path = segment_path(&dir.join(SPOOL_DIR), 0, Suffix::Snap);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] = b'2';
    std::fs::write(&path, &bytes).unwrap();
    let error = StateDir::open(&dir).unwrap_err();
    assert!(error.0.contains("format version 2") && error.0.contains("reads version 1"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&empty).unwrap();
}

#[test]
fn records_spooled_compressed_during_an_outage_are_dumped_and_verified_as_text() {
    let dir = temp_dir("compressed");
    let spool_dir = dir.join(SPOOL_DIR);
    std::fs::create_dir_all(&spool_dir).unwrap();
    let mut dlv = DeliveryLog::new(&spool_dir, 0, BTreeMap::new());
    let script = "#!/bin/bash\\n#SBATCH --time=1:00\\nsrun ./a.out --in /data/x\\n".repeat(40);
    let text = format!(r#"{{"jobid":42,"@start":"2024-05-01T10:00:00","@end":"2024-05-01T11:00:00","script":"{script}"}}"#);
    let at = dlv.append_payload(7, 42, Event::Finish as u8, b"c1-topic", text.as_bytes(), true, true).unwrap();
    assert!(at.zstd_len == Some(text.len() as u32) && (at.len as usize) < text.len() / 3, "{at:?}");
    drop(dlv);
    let file = std::fs::read(segment_path(&spool_dir, 0, Suffix::Dlv)).unwrap();
    assert!(!file.windows(12).any(|w| w == b"srun ./a.out"), "the text is not in the file as such");
    let out = run(&["-d", dir.to_str().unwrap(), "dump"]);
    assert_eq!(out.code, 0, "{out:?}");
    let line: serde_json::Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(line["record"], serde_json::from_str::<serde_json::Value>(&text).unwrap());
    assert_eq!(line["time"], 1_714_561_200);
    let status = run(&["-d", dir.to_str().unwrap(), "status"]);
    assert!(line_with(&status.stdout, "waiting:").starts_with("waiting: 1 record(s), "), "{}", status.stdout);
    let clean = run(&["-d", dir.to_str().unwrap(), "verify"]);
    assert_eq!(clean.code, 0, "{clean:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reading_changes_nothing() {
    let dir = make_state_dir("readonly");
    let listing = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = walk(dir).into_iter().map(|p| (p.display().to_string(), std::fs::read(&p).unwrap())).collect();
        files.sort();
        files
    };
    let before = listing(&dir);
    for args in [&["status"][..], &["dump"], &["verify"]] {
        let mut full = vec!["-d", dir.to_str().unwrap()];
        full.extend_from_slice(args);
        run(&full);
    }
    assert!(before == listing(&dir), "a read-only command changed the directory");
    let state = StateDir::open(&dir).unwrap();
    assert_eq!(inspect::waiting(&state, false).unwrap().len(), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
