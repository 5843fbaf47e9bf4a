//! Logging through slurmctld's own log functions, so that our lines land in the
//! SlurmctldLogFile at the level the administrator configured.
//!
//! The functions (`slurm_error`, `slurm_info`, ...) are looked up at run time with
//! dlsym(RTLD_DEFAULT) instead of being linked: the plugin then has no undefined
//! symbols, and the same code runs in unit tests and in hosts without them (where
//! lines go to stderr). Messages are passed as the argument of a "%s" format,
//! never as the format itself.

use once_cell::sync::OnceCell;
use std::ffi::{c_char, CString};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
    Info,
    Verbose,
    Debug,
    Debug2,
}

type LogFn = unsafe extern "C" fn(*const c_char, ...);

struct HostLog {
    error: Option<LogFn>,
    info: Option<LogFn>,
    verbose: Option<LogFn>,
    debug: Option<LogFn>,
    debug2: Option<LogFn>,
}

static HOST_LOG: OnceCell<HostLog> = OnceCell::new();

/// True while DebugFlags contains JobComp: informational lines about every
/// record are logged (at info level) only then.
static JOBCOMP_DEBUG: AtomicBool = AtomicBool::new(false);

pub fn set_jobcomp_debug(enabled: bool) {
    JOBCOMP_DEBUG.store(enabled, Ordering::Relaxed);
}

pub fn jobcomp_debug() -> bool {
    JOBCOMP_DEBUG.load(Ordering::Relaxed)
}

fn resolve(name: &str) -> Option<LogFn> {
    let name = CString::new(name).ok()?;
    let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if symbol.is_null() {
        None
    } else {
        Some(unsafe { std::mem::transmute::<*mut libc::c_void, LogFn>(symbol) })
    }
}

fn host_log() -> &'static HostLog {
    HOST_LOG.get_or_init(|| HostLog {
        error: resolve("slurm_error"),
        info: resolve("slurm_info"),
        verbose: resolve("slurm_verbose"),
        debug: resolve("slurm_debug"),
        debug2: resolve("slurm_debug2"),
    })
}

/// Logs `message` prefixed with "jobcomp/kafka: ". Slurm adds "error: " itself
/// to error lines; warnings get "warning: " like Slurm's own warning().
pub fn log(level: Level, message: &str) {
    let host = host_log();
    let (function, prefix) = match level {
        Level::Error => (host.error, ""),
        Level::Warning => (host.info, "warning: "),
        Level::Info => (host.info, ""),
        Level::Verbose => (host.verbose, ""),
        Level::Debug => (host.debug, ""),
        Level::Debug2 => (host.debug2, ""),
    };
    let line = format!("{prefix}jobcomp/kafka: {message}");
    match function {
        Some(function) => {
            let text = CString::new(line.replace('\0', "\\0")).unwrap_or_default();
            unsafe { function(c"%s".as_ptr(), text.as_ptr()) };
        }
        None => {
            if level <= Level::Verbose || std::env::var_os("JOBCOMP_KAFKA_DEBUG").is_some() {
                let tag = if level == Level::Error { "error: " } else { "" };
                eprintln!("{tag}{line}");
            }
        }
    }
}

pub fn error(message: &str) {
    log(Level::Error, message)
}
pub fn warning(message: &str) {
    log(Level::Warning, message)
}
pub fn info(message: &str) {
    log(Level::Info, message)
}
pub fn verbose(message: &str) {
    log(Level::Verbose, message)
}
pub fn debug(message: &str) {
    log(Level::Debug, message)
}

