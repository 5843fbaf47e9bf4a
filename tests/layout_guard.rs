// SPDX-License-Identifier: GPL-2.0-or-later
//! The run-time layout guard with the plugin loaded the way slurmctld loads
//! it (tests/host/slurmctld.c): a record that fails the guard refuses the
//! layout for the whole process with one error line, every later record is
//! refused without being touched (a pointer to an unmapped page does not
//! fault), the records not taken are counted, and a slurm_conf that does not
//! name this plugin refuses the layout at init while init still succeeds.
//!
//! The C host has no find_job_record: that check is skipped here (it runs in
//! the real slurmctld, tests/layout_guard26). No broker is needed: the
//! records the guard refuses never reach the producer; bootstrap.servers names
//! 127.0.0.1:20150 (this suite's port range), where nothing listens.

mod common;

use common::*;
use jobcomp_kafka::guard;
use std::time::Duration;

const FAILURE: &str = "layout guard: this plugin was built for Slurm";
const NOT_TAKEN: &str = "not taken since the last count";

/// A host with slurm_conf set and the plugin initialised (`extra_conf` after the defaults).
fn started(tag: &str, extra_conf: &[(&str, &str)]) -> (Host, TempDir) {
    let dir = TempDir::new(tag);
    let loc = dir.path().join("kafka.conf");
    std::fs::write(&loc, "bootstrap.servers=127.0.0.1:20150\n").unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut host = Host::slurmctld();
    host.conf(&[
        ("cluster", "guard"),
        ("loc", loc.to_str().unwrap()),
        ("state", state.to_str().unwrap()),
        ("params", "flush_timeout=100"),
    ]);
    if !extra_conf.is_empty() {
        host.conf(extra_conf);
    }
    let init = host.cmd("init");
    assert_eq!(init.rc, 0, "init; log:\n{}", host.log_text());
    (host, dir)
}

fn failure_lines(log: &[String]) -> Vec<&String> {
    log.iter().filter(|l| l.contains(FAILURE)).collect()
}

#[test]
fn a_record_failing_the_guard_refuses_the_layout_for_the_process() {
    let (mut host, _dir) = started("jk_guard_refuse", &[]);
    assert_eq!(host.cmd("job id=1").rc, 0, "a good record is taken; log:\n{}", host.log_text());
    // Still verifying (the first records are read checked): a broken details
    // magic refuses the layout.
    assert_eq!(host.cmd("job id=2 details_magic=0").rc, -1);
    // From now on nothing is read: a record on an unmapped page returns an
    // error instead of a SIGSEGV, and so does a good record.
    assert_eq!(host.cmd("record_at unmapped").rc, -1);
    assert_eq!(host.cmd("job id=3").rc, -1);
    host.ok("fini");
    let log = host.quit();
    let failures = failure_lines(&log);
    assert_eq!(failures.len(), 1, "one failure line: {failures:#?}");
    let line = failures[0];
    let layout = jobcomp_kafka::target::LAYOUT;
    for part in [
        format!("Slurm {}", jobcomp_kafka::target::RELEASE),
        format!("assuming the struct layout {}", guard::layout_name(layout, jobcomp_kafka::target::LAYOUT_FROM_SOURCE)),
        "job_details.magic is 0x00000000 where 0x0dea84e7 was expected".into(),
        "SLURM_SRC_DIR".into(),
    ] {
        assert!(line.starts_with("error: ") && line.contains(&part), "{part:?} missing in {line}");
    }
    // No line per record; the count of the 3 refused records at fini.
    let errors: Vec<&String> = log.iter().filter(|l| l.starts_with("error:") && !l.contains("librdkafka")).collect();
    assert_eq!(errors.len(), 2, "the failure line and the count, nothing per record: {errors:#?}");
    assert!(errors[1].contains(NOT_TAKEN) && errors[1].contains("3 job record(s)"), "{}", errors[1]);
}

#[test]
fn a_record_on_an_unmapped_page_is_refused_not_read() {
    let (mut host, _dir) = started("jk_guard_unmapped", &[]);
    assert_eq!(host.cmd("record_at unmapped").rc, -1);
    assert_eq!(host.cmd("job id=5").rc, -1, "the layout stays refused");
    let log = host.quit();
    let failures = failure_lines(&log);
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert!(failures[0].contains("job_record points at unreadable memory"), "{}", failures[0]);
}

