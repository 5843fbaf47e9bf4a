//! What the plugin takes from its host process: slurm_conf, the association
//! manager's lock, and whether the host is slurmctld at all.
//!
//! Symbols are found with dlsym(RTLD_DEFAULT) at run time (slurmctld is linked
//! with -export-dynamic and loads libslurmfull globally), so the plugin has no
//! undefined symbols and degrades gracefully in a host that lacks one.

use crate::plugin::HostSettings;
use once_cell::sync::OnceCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;

/// Bit 46 of slurm_conf.debug_flags: `DebugFlags=JobComp` (named Elasticsearch
/// in 22.05) in every supported series.
const DEBUG_FLAG_JOBCOMP: u64 = 1 << 46;

fn symbol(name: &str) -> *mut c_void {
    let Ok(name) = CString::new(name) else { return std::ptr::null_mut() };
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

unsafe fn owned(text: *const c_char) -> Option<String> {
    if text.is_null() {
        None
    } else {
        Some(CStr::from_ptr(text).to_string_lossy().into_owned())
    }
}

/// True when the host process is slurmctld. Other programs load the configured
/// jobcomp plugin too (`sacct --completion`); there the plugin stays inert.
///
/// Debian installs the binary as /usr/sbin/slurmctld-wlm behind an alternatives
/// link named slurmctld, so both argv[0] and the executable's name are checked.
pub fn host_is_slurmctld() -> bool {
    // The process does not change: look once (it is asked on every call of an
    // inert plugin).
    static IS_SLURMCTLD: OnceCell<bool> = OnceCell::new();
    *IS_SLURMCTLD.get_or_init(look_at_process)
}

fn look_at_process() -> bool {
    let argv0 = std::fs::read("/proc/self/cmdline")
        .ok()
        .and_then(|cmdline| cmdline.split(|b| *b == 0).next().map(|a| String::from_utf8_lossy(a).into_owned()));
    let exe = std::fs::read_link("/proc/self/exe").ok().map(|p| p.to_string_lossy().into_owned());
    [argv0, exe].iter().flatten().any(|path| is_slurmctld_name(path))
}

/// "slurmctld" or a packaged variant of it ("slurmctld-wlm"), by base name.
fn is_slurmctld_name(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name == "slurmctld" || name.starts_with("slurmctld-")
}


/// The settings the plugin needs from slurm_conf (`None` when the host has no
/// slurm_conf symbol).
pub fn read_settings(job_comp_loc_override: Option<String>) -> Option<HostSettings> {
    let conf = symbol("slurm_conf") as *const crate::target::layout::slurm_conf_t;
    let conf = unsafe { conf.as_ref()? };
    unsafe {
        Some(HostSettings {
            cluster_name: owned(conf.cluster_name).unwrap_or_default(),
            job_comp_loc: job_comp_loc_override.or_else(|| owned(conf.job_comp_loc)),
            job_comp_params: owned(conf.job_comp_params),
            state_save_location: owned(conf.state_save_location).map(PathBuf::from),
            jobcomp_debug: conf.debug_flags & DEBUG_FLAG_JOBCOMP != 0,
        })
    }
}

/// assoc_mgr's lock levels, in Slurm's order: assoc, file, qos, res, tres, user, wckey.
#[repr(C)]
struct AssocMgrLocks([c_int; 7]);
const READ_LOCK: c_int = 1;

type AssocLockFn = unsafe extern "C" fn(*mut AssocMgrLocks);

/// Holds assoc_mgr's association read lock while walking `assoc_ptr` parents, as
/// slurmctld's own code does. A host without assoc_mgr (tests) gets no lock.
pub struct AssocReadLock {
    unlock: Option<AssocLockFn>,
}

static ASSOC_LOCK_FNS: OnceCell<Option<(AssocLockFn, AssocLockFn)>> = OnceCell::new();

impl AssocReadLock {
    pub fn acquire() -> AssocReadLock {
        // Resolved once: dlsym walks every loaded object, too slow for the hot path.
        let functions = ASSOC_LOCK_FNS.get_or_init(|| {
            let (lock, unlock) = (symbol("assoc_mgr_lock"), symbol("assoc_mgr_unlock"));
            if lock.is_null() || unlock.is_null() {
                return None;
            }
            unsafe {
                Some((
                    std::mem::transmute::<*mut c_void, AssocLockFn>(lock),
                    std::mem::transmute::<*mut c_void, AssocLockFn>(unlock),
                ))
            }
        });
        match functions {
            Some((lock, unlock)) => {
                unsafe { lock(&mut Self::levels()) };
                AssocReadLock { unlock: Some(*unlock) }
            }
            None => AssocReadLock { unlock: None },
        }
    }

    fn levels() -> AssocMgrLocks {
        AssocMgrLocks([READ_LOCK, 0, 0, 0, 0, 0, 0])
    }
}

impl Drop for AssocReadLock {
    fn drop(&mut self) {
        if let Some(unlock) = self.unlock {
            unsafe { unlock(&mut Self::levels()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurmctld_names() {
        assert!(is_slurmctld_name("/usr/sbin/slurmctld"));
        assert!(is_slurmctld_name("/usr/sbin/slurmctld-wlm"));
        assert!(is_slurmctld_name("slurmctld"));
        assert!(!is_slurmctld_name("/usr/bin/sacct"));
        assert!(!is_slurmctld_name("/usr/sbin/slurmctld.sh/sacct"));
        assert!(!is_slurmctld_name("/usr/sbin/slurmctldx"));
        // The unit-test binary is not slurmctld.
        assert!(!host_is_slurmctld());
        assert!(!look_at_process());
    }
}
