//! A small safe layer over librdkafka's producer (rdkafka-sys): configure, produce
//! without blocking, collect delivery reports, purge and flush.
//!
//! Delivery reports arrive through `dr_msg_cb`, which librdkafka calls only from
//! inside `rd_kafka_poll` / `rd_kafka_flush` on the thread that calls them (ours).
//! The callback turns each report into a [`Report`] (copying the payload only for
//! messages that were *not* delivered: those must be kept) and queues it; the
//! caller takes the queue after each poll. Payloads are byte slices with lengths:
//! nothing here assumes C strings.

mod tail;
pub use tail::{find_at_tail, Found};

use crate::config;
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
    /// An error reported by the broker (or by librdkafka for the message).
    Failed { reason: String, cause: Cause },
}

/// What a failed message's error means for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Another attempt may succeed: an outage, or a cause an administrator can
    /// fix on the broker (authorization, ...).
    Transient,
    /// The topic does not exist (and the broker does not create topics:
    /// auto.create.topics.enable=false). Another attempt succeeds once it exists.
    TopicMissing,
    /// The message is larger than a limit: librdkafka's own message.max.bytes
    /// (when `produce` refuses it) or the topic's max.message.bytes (when the
    /// broker does). Retrying cannot help until the limit is raised.
    TooLarge,
    /// The broker finds the message itself invalid; no retry can succeed.
    Invalid,
}

impl Cause {
    /// The message itself can never be accepted as it is.
    pub fn is_refusal(self) -> bool {
        matches!(self, Cause::TooLarge | Cause::Invalid)
    }
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
    /// Anything else; `cause` as in [`Outcome::Failed`] (e.g. the message is
    /// larger than message.max.bytes: [`Cause::TooLarge`]).
    Rejected { reason: String, cause: Cause },
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
    /// Secret values of the configuration, scrubbed from librdkafka's log lines.
    secrets: Vec<String>,
    /// librdkafka raised a fatal error: this producer sends nothing more.
    fatal: std::sync::atomic::AtomicBool,
    /// config::principal_hint of the configuration, for the error lines.
    principal: String,
}

/// A librdkafka producer handle.
pub struct Producer {
    rk: NonNull<rd::rd_kafka_t>,
    shared: *const Shared,
    /// Who the broker takes this producer for ([`config::principal_hint`]).
    principal: String,
    /// The configuration it was made from, for [`Producer::renew`].
    properties: Vec<(String, String)>,
}

// librdkafka handles are thread-safe; `shared` is only read through a Mutex.
unsafe impl Send for Producer {}
unsafe impl Sync for Producer {}

/// librdkafka's own threads (of the client made from `conf`) give way to
/// slurmctld's (crate::background).
unsafe fn lower_librdkafka_threads(conf: *mut rd::rd_kafka_conf_t) {
    let _ = rd::rd_kafka_conf_interceptor_add_on_new(
        conf,
        c"jobcomp_kafka.background".as_ptr(),
        Some(on_new_instance),
        std::ptr::null_mut(),
    );
}

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

/// enable.idempotence=true (librdkafka: false; Kafka's own clients since 3.0):
/// a produce request whose acknowledgement is lost is sent again, and without
/// it the broker stores its records twice and out of order
/// (tests/retry_duplicates.rs: 150 duplicates, 148 out of order for one lost
/// ack on tansu; none with it). It costs one InitProducerId request at start,
/// at most 5 requests in flight per broker and acks=all (librdkafka's default).
/// Not added when the file sets enable.idempotence itself, or a value
/// librdkafka refuses together with it ([`conflicts_with_idempotence`]): such
/// a file keeps working as it did with SchedMD's plugin.
pub const IDEMPOTENCE_DEFAULT: (&str, &str) = ("enable.idempotence", "true");

