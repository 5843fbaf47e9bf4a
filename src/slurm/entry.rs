//! The symbols slurmctld looks up: plugin_name / plugin_type / plugin_version,
//! init, fini, and the jobcomp operations of the target release's API.
//!
//! Every function catches panics: unwinding into slurmctld's C frames would be
//! undefined behaviour, so a panic becomes an error line and SLURM_ERROR.

use super::{guard, host, log};
use crate::plugin::{self, NotTaken};
use crate::snapshot::{codec, Event};
use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

const SLURM_SUCCESS: c_int = 0;
const SLURM_ERROR: c_int = -1;

/// A NUL-terminated char array (the loader uses the symbol's address as the string).
#[no_mangle]
pub static plugin_name: [u8; 32] = *b"Job completion logging to Kafka\0";
#[no_mangle]
pub static plugin_type: [u8; 14] = *b"jobcomp/kafka\0";
/// Must equal the running Slurm's SLURM_VERSION_NUMBER, micro included.
#[no_mangle]
pub static plugin_version: u32 = crate::target::RELEASE.version_number();

/// Runs `body`, turning a panic into an error line and `fallback`.
fn guarded<R>(entry: &str, fallback: R, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            log::error(&format!("internal error in {entry}: {what}"));
            fallback
        }
    }
}

fn status(ok: bool) -> c_int {
    if ok {
        SLURM_SUCCESS
    } else {
        SLURM_ERROR
    }
}

/// Panic messages go to the slurmctld log, not to its stderr.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| log::error(&format!("panic: {info}"))));
}

#[no_mangle]
pub extern "C" fn init() -> c_int {
    guarded("init", SLURM_ERROR, || {
        install_panic_hook();
        if !host::host_is_slurmctld() {
            // sacct --completion and other tools load the plugin too: no producer,
            // no state file changes there.
            return SLURM_SUCCESS;
        }
        // The one place an administrator sees which build is loaded: the
        // project's version (Cargo.toml, also in the package and tarball names)
        // and the Slurm release it was built for.
        log::info(&format!(
            "jobcomp-kafka {} (built for Slurm {}) starting",
            env!("CARGO_PKG_VERSION"),
            crate::target::RELEASE
        ));
        let Some(settings) = host::read_settings(None) else {
            log::error("slurm_conf is not available in this process; plugin not started");
            return SLURM_ERROR;
        };
        let settings = match settings {
            Ok(settings) => settings,
            Err(refusal) => {
                // slurm_conf_t is not laid out as assumed: the job records are
                // not read either. slurmctld keeps running (23.02+ would not
                // start if init failed); every record is refused and counted.
                guard::refuse(&refusal, plugin::unix_now());
                return SLURM_SUCCESS;
            }
        };
        guard::reset();
        match plugin::init(settings, crate::target::RELEASE) {
            Ok(()) => SLURM_SUCCESS,
            Err(reason) => {
                log::error(&reason);
                SLURM_ERROR
            }
        }
    })
}

#[no_mangle]
pub extern "C" fn fini() -> c_int {
    guarded("fini", SLURM_ERROR, || {
        guard::report_not_taken();
        plugin::shutdown();
        SLURM_SUCCESS
    })
}

fn set_location(location: Option<String>) -> c_int {
    guarded("set_location", SLURM_ERROR, || {
        if !host::host_is_slurmctld() {
            // Inert outside slurmctld (sacct --completion): nothing to reconfigure.
            return SLURM_SUCCESS;
        }
        match host::read_settings(location) {
            Some(Ok(settings)) => plugin::reconfigure(settings),
            Some(Err(refusal)) => guard::refuse(&refusal, plugin::unix_now()),
            None => {}
        }
        SLURM_SUCCESS
    })
}

/// 22.05: slurmctld passes JobCompLoc.
///
/// # Safety
/// `location` is NULL or a NUL-terminated string (slurmctld passes slurm_conf's
/// job_comp_loc).
#[cfg(jk_api = "v22_05")]
#[no_mangle]
pub unsafe extern "C" fn jobcomp_p_set_location(location: *const std::ffi::c_char) -> c_int {
    let location = (!location.is_null())
        .then(|| unsafe { std::ffi::CStr::from_ptr(location) }.to_string_lossy().into_owned());
    set_location(location)
}

/// 23.02+: JobCompLoc is read from slurm_conf.
#[cfg(not(jk_api = "v22_05"))]
#[no_mangle]
pub extern "C" fn jobcomp_p_set_location() -> c_int {
    set_location(None)
}

/// The hot path: copy the record and hand it over. Runs under the job write lock.
fn record(job: *const c_void, event: Event) -> c_int {
    guarded("log_record", SLURM_ERROR, || {
        if guard::refused() {
            // The layout failed the guard: the record is not touched.
            guard::not_taken(plugin::unix_now());
            return SLURM_ERROR;
        }
        let mut refused_at = None;
        let encode = |buffer: &mut Vec<u8>| {
            if job.is_null() {
                return None;
            }
            let now = plugin::unix_now();
            // SAFETY: slurmctld passes a job record under its job lock, for the
            // duration of this call; the guard reads it checked until the
            // layout is verified, and the view is encoded and dropped before
            // this returns.
            match unsafe { guard::read_target(job, now) } {
                Some(read) => {
                    codec::encode(&read.view, buffer);
                    Some(read.view.job_id)
                }
                None => {
                    refused_at = Some(now);
                    None
                }
            }
        };
        match plugin::submit(event, encode) {
            Ok(()) => SLURM_SUCCESS,
            // Outside slurmctld the plugin is inert and every call succeeds.
            Err(NotTaken::NotRunning) => status(!host::host_is_slurmctld()),
            Err(NotTaken::Unreadable) => {
                match refused_at {
                    // The guard's line says why; this record is counted.
                    Some(now) => guard::not_taken(now),
                    None => log::error("log_record called with a NULL job record"),
                }
                SLURM_ERROR
            }
            Err(NotTaken::Lost) => SLURM_ERROR,
        }
    })
}

#[cfg(not(jk_api = "v25_05"))]
#[no_mangle]
pub extern "C" fn jobcomp_p_log_record(job: *const c_void) -> c_int {
    record(job, Event::Finish)
}

#[cfg(jk_api = "v25_05")]
#[no_mangle]
pub extern "C" fn jobcomp_p_record_job_end(job: *const c_void, _event: u32) -> c_int {
    record(job, Event::Finish)
}

#[cfg(jk_api = "v25_05")]
#[no_mangle]
pub extern "C" fn jobcomp_p_record_job_start(job: *const c_void, _event: u32) -> c_int {
    if !plugin::start_events_enabled() {
        // Without enable_job_start a start event costs nothing: no record, no log line.
        return SLURM_SUCCESS;
    }
    record(job, Event::Start)
}

/// Reading records back (sacct --completion) is not supported by a Kafka
/// plugin: NULL, as SchedMD's plugin returns.
#[no_mangle]
pub extern "C" fn jobcomp_p_get_jobs(_condition: *mut c_void) -> *mut c_void {
    std::ptr::null_mut()
}
