//! A small safe layer over librdkafka's producer (rdkafka-sys): configure, produce
//! without blocking, collect delivery reports, purge and flush.
//!
//! Delivery reports arrive through `dr_msg_cb`, which librdkafka calls only from
//! inside `rd_kafka_poll` / `rd_kafka_flush` on the thread that calls them (ours).
//! The callback turns each report into a [`Report`] (copying the payload only for
//! messages that were *not* delivered: those must be kept) and queues it; the
//! caller takes the queue after each poll. Payloads are byte slices with lengths:
//! nothing here assumes C strings.

use parking_lot::Mutex;
use rdkafka_sys::bindings as rd;
use rdkafka_sys::types::RDKafkaRespErr as Err;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

/// How one message ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered { partition: i32, offset: i64 },
    /// message.timeout.ms passed without an acknowledgement.
    TimedOut,
    /// Removed by `purge`; `in_flight` when it had already been sent (it may
    /// have reached the broker).
    Purged { in_flight: bool },
    /// An error reported by the broker. `refused`: the message itself is
    /// refused (too large, invalid) and no retry can succeed; otherwise (e.g.
    /// authorization, unknown topic) an administrator can fix the cause.
    Failed { reason: String, refused: bool },
}

/// A delivery report. `payload` is kept for every outcome but `Delivered`.
#[derive(Clone, Debug)]
pub struct Report {
    /// The value given to `produce` (the record id).
    pub opaque: u64,
    pub topic: String,
    pub outcome: Outcome,
    pub payload: Option<Vec<u8>>,
}

/// Why a message could not be handed to librdkafka.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProduceError {
    /// queue.buffering.max.messages / kbytes reached: try again after a poll.
    QueueFull,
    /// Anything else; `refused` as in [`Outcome::Failed`] (e.g. the message is
    /// larger than message.max.bytes).
    Rejected { reason: String, refused: bool },
}

/// Why a producer could not be created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupError {
    /// The property librdkafka rejected (`None`: the producer itself could not
    /// be created, e.g. a TLS file it could not load).
    pub property: Option<String>,
    /// librdkafka's words, as a complete clause.
    pub reason: String,
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// A librdkafka log line, handed to the sink set with [`set_log_sink`].
pub type LogSink = fn(level: i32, facility: &str, message: &str);

static LOG_SINK: Mutex<Option<LogSink>> = Mutex::new(None);

/// Where librdkafka's own log lines go (syslog levels 0-7). Without a sink they
/// are dropped.
pub fn set_log_sink(sink: Option<LogSink>) {
    *LOG_SINK.lock() = sink;
}

struct Shared {
    reports: Mutex<Vec<Report>>,
}

/// A librdkafka producer handle.
pub struct Producer {
    rk: NonNull<rd::rd_kafka_t>,
    shared: *const Shared,
}

// librdkafka handles are thread-safe; `shared` is only read through a Mutex.
unsafe impl Send for Producer {}
unsafe impl Sync for Producer {}

/// Interceptor: registers `on_thread_start` on the new librdkafka instance.
unsafe extern "C" fn on_new_instance(
    rk: *mut rd::rd_kafka_t,
    _conf: *const rd::rd_kafka_conf_t,
    _opaque: *mut c_void,
    _errstr: *mut c_char,
    _errstr_size: usize,
) -> rd::rd_kafka_resp_err_t {
    rd::rd_kafka_interceptor_add_on_thread_start(
        rk,
        c"jobcomp_kafka.background".as_ptr(),
        Some(on_thread_start),
        std::ptr::null_mut(),
    );
    rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
}

/// Interceptor: runs in each thread librdkafka starts, before its work.
unsafe extern "C" fn on_thread_start(
    _rk: *mut rd::rd_kafka_t,
    _thread_type: rd::rd_kafka_thread_type_t,
    _thread_name: *const c_char,
    _opaque: *mut c_void,
) -> rd::rd_kafka_resp_err_t {
    crate::background::lower_this_thread();
    rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
}

