// SPDX-License-Identifier: GPL-2.0-or-later
//! The delivery thread's park and wake (issue #25), with the plugin loaded the
//! way slurmctld loads it, against librdkafka's mock cluster.
//!
//! With nothing to do the delivery thread parks (FUTEX_WAIT) until the hot path
//! rings its bell or its next periodic duty falls due; it has no fixed tick
//! while idle. The thread is found by name (`jobcomp_kafka`) under
//! /proc/<host>/task; its wake-ups are its voluntary context switches (each
//! sleep ends one), and "parked" is "blocked in the futex system call".
//!
//! No assertion here is on elapsed time. Where a test must show that a record
//! did not wait for a periodic duty, the duties are set an hour apart
//! (`spool_sync_interval=3600,poll_interval=3600`, no metrics file): a record
//! that arrives within the test's deadline cannot have waited for one.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Duties an hour apart: only the bell can wake a parked thread in time.
const DUTIES_HOURLY: &str = "spool_sync_interval=3600,poll_interval=3600";
const DEADLINE: Duration = Duration::from_secs(60);

/// The delivery thread's /proc directory in the host process.
fn delivery_thread(host: &Host) -> PathBuf {
    let tasks = PathBuf::from(format!("/proc/{}/task", host.pid()));
    wait_for(Duration::from_secs(30), || {
        std::fs::read_dir(&tasks).ok()?.flatten().map(|e| e.path()).find(|task| {
            std::fs::read_to_string(task.join("comm")).is_ok_and(|comm| comm.trim_end() == "jobcomp_kafka")
        })
    })
    .unwrap_or_else(|| panic!("no thread named jobcomp_kafka in {}", tasks.display()))
}

/// Times the thread went to sleep (voluntary context switches).
fn sleeps(task: &std::path::Path) -> u64 {
    let status = std::fs::read_to_string(task.join("status")).expect("read task status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches in status")
}

/// Whether the thread is blocked in futex(2) right now (parked; a tick is
/// clock_nanosleep, and librdkafka's own threads are other tasks).
fn in_futex(task: &std::path::Path) -> bool {
    std::fs::read_to_string(task.join("syscall"))
        .is_ok_and(|s| s.split_whitespace().next() == Some(&libc::SYS_futex.to_string()))
}

/// Waits until the thread is parked: blocked in futex(2), twice in a row with
/// no sleep counted in between (it did not wake and park again meanwhile).
fn wait_parked(task: &std::path::Path) -> u64 {
    wait_for(DEADLINE, || {
        let before = sleeps(task);
        if !in_futex(task) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
        (in_futex(task) && sleeps(task) == before).then_some(before)
    })
    .expect("the delivery thread never parked")
}

fn host_with(rig: &Rig, params: &str) -> (Host, PathBuf) {
    let host = rig.started(params);
    let task = delivery_thread(&host);
    (host, task)
}

/// An idle plugin (broker up, no job) does not wake at a fixed tick: over a
/// few seconds its delivery thread sleeps no more often than its periodic
/// duties could wake it (spool sync every 1 s and poll every 2 s, the
/// defaults; metrics off). A 10 ms tick would be hundreds of wake-ups.
#[test]
fn an_idle_plugin_wakes_only_for_its_periodic_duties() {
    let rig = Rig::new("jk_wake_idle", &[]);
    let (mut host, task) = host_with(&rig, "spool_sync_interval=1,poll_interval=2");
    // One record first: the thread has been busy, and goes idle again.
    host.ok("jobs 1 1");
    rig.kafka.wait_ids(&rig.cluster, &ids(1..=1), DEADLINE);
    // Its delivery report served and its sync done (not a timed assertion).
    std::thread::sleep(Duration::from_secs(2));
    let before = sleeps(&task);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let after = sleeps(&task);
    let window = started.elapsed().as_secs_f64();
    // Every duty as if always due, rounded up, plus one for each duty in flight
    // at either edge of the window.
    let bound = (window / 1.0).ceil() as u64 + (window / 2.0).ceil() as u64 + 2;
    let woke = after - before;
    println!("idle: {woke} wake-ups of the delivery thread in {window:.1} s (bound {bound})");
    assert!(woke <= bound, "the idle delivery thread woke {woke} times in {window:.1} s: more than its duties ({bound})");
    host.ok("fini");
}

