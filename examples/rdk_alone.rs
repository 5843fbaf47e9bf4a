// SPDX-License-Identifier: GPL-2.0-or-later
//! "librdkafka alone" (bench, issue #25): the throughput limit the plugin's
//! pipeline is measured against. Sends prebuilt JSON payloads through the
//! plugin's own producer (`kafka::Producer`: the plugin's librdkafka build and
//! default properties, the record-id header, the key), with none of the
//! plugin's work (no snapshot, no JSON building, no spool), as fast as
//! librdkafka takes them, and waits until every one is acknowledged.
//!
//! The payloads are the JSON texts a plugin run spooled (`Payload` and
//! `CompressedPayload` entries of `jobcomp_kafka_spool/*.dlv`), cycled to
//! `--records`. Prints one JSON line: records, seconds from the first produce
//! to the last acknowledgement, and CPU seconds per thread group over that
//! time (this thread: "main"; librdkafka's: "librdkafka").
//!
//! Usage: rdk_alone --bootstrap HOST:PORT --topic T --spool DIR --records N [--property k=v ...]

use jobcomp_kafka::kafka::{Outcome, ProduceError, Producer};
use jobcomp_kafka::plugin::RECORD_ID_HEADER;
use jobcomp_kafka::spool::{self, Kind};
use std::collections::BTreeMap;
use std::time::Instant;

fn threads_cpu() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        let ns: f64 = stat.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let group = if comm.starts_with("rdk:") { "librdkafka".to_string() } else { "main".to_string() };
        *out.entry(group).or_insert(0.0) += ns / 1e9;
    }
    out
}

fn payloads(dir: &std::path::Path) -> Vec<(u32, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "dlv"))
        .collect();
    files.sort();
    let mut zstd = None;
    let mut out = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let (entries, _) = spool::parse_segment(&bytes);
        for entry in entries {
            if !matches!(entry.kind, Kind::Payload | Kind::CompressedPayload) {
                continue;
            }
            let Some((_topic, skip, zstd_len)) = spool::split_payload_entry(entry.kind, entry.body) else { continue };
            if let Some(text) = spool::payload_text(zstd_len, entry.body[skip..].to_vec(), &mut zstd) {
                out.push((entry.job_id, text));
            }
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opt = BTreeMap::new();
    let mut props: Vec<(String, String)> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{a} needs a value")).clone();
        if a == "--property" {
            let (k, val) = v.split_once('=').expect("--property k=v");
            props.push((k.into(), val.into()));
        } else {
            opt.insert(a.trim_start_matches("--").to_string(), v);
        }
    }
    let need = |k: &str| opt.get(k).cloned().unwrap_or_else(|| panic!("--{k} is required"));
    let records: usize = need("records").parse().expect("--records N");
    let topic = std::ffi::CString::new(need("topic")).unwrap();
    let texts = payloads(std::path::Path::new(&need("spool")));
    assert!(!texts.is_empty(), "no payloads in {}", need("spool"));
    // The texts and their keys, built before anything is timed.
    let keys: Vec<Vec<u8>> = texts.iter().map(|(job, _)| job.to_string().into_bytes()).collect();
    props.insert(0, ("bootstrap.servers".into(), need("bootstrap")));
    // The plugin's own producer settings (kafka::with_plugin_defaults), so
    // that "librdkafka alone" is the limit of the same configuration.
    let producer =
        Producer::new(jobcomp_kafka::kafka::with_plugin_defaults(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
            .expect("producer");
    // Connected and the producer id obtained (idempotence) before the clock starts,
    // as in the bench's one-core run (which starts 1 s after init).
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let _ = producer.poll(0);
    let cpu0 = threads_cpu();
    let t0 = Instant::now();
    let (mut acked, mut failed, mut next) = (0usize, 0usize, 0usize);
    while acked + failed < records {
        while next < records {
            let i = next % texts.len();
            let id = (next + 1).to_string();
            match producer.produce(&topic, &keys[i], &texts[i].1, Some((RECORD_ID_HEADER, id.as_bytes())), next as u64) {
                Ok(()) => next += 1,
                Err(ProduceError::QueueFull) => break,
                Err(e) => panic!("produce: {e:?}"),
            }
        }
        for report in producer.poll(if next < records { 0 } else { 100 }) {
            match report.outcome {
                Outcome::Delivered { .. } => acked += 1,
                _ => failed += 1,
            }
        }
        if next < records && producer.queue_len() > 0 {
            // Queue full: wait for reports as the plugin's thread would.
            for report in producer.poll(10) {
                match report.outcome {
                    Outcome::Delivered { .. } => acked += 1,
                    _ => failed += 1,
                }
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = threads_cpu();
    let cpu: BTreeMap<&String, f64> = cpu1.iter().map(|(k, v)| (k, v - cpu0.get(k).copied().unwrap_or(0.0))).collect();
    println!(
        "{}",
        serde_json::json!({
            "records": records, "acked": acked, "failed": failed, "distinct_payloads": texts.len(),
            "payload_bytes_mean": texts.iter().map(|(_, t)| t.len()).sum::<usize>() as f64 / texts.len() as f64,
            "seconds": secs, "rate": records as f64 / secs, "threads_cpu_s": cpu,
        })
    );
    drop(producer);
}
