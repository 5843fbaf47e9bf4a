// SPDX-License-Identifier: GPL-2.0-or-later
//! compression.type=gzip|snappy|lz4|zstd: the plugin (in the C host) produces a
//! job mix to a real broker (tansu) through a byte-counting proxy, and a
//! consumer built on another librdkafka (confluent-kafka) reads every record
//! byte-exact: the same keys and payloads as the same mix sent uncompressed.
//! Ports: tansu 20210, proxy 20211.

mod common;
#[path = "support/tansu.rs"]
mod tansu;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use tansu::{consume, started_host, Proxy, Tansu};

/// Host commands of the mix and the number of records they make: plain jobs,
/// names with quotes, backslashes, control characters and non-ASCII text,
/// invalid UTF-8, a failed job.
const MIX: [&str; 5] = [
    "jobs 200 1",
    "job id=5001 name=a%22b%5Cc%09d%0A%C3%A9%E2%82%AC%F0%9F%9A%80 comment=x%01y",
    "job id=5002 raw=ff66fe6f80 work_dir=/home/%C3%BC/%FF",
    "job id=5003 comment=%E2%82%AC%E2%82%AC%E2%82%AC",
    "job id=5004 state=5 exit_code=9 derived_ec=256",
];
const RECORDS: usize = 204;

/// Runs the mix through the plugin with `compression.type=codec` into topic
/// jk_comp_<codec> and reads it back; returns what was read and the bytes
/// clients sent through the proxy meanwhile.
fn produce_mix(bootstrap: &str, proxy: &Proxy, codec: &str) -> (Vec<tansu::Consumed>, u64) {
    let before = proxy.bytes_up.load(Ordering::Relaxed);
    let topic = format!("jk_comp_{codec}");
    let properties = format!("bootstrap.servers={bootstrap}\ncompression.type={codec}\n");
    let (_dir, mut host) = started_host(&format!("comp-{codec}"), &properties, &topic);
    for line in MIX {
        host.ok(line);
    }
    let got = consume(bootstrap, &topic, RECORDS);
    let sent = proxy.bytes_up.load(Ordering::Relaxed) - before;
    host.ok("fini");
    let log = host.quit();
    // error_lines requires the start-up line first: an unread log cannot pass.
    let errors = common::error_lines(&log);
    assert!(errors.is_empty(), "{codec}: errors in the log:\n{}", log.join("\n"));
    (got, sent)
}

/// key -> payload, requiring every key once.
fn by_key(codec: &str, messages: &[tansu::Consumed]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut map = BTreeMap::new();
    for m in messages {
        let key = m.key.clone().unwrap_or_else(|| panic!("{codec}: a message without key"));
        assert!(map.insert(key.clone(), m.value.clone()).is_none(), "{codec}: key {key:?} twice");
    }
    map
}

#[test]
fn every_codec_delivers_the_mix_byte_exact() {
    let _broker = Tansu::start(20210, 20211);
    let proxy = Proxy::start(20211, 20210);
    let bootstrap = format!("127.0.0.1:{}", proxy.port);
    // Reference: the mix uncompressed.
    let (plain, plain_bytes) = produce_mix(&bootstrap, &proxy, "none");
    assert_eq!(plain.len(), RECORDS, "uncompressed: {} records", plain.len());
    let reference = by_key("none", &plain);
    let mut lines = vec![format!("none: {plain_bytes} bytes sent")];
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let (got, sent) = produce_mix(&bootstrap, &proxy, codec);
        assert_eq!(got.len(), RECORDS, "{codec}: {} of {RECORDS} records", got.len());
        let records = by_key(codec, &got);
        for (key, value) in &reference {
            assert_eq!(records.get(key), Some(value), "{codec}: record {:?} differs", String::from_utf8_lossy(key));
        }
        // Compressed on the wire: the JSON records compress well.
        assert!(sent < plain_bytes / 2, "{codec}: {sent} bytes sent, uncompressed {plain_bytes}");
        lines.push(format!("{codec}: {sent} bytes sent"));
    }
    println!("compression, {RECORDS} records each: {}", lines.join("; "));
}
