//! Reading the last records of a topic back, to learn which of the records a
//! crashed run left in the spool had reached Kafka already.
//!
//! slurmctld killed (SIGKILL, power loss) between Kafka's acknowledgement of
//! a record and the acknowledgement's line in the spool leaves that record
//! outstanding; the next start would produce it again and a consumer would
//! read it twice (scenario 9 of docs/kafka-cluster.md: 63 copies). Those
//! records are the newest of their partitions, so the delivery thread reads
//! the tail of each partition once at start and keeps the records it finds
//! there, matched by their record id header *and* their bytes.
//!
//! librdkafka's simple consumer, without a consumer group (no group ACL, no
//! offsets committed), made from the plugin's own properties: the principal
//! needs READ (and DESCRIBE) on the topic.
//! Every failure is an `Err` with the reason; the caller then produces the
//! records again, as before.

use super::{conf_set, err_text, lower_librdkafka_threads};
use rdkafka_sys::bindings as rd;
use rdkafka_sys::types::RDKafkaRespErr as Err;
use std::collections::{HashMap, HashSet};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

/// What the tail of a topic holds of the records looked for.
#[derive(Debug, Default)]
pub struct Found {
    /// Record id -> the record's bytes, for the ids looked for that were found.
    pub records: HashMap<u64, Vec<u8>>,
    /// Records read (all partitions).
    pub read: usize,
}

/// Reads the last `per_partition` records of every partition of `topic` with
/// a consumer made from `properties`, within `within`, and returns those whose
/// `header` (a decimal record id) is one of `wanted`.
pub fn find_at_tail(
    properties: &[(String, String)],
    topic: &CStr,
    per_partition: i64,
    header: &CStr,
    wanted: &HashSet<u64>,
    within: Duration,
) -> Result<Found, String> {
    let deadline = Instant::now() + within;
    let mut consumer = TailConsumer::new(properties, topic)?;
    let mut open: HashMap<i32, i64> = HashMap::new();
    for partition in consumer.partitions(deadline)? {
        let (low, high) = consumer.watermarks(topic, partition, deadline)?;
        let from = low.max(high - per_partition);
        if from < high {
            consumer.start(partition, from)?;
            open.insert(partition, high);
        }
    }
    let mut found = Found::default();
    while !open.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{} partition(s) not read to their end within {} s", open.len(), within.as_secs()));
        }
        let Some(message) = consumer.poll(left.min(Duration::from_millis(500))) else { continue };
        let m = unsafe { message.0.as_ref() };
        match m.err {
            Err::RD_KAFKA_RESP_ERR_NO_ERROR => {
                found.read += 1;
                if let Some(id) = unsafe { header_value(message.0.as_ptr(), header) }.filter(|id| wanted.contains(id)) {
                    let bytes = if m.payload.is_null() {
                        Vec::new()
                    } else {
                        unsafe { std::slice::from_raw_parts(m.payload as *const u8, m.len) }.to_vec()
                    };
                    found.records.insert(id, bytes);
                }
                if open.get(&m.partition).is_some_and(|&high| m.offset + 1 >= high) {
                    open.remove(&m.partition);
                }
            }
            Err::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                open.remove(&m.partition);
            }
            Err::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED => {
                return Err(format!("{} (the principal needs READ on the topic)", err_text(m.err)));
            }
            // Transient (a leader moving, a connection dropped): librdkafka
            // fetches again on its own until the deadline.
            _ => {}
        }
    }
    Ok(found)
}

/// The decimal number in the message's last `header`, if any.
unsafe fn header_value(message: *mut rd::rd_kafka_message_t, header: &CStr) -> Option<u64> {
    let mut headers: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    if rd::rd_kafka_message_headers(message, &mut headers) != Err::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
        return None;
    }
    let mut value: *const c_void = std::ptr::null();
    let mut size = 0usize;
    if rd::rd_kafka_header_get_last(headers, header.as_ptr(), &mut value, &mut size) != Err::RD_KAFKA_RESP_ERR_NO_ERROR
        || value.is_null()
    {
        return None;
    }
    std::str::from_utf8(std::slice::from_raw_parts(value as *const u8, size)).ok()?.parse().ok()
}

fn millis_until(deadline: Instant) -> c_int {
    deadline.saturating_duration_since(Instant::now()).as_millis().clamp(1, c_int::MAX as u128) as c_int
}

/// librdkafka's lines for this short-lived consumer are not slurmctld's
/// business (among them, one per producer property it ignores); what went
/// wrong comes back as the `Err` of `find_at_tail`.
unsafe extern "C" fn quiet(_rk: *const rd::rd_kafka_t, _level: c_int, _facility: *const c_char, _text: *const c_char) {}