/// Properties set before the administrator's, so that the file can override them.
/// - The spool is the buffer for an outage, so librdkafka's own queue need not
///   hold 100000 messages (its default) in slurmctld's memory.
/// - linger.ms=0 (librdkafka: 5): the delivery thread already gathers the
///   records of one tick (JobCompParams tick_ms) and hands them over together, so a
///   second wait inside librdkafka would only add latency (and a wake-up of its
///   broker thread per record).
pub const DEFAULT_PROPERTIES: [(&str, &str); 3] =
    [("client.id", "slurmctld-jobcomp-kafka"), ("queue.buffering.max.messages", "10000"), ("linger.ms", "0")];

impl Producer {
    /// Creates a producer from `key=value` properties. An error names the
    /// property librdkafka rejected and says why.
    pub fn new<'a>(properties: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Producer, SetupError> {
        unsafe {
            let conf = rd::rd_kafka_conf_new();
            let all = DEFAULT_PROPERTIES.iter().copied().chain(properties);
            for (key, value) in all {
                if let Err(reason) = conf_set(conf, key, value) {
                    rd::rd_kafka_conf_destroy(conf);
                    return Err(SetupError { property: Some(key.to_string()), reason });
                }
            }
            let shared = Box::into_raw(Box::new(Shared { reports: Mutex::new(Vec::new()) }));
            rd::rd_kafka_conf_set_opaque(conf, shared as *mut c_void);
            rd::rd_kafka_conf_set_dr_msg_cb(conf, Some(on_delivery));
            rd::rd_kafka_conf_set_log_cb(conf, Some(on_log));
            rd::rd_kafka_conf_set_error_cb(conf, Some(on_error));
            // librdkafka's own threads give way to slurmctld's (crate::background).
            let _ = rd::rd_kafka_conf_interceptor_add_on_new(
                conf,
                c"jobcomp_kafka.background".as_ptr(),
                Some(on_new_instance),
                std::ptr::null_mut(),
            );

            let mut errstr = [0 as c_char; 512];
            let rk = rd::rd_kafka_new(
                rd::rd_kafka_type_t::RD_KAFKA_PRODUCER,
                conf,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            match NonNull::new(rk) {
                Some(rk) => Ok(Producer { rk, shared }),
                None => {
                    // `conf` is not destroyed: rd_kafka_new struct-copies it and,
                    // when it fails after that, frees the interceptor lists the copy
                    // shares with `conf` (on_new above), so that destroying `conf`
                    // here frees them twice (SIGSEGV in slurmctld, seen with an
                    // ssl.ca.location that does not exist). A few KiB leak per
                    // failed attempt (init, and set_location while Kafka is not set up).
                    drop(Box::from_raw(shared));
                    Err(SetupError {
                        property: None,
                        reason: format!(
                            "cannot create the Kafka producer: {}",
                            CStr::from_ptr(errstr.as_ptr()).to_string_lossy()
                        ),
                    })
                }
            }
        }
    }

