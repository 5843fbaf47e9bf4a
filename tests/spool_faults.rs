//! Fault tests for the crash-safe spool (issue 4): the plugin loaded by the C
//! host (tests/host/slurmctld.c) like slurmctld loads it, against librdkafka's
//! mock cluster. The bar in every case: 0 records lost, 0 corrupt; duplicates
//! are counted and must be recognisable (same bytes, same jobcomp.record_id).

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SEC: Duration = Duration::from_secs(1);

/// A small deterministic generator, seeded from the clock (the seed is printed).
struct Lcg(u64);

impl Lcg {
    fn new() -> Lcg {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
        println!("random seed: {seed}");
        Lcg(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn kill9(host: &mut Host) {
    unsafe { libc::kill(host.pid() as i32, libc::SIGKILL) };
    assert_eq!(host.wait_exit(10 * SEC).signal(), Some(9));
}

use std::os::unix::process::ExitStatusExt;

/// slurmctld killed at random points of a burst (1000 records), with the broker down and up
/// in turn (down first, so the spool path is always taken), five times over;
/// then a clean start with the broker up. The host records, in a shared
/// mapping that survives the kill, the id of the last record call that had
/// returned: every record up to it arrives, byte for byte, the tail of the
/// burst included; the one call cut by the kill may or may not have a record;
/// nothing after it exists. Extra copies only of records that a broker-up
/// round may have had in flight, with their record id, and at most one per
/// such round.
#[test]
fn sigkill_at_random_points_loses_nothing() {
    const ROUNDS: u32 = 5;
    const BURST: u32 = 1000;
    const PER_ROUND: u32 = 10 + BURST;
    let mut random = Lcg::new();
    let reference = &reference_records("jk_kill", "", &[&format!("jobs {} 1", ROUNDS * PER_ROUND)], &["jk_kill"])[0];
    let rig = Rig::new("jk_kill", &[("message.timeout.ms", "2000")]);
    let progress_file = rig.tmp.path().join("progress");
    let spool = rig.state.join("jobcomp_kafka_spool");
    let mut returned = BTreeSet::new();
    let mut cut = BTreeSet::new();
    let mut up_rounds_from: Vec<(u32, u32)> = Vec::new(); // (first id of the round, broker up)
    let mut next_id = 1u32;
    for round in 0..ROUNDS {
        let broker_up = round % 2 == 1;
        if broker_up {
            rig.kafka.up();
        } else {
            rig.kafka.down();
        }
        up_rounds_from.push((next_id, broker_up as u32));
        let mut host = Host::start_with_env(host_binary(), &[("JK_HOST_PROGRESS", progress_file.as_os_str())]);
        rig.configure(&mut host, "");
        host.ok("init");
        host.ok("set_location");
        for _ in 0..10 {
            host.ok(&format!("job id={next_id}"));
            returned.insert(next_id);
            next_id += 1;
        }
        // A burst the kill cuts at a random point: once the host reports that
        // call `at` of it has returned, it is killed (a few more may return
        // meanwhile; the progress read after the kill is what counts).
        let burst = next_id..next_id + BURST;
        let at = burst.start + random.below(u64::from(BURST) / 2) as u32;
        let read_progress = || {
            let bytes = std::fs::read(&progress_file).expect("the host's progress file");
            u64::from_ne_bytes(bytes[..8].try_into().unwrap()) as u32
        };
        // 100 us between records (slurmctld ends jobs one by one, not in a
        // tight loop): the burst lasts long enough for the kill to land in it
        // even on a loaded machine.
        host.ok("pace 100");
        host.send_only(&format!("jobs {BURST} {next_id}"));
        next_id += BURST;
        let reached = Instant::now() + 60 * SEC;
        while read_progress() < at && Instant::now() < reached {
            std::thread::sleep(Duration::from_micros(200));
        }
        kill9(&mut host);
        let last = read_progress();
        assert!(last >= at, "round {round}: the burst did not reach call {at} within 60 s (at {last})");
        assert!(last >= burst.start - 1 && last < burst.end, "round {round}: progress {last} outside the burst {burst:?}");
        returned.extend(burst.start..=last);
        if last + 1 < burst.end {
            cut.insert(last + 1);
        }
        if !broker_up {
            let segments: Vec<String> = names_in(&spool).into_iter().filter(|n| n.starts_with("seg-")).collect();
            assert!(!segments.is_empty(), "round {round}: broker down, the records are in the spool: {segments:?}");
        }
        println!(
            "round {round}: broker {}, killed after {} of the burst's {BURST} calls had returned",
            if broker_up { "up" } else { "down" },
            last + 1 - burst.start
        );
    }
    rig.kafka.up();
    let (mut host, _) = rig.started_taking_over(&waiting_for_reports(""), &returned);
    host.ok("fini");
    host.quit();

    let messages = rig.kafka.read_all(&rig.cluster);
    let delivered: BTreeSet<u32> = messages.iter().filter_map(|m| m.key_text().parse().ok()).collect();
    let cut_delivered: BTreeSet<u32> = cut.intersection(&delivered).copied().collect();
    let expected = only(reference, returned.iter().copied().chain(cut_delivered.iter().copied()));
    // A record may be in flight when a broker-up round is killed: the records
    // of that round and of every round before it (recovered in it).
    let last_up_start = up_rounds_from.iter().filter(|(_, up)| *up == 1).map(|(from, _)| *from).max();
    let up_rounds = up_rounds_from.iter().filter(|(_, up)| *up == 1).count();
    let may_repeat: BTreeSet<u32> = match last_up_start {
        Some(from) => expected.keys().copied().filter(|id| *id < from + PER_ROUND).collect(),
        None => BTreeSet::new(),
    };
    let extra = assert_exact("kill -9 x5", &messages, &expected, &may_repeat, up_rounds);
    println!(
        "kill -9 x{ROUNDS}: calls returned={} cut by the kill={} of which delivered={}, all byte-exact; \
         extra copies={} (of {} jobs)",
        returned.len(),
        cut.len(),
        cut_delivered.len(),
        extra.copies,
        extra.jobs.len()
    );
    assert!(!rig.state_file().exists(), "everything delivered: no state file left");
}

/// The broker goes down and up every few hundred milliseconds while 300 jobs
/// finish: every record arrives, duplicates are recognisable.
#[test]
fn broker_flapping_loses_nothing() {
    let reference = &reference_records("jk_flap", "", &["jobs 300 1"], &["jk_flap"])[0];
    let rig = Rig::new("jk_flap", &[("message.timeout.ms", "1000")]);
    let mut host = rig.started("poll_interval=1");
    let started = Instant::now();
    let mut down = false;
    for batch in 0..30u32 {
        host.ok(&format!("jobs 10 {}", batch * 10 + 1));
        if batch % 3 == 0 {
            down = !down;
            if down {
                rig.kafka.down();
            } else {
                rig.kafka.up();
            }
        }
        host.ok("sleep 100");
    }
    rig.kafka.up();
    let all: BTreeSet<u32> = (1..=300).collect();
    rig.kafka.wait_ids(&rig.cluster, &all, 90 * SEC);
    host.ok("fini");
    host.quit();
    let messages = rig.kafka.read_all(&rig.cluster);
    let tally = Tally::of(&messages, all.iter().copied());
    let duplicates = assert_duplicates_recognisable(&messages);
    println!("flapping broker for {:?}: {tally}, recognisable duplicates={duplicates}", started.elapsed());
    // Any record may be in flight when the broker goes down (5 times): at most
    // one copy more per outage, with its record id and bytes.
    let extra = assert_exact("flapping broker", &messages, reference, &all, 5);
    println!("flapping broker: extra copies {} of {} jobs", extra.copies, extra.jobs.len());
    assert!(tally.lost.is_empty(), "{tally}");
    assert_eq!(tally.corrupt, 0, "{tally}");
}

fn spool_files(state: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let dir = state.join("jobcomp_kafka_spool");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().and_then(|e| e.to_str()) == Some(suffix));
    files.sort();
    files
}

/// A crash leaves a spool; then bits are flipped in two of its files and a
/// torn entry is appended. The next start reports the damage with exactly one
/// error line per damaged file, naming it, cuts the torn tail, and still delivers every record: each one is in the
/// spool twice (its job fields and its JSON text), and one intact copy suffices.
#[test]
fn damaged_spool_files_are_reported_and_the_rest_delivered() {
    let reference = &reference_records("jk_damage", "", &["jobs 20 1"], &["jk_damage"])[0];
    let rig = Rig::new("jk_damage", &[("message.timeout.ms", "1000")]);
    rig.kafka.down();
    let mut host = rig.started("");
    host.ok("jobs 20 1");
    host.ok("sleep 500");
    host.quit(); // exit without fini, like a crash
    let snaps = spool_files(&rig.state, "snap");
    let dlvs = spool_files(&rig.state, "dlv");
    assert!(!snaps.is_empty() && !dlvs.is_empty(), "a spool is left: {:?}", names_in(&rig.state.join("jobcomp_kafka_spool")));
    // Flip a byte a quarter into the job fields, and one three quarters into
    // the JSON texts: two different records lose one of their two copies. (The
    // job fields' segment is allocated ahead of the writer: zeros follow its
    // last entry, so the quarters are of the part written.)
    let written = |bytes: &[u8]| bytes.iter().rposition(|&b| b != 0).map_or(0, |last| (last + 1).next_multiple_of(8));
    for (file, quarters) in [(&snaps[0], 1), (&dlvs[0], 3)] {
        let mut bytes = std::fs::read(file).unwrap();
        let at = written(&bytes) * quarters / 4;
        bytes[at] ^= 0x40;
        std::fs::write(file, &bytes).unwrap();
    }
    // And a torn entry right after the last one (a crash mid-write).
    let mut bytes = std::fs::read(&snaps[0]).unwrap();
    let first_entry = bytes[..64].to_vec();
    let end = written(&bytes);
    bytes.truncate(end);
    bytes.extend_from_slice(&first_entry[..40]);
    bytes.resize(end + 4096, 0);
    std::fs::write(&snaps[0], &bytes).unwrap();

    rig.kafka.up();
    let mut host = rig.started("");
    let all: BTreeSet<u32> = (1..=20).collect();
    rig.kafka.wait_ids(&rig.cluster, &all, 30 * SEC);
    let log = host.log_text();
    host.ok("fini");
    host.quit();
    let damage_lines: Vec<&str> = log.lines().filter(|l| l.starts_with("error:") && l.contains("checksum")).collect();
    let messages = rig.kafka.read_all(&rig.cluster);
    let tally = Tally::of(&messages, all.iter().copied());
    println!("damaged spool: {} damage line(s); {tally}", damage_lines.len());
    // Two files damaged: exactly two error lines, one naming each file.
    assert_eq!(damage_lines.len(), 2, "one error line per damaged file; log:\n{log}");
    for file in [&snaps[0], &dlvs[0]] {
        let named = format!("spool file {}: ", file.display());
        let naming: Vec<&&str> = damage_lines.iter().filter(|l| l.contains(&named)).collect();
        assert_eq!(naming.len(), 1, "one damage line names {}; lines: {damage_lines:#?}", file.display());
    }
    // The broker was down until the restart: nothing was in flight.
    assert_exact("damaged spool", &messages, reference, &BTreeSet::new(), 0);
    assert!(tally.lost.is_empty(), "{tally}");
    assert_eq!(tally.corrupt, 0, "{tally}");
}

/// A small tmpfs as StateSaveLocation: the spool fills it during an outage. An
/// error line says so, records are kept in memory meanwhile, a line says when
/// the disk has room again, and once the broker is back every record arrives.
#[test]
fn disk_full_keeps_records_in_memory_and_recovers() {
    let reference = &reference_records("jk_full", "", &["jobs 200 1"], &["jk_full"])[0];
    let rig = Rig::new("jk_full", &[("message.timeout.ms", "1000")]);
    let mount = rig.tmp.path().join("small");
    std::fs::create_dir_all(&mount).unwrap();
    let status = run(Command::new("mount").args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"]).arg(&mount)).map(|out| out.status);
    assert!(
        matches!(status, Ok(s) if s.success()),
        "this test needs root and a mountable tmpfs (CI runs as root): mount failed: {status:?}"
    );
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = run(Command::new("umount").arg(self.0));
        }
    }
    let _unmount = Unmount(&mount);
    // The disk is nearly full before the plugin starts.
    let filler = mount.join("filler");
    std::fs::write(&filler, vec![0u8; 440 * 1024]).unwrap();

    rig.kafka.down();
    let mut host = rig.host("");
    host.conf(&[("state", &mount.to_string_lossy())]);
    host.ok("init");
    host.ok("set_location");
    host.ok("jobs 150 1");
    assert!(
        host.wait_log(&["error:", "cannot write to the spool"], 1, 10 * SEC),
        "a full disk is reported; log:\n{}",
        host.log_text()
    );
    std::fs::remove_file(&filler).unwrap();
    host.ok("jobs 50 151");
    assert!(
        host.wait_log(&["spool", "writable again"], 1, 10 * SEC),
        "the spool's recovery is reported; log:\n{}",
        host.log_text()
    );
    rig.kafka.up();
    let all: BTreeSet<u32> = (1..=200).collect();
    rig.kafka.wait_ids(&rig.cluster, &all, 60 * SEC);
    host.ok("fini");
    let log = host.quit();
    let messages = rig.kafka.read_all(&rig.cluster);
    let tally = Tally::of(&messages, all.iter().copied());
    let full_lines = log.iter().filter(|l| l.contains("cannot write to the spool")).count();
    println!("disk full: {full_lines} error line(s) for the full disk; {tally}");
    assert_eq!(full_lines, 1, "one line per outage of the disk, not one per record");
    // The broker was down until every record had been submitted: none in flight.
    assert_exact("disk full", &messages, reference, &BTreeSet::new(), 0);
    assert!(tally.lost.is_empty(), "{tally}");
    assert_eq!(tally.corrupt, 0, "{tally}");
}

/// Records acknowledged before a crash are not produced again after it.
#[test]
fn acknowledged_records_are_not_produced_again_after_a_crash() {
    let reference = &reference_records("jk_acked", "", &["jobs 10 1"], &["jk_acked"])[0];
    let rig = Rig::new("jk_acked", &[]);
    let mut host = rig.started("");
    host.ok("jobs 10 1");
    let all: BTreeSet<u32> = (1..=10).collect();
    rig.kafka.wait_ids(&rig.cluster, &all, 20 * SEC);
    host.ok("sleep 1500"); // delivery reports served, acknowledgements written
    kill9(&mut host);
    let mut host = rig.started("");
    host.ok("sleep 2000");
    host.ok("fini");
    let log = host.quit();
    assert_took_nothing_over(&log, &rig.state_file(), "the start after kill -9");
    let messages = rig.kafka.read_all(&rig.cluster);
    let tally = Tally::of(&messages, all.iter().copied());
    println!("acknowledged then kill -9: {tally}");
    assert_eq!((tally.duplicated, tally.lost.len()), (0, 0), "{tally}");
    assert_exact("acknowledged then kill -9", &messages, reference, &BTreeSet::new(), 0);
}

/// Records Kafka acknowledged but the spool never marked (slurmctld killed
/// between the two; here the plugin is told to write no acknowledgement)
/// are found at the topic's tail at the next start, with the same record id
/// and bytes, and are not produced again; records of the new run still flow.
#[test]
fn records_kafka_holds_that_the_spool_does_not_know_of_are_not_produced_again() {
    let reference = &reference_records("jk_tail", "", &["jobs 40 1", "jobs 5 41"], &["jk_tail"])[0];
    let rig = Rig::new("jk_tail", &[]);
    let mut host = Host::start_with_env(host_binary(), &[("JOBCOMP_KAFKA_TEST_DROP_ACKS", std::ffi::OsStr::new("1"))]);
    rig.configure(&mut host, "");
    host.ok("init");
    host.ok("set_location");
    host.ok("jobs 40 1");
    let first: BTreeSet<u32> = (1..=40).collect();
    rig.kafka.wait_ids(&rig.cluster, &first, 20 * SEC);
    host.ok("sleep 500"); // delivery reports served (and their acknowledgements dropped)
    kill9(&mut host);
    let mut host = rig.started("");
    assert!(host.wait_log(&["record(s) recovered from the spool were already there"], 1, 30 * SEC), "{}", host.log_text());
    host.ok("jobs 5 41");
    let all: BTreeSet<u32> = (1..=45).collect();
    rig.kafka.wait_ids(&rig.cluster, &all, 30 * SEC);
    host.ok("sleep 1000");
    host.ok("fini");
    let log = host.quit();
    let retired: Vec<&String> = log.iter().filter(|l| l.contains("were already there")).collect();
    assert_eq!(retired.len(), 1, "{retired:?}");
    assert!(retired[0].contains(": 40 of the 40 record(s) recovered from the spool"), "{}", retired[0]);
    assert!(error_lines(&log).is_empty(), "{}", log.join("\n"));
    let messages = rig.kafka.read_all(&rig.cluster);
    let tally = Tally::of(&messages, all.iter().copied());
    println!("delivered, not marked in the spool, then kill -9: {tally}");
    assert_eq!((tally.duplicated, tally.lost.len()), (0, 0), "{tally}");
    assert_exact("delivered, not marked, kill -9", &messages, reference, &BTreeSet::new(), 0);
}

/// Records left in the spool by a crash go, at the next start, to the topic
/// they were produced to, even though the new configuration names another
/// (23.11+: `scontrol reconfigure` re-execs slurmctld without fini).
#[test]
fn recovered_records_keep_their_topic() {
    let reference = &reference_records("jk_topic_a", "", &["jobs 7 1"], &["jk_topic_a"])[0];
    let rig = Rig::new("jk_topic_a", &[("message.timeout.ms", "1000")]);
    rig.kafka.create_topic("jk_topic_b", 1);
    rig.kafka.down();
    let mut host = rig.started("topic=jk_topic_a");
    host.ok("jobs 5 1");
    host.ok("sleep 300");
    host.quit(); // no fini
    rig.kafka.up();
    let mut host = rig.started("topic=jk_topic_b");
    host.ok("jobs 2 6");
    let old: BTreeSet<u32> = (1..=5).collect();
    let new: BTreeSet<u32> = (6..=7).collect();
    rig.kafka.wait_ids("jk_topic_a", &old, 30 * SEC);
    rig.kafka.wait_ids("jk_topic_b", &new, 30 * SEC);
    host.ok("fini");
    host.quit();
    let (got_a, got_b) = (rig.kafka.read_all("jk_topic_a"), rig.kafka.read_all("jk_topic_b"));
    // The broker was down until the restart: nothing in flight, no copies.
    assert_exact("topic a", &got_a, &only(reference, old.iter().copied()), &BTreeSet::new(), 0);
    assert_exact("topic b", &got_b, &only(reference, new.iter().copied()), &BTreeSet::new(), 0);
    let in_a = Tally::of(&got_a, old.iter().copied());
    let in_b = Tally::of(&got_b, new.iter().copied());
    println!("topic a: {in_a}; topic b: {in_b}");
    assert!(in_a.lost.is_empty() && in_a.unexpected.is_empty(), "{in_a}");
    assert!(in_b.lost.is_empty() && in_b.unexpected.is_empty(), "{in_b}");
}

/// The job ids of the record texts in the spool's `.dlv` files, as text and as
/// zstd frames.
fn spooled_texts(state: &Path) -> (BTreeSet<u32>, BTreeSet<u32>) {
    use jobcomp_kafka::spool::{parse_segment, Kind};
    let (mut plain, mut compressed) = (BTreeSet::new(), BTreeSet::new());
    for path in spool_files(state, "dlv") {
        let bytes = std::fs::read(&path).unwrap_or_default();
        for entry in parse_segment(&bytes).0 {
            match entry.kind {
                Kind::Payload => plain.insert(entry.job_id),
                Kind::CompressedPayload => compressed.insert(entry.job_id),
                _ => false,
            };
        }
    }
    (plain, compressed)
}

/// An outage: once records have waited 2 s without an acknowledgement, the
/// texts of new ones are spooled as zstd frames (an outage fills the spool
/// about three times more slowly); before that, and whenever Kafka
/// acknowledges, as text (no CPU spent on records about to be delivered).
/// After a crash, the next start produces both kinds from the spool byte for
/// byte.
#[test]
fn records_spooled_during_an_outage_are_compressed_and_come_back_byte_exact() {
    let reference = &reference_records("jk_zstd", "", &["jobs 10 1", "jobs 10 11"], &["jk_zstd"])[0];
    let rig = Rig::new("jk_zstd", &[]);
    rig.kafka.down();
    let mut host = rig.started("");
    host.ok("jobs 10 1");
    host.ok("sleep 3000"); // ten records waiting, none acknowledged, for 3 s
    host.ok("jobs 10 11");
    let (first, later): (BTreeSet<u32>, BTreeSet<u32>) = ((1..=10).collect(), (11..=20).collect());
    let spooled = wait_for(30 * SEC, || {
        let (plain, compressed) = spooled_texts(&rig.state);
        (plain.len() + compressed.len() >= 20).then_some((plain, compressed))
    });
    let (plain, compressed) = spooled.unwrap_or_else(|| panic!("20 texts spooled; log:\n{}", host.log_text()));
    assert_eq!(plain, first, "the records of the first 2 s are spooled as text");
    assert_eq!(compressed, later, "the records after 2 s without an acknowledgement are compressed");
    host.quit(); // no fini: the next start produces from the spool
    rig.kafka.up();
    let all: BTreeSet<u32> = (1..=20).collect();
    let (messages, _) = rig.replay("", &all, 30 * SEC);
    let tally = Tally::of(&messages, all.iter().copied());
    println!("outage, compressed spool, crash, restart: {tally}");
    assert_exact("compressed during an outage", &messages, reference, &BTreeSet::new(), 0);
    assert!(tally.lost.is_empty() && tally.duplicated == 0, "{tally}");
}

/// A long outage: once the hot path has left a snapshot segment and every
/// record in it has its JSON text spooled and synced, the segment's `.snap`
/// file is deleted (each record is then on disk once, as its text). A crash
/// and a restart still deliver every record byte for byte.
#[test]
fn snapshot_files_go_once_their_records_texts_are_synced() {
    let params = "spool_max_mb=16"; // segments of 1 MiB: ~1,500 snapshots each
    let reference = &reference_records("jk_snapgone", params, &["jobs 3000 1"], &["jk_snapgone"])[0];
    let rig = Rig::new("jk_snapgone", &[]);
    rig.kafka.down();
    let mut host = rig.started(params);
    host.ok("jobs 3000 1");
    let first_snap = "seg-0000000000000000.snap";
    let gone = wait_for(30 * SEC, || {
        let (plain, compressed) = spooled_texts(&rig.state);
        let snaps = spool_files(&rig.state, "snap");
        let first_gone = !snaps.iter().any(|p| p.ends_with(first_snap));
        (plain.len() + compressed.len() >= 3000 && first_gone).then_some(snaps.len())
    });
    let left = gone.unwrap_or_else(|| {
        panic!("{first_snap} deleted once its texts are synced; spool: {:?}; log:\n{}", spool_files(&rig.state, "snap"), host.log_text())
    });
    assert!(left >= 1, "the segment the hot path writes to is kept");
    assert!(!spool_files(&rig.state, "dlv").is_empty());
    host.quit(); // no fini
    rig.kafka.up();
    let all: BTreeSet<u32> = (1..=3000).collect();
    let (messages, _) = rig.replay(params, &all, 60 * SEC);
    let tally = Tally::of(&messages, all.iter().copied());
    println!("outage past a snapshot segment, crash, restart: {tally}");
    assert_exact("snapshots deleted", &messages, reference, &BTreeSet::new(), 0);
    assert!(tally.lost.is_empty() && tally.duplicated == 0, "{tally}");
}

/// The spool's allocated size on disk (st_blocks), all files.
fn spool_disk_bytes(state: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(state.join("jobcomp_kafka_spool"))
        .map(|entries| entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.blocks() * 512).sum())
        .unwrap_or(0)
}