/// Maps librdkafka's syslog levels onto Slurm's. Lines about a refused broker
/// certificate go to the debug level: crate::kafka names the cause once, in a
/// line of its own (facility "TLS"). A warning or error line that repeats one
/// logged less than [`REPEAT_WINDOW`] ago goes to the debug level too, so a
/// broker that keeps failing the same way (every reconnect.backoff.ms) gives
/// one line, not a flood.
pub fn librdkafka_line(level: i32, facility: &str, message: &str) {
    if facility == "TLS" {
        let level = if level <= 3 { Level::Error } else { Level::Info };
        log(level, message);
        return;
    }
    if facility == "FAIL" {
        if let Some(alert) = client_certificate_alert(message) {
            // The broker's refusal of slurmctld's certificate: one error line
            // naming it (librdkafka's own is a transport failure like any other).
            let now = std::time::Instant::now();
            let line = format!(
                "the broker refused slurmctld's TLS client certificate (TLS alert \"{alert}\"): \
                 ssl.certificate.location in JobCompLoc must name a valid certificate issued by a CA the \
                 broker trusts (its ssl.truststore), with ssl.key.location its key; records are kept and retried \
                 (librdkafka: {message})"
            );
            let first = REPEATS.lock().first_in_window(&format!("client certificate refused: {alert}"), now);
            log(if first { Level::Error } else { Level::Debug }, &line);
            return;
        }
    }
    let mut level = match level {
        // A broker connection failure: librdkafka reconnects by itself, and any
        // record it costs is reported by us at error level.
        // A refused TLS handshake or SASL authentication: librdkafka also
        // reports it to the error callback, logged at error level (kafka.rs).
        3 if facility == "FAIL" && (message.contains("SASL") || message.contains("SSL handshake")) => Level::Debug,
        3 if facility == "FAIL" => Level::Warning,
        // A token the OpenID provider refused, or Cyrus SASL's own words on a
        // failed GSSAPI start: the error callback reports the same text.
        0..=3 if facility == "OIDC" || facility == "LIBSASL" => Level::Debug,
        // A fatal error: the error callback reports it with what follows (kafka.rs).
        0..=3 if facility == "FATAL" => Level::Debug,
        0..=3 => Level::Error,
        4 => Level::Warning,
        5 | 6 => Level::Verbose,
        _ => Level::Debug,
    };
    if level <= Level::Warning && KINIT_FAILURES.lock().is_consequence(facility, message, std::time::Instant::now()) {
        level = Level::Debug;
    }
    if level <= Level::Warning
        && (crate::kafka::is_certificate_refusal(facility, message)
            || !REPEATS.lock().first_in_window(message, std::time::Instant::now()))
    {
        level = Level::Debug;
    }
    log(level, &format!("librdkafka {facility}: {message}"));
}

/// The TLS alert a broker sends when it refuses the client's certificate
/// (OpenSSL's words in librdkafka's FAIL line), if `message` reports one.
pub fn client_certificate_alert(message: &str) -> Option<&'static str> {
    const ALERTS: [&str; 6] = [
        "bad certificate",
        "certificate required",
        "unknown ca",
        "certificate unknown",
        "certificate expired",
        "certificate revoked",
    ];
    ALERTS.into_iter().find(|alert| message.contains(&format!(" alert {alert}")))
}

static KINIT_FAILURES: parking_lot::Mutex<KinitFailures> = parking_lot::Mutex::new(KinitFailures { last: None });

/// A failed `kinit` (librdkafka's SASLREFRESH line names the command and the
/// keytab) is the cause; the GSSAPI "No Kerberos credentials available" that
/// every connection then reports is its consequence and goes to debug while
/// the failure is recent. Without a failed kinit (a site that runs kinit
/// itself, sasl.kerberos.kinit.cmd empty) that line is the only symptom and
/// stays an error.
pub struct KinitFailures {
    last: Option<std::time::Instant>,
}

impl KinitFailures {
    pub fn is_consequence(&mut self, facility: &str, message: &str, now: std::time::Instant) -> bool {
        if facility == "SASLREFRESH" && message.contains("refresh failed") {
            self.last = Some(now);
            return false;
        }
        message.contains("No Kerberos credentials available")
            && self.last.is_some_and(|at| now.duration_since(at) < REPEAT_WINDOW)
    }
}

/// How long a repeated librdkafka warning/error stays at the debug level.
pub const REPEAT_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

static REPEATS: parking_lot::Mutex<Repeats> = parking_lot::Mutex::new(Repeats { seen: Vec::new() });

/// The librdkafka lines logged recently, by their text without what changes
/// from one attempt to the next (the thread tag, "(after N ms in state X)").
pub struct Repeats {
    seen: Vec<(String, std::time::Instant)>,
}

