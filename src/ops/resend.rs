//! `jobcomp-kafka resend`: sends the records Kafka refused for good (set aside
//! in jobcomp_kafka_refused/) once the site has raised the limit that refused
//! them. A file is removed only after Kafka acknowledged its record.

use super::inspect::{refused, OpsError, StateDir};
use crate::config;
use crate::kafka::{Outcome, Producer};
use crate::plugin::RECORD_ID_HEADER;
use std::collections::HashMap;
use std::ffi::CString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What happened to one refused record.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Acknowledged by Kafka; its file removed.
    Delivered { path: PathBuf, topic: String, partition: i32, offset: i64 },
    /// Not acknowledged; its file stays.
    Failed { path: PathBuf, why: String },
}

/// The topic a refused record goes to: `topic` when given, else the record's
/// "cluster" field (the plugin's default topic is ClusterName).
pub fn topic_of(json: &[u8], topic: Option<&str>) -> Option<String> {
    if let Some(topic) = topic {
        return Some(topic.to_string());
    }
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    Some(value.get("cluster")?.as_str()?.to_string())
}

/// Sends every refused record with the librdkafka properties of `job_comp_loc`
/// (the JobCompLoc file), waiting up to `wait` for the acknowledgements.
pub fn resend(state: &StateDir, job_comp_loc: &str, topic: Option<&str>, wait: Duration) -> Result<Vec<Sent>, OpsError> {
    let properties = config::read_properties_file(job_comp_loc).map_err(|e| OpsError(e.to_string()))?;
    let producer = Producer::new(properties.iter().map(|p| (p.key.as_str(), p.value.as_str())))
        .map_err(|e| OpsError(format!("{job_comp_loc}: {e}")))?;
    let mut results = Vec::new();
    let mut pending: HashMap<u64, PathBuf> = HashMap::new();
    for record in refused(state)? {
        let path = record.path.clone();
        let json = match std::fs::read(&path) {
            Ok(json) => json,
            Err(e) => {
                results.push(Sent::Failed { path, why: e.to_string() });
                continue;
            }
        };
        let Some(name) = topic_of(&json, topic) else {
            results.push(Sent::Failed { path, why: "no \"cluster\" field to take the topic from; give --topic".into() });
            continue;
        };
        let Ok(name) = CString::new(name) else {
            results.push(Sent::Failed { path, why: "the topic name holds a NUL byte".into() });
            continue;
        };
        let key = record.job_id.to_string();
        let id = record.record_id.to_string();
        match producer.produce(&name, key.as_bytes(), &json, Some((RECORD_ID_HEADER, id.as_bytes())), record.record_id) {
            Ok(()) => {
                pending.insert(record.record_id, path);
            }
            Err(e) => results.push(Sent::Failed { path, why: format!("{e:?}") }),
        }
    }
    let deadline = Instant::now() + wait;
    while !pending.is_empty() && Instant::now() < deadline {
        for report in producer.poll(100) {
            let Some(path) = pending.remove(&report.opaque) else { continue };
            match report.outcome {
                Outcome::Delivered { partition, offset } => match std::fs::remove_file(&path) {
                    Ok(()) => results.push(Sent::Delivered { path, topic: report.topic, partition, offset }),
                    Err(e) => results.push(Sent::Failed {
                        path: path.clone(),
                        why: format!("delivered to {} [{partition}] at offset {offset}, but the file cannot be removed: {e}", report.topic),
                    }),
                },
                Outcome::TimedOut => results.push(Sent::Failed { path, why: "delivery timed out (message.timeout.ms)".into() }),
                Outcome::Failed { reason, .. } => results.push(Sent::Failed { path, why: reason }),
                Outcome::Purged { .. } => results.push(Sent::Failed { path, why: "purged".into() }),
            }
        }
    }
    for (_, path) in pending {
        results.push(Sent::Failed { path, why: format!("no acknowledgement within {} s", wait.as_secs()) });
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topic_is_given_or_the_cluster() {
        assert_eq!(topic_of(br#"{"cluster":"c1"}"#, None).as_deref(), Some("c1"));
        assert_eq!(topic_of(br#"{"cluster":"c1"}"#, Some("t")).as_deref(), Some("t"));
        assert_eq!(topic_of(br#"{"jobid":1}"#, None), None);
    }
}
