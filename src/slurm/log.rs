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

/// Maps librdkafka's syslog levels onto Slurm's.
pub fn librdkafka_line(level: i32, facility: &str, message: &str) {
    let level = match level {
        // A broker connection failure: librdkafka reconnects by itself, and any
        // record it costs is reported by us at error level.
        3 if facility == "FAIL" => Level::Warning,
        0..=3 => Level::Error,
        4 => Level::Warning,
        5 | 6 => Level::Verbose,
        _ => Level::Debug,
    };
    log(level, &format!("librdkafka {facility}: {message}"));
}
