// SPDX-License-Identifier: GPL-2.0-or-later
//! The metrics file (JobCompParams metrics_file) written by the plugin loaded
//! the way slurmctld loads it, against librdkafka's mock cluster: the figures
//! follow an outage and its end, and `promtool check metrics` (Debian's
//! prometheus package, ci/install-promtool.sh) accepts the file.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

fn promtool_accepts(path: &Path) {
    let out = run(Command::new("promtool").args(["check", "metrics"]).stdin(std::fs::File::open(path).unwrap()))
        .expect("promtool (ci/install-promtool.sh installs it)");
    assert!(
        out.status.success(),
        "promtool check metrics refuses the file:\n{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        read_metrics(path)
    );
}

#[test]
fn metrics_follow_an_outage_and_its_end() {
    let rig = Rig::new("jk_metrics", &[("message.timeout.ms", "1000")]);
    let metrics = rig.tmp.path().join("jobcomp_kafka.prom");
    let params = format!("metrics_file={},metrics_interval=1", metrics.display());
    rig.kafka.down();
    let mut host = rig.started(&params);
    host.ok("jobs 6 100");
    let waiting = r#"slurm_jobcomp_kafka_records_waiting{topic="jk_metrics",event="finish"}"#;
    let text = wait_metric(&metrics, waiting, 6.0, 20 * SEC);
    assert_eq!(metrics_sample(&text, r#"slurm_jobcomp_kafka_records_taken_total{event="finish"}"#), Some(6.0), "{text}");
    assert_eq!(metrics_sample(&text, r#"slurm_jobcomp_kafka_records_delivered_total{topic="jk_metrics",event="finish"}"#), Some(0.0));
    assert_eq!(metrics_sample(&text, "slurm_jobcomp_kafka_last_delivery_timestamp_seconds"), Some(0.0));
    assert!(metrics_sample(&text, r#"slurm_jobcomp_kafka_records_waiting_bytes{topic="jk_metrics",event="finish"}"#).unwrap() > 6.0 * 100.0);
    assert!(metrics_sample(&text, "slurm_jobcomp_kafka_spool_disk_bytes").unwrap() > 0.0, "{text}");
    assert_eq!(metrics_sample(&text, r#"slurm_jobcomp_kafka_log_record_duration_seconds_count"#), Some(6.0), "{text}");
    assert_eq!(metrics_sample(&text, r#"slurm_jobcomp_kafka_log_record_duration_seconds_bucket{le="+Inf"}"#), Some(6.0));
    assert!(text.contains(&format!("slurm_jobcomp_kafka_info{{version=\"{}\",slurm_release=", env!("CARGO_PKG_VERSION"))));
    promtool_accepts(&metrics);
    // message.timeout.ms=1000: each record times out while the broker is down.
    let text = wait_for(20 * SEC, || {
        let text = read_metrics(&metrics);
        (metrics_sample(&text, r#"slurm_jobcomp_kafka_delivery_failures_total{kind="timed_out"}"#)? >= 6.0).then_some(text)
    })
    .unwrap_or_else(|| panic!("no timeouts counted:\n{}", read_metrics(&metrics)));
    assert!(metrics_sample(&text, "slurm_jobcomp_kafka_oldest_waiting_record_age_seconds").is_some());

    rig.kafka.up();
    let text = wait_metric(&metrics, waiting, 0.0, 60 * SEC);
    assert_eq!(metrics_sample(&text, r#"slurm_jobcomp_kafka_records_delivered_total{topic="jk_metrics",event="finish"}"#), Some(6.0), "{text}");
    assert_eq!(metrics_sample(&text, "slurm_jobcomp_kafka_oldest_waiting_record_age_seconds"), Some(0.0));
    assert!(metrics_sample(&text, "slurm_jobcomp_kafka_last_delivery_timestamp_seconds").unwrap() > 1.7e9);
    host.ok("fini");
    host.quit();
    // fini wrote it once more; no temporary file is left beside it.
    promtool_accepts(&metrics);
    let left: Vec<String> = names_in(rig.tmp.path()).into_iter().filter(|n| n.contains("prom") && n != "jobcomp_kafka.prom").collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_bad_metrics_path_is_one_error_line_and_records_still_flow() {
    let rig = Rig::new("jk_metrics_bad", &[]);
    let missing = rig.tmp.path().join("no-such-dir/jk.prom");
    let mut host = rig.started(&format!("metrics_file={}", missing.display()));
    host.ok("jobs 3 1");
    rig.kafka.wait_count(&rig.cluster, 3, 30 * SEC);
    host.ok("fini");
    let log = host.quit();
    let errors: Vec<&String> = log.iter().filter(|l| l.starts_with("error:") && l.contains("metrics_file")).collect();
    assert_eq!(errors.len(), 1, "one error line naming metrics_file; log:\n{}", log.join("\n"));
    assert!(errors[0].contains("no-such-dir") && errors[0].contains("without metrics"), "{}", errors[0]);
    assert_eq!(rig.kafka.read_all(&rig.cluster).len(), 3, "records are delivered without metrics");
}
