// SPDX-License-Identifier: GPL-2.0-or-later
//! JobCompParams (and ClusterName, from which the default topics come), under
//! every series' rules. Any text: settings within their documented bounds,
//! tokens of a newer series never take effect, explicit topics are valid Kafka
//! names, and the topics and the settings line are produced without a panic.
//!
//! Input: JobCompParams, then optionally a NUL and ClusterName.
#![no_main]
use jobcomp_kafka::config::{describe, parse_params, resolve_topics, topic_name_problem, TICK_MS_RANGE};
use jobcomp_kafka_fuzz::releases;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (params_bytes, cluster_bytes) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b"cluster1"[..]),
    };
    let text = String::from_utf8_lossy(params_bytes);
    let cluster = String::from_utf8_lossy(cluster_bytes);
    for release in releases() {
        let (params, problems) = parse_params(Some(&text), release);
        assert!(params.flush_timeout_ms >= -1);
        assert!(!params.poll_interval.is_zero() && !params.spool_sync_interval.is_zero());
        assert!(params.spool_max_mb >= 1);
        assert!(TICK_MS_RANGE.contains(&(params.tick.as_millis() as u64)));
        for topic in [&params.topic, &params.topic_job_start].into_iter().flatten() {
            assert_eq!(topic_name_problem(topic), None, "topic {topic:?} accepted");
        }
        if !release.at_least(25, 5, 0) {
            assert!(!params.enable_job_start && !params.send_script && params.topic_job_start.is_none());
        }
        if !release.at_least(26, 5, 0) {
            assert!(!params.send_comment);
        }
        assert!(problems.iter().all(|p| !p.text().is_empty()));
        let (topic, start_topic, _problems) = resolve_topics(&params, &cluster);
        if let Some(t) = &params.topic {
            assert_eq!(&topic, t);
        }
        if let Some(t) = &params.topic_job_start {
            assert_eq!(&start_topic, t);
        }
        let line = describe(&params, release, &topic, &start_topic);
        assert!(line.starts_with(&format!("topic={topic}, ")), "{line}");
    }
    let _ = parse_params(None, releases()[0]);
});