/// A property (key, value) librdkafka refuses together with
/// enable.idempotence=true (rd_kafka_conf_finalize), or the key itself.
pub fn conflicts_with_idempotence(key: &str, value: &str) -> bool {
    let number = || value.trim().parse::<i64>().ok();
    match key {
        "enable.idempotence" | "transactional.id" => true,
        "acks" | "request.required.acks" => !matches!(value.trim(), "all" | "-1"),
        "max.in.flight" | "max.in.flight.requests.per.connection" => number().is_none_or(|n| n > 5),
        "retries" | "message.send.max.retries" => number().is_none_or(|n| n < 1),
        "queue.buffering.backpressure.threshold" => number().is_none_or(|n| n > 1),
        "queuing.strategy" => value.trim() != "fifo",
        _ => false,
    }
}

/// message.timeout.ms=0, "never" (librdkafka: 300000), for the plugin's own
/// producer; a JobCompLoc file that sets it still wins. The plugin keeps every
/// record until Kafka acknowledges it, so librdkafka's timeout never saves a
/// record: it only hands back records that were in flight, which the plugin
/// must then produce again as new messages, and the broker stores those twice
/// whenever the first copy had reached it (all three brokers of a cluster
/// down for longer than a 10 s timeout: 93 copies, docs/kafka-cluster.md).
/// Without a timeout librdkafka retries the same batch with the same producer
/// id and sequence numbers, which the broker deduplicates (enable.idempotence).
/// Not used by `jobcomp-kafka resend`, which waits a bounded time.
pub const PLUGIN_MESSAGE_TIMEOUT: (&str, &str) = ("message.timeout.ms", "0");

/// max.in.flight.requests.per.connection=1 (librdkafka: 1000000, 5 with
/// enable.idempotence) for the plugin's own producer; a JobCompLoc file that
/// sets it still wins. With several produce requests in flight, one that
/// fails (a request that timed out waiting for replicas that died) makes the
/// broker refuse the ones behind it as out of sequence, and librdkafka
/// (2.12) then bumps the producer epoch and numbers the records anew: a
/// record the broker had stored is stored again (scenario 3 of
/// docs/kafka-cluster.md: one record twice, the same record at epoch 0 and
/// epoch 1; librdkafka issue 4953). With one request at a time a failed
/// request is sent again with its own sequence numbers, which the broker
/// deduplicates. Job records come at most a few thousand a second, which
/// one request per broker carries (each holds every record queued meanwhile).
pub const PLUGIN_ONE_REQUEST_IN_FLIGHT: (&str, &str) = ("max.in.flight.requests.per.connection", "1");

/// The plugin's properties: its own defaults, then the JobCompLoc file's.
pub fn with_plugin_defaults<'a>(file: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
    [PLUGIN_MESSAGE_TIMEOUT, PLUGIN_ONE_REQUEST_IN_FLIGHT].into_iter().chain(file).collect()
}

/// The defaults to set before the administrator's `properties`.
fn defaults_for(properties: &[(&str, &str)]) -> Vec<(&'static str, &'static str)> {
    let mut defaults = DEFAULT_PROPERTIES.to_vec();
    if !properties.iter().any(|(k, v)| conflicts_with_idempotence(k.trim(), v)) {
        defaults.push(IDEMPOTENCE_DEFAULT);
    }
    defaults
}