/// librdkafka's simple (legacy) consumer: partitions started at an offset on
/// one queue, no consumer group (so no group ACL and no offsets committed).
struct TailConsumer {
    rk: NonNull<rd::rd_kafka_t>,
    rkt: *mut rd::rd_kafka_topic_t,
    queue: *mut rd::rd_kafka_queue_t,
    started: Vec<i32>,
}

struct Message(NonNull<rd::rd_kafka_message_t>);

impl Drop for Message {
    fn drop(&mut self) {
        unsafe { rd::rd_kafka_message_destroy(self.0.as_ptr()) }
    }
}

impl TailConsumer {
    fn new(properties: &[(String, String)], topic: &CStr) -> Result<TailConsumer, String> {
        unsafe {
            let conf = rd::rd_kafka_conf_new();
            let own = [("enable.partition.eof", "true")];
            let all = properties.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(own);
            for (key, value) in all {
                if let Err(reason) = conf_set(conf, key, value) {
                    rd::rd_kafka_conf_destroy(conf);
                    return Err(reason);
                }
            }
            rd::rd_kafka_conf_set_log_cb(conf, Some(quiet));
            lower_librdkafka_threads(conf);
            let mut errstr = [0 as c_char; 512];
            let rk = rd::rd_kafka_new(rd::rd_kafka_type_t::RD_KAFKA_CONSUMER, conf, errstr.as_mut_ptr(), errstr.len());
            // On failure `conf` is not destroyed (see Producer::new).
            let Some(rk) = NonNull::new(rk) else {
                return Err(format!("cannot create a consumer: {}", CStr::from_ptr(errstr.as_ptr()).to_string_lossy()));
            };
            let rkt = rd::rd_kafka_topic_new(rk.as_ptr(), topic.as_ptr(), std::ptr::null_mut());
            let queue = rd::rd_kafka_queue_new(rk.as_ptr());
            let consumer = TailConsumer { rk, rkt, queue, started: Vec::new() };
            if rkt.is_null() || queue.is_null() {
                return Err("cannot set up the consumer's topic and queue".into());
            }
            Ok(consumer)
        }
    }

    /// The topic's partition ids.
    fn partitions(&self, deadline: Instant) -> Result<Vec<i32>, String> {
        unsafe {
            let mut metadata: *const rd::rd_kafka_metadata = std::ptr::null();
            let code = rd::rd_kafka_metadata(self.rk.as_ptr(), 0, self.rkt, &mut metadata, millis_until(deadline));
            if code != Err::RD_KAFKA_RESP_ERR_NO_ERROR || metadata.is_null() {
                return Err(format!("no metadata: {}", err_text(code)));
            }
            let md = &*metadata;
            let result = match (md.topic_cnt > 0).then(|| &*md.topics) {
                Some(t) if t.err == Err::RD_KAFKA_RESP_ERR_NO_ERROR => {
                    Ok((0..t.partition_cnt as usize).map(|i| (*t.partitions.add(i)).id).collect())
                }
                Some(t) => Err(err_text(t.err)),
                None => Err("the topic is not in the metadata".into()),
            };
            rd::rd_kafka_metadata_destroy(metadata);
            result
        }
    }

    fn watermarks(&self, topic: &CStr, partition: i32, deadline: Instant) -> Result<(i64, i64), String> {
        let (mut low, mut high) = (0i64, 0i64);
        let code = unsafe {
            rd::rd_kafka_query_watermark_offsets(self.rk.as_ptr(), topic.as_ptr(), partition, &mut low, &mut high, millis_until(deadline))
        };
        if code != Err::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(format!("no offsets for partition {partition}: {}", err_text(code)));
        }
        Ok((low, high))
    }

    /// Starts fetching `partition` at offset `from`.
    fn start(&mut self, partition: i32, from: i64) -> Result<(), String> {
        if unsafe { rd::rd_kafka_consume_start_queue(self.rkt, partition, from, self.queue) } == -1 {
            return Err(format!("cannot read partition {partition}: {}", err_text(unsafe { rd::rd_kafka_last_error() })));
        }
        self.started.push(partition);
        Ok(())
    }

    fn poll(&self, wait: Duration) -> Option<Message> {
        let message = unsafe { rd::rd_kafka_consume_queue(self.queue, wait.as_millis() as c_int) };
        NonNull::new(message).map(Message)
    }
}

impl Drop for TailConsumer {
    fn drop(&mut self) {
        unsafe {
            for &partition in &self.started {
                rd::rd_kafka_consume_stop(self.rkt, partition);
            }
            if !self.queue.is_null() {
                rd::rd_kafka_queue_destroy(self.queue);
            }
            if !self.rkt.is_null() {
                rd::rd_kafka_topic_destroy(self.rkt);
            }
            rd::rd_kafka_destroy(self.rk.as_ptr());
        }
    }
}
