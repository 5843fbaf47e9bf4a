// SPDX-License-Identifier: GPL-2.0-or-later
//! A produce whose acknowledgement is lost is sent again by librdkafka: without
//! enable.idempotence the broker can store it twice. Measured with the plugin in
//! the C host against
//!   - tansu 0.6.0, through a proxy of our own that forwards one Produce request,
//!     waits for the broker's response and closes the connection instead of
//!     passing it on (ports 20220 tansu, 20221 proxy);
//!   - Apache Kafka itself, both lines of the rig (ci/rig/kafka.sh): 4.x and
//!     3.9.x, one test each (libtest runs them side by side), through the
//!     same proxy, which rewrites the broker's address in the metadata so that
//!     the producer keeps coming through it (ports from JK_KAFKA_TEST_PORT,
//!     default 20240: 4.x +0, its controller +1, its proxy +2; 3.9.x +3..+5).
//!     Ignored by a plain `cargo test` (they start a JVM each):
//!     `make idempotence-kafka`.
//!
//! Each prints its numbers: records produced / stored / duplicated / out of order.

mod common;
#[path = "support/tansu.rs"]
mod tansu;
#[path = "support/kafka.rs"]
mod kafka;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use tansu::{consume, started_host, Proxy, Tansu};


#[derive(Debug, Default)]
struct Counts {
    #[allow(dead_code)] // printed
    stored: usize,
    duplicated: usize,
    /// Per partition: records stored after a record of a later job.
    out_of_order: usize,
    missing: usize,
}

/// Counts over (partition, job id) in offset order; `produced` ids 1..=n.
fn count(n: u32, mut stored: Vec<(i64, i64, u32)>) -> Counts {
    stored.sort();
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    let mut highest: BTreeMap<i64, u32> = BTreeMap::new();
    let mut c = Counts { stored: stored.len(), ..Counts::default() };
    for &(partition, _offset, id) in &stored {
        *seen.entry(id).or_default() += 1;
        let top = highest.entry(partition).or_default();
        if id < *top {
            c.out_of_order += 1;
        }
        *top = (*top).max(id);
    }
    c.duplicated = seen.values().map(|k| k - 1).sum();
    c.missing = (1..=n).filter(|id| !seen.contains_key(id)).count();
    c
}

fn job_id(key: &[u8]) -> u32 {
    std::str::from_utf8(key).unwrap().parse().unwrap()
}

/// `idempotence`: the enable.idempotence line of the file (None: none, the plugin's default).
fn tansu_run(proxy: &Proxy, idempotence: Option<bool>) -> (Counts, Vec<String>) {
    run_through(proxy, idempotence, "")
}

/// 300 records through `proxy`, which loses one produce acknowledgement;
/// `tag` makes the topic names of one broker distinct.
fn run_through(proxy: &Proxy, idempotence: Option<bool>, tag: &str) -> (Counts, Vec<String>) {
    const N: u32 = 300;
    let bootstrap = format!("127.0.0.1:{}", proxy.port);
    let properties = format!(
        "bootstrap.servers={bootstrap}\nreconnect.backoff.max.ms=500\n{}",
        idempotence.map(|on| format!("enable.idempotence={on}\n")).unwrap_or_default()
    );
    let topic = format!("jk_dup{tag}_{}", idempotence.map_or("default".to_string(), |on| on.to_string()));
    let (_dir, mut host) = started_host(&format!("dup-{idempotence:?}"), &properties, &topic);
    let cuts_before = proxy.cuts_done.load(Ordering::SeqCst);
    proxy.cuts_left.store(1, Ordering::SeqCst);
    host.ok(&format!("jobs {N} 1"));
    let got = consume(&bootstrap, &topic, N as usize);
    let cut = proxy.cuts_done.load(Ordering::SeqCst) - cuts_before;
    assert_eq!(cut, 1, "the proxy lost one acknowledgement");
    host.ok("fini");
    let log = host.quit();
    let stored = got.iter().map(|m| (m.partition, m.offset, job_id(m.key.as_deref().unwrap()))).collect();
    // error_lines requires the start-up line first: an unread log cannot pass.
    let errors = common::error_lines(&log).into_iter().cloned().collect();
    (count(N, stored), errors)
}

#[test]
fn lost_acknowledgement_on_tansu() {
    let _broker = Tansu::start(20220, 20221);
    let proxy = Proxy::start(20221, 20220);
    let mut results = Vec::new();
    for idempotence in [Some(false), Some(true), None] {
        let (counts, errors) = tansu_run(&proxy, idempotence);
        println!("tansu, enable.idempotence={idempotence:?}, 300 records, 1 lost ack: {counts:?}; errors {errors:?}");
        assert_eq!(counts.missing, 0, "nothing lost: {counts:?}");
        assert!(errors.is_empty(), "{errors:?}");
        results.push(counts);
    }
    assert!(results[0].duplicated > 0, "without idempotence the lost ack duplicates records: {:?}", results[0]);
    for (what, c) in [("enable.idempotence=true", &results[1]), ("the plugin's default", &results[2])] {
        assert_eq!((c.duplicated, c.out_of_order), (0, 0), "{what}: {c:?}");
    }
}

/// The same against Apache Kafka (`version`: a kafka.sh alias; the node on
/// JK_KAFKA_TEST_PORT + `slot` * 3): with the plugin's defaults
/// (enable.idempotence=true) and with idempotence set on, a lost
/// acknowledgement leaves no duplicate; with it off, the count of duplicates
/// is printed (and must not be zero, or the cut did not test anything).
fn lost_acknowledgement_on_kafka(version: &str, slot: u16) {
    let base: u16 = std::env::var("JK_KAFKA_TEST_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(20240);
    let port = base + 3 * slot;
    let broker = kafka::Kafka::start(version, port);
    let proxy = Proxy::start_rewriting(port + 2, broker.port, true);
    let mut results = Vec::new();
    for idempotence in [Some(false), Some(true), None] {
        let (counts, errors) = run_through(&proxy, idempotence, "_kafka");
        println!(
            "Apache Kafka {version}, enable.idempotence={idempotence:?}, 300 records, 1 lost ack: {counts:?}; errors {errors:?}"
        );
        assert_eq!(counts.missing, 0, "Kafka {version}: nothing lost: {counts:?}");
        assert!(errors.is_empty(), "Kafka {version}: {errors:?}");
        results.push(counts);
    }
    assert!(
        results[0].duplicated > 0,
        "Kafka {version}: without idempotence the lost ack duplicates records: {:?}",
        results[0]
    );
    for (what, c) in [("enable.idempotence=true", &results[1]), ("the plugin's default", &results[2])] {
        assert_eq!((c.duplicated, c.out_of_order), (0, 0), "Kafka {version}, {what}: {c:?}");
    }
}

#[test]
#[ignore = "starts an Apache Kafka JVM (ci/rig/kafka.sh): make idempotence-kafka"]
fn lost_acknowledgement_on_apache_kafka_4() {
    lost_acknowledgement_on_kafka("4", 0);
}

#[test]
#[ignore = "starts an Apache Kafka JVM (ci/rig/kafka.sh): make idempotence-kafka"]
fn lost_acknowledgement_on_apache_kafka_3_9() {
    lost_acknowledgement_on_kafka("3.9", 1);
}