impl Producer {
    /// Creates a producer from `key=value` properties. An error names the
    /// property librdkafka rejected and says why.
    pub fn new<'a>(properties: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Producer, SetupError> {
        unsafe {
            let conf = rd::rd_kafka_conf_new();
            let properties: Vec<(&str, &str)> = properties.into_iter().collect();
            let given: Vec<(String, String)> = properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let all: Vec<(&str, &str)> = defaults_for(&properties).into_iter().chain(properties).collect();
            let secrets = config::secret_values(all.iter().copied());
            let principal = config::principal_hint(all.iter().copied());
            let mut verification_on = true;
            for &(key, value) in &all {
                if let Err(reason) = conf_set(conf, key, value) {
                    rd::rd_kafka_conf_destroy(conf);
                    return Err(SetupError {
                        property: Some(key.to_string()),
                        reason: config::redact_secret_values(&reason, &secrets),
                    });
                }
                if key == "enable.ssl.certificate.verification" {
                    verification_on = !matches!(value.trim(), "false" | "0" | "no" | "off");
                }
            }
            // Names the reason a broker's certificate is refused (librdkafka's
            // own line says only "certificate verify failed" for all of them).
            // Only while librdkafka verifies: the callback keeps OpenSSL's verdict.
            if verification_on {
                let _ = rd::rd_kafka_conf_set_ssl_cert_verify_cb(conf, Some(on_cert_verify));
            }
            // A new producer (init again in the same slurmctld) reports afresh.
            CERTIFICATE_REPORTS.lock().failing.clear();
            let shared = Box::into_raw(Box::new(Shared {
                reports: Mutex::new(Vec::new()),
                secrets,
                fatal: Default::default(),
                principal: principal.clone(),
            }));
            rd::rd_kafka_conf_set_opaque(conf, shared as *mut c_void);
            rd::rd_kafka_conf_set_dr_msg_cb(conf, Some(on_delivery));
            rd::rd_kafka_conf_set_log_cb(conf, Some(on_log));
            rd::rd_kafka_conf_set_error_cb(conf, Some(on_error));
            lower_librdkafka_threads(conf);

            let mut errstr = [0 as c_char; 512];
            let rk = rd::rd_kafka_new(
                rd::rd_kafka_type_t::RD_KAFKA_PRODUCER,
                conf,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            match NonNull::new(rk) {
                Some(rk) => Ok(Producer { rk, shared, principal, properties: given }),
                None => {
                    // `conf` is not destroyed: rd_kafka_new struct-copies it and,
                    // when it fails after that, frees the interceptor lists the copy
                    // shares with `conf` (on_new above), so that destroying `conf`
                    // here frees them twice (SIGSEGV in slurmctld, seen with an
                    // ssl.ca.location that does not exist). A few KiB leak per
                    // failed attempt (init, and set_location while Kafka is not set up).
                    let shared = Box::from_raw(shared);
                    let reason = CStr::from_ptr(errstr.as_ptr()).to_string_lossy();
                    Err(SetupError {
                        property: None,
                        reason: format!(
                            "cannot create the Kafka producer: {}",
                            config::redact_secret_values(&reason, &shared.secrets)
                        ),
                    })
                }
            }
        }
    }

    /// Hands one message to librdkafka (which copies it, headers included)
    /// without blocking. `opaque` comes back in the message's [`Report`].
    /// Who the broker takes this producer for, as JobCompLoc says it
    /// ([`config::principal_hint`]).
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// True once librdkafka raised a fatal error (e.g. the broker refused the
    /// idempotent producer's id): this producer delivers nothing more.
    pub fn is_fatal(&self) -> bool {
        unsafe { (*self.shared).fatal.load(std::sync::atomic::Ordering::Relaxed) }
    }

    /// True when the fatal error was the broker refusing the principal an
    /// idempotent producer (no WRITE on any topic).
    pub fn fatal_was_cluster_authorization(&self) -> bool {
        let code = unsafe { rd::rd_kafka_fatal_error(self.rk.as_ptr(), std::ptr::null_mut(), 0) };
        code == Err::RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED
    }

    /// The properties it was made from (the plugin's defaults, then JobCompLoc's).
    pub fn properties(&self) -> &[(String, String)] {
        &self.properties
    }