/// A record logged while the delivery thread is parked is produced without
/// waiting for a periodic duty: with every duty an hour away, it reaches the
/// topic within the test's deadline, and the thread woke a handful of times
/// for it (the bell, then ticks until its delivery report), not for a duty.
#[test]
fn a_record_logged_while_parked_is_produced_at_once() {
    let rig = Rig::new("jk_wake_prompt", &[]);
    let (mut host, task) = host_with(&rig, DUTIES_HOURLY);
    host.ok("jobs 1 1");
    rig.kafka.wait_ids(&rig.cluster, &ids(1..=1), DEADLINE);
    for round in 2..=4u32 {
        let before = wait_parked(&task);
        host.ok(&format!("jobs 1 {round}"));
        let got = rig.kafka.wait_ids(&rig.cluster, &ids(1..=round), DEADLINE);
        let ids_now: BTreeSet<u32> = got.iter().filter_map(|m| m.json()?["jobid"].as_u64()).map(|j| j as u32).collect();
        assert!(
            ids_now.contains(&round),
            "job {round}, logged while the delivery thread was parked, was not produced within {DEADLINE:?} (its \
             duties are an hour away): the hot path did not wake it; log:\n{}",
            host.log_text()
        );
        let after = wait_parked(&task);
        println!("round {round}: {} sleeps of the delivery thread for one record", after - before);
    }
    host.ok("fini");
}

/// No lost wake-up: several host threads log records (each call under one
/// lock, as slurmctld's job write lock), with duties an hour away, so that a
/// record whose wake-up was lost would wait for an hour.
/// - Four bursts: back to back, then with random gaps of up to 20 and 60 ms,
///   about as long as the delivery thread takes from a record to parking again
///   (a tick and the delivery report), so that records arrive at every phase
///   of its parking.
/// - Then 30 short rounds (2 threads x 3 records, gaps up to 5 ms), each
///   waited for before the next: a round's last record often comes while the
///   thread is busy with the others and about to park, and nothing comes after
///   it to wake the thread by chance.
///
/// Every record arrives, once.
#[test]
fn no_record_waits_for_a_duty_when_threads_log_while_the_thread_parks() {
    let rig = Rig::new("jk_wake_race", &[]);
    let (mut host, task) = host_with(&rig, DUTIES_HOURLY);
    let before = sleeps(&task);
    let mut next = 1u32;
    let check = |host: &Host, next: u32, what: &str| {
        let expected = ids(1..=next - 1);
        let got = rig.kafka.wait_ids(&rig.cluster, &expected, DEADLINE);
        let tally = Tally::of(&got, expected.iter().copied());
        assert!(
            tally.lost.is_empty(),
            "{what}: records {:?} did not arrive within {DEADLINE:?} (duties an hour away): a lost wake-up; {tally}; \
             log:\n{}",
            tally.lost,
            host.log_text()
        );
        assert_eq!(tally.duplicated, 0, "{tally}");
        tally
    };
    // (threads, records each, largest gap in us)
    for (threads, each, gap) in [(4u32, 100u32, 0u32), (3, 60, 60_000), (4, 50, 20_000), (3, 60, 60_000)] {
        host.ok(&format!("pace {gap}"));
        host.ok(&format!("jobs_threads {threads} {each} {next}"));
        next += threads * each;
    }
    check(&host, next, "bursts");
    host.ok("pace 5000");
    for round in 0..30 {
        host.ok(&format!("jobs_threads 2 3 {next}"));
        next += 6;
        check(&host, next, &format!("short round {round}"));
    }
    let tally = check(&host, next, "all");
    let slept = sleeps(&task) - before;
    println!("race: {tally}; {slept} sleeps of the delivery thread");
    // Not a check of the plugin: that the test made the thread sleep and wake
    // many times while records came.
    assert!(slept >= 100, "the delivery thread slept only {slept} times: the test did not exercise parking");
    host.ok("fini");
}

fn ids(range: std::ops::RangeInclusive<u32>) -> BTreeSet<u32> {
    range.collect()
}