impl Repeats {
    /// True when `message` was not logged within REPEAT_WINDOW before `now`
    /// (it is then remembered as logged at `now`).
    pub fn first_in_window(&mut self, message: &str, now: std::time::Instant) -> bool {
        let key = repeat_key(message);
        self.seen.retain(|(_, at)| now.duration_since(*at) < REPEAT_WINDOW);
        if self.seen.iter().any(|(k, _)| *k == key) {
            return false;
        }
        if self.seen.len() >= 64 {
            self.seen.remove(0);
        }
        self.seen.push((key, now));
        true
    }
}

fn repeat_key(message: &str) -> String {
    // "[thrd:ssl://h:1/bootstrap]: ssl://h:1/bootstrap: text (after 3ms in state X[, N identical error(s) suppressed])..."
    let text = match message.strip_prefix("[thrd:") {
        Some(rest) => rest.split_once("]: ").map_or(message, |(_, t)| t),
        None => message,
    };
    let Some(i) = text.find(" (after ") else { return text.to_string() };
    // The matching ')' ("error(s)" nests one pair inside).
    let mut depth = 0;
    for (j, ch) in text[i + 1..].char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return format!("{}{}", &text[..i], &text[i + 1 + j + 1..]);
                }
            }
            _ => {}
        }
    }
    text.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_broker_refusing_the_client_certificate_is_recognised() {
        let line = "[thrd:ssl://127.0.0.1:21103/bootstrap]: ssl://127.0.0.1:21103/bootstrap: Receive failed: \
                    error:0A000412:SSL routines::sslv3 alert bad certificate: SSL alert number 42 (after 9ms in state APIVERSION_QUERY)";
        assert_eq!(client_certificate_alert(line), Some("bad certificate"));
        assert_eq!(client_certificate_alert("... tlsv13 alert certificate required: SSL alert number 116"), Some("certificate required"));
        // Our own refusal of the broker's certificate is another line (crate::kafka names it).
        assert_eq!(client_certificate_alert("SSL handshake failed: certificate verify failed"), None);
        assert_eq!(client_certificate_alert("Connect to ipv4#127.0.0.1:9093 failed: Connection refused"), None);
    }

    #[test]
    fn a_repeated_line_is_logged_once_per_window() {
        let mut r = Repeats { seen: Vec::new() };
        let t0 = Instant::now();
        let a = "[thrd:sasl_ssl://h:1/bootstrap]: sasl_ssl://h:1/bootstrap: SASL authentication error: bad (after 12ms in state AUTH_REQ)";
        let a_again = "[thrd:sasl_ssl://h:1/1]: sasl_ssl://h:1/bootstrap: SASL authentication error: bad (after 30ms in state AUTH_REQ)";
        assert!(r.first_in_window(a, t0));
        assert!(!r.first_in_window(a_again, t0 + Duration::from_secs(1)));
        assert!(r.first_in_window("[thrd:x]: other text", t0 + Duration::from_secs(2)));
        assert!(r.first_in_window(a, t0 + REPEAT_WINDOW + Duration::from_secs(1)));
    }

    #[test]
    fn no_credentials_after_a_failed_kinit_is_its_consequence() {
        let mut k = KinitFailures { last: None };
        let t0 = Instant::now();
        let none = "b: Failed to initialize SASL authentication: ... (No Kerberos credentials available (default cache: FILE:/x))";
        // Without a failed kinit it is the only symptom: not a consequence.
        assert!(!k.is_consequence("ERROR", none, t0));
        assert!(!k.is_consequence("SASLREFRESH", "[thrd:main]: Kerberos ticket refresh failed: kinit ...", t0));
        assert!(k.is_consequence("ERROR", none, t0 + Duration::from_secs(1)));
        assert!(!k.is_consequence("ERROR", "another error", t0 + Duration::from_secs(1)));
        assert!(!k.is_consequence("ERROR", none, t0 + REPEAT_WINDOW + Duration::from_secs(1)));
    }

    #[test]
    fn the_repeat_key_drops_thread_and_timing() {
        assert_eq!(repeat_key("[thrd:a]: b: c (after 5ms in state UP)"), "b: c");
        assert_eq!(
            repeat_key("b: c (after 20ms in state AUTH_REQ, 1 identical error(s) suppressed): check x"),
            "b: c: check x"
        );
        assert_eq!(repeat_key("plain (not timing)"), "plain (not timing)");
    }
}