#[test]
fn after_verification_a_record_failing_a_cheap_check_is_read_again_checked() {
    let (mut host, _dir) = started("jk_guard_verified", &[]);
    // The first records verify the layout; then reads are trusted.
    for id in 1..=5 {
        assert_eq!(host.cmd(&format!("job id={id}")).rc, 0, "log:\n{}", host.log_text());
    }
    assert!(failure_lines(&host.log()).is_empty());
    // A wrong job magic under a trusted layout: looked at again without
    // trusting anything, and refused.
    assert_eq!(host.cmd("job id=6 job_magic=0").rc, -1);
    assert_eq!(host.cmd("job id=7").rc, -1);
    let log = host.quit();
    let failures = failure_lines(&log);
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert!(failures[0].contains("job_record.magic is 0x00000000 where 0xf0b7392c was expected"), "{}", failures[0]);
}

#[test]
fn a_slurm_conf_that_does_not_name_this_plugin_refuses_the_layout_at_init() {
    // JobCompType is what slurmctld loaded us by: another value means the
    // slurm_conf_t members are not where this build reads them.
    let (mut host, _dir) = started("jk_guard_conf", &[("type", "jobcomp/elasticsearch")]);
    assert_eq!(host.cmd("job id=1").rc, -1, "no record is read");
    assert_eq!(host.cmd("record_at unmapped").rc, -1);
    host.ok("fini");
    assert!(host.wait_log(&[NOT_TAKEN, "2 job record(s)"], 1, Duration::from_secs(10)));
    let log = host.quit();
    let failures = failure_lines(&log);
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert!(
        failures[0].contains("slurm_conf.job_comp_type does not match what slurmctld loaded this plugin with"),
        "{}",
        failures[0]
    );
}

/// The job points to a partition record, so every struct the plugin reads is
/// laid out by the host (23_02_2 and 23_02_7 differ only in part_record).
const WITH_PARTITION: &str = "part_name=debug part_max_time=120";

/// The C host compiled with another layout's header (and the target's API
/// and plugin_version), so that its slurm_conf and job records are laid out
/// as another release lays them out: the plugin stays up, refuses that
/// layout with one line, and takes no record. Layouts of another series
/// differ in slurm_conf already (refused at init); those of the target's own
/// series only in the job record or the partition record it points to
/// (refused on the first record). The host's records are poisoned (undeclared bytes 0xa5, as real memory is never all
/// zero there). Own layout, poisoned: taken (the reader reads only its members).
#[test]
fn a_host_of_every_other_layout_is_refused_without_a_fault() {
    use jobcomp_kafka::release::Layout;
    let t = target();
    let dir = TempDir::new("jk_guard_cross");
    let loc = dir.path().join("kafka.conf");
    std::fs::write(&loc, "bootstrap.servers=127.0.0.1:20150\n").unwrap();
    let mut own = Host::slurmctld();
    let state = dir.path().join("state-own");
    std::fs::create_dir_all(&state).unwrap();
    own.conf(&[("cluster", "guard"), ("loc", loc.to_str().unwrap()), ("state", state.to_str().unwrap())]);
    own.ok("init");
    own.ok("poison");
    for id in 1..=4 {
        assert_eq!(own.cmd(&format!("job id={id} {WITH_PARTITION}")).rc, 0, "own layout, poisoned; log:\n{}", own.log_text());
    }
    assert!(failure_lines(&own.quit()).is_empty());
    let mut refused_on = Vec::new();
    for layout in Layout::ALL.into_iter().filter(|l| l.tag() != t.layout_tag) {
        let exe = compile_host_for(&dir.path().join(layout.tag()), layout.tag(), t.version_number);
        let state = dir.path().join(format!("state-{}", layout.tag()));
        std::fs::create_dir_all(&state).unwrap();
        let mut host = Host::start(&exe);
        host.conf(&[("cluster", "guard"), ("loc", loc.to_str().unwrap()), ("state", state.to_str().unwrap())]);
        assert_eq!(host.cmd("init").rc, 0, "{layout:?}: init fails instead of refusing; log:\n{}", host.log_text());
        host.ok("poison");
        for id in 1..=3 {
            assert_eq!(host.cmd(&format!("job id={id} {WITH_PARTITION}")).rc, -1, "{layout:?}: a record of another layout was taken");
        }
        let log = host.quit();
        let failures = failure_lines(&log);
        assert_eq!(failures.len(), 1, "{layout:?}: {failures:#?}\nlog:\n{}", log.join("\n"));
        let check = failures[0].split("does not match it: ").nth(1).unwrap_or("").split(". No job record").next();
        refused_on.push(format!("{:?}: {}", layout, check.unwrap_or("?")));
    }
    println!("host layouts refused by a {} plugin:\n{}", t.layout_tag, refused_on.join("\n"));
    assert_eq!(refused_on.len(), Layout::ALL.len() - 1);
}