    /// A new producer from the same configuration (after a fatal error).
    pub fn renew(&self) -> Result<Producer, SetupError> {
        Producer::new(self.properties.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    pub fn produce(
        &self,
        topic: &CStr,
        key: &[u8],
        payload: &[u8],
        header: Option<(&CStr, &[u8])>,
        opaque: u64,
    ) -> Result<(), ProduceError> {
        self.produce_to(topic, None, key, payload, header, opaque)
    }

    /// `produce` to `partition` (None: the partition librdkafka's partitioner
    /// picks for the key).
    pub fn produce_to(
        &self,
        topic: &CStr,
        partition: Option<i32>,
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
        if let Some(partition) = partition {
            vus.push(rd::rd_kafka_vu_t { vtype: RD_KAFKA_VTYPE_PARTITION, u: rd::rd_kafka_vu_s__bindgen_ty_1 { i32_: partition } });
        }
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
                Err(ProduceError::Rejected { reason: err_text(code), cause: cause_of(code) })
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

    /// The value of a configuration property as librdkafka holds it (its
    /// default when the file did not set it).
    pub fn property(&self, name: &str) -> Option<String> {
        let name = CString::new(name).ok()?;
        let mut buf = [0 as c_char; 256];
        let mut size = buf.len();
        unsafe {
            let conf = rd::rd_kafka_conf(self.rk.as_ptr());
            if rd::rd_kafka_conf_get(conf, name.as_ptr(), buf.as_mut_ptr(), &mut size) != rd::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK {
                return None;
            }
            Some(CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned())
        }
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

/// True when a delivery failed because the broker denies this principal
/// WRITE (or DESCRIBE) on the topic: `reason` is librdkafka's text of the
/// error (a delivery report's, or produce()'s while the topic's metadata says
/// so). An administrator fixes it with an ACL; the record waits meanwhile.
pub fn is_topic_authorization_failure(reason: &str) -> bool {
    reason.contains(&err_text(Err::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED))
}

/// What an error code means for the message it failed.
fn cause_of(code: rd::rd_kafka_resp_err_t) -> Cause {
    match code {
        // The broker's MESSAGE_TOO_LARGE and RECORD_LIST_TOO_LARGE; librdkafka
        // gives the first for a message above its own message.max.bytes too.
        Err::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE | Err::RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE => Cause::TooLarge,
        Err::RD_KAFKA_RESP_ERR_INVALID_RECORD | Err::RD_KAFKA_RESP_ERR__INVALID_ARG => Cause::Invalid,
        // The broker's UNKNOWN_TOPIC_OR_PART (messages that waited for the
        // topic's metadata), and librdkafka's own once it knows the topic is
        // missing (produce fails at once).
        Err::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART | Err::RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC => Cause::TopicMissing,
        _ => Cause::Transient,
    }
}

/// The outcome librdkafka reported for a message.
fn outcome_of(message: &rd::rd_kafka_message_t) -> Outcome {
    match message.err {
        Err::RD_KAFKA_RESP_ERR_NO_ERROR => Outcome::Delivered { partition: message.partition, offset: message.offset },
        Err::RD_KAFKA_RESP_ERR__MSG_TIMED_OUT => Outcome::TimedOut,
        Err::RD_KAFKA_RESP_ERR__PURGE_QUEUE => Outcome::Purged { in_flight: false },
        Err::RD_KAFKA_RESP_ERR__PURGE_INFLIGHT => Outcome::Purged { in_flight: true },
        code => Outcome::Failed { reason: err_text(code), cause: cause_of(code) },
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

/// A librdkafka line as it may be logged: without the configuration's secrets.
unsafe fn scrubbed(rk: *const rd::rd_kafka_t, text: *const c_char) -> String {
    let text = if text.is_null() { "".into() } else { CStr::from_ptr(text).to_string_lossy() };
    let shared = if rk.is_null() { None } else { (rd::rd_kafka_opaque(rk) as *const Shared).as_ref() };
    match shared {
        Some(shared) if !shared.secrets.is_empty() => config::redact_secret_values(&text, &shared.secrets),
        _ => text.into_owned(),
    }
}

unsafe extern "C" fn on_log(rk: *const rd::rd_kafka_t, level: c_int, facility: *const c_char, text: *const c_char) {
    let _ = catch_unwind(|| {
        let Some(sink) = *LOG_SINK.lock() else { return };
        let facility = if facility.is_null() { "".into() } else { CStr::from_ptr(facility).to_string_lossy() };
        sink(level, &facility, &scrubbed(rk, text));
    });
}

unsafe extern "C" fn on_error(rk: *mut rd::rd_kafka_t, code: c_int, reason: *const c_char, _opaque: *mut c_void) {
    let _ = catch_unwind(|| {
        let Some(sink) = *LOG_SINK.lock() else { return };
        // Connection-level errors (a broker down, all brokers down) are already
        // logged by librdkafka itself (facility FAIL) and retried on its own.
        if code == Err::RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN as c_int || code == Err::RD_KAFKA_RESP_ERR__TRANSPORT as c_int {
            return;
        }
        let reason = scrubbed(rk, reason);
        if code == Err::RD_KAFKA_RESP_ERR__FATAL as c_int {
            let shared = if rk.is_null() { None } else { (rd::rd_kafka_opaque(rk) as *const Shared).as_ref() };
            if let Some(shared) = shared {
                shared.fatal.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            let cluster_denied = reason.contains(&err_text(Err::RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED));
            let line = if cluster_denied {
                format!(
                    "{reason}: the broker refuses the principal configured in JobCompLoc ({}) an idempotent producer: \
                     it has WRITE on no topic; grant WRITE on the topic (kafka-acls --add --allow-principal \
                     User:<that principal> --operation Write --topic <topic>). Records are kept; a new producer is \
                     tried every minute",
                    shared.map_or("", |s| s.principal.as_str())
                )
            } else {
                format!("{reason}: records are kept; a new producer is tried every minute")
            };
            sink(3, "ERROR", &line);
            return;
        }
        if code == Err::RD_KAFKA_RESP_ERR__SSL as c_int && is_certificate_refusal("", &reason) {
            // Named once, with its cause, by on_cert_verify; in the debug log only.
            sink(7, "ERROR", &reason);
            return;
        }
        if code == Err::RD_KAFKA_RESP_ERR__AUTHENTICATION as c_int {
            let line = format!(
                "{reason}: check security.protocol, sasl.mechanisms and the credentials (sasl.username/sasl.password, \
                 the Kerberos keytab and principal, or the OIDC client) in JobCompLoc; records are kept and retried"
            );
            sink(3, "ERROR", &line);
            return;
        }
        let level = 3;
        sink(level, "ERROR", &reason);
    });
}

extern "C" {
    // libcrypto (OpenSSL), linked for librdkafka's TLS: the text of a
    // certificate verification error code.
    fn X509_verify_cert_error_string(n: libc::c_long) -> *const c_char;
}

/// OpenSSL's X509_V_ERR_* codes the remedy depends on.
mod x509 {
    pub const OK: i32 = 0;
    pub const UNABLE_TO_GET_ISSUER_CERT: i32 = 2;
    pub const CERT_NOT_YET_VALID: i32 = 9;
    pub const CERT_HAS_EXPIRED: i32 = 10;
    pub const DEPTH_ZERO_SELF_SIGNED_CERT: i32 = 18;
    pub const SELF_SIGNED_CERT_IN_CHAIN: i32 = 19;
    pub const UNABLE_TO_GET_ISSUER_CERT_LOCALLY: i32 = 20;
    pub const UNABLE_TO_VERIFY_LEAF_SIGNATURE: i32 = 21;
    pub const HOSTNAME_MISMATCH: i32 = 62;
    pub const IP_ADDRESS_MISMATCH: i32 = 64;
}

/// What the administrator can do about a certificate verification error.
fn certificate_remedy(error: i32) -> &'static str {
    match error {
        x509::CERT_HAS_EXPIRED | x509::CERT_NOT_YET_VALID => {
            "renew the broker's certificate (or correct the clock of the broker or of this host)"
        }
        x509::UNABLE_TO_GET_ISSUER_CERT
        | x509::DEPTH_ZERO_SELF_SIGNED_CERT
        | x509::SELF_SIGNED_CERT_IN_CHAIN
        | x509::UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | x509::UNABLE_TO_VERIFY_LEAF_SIGNATURE => {
            "ssl.ca.location must name the CA that signed the broker's certificate"
        }
        x509::HOSTNAME_MISMATCH | x509::IP_ADDRESS_MISMATCH => {
            "the certificate is not for the address the broker is reached at: use the name in its \
             subjectAltName in bootstrap.servers and the broker's advertised listener, or reissue it"
        }
        _ => "fix the broker's certificate or ssl.ca.location",
    }
}

/// Turns librdkafka's per-certificate verification results into log lines:
/// one error line per broker and cause (librdkafka retries the connection
/// every reconnect.backoff.ms, each time with the same result), and one line
/// when that broker's certificate verifies again.
#[derive(Default)]
pub struct CertificateReports {
    /// Broker name -> the verification error last reported for it.
    failing: Vec<(String, i32)>,
}

impl CertificateReports {
    /// The result for the certificate at `depth` (0: the broker's own) of
    /// `broker`'s chain; `reason` is OpenSSL's text for `error`. Returns a
    /// line to log (level, text) or None.
    pub fn result(&mut self, broker: &str, depth: i32, error: i32, reason: &str) -> Option<(i32, String)> {
        let known = self.failing.iter().position(|(b, _)| b == broker);
        if error == x509::OK {
            // The chain is checked from the root down: depth 0 passing means
            // the whole certificate was accepted.
            if depth != 0 {
                return None;
            }
            let i = known?;
            self.failing.swap_remove(i);
            return Some((6, format!("TLS: the certificate of broker {broker} is accepted again")));
        }
        match known {
            Some(i) if self.failing[i].1 == error => return None,
            Some(i) => self.failing[i].1 = error,
            None => {
                if self.failing.len() >= 64 {
                    self.failing.remove(0);
                }
                self.failing.push((broker.to_string(), error));
            }
        }
        let whose = if depth == 0 { "its certificate".to_string() } else { format!("the certificate at depth {depth} of its chain") };
        Some((
            3,
            format!(
                "TLS: broker {broker} refused: {whose} does not verify: {reason} (OpenSSL verify error {error}); {}; \
                 records are kept and sent once it verifies",
                certificate_remedy(error)
            ),
        ))
    }
}

static CERTIFICATE_REPORTS: Mutex<CertificateReports> = Mutex::new(CertificateReports { failing: Vec::new() });

/// librdkafka's ssl.certificate.verify_cb: keeps OpenSSL's verdict (accepts
/// exactly what OpenSSL accepted) and reports why a certificate was refused.
unsafe extern "C" fn on_cert_verify(
    _rk: *mut rd::rd_kafka_t,
    broker_name: *const c_char,
    _broker_id: i32,
    x509_error: *mut c_int,
    depth: c_int,
    _buf: *const c_char,
    _size: usize,
    errstr: *mut c_char,
    errstr_size: usize,
    _opaque: *mut c_void,
) -> c_int {
    let error = if x509_error.is_null() { -1 } else { *x509_error };
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let broker = if broker_name.is_null() { "".into() } else { CStr::from_ptr(broker_name).to_string_lossy() };
        let reason = if error == x509::OK {
            String::new()
        } else {
            let text = X509_verify_cert_error_string(error as libc::c_long);
            if text.is_null() { format!("error {error}") } else { CStr::from_ptr(text).to_string_lossy().into_owned() }
        };
        if error != x509::OK && !errstr.is_null() && errstr_size > 0 {
            let n = reason.len().min(errstr_size - 1);
            std::ptr::copy_nonoverlapping(reason.as_ptr() as *const c_char, errstr, n);
            *errstr.add(n) = 0;
        }
        let line = CERTIFICATE_REPORTS.lock().result(&broker, depth, error, &reason);
        if let (Some((level, text)), Some(sink)) = (line, *LOG_SINK.lock()) {
            sink(level, "TLS", &text);
        }
    }));
    (error == x509::OK) as c_int
}

/// librdkafka's own lines about a refused certificate ("certificate verify
/// failed", the same text whatever the cause, repeated at every reconnect):
/// `on_cert_verify` has already said why, once.
pub fn is_certificate_refusal(facility: &str, message: &str) -> bool {
    facility == "SSLCERTVRFY" || message.contains("certificate verify failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotence_is_the_default_unless_the_file_conflicts() {
        assert!(defaults_for(&[("bootstrap.servers", "k:9092")]).contains(&IDEMPOTENCE_DEFAULT));
        for ok in [("acks", "all"), ("acks", "-1"), ("max.in.flight", "5"), ("retries", "3"), ("linger.ms", "5")] {
            assert!(defaults_for(&[ok]).contains(&IDEMPOTENCE_DEFAULT), "{ok:?}");
        }
        for conflict in [
            ("enable.idempotence", "false"),
            ("enable.idempotence", "true"),
            ("acks", "1"),
            ("request.required.acks", "0"),
            ("max.in.flight.requests.per.connection", "10"),
            ("max.in.flight", "1000000"),
            ("retries", "0"),
            ("message.send.max.retries", "0"),
            ("queue.buffering.backpressure.threshold", "10"),
            ("queuing.strategy", "lifo"),
            ("transactional.id", "x"),
        ] {
            assert!(!defaults_for(&[conflict]).contains(&IDEMPOTENCE_DEFAULT), "{conflict:?}");
        }
    }

    /// Each conflicting value really is refused by librdkafka with idempotence on
    /// (so leaving the default out keeps such a file working), and the default
    /// alone is accepted.
    #[test]
    fn librdkafka_refuses_what_conflicts_with_idempotence() {
        let base = [("bootstrap.servers", "127.0.0.1:1")];
        assert!(Producer::new(base.iter().copied()).is_ok());
        for conflict in [
            ("acks", "1"),
            ("max.in.flight", "6"),
            ("retries", "0"),
            ("queue.buffering.backpressure.threshold", "2"),
            ("queuing.strategy", "lifo"),
        ] {
            let with_idempotence = base.iter().copied().chain([conflict, ("enable.idempotence", "true")]);
            assert!(Producer::new(with_idempotence).is_err(), "{conflict:?} accepted with idempotence");
            assert!(Producer::new(base.iter().copied().chain([conflict])).is_ok(), "{conflict:?} alone refused");
        }
    }

    #[test]
    fn a_refused_certificate_is_reported_once_per_broker_and_cause() {
        let mut reports = CertificateReports::default();
        let (level, line) = reports.result("b1:9093", 0, x509::CERT_HAS_EXPIRED, "certificate has expired").unwrap();
        assert_eq!(level, 3);
        assert!(line.contains("b1:9093") && line.contains("certificate has expired") && line.contains("renew"), "{line}");
        // Every reconnect gives the same result: nothing more.
        for _ in 0..10 {
            assert_eq!(reports.result("b1:9093", 0, x509::CERT_HAS_EXPIRED, "certificate has expired"), None);
        }
        // Another broker, or another cause, is news.
        assert!(reports.result("b2:9093", 0, x509::CERT_HAS_EXPIRED, "certificate has expired").is_some());
        let (_, line) = reports.result("b1:9093", 0, x509::IP_ADDRESS_MISMATCH, "IP address mismatch").unwrap();
        assert!(line.contains("IP address mismatch") && line.contains("subjectAltName"), "{line}");
        // The CA passing (depth 1) says nothing; the broker's own certificate
        // passing ends the episode with one line.
        assert_eq!(reports.result("b1:9093", 1, x509::OK, ""), None);
        let (level, line) = reports.result("b1:9093", 0, x509::OK, "").unwrap();
        assert_eq!(level, 6);
        assert!(line.contains("accepted again"), "{line}");
        assert_eq!(reports.result("b1:9093", 0, x509::OK, ""), None);
        // After that a failure is reported again.
        assert!(reports.result("b1:9093", 0, x509::CERT_HAS_EXPIRED, "certificate has expired").is_some());
    }

    #[test]
    fn a_wrong_ca_names_ssl_ca_location() {
        let mut reports = CertificateReports::default();
        let (_, line) = reports
            .result("b:1", 0, x509::UNABLE_TO_GET_ISSUER_CERT_LOCALLY, "unable to get local issuer certificate")
            .unwrap();
        assert!(line.contains("ssl.ca.location"), "{line}");
    }

    #[test]
    fn openssl_names_the_verify_errors() {
        let text = |e: i32| unsafe { CStr::from_ptr(X509_verify_cert_error_string(e as libc::c_long)).to_str().unwrap().to_string() };
        assert_eq!(text(x509::CERT_HAS_EXPIRED), "certificate has expired");
        assert_eq!(text(x509::IP_ADDRESS_MISMATCH), "IP address mismatch");
        assert_eq!(text(x509::HOSTNAME_MISMATCH), "hostname mismatch");
    }

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

    /// librdkafka's own message.max.bytes refuses a record before any broker
    /// sees it; the producer names the value it holds (its default when the
    /// file sets none), which the error line quotes.
    #[test]
    fn a_message_above_message_max_bytes_is_refused_as_too_large() {
        let default = Producer::new([("bootstrap.servers", "127.0.0.1:1")]).unwrap();
        assert_eq!(default.property("message.max.bytes").as_deref(), Some("1000000"));
        let producer = Producer::new([("bootstrap.servers", "127.0.0.1:1"), ("message.max.bytes", "2000")]).unwrap();
        assert_eq!(producer.property("message.max.bytes").as_deref(), Some("2000"));
        assert_eq!(producer.property("no.such.property"), None);
        let refused = producer.produce(c"t", b"1", &[b'x'; 3000], None, 1);
        match refused {
            Err(ProduceError::Rejected { cause, .. }) => assert_eq!(cause, Cause::TooLarge),
            other => panic!("a 3000-byte message with message.max.bytes=2000: {other:?}"),
        }
        assert!(producer.produce(c"t", b"1", &[b'x'; 1000], None, 2).is_ok());
    }

    /// The plugin's producer never times a record out, and has one request in
    /// flight per broker, unless the file asks otherwise.
    #[test]
    fn the_plugin_producer_has_no_message_timeout_and_one_request_in_flight_unless_the_file_sets_them() {
        let plugin = Producer::new(with_plugin_defaults([("bootstrap.servers", "127.0.0.1:1")])).unwrap();
        assert_eq!(plugin.property("message.timeout.ms").as_deref(), Some("0"));
        let file_sets_it = [("bootstrap.servers", "127.0.0.1:1"), ("message.timeout.ms", "120000")];
        let plugin = Producer::new(with_plugin_defaults(file_sets_it)).unwrap();
        assert_eq!(plugin.property("message.timeout.ms").as_deref(), Some("120000"));
        let plugin = Producer::new(with_plugin_defaults([("bootstrap.servers", "127.0.0.1:1"), ("delivery.timeout.ms", "60000")])).unwrap();
        assert_eq!(plugin.property("message.timeout.ms").as_deref(), Some("60000"), "its alias wins too");
        let plugin = Producer::new(with_plugin_defaults([("bootstrap.servers", "127.0.0.1:1")])).unwrap();
        assert_eq!(plugin.property("max.in.flight.requests.per.connection").as_deref(), Some("1"));
        let plugin = Producer::new(with_plugin_defaults([("bootstrap.servers", "127.0.0.1:1"), ("max.in.flight", "5")])).unwrap();
        assert_eq!(plugin.property("max.in.flight.requests.per.connection").as_deref(), Some("5"), "the file wins");
        let tool = Producer::new([("bootstrap.servers", "127.0.0.1:1")]).unwrap();
        // librdkafka's default (300000): no topic property set, so it reports none.
        assert_ne!(tool.property("message.timeout.ms").as_deref(), Some("0"), "the tool keeps librdkafka's timeout");
    }

    #[test]
    fn error_codes_name_their_cause() {
        assert_eq!(cause_of(Err::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE), Cause::TooLarge);
        assert_eq!(cause_of(Err::RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE), Cause::TooLarge);
        assert_eq!(cause_of(Err::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART), Cause::TopicMissing);
        assert_eq!(cause_of(Err::RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC), Cause::TopicMissing);
        assert_eq!(cause_of(Err::RD_KAFKA_RESP_ERR_INVALID_RECORD), Cause::Invalid);
        assert_eq!(cause_of(Err::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED), Cause::Transient);
        assert_eq!(cause_of(Err::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS), Cause::Transient);
        assert!(Cause::TooLarge.is_refusal() && Cause::Invalid.is_refusal());
        assert!(!Cause::TopicMissing.is_refusal() && !Cause::Transient.is_refusal());
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