    /// Hands one message to librdkafka (which copies it, headers included)
    /// without blocking. `opaque` comes back in the message's [`Report`].
    pub fn produce(
        &self,
        topic: &CStr,
        key: &[u8],
        payload: &[u8],
        header: Option<(&CStr, &[u8])>,
        opaque: u64,
    ) -> Result<(), ProduceError> {
        use rd::rd_kafka_vtype_t::*;
        let mem = |bytes: &[u8]| rd::rd_kafka_vu_s__bindgen_ty_1 {
            mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                ptr: bytes.as_ptr() as *mut c_void,
                size: bytes.len(),
            },
        };
        let mut vus = vec![
            rd::rd_kafka_vu_t { vtype: RD_KAFKA_VTYPE_TOPIC, u: rd::rd_kafka_vu_s__bindgen_ty_1 { cstr: topic.as_ptr() } },
            rd::rd_kafka_vu_t { vtype: RD_KAFKA_VTYPE_KEY, u: mem(key) },
            rd::rd_kafka_vu_t { vtype: RD_KAFKA_VTYPE_VALUE, u: mem(payload) },
            rd::rd_kafka_vu_t {
                vtype: RD_KAFKA_VTYPE_MSGFLAGS,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 { i: rd::RD_KAFKA_MSG_F_COPY as c_int },
            },
            rd::rd_kafka_vu_t {
                vtype: RD_KAFKA_VTYPE_OPAQUE,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 { ptr: opaque as usize as *mut c_void },
            },
        ];
        if let Some((name, value)) = header {
            vus.push(rd::rd_kafka_vu_t {
                vtype: RD_KAFKA_VTYPE_HEADER,
                u: rd::rd_kafka_vu_s__bindgen_ty_1 {
                    header: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                        name: name.as_ptr(),
                        val: value.as_ptr() as *const c_void,
                        size: value.len() as isize,
                    },
                },
            });
        }
        unsafe {
            let error = rd::rd_kafka_produceva(self.rk.as_ptr(), vus.as_ptr(), vus.len());
            if error.is_null() {
                return Ok(());
            }
            let code = rd::rd_kafka_error_code(error);
            rd::rd_kafka_error_destroy(error);
            if code == Err::RD_KAFKA_RESP_ERR__QUEUE_FULL {
                Err(ProduceError::QueueFull)
            } else {
                Err(ProduceError::Rejected { reason: err_text(code), refused: is_refusal(code) })
            }
        }
    }

    /// Serves callbacks for up to `timeout_ms` and returns the delivery reports
    /// that arrived.
    pub fn poll(&self, timeout_ms: i32) -> Vec<Report> {
        unsafe {
            rd::rd_kafka_poll(self.rk.as_ptr(), timeout_ms);
        }
        self.take_reports()
    }

    /// Waits up to `timeout_ms` (-1: forever) for every message to be delivered
    /// or failed; true when nothing is left. Reports are kept for `take_reports`.
    pub fn flush(&self, timeout_ms: i32) -> bool {
        unsafe { rd::rd_kafka_flush(self.rk.as_ptr(), timeout_ms) == Err::RD_KAFKA_RESP_ERR_NO_ERROR }
    }

    /// rd_kafka_purge with RD_KAFKA_PURGE_F_* flags; the purged messages come back
    /// as `Purged` reports from the next poll or flush.
    pub fn purge(&self, flags: i32) {
        unsafe {
            rd::rd_kafka_purge(self.rk.as_ptr(), flags);
        }
    }

    /// Messages (and requests) librdkafka still holds.
    pub fn queue_len(&self) -> usize {
        unsafe { rd::rd_kafka_outq_len(self.rk.as_ptr()).max(0) as usize }
    }

    pub fn take_reports(&self) -> Vec<Report> {
        let shared = unsafe { &*self.shared };
        std::mem::take(&mut *shared.reports.lock())
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        unsafe {
            rd::rd_kafka_destroy(self.rk.as_ptr());
            drop(Box::from_raw(self.shared as *mut Shared));
        }
    }
}

pub const PURGE_QUEUE: i32 = rd::RD_KAFKA_PURGE_F_QUEUE;
pub const PURGE_INFLIGHT: i32 = rd::RD_KAFKA_PURGE_F_INFLIGHT;
pub const PURGE_NON_BLOCKING: i32 = rd::RD_KAFKA_PURGE_F_NON_BLOCKING;

unsafe fn conf_set(conf: *mut rd::rd_kafka_conf_t, key: &str, value: &str) -> Result<(), String> {
    let (Ok(ckey), Ok(cvalue)) = (CString::new(key), CString::new(value)) else {
        return Err(format!("property {key:?} contains a NUL byte"));
    };
    let mut errstr = [0 as c_char; 512];
    let result = rd::rd_kafka_conf_set(conf, ckey.as_ptr(), cvalue.as_ptr(), errstr.as_mut_ptr(), errstr.len());
    if result == rd::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK {
        Ok(())
    } else {
        Err(format!(
            "librdkafka rejected property {key}: {}",
            CStr::from_ptr(errstr.as_ptr()).to_string_lossy()
        ))
    }
}

fn err_text(code: rd::rd_kafka_resp_err_t) -> String {
    unsafe { CStr::from_ptr(rd::rd_kafka_err2str(code)).to_string_lossy().into_owned() }
}

/// Errors that say the message itself can never be accepted as it is.
fn is_refusal(code: rd::rd_kafka_resp_err_t) -> bool {
    matches!(
        code,
        Err::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE
            | Err::RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE
            | Err::RD_KAFKA_RESP_ERR_INVALID_RECORD
            | Err::RD_KAFKA_RESP_ERR__INVALID_ARG
    )
}