/// An outage longer than spool_max_mb holds: once the spool has reached the
/// limit (one error line), the records that come after wait in memory and
/// their texts are not written to the spool either, so it stops growing; and
/// every record is delivered once, byte for byte, when Kafka is back.
#[test]
fn past_spool_max_mb_records_wait_in_memory_not_in_the_spool_and_nothing_is_lost() {
    // At most some 5,700 records of this size fit in the mock cluster's
    // partition log (it drops the oldest past that), the reference's too.
    let (first, more) = (2000u32, 3000u32);
    let commands = [format!("jobs {first} 1"), format!("jobs {more} {}", first + 1)];
    let reference = &reference_records("jk_maxmb", "spool_max_mb=1", &[&commands[0], &commands[1]], &["jk_maxmb"])[0];
    let rig = Rig::new("jk_maxmb", &[]);
    let metrics = rig.tmp.path().join("jobcomp_kafka.prom");
    let params = format!("spool_max_mb=1,metrics_file={},metrics_interval=1", metrics.display());
    let waiting = r#"slurm_jobcomp_kafka_records_waiting{topic="jk_maxmb",event="finish"}"#;
    rig.kafka.down();
    let mut host = rig.started(&params);
    // The first records' snapshots fit; their texts, written after, take the
    // spool past 1 MiB (a burst may: the limit is checked as the hot path
    // spools a snapshot).
    host.ok(&commands[0]);
    wait_metric(&metrics, waiting, f64::from(first), 60 * SEC);
    let at_limit = spool_disk_bytes(&rig.state);
    host.ok(&commands[1]);
    assert!(
        host.wait_log(&["error:", "reached spool_max_mb=1"], 1, 60 * SEC),
        "the limit is reported; log:\n{}",
        host.log_text()
    );
    // Every record taken by the delivery thread: the later ones in memory only.
    let text = wait_metric(&metrics, waiting, f64::from(first + more), 60 * SEC);
    let after = spool_disk_bytes(&rig.state);
    let (plain, compressed) = spooled_texts(&rig.state);
    let texts = plain.len() + compressed.len();
    let memory_only = metrics_sample(&text, "slurm_jobcomp_kafka_records_memory_only").unwrap_or(-1.0);
    println!(
        "spool_max_mb=1, Kafka down: {at_limit} bytes on disk after {first} records, {after} after {more} more; \
         {texts} texts in the spool, {memory_only} records in memory only"
    );
    // Before this was fixed, the delivery thread wrote the text of a record
    // the hot path had refused to the spool anyway (0 in memory only, and the
    // spool grew by every record's text).
    assert!(memory_only > 0.0, "records past the limit wait in memory only; metrics:\n{text}");
    assert_eq!(texts as f64 + memory_only, f64::from(first + more), "each record in the spool or in memory, once");
    rig.kafka.up();
    let all: BTreeSet<u32> = (1..=first + more).collect();
    rig.kafka.wait_ids(&rig.cluster, &all, 120 * SEC);
    host.ok("fini");
    host.quit();
    let messages = rig.kafka.read_all(&rig.cluster);
    let tally = Tally::of(&messages, all.iter().copied());
    println!("spool_max_mb reached during an outage: {tally}");
    assert_exact("spool_max_mb reached", &messages, reference, &BTreeSet::new(), 0);
    assert!(tally.lost.is_empty() && tally.duplicated == 0, "{tally}");
}