/// The outcome librdkafka reported for a message.
fn outcome_of(message: &rd::rd_kafka_message_t) -> Outcome {
    match message.err {
        Err::RD_KAFKA_RESP_ERR_NO_ERROR => Outcome::Delivered { partition: message.partition, offset: message.offset },
        Err::RD_KAFKA_RESP_ERR__MSG_TIMED_OUT => Outcome::TimedOut,
        Err::RD_KAFKA_RESP_ERR__PURGE_QUEUE => Outcome::Purged { in_flight: false },
        Err::RD_KAFKA_RESP_ERR__PURGE_INFLIGHT => Outcome::Purged { in_flight: true },
        code => Outcome::Failed { reason: err_text(code), refused: is_refusal(code) },
    }
}

unsafe extern "C" fn on_delivery(_rk: *mut rd::rd_kafka_t, message: *const rd::rd_kafka_message_t, opaque: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let (Some(message), Some(shared)) = (message.as_ref(), (opaque as *const Shared).as_ref()) else {
            return;
        };
        let outcome = outcome_of(message);
        let payload = match outcome {
            Outcome::Delivered { .. } => None,
            _ if message.payload.is_null() => Some(Vec::new()),
            _ => Some(std::slice::from_raw_parts(message.payload as *const u8, message.len).to_vec()),
        };
        let topic = if message.rkt.is_null() {
            String::new()
        } else {
            CStr::from_ptr(rd::rd_kafka_topic_name(message.rkt)).to_string_lossy().into_owned()
        };
        let report = Report { opaque: message._private as usize as u64, topic, outcome, payload };
        shared.reports.lock().push(report);
    }));
}

unsafe extern "C" fn on_log(_rk: *const rd::rd_kafka_t, level: c_int, facility: *const c_char, text: *const c_char) {
    let _ = catch_unwind(|| {
        let Some(sink) = *LOG_SINK.lock() else { return };
        let facility = if facility.is_null() { "".into() } else { CStr::from_ptr(facility).to_string_lossy() };
        let text = if text.is_null() { "".into() } else { CStr::from_ptr(text).to_string_lossy() };
        sink(level, &facility, &text);
    });
}

unsafe extern "C" fn on_error(_rk: *mut rd::rd_kafka_t, code: c_int, reason: *const c_char, _opaque: *mut c_void) {
    let _ = catch_unwind(|| {
        let Some(sink) = *LOG_SINK.lock() else { return };
        // Connection-level errors (a broker down, all brokers down) are already
        // logged by librdkafka itself (facility FAIL) and retried on its own.
        if code == Err::RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN as c_int || code == Err::RD_KAFKA_RESP_ERR__TRANSPORT as c_int {
            return;
        }
        let reason = if reason.is_null() { "".into() } else { CStr::from_ptr(reason).to_string_lossy() };
        let level = 3;
        sink(level, "ERROR", &reason);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_property_is_named() {
        let error = Producer::new([("bootstrap.servers", "127.0.0.1:1"), ("no.such.property", "1")])
            .err()
            .expect("unknown property must fail");
        assert_eq!(error.property.as_deref(), Some("no.such.property"));
        assert!(error.reason.contains("no.such.property"), "{error}");
    }

    /// rd_kafka_new itself fails (after the property checks): an error, not a
    /// crash (destroying the configuration then was a double free).
    #[test]
    fn a_producer_that_cannot_be_created_is_an_error() {
        let error = Producer::new([
            ("bootstrap.servers", "127.0.0.1:1"),
            ("security.protocol", "ssl"),
            ("ssl.ca.location", "/nonexistent/ca.pem"),
        ])
        .err()
        .expect("a CA file that does not exist must fail");
        assert_eq!(error.property, None);
        assert!(error.reason.starts_with("cannot create the Kafka producer"), "{error}");
    }

    #[test]
    fn producing_without_a_broker_times_out_with_the_payload_kept() {
        let producer = Producer::new([("bootstrap.servers", "127.0.0.1:1"), ("message.timeout.ms", "300")]).unwrap();
        let payload = b"{\"jobid\":7}\0tail";
        producer.produce(c"t", b"7", payload, Some((c"id", b"42")), u64::MAX - 3).unwrap();
        let mut reports = Vec::new();
        for _ in 0..50 {
            reports.extend(producer.poll(100));
            if !reports.is_empty() {
                break;
            }
        }
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].outcome, Outcome::TimedOut);
        assert_eq!(reports[0].opaque, u64::MAX - 3);
        assert_eq!(reports[0].payload.as_deref(), Some(&payload[..]));
    }
}
