//! What the plugin takes from its host process: slurm_conf, the association
//! manager's lock, and whether the host is slurmctld at all.
//!
//! Symbols are found with dlsym(RTLD_DEFAULT) at run time (slurmctld is linked
//! with -export-dynamic and loads libslurmfull globally), so the plugin has no
//! undefined symbols and degrades gracefully in a host that lacks one.

use super::memory::{Checked, Memory};
use crate::guard::{Check, Refusal};
use crate::plugin::HostSettings;
use once_cell::sync::OnceCell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bit 46 of slurm_conf.debug_flags: `DebugFlags=JobComp` (named Elasticsearch
/// in 22.05) in every supported series.
const DEBUG_FLAG_JOBCOMP: u64 = 1 << 46;

fn symbol(name: &str) -> *mut c_void {
    let Ok(name) = CString::new(name) else { return std::ptr::null_mut() };
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
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
/// slurm_conf symbol). Every string is read with the guard's checked reads
/// (init and reconfigure only), and JobCompType must name this plugin: a
/// slurm_conf_t layout that is not the running release's is refused here, as
/// `Err`, before anything is taken from it.
pub fn read_settings(job_comp_loc_override: Option<String>) -> Option<Result<HostSettings, Refusal>> {
    let conf = symbol("slurm_conf") as *const crate::target::layout::slurm_conf_t;
    if conf.is_null() {
        return None;
    }
    // SAFETY: slurm_conf is a live data symbol of the host; its members are read
    // as plain values and its strings only through checked reads.
    Some(unsafe { settings_from_conf(&*conf, job_comp_loc_override) })
}

unsafe fn settings_from_conf(
    conf: &crate::target::layout::slurm_conf_t,
    job_comp_loc_override: Option<String>,
) -> Result<HostSettings, Refusal> {
    let text = |ptr: *mut c_char, field| -> Result<Option<String>, Refusal> {
        Ok(Checked.string(ptr, field)?.map(|b| String::from_utf8_lossy(b).into_owned()))
    };
    let job_comp_type = text(conf.job_comp_type, "slurm_conf.job_comp_type")?;
    if !crate::guard::job_comp_type_is_ours(job_comp_type.as_deref()) {
        return Err(Refusal::new(Check::Inconsistent, "slurm_conf.job_comp_type"));
    }
    let job_comp_loc = text(conf.job_comp_loc, "slurm_conf.job_comp_loc")?;
    if let (Some(given), Some(read)) = (&job_comp_loc_override, &job_comp_loc) {
        // 22.05 passes JobCompLoc to set_location: it must be slurm_conf's.
        if given != read {
            return Err(Refusal::new(Check::Inconsistent, "slurm_conf.job_comp_loc"));
        }
    }
    let state_save_location = text(conf.state_save_location, "slurm_conf.state_save_location")?;
    if !crate::guard::state_save_location_plausible(state_save_location.as_deref()) {
        return Err(Refusal::new(Check::Inconsistent, "slurm_conf.state_save_location"));
    }
    Ok(HostSettings {
        cluster_name: text(conf.cluster_name, "slurm_conf.cluster_name")?.unwrap_or_default(),
        job_comp_loc: job_comp_loc_override.or(job_comp_loc),
        job_comp_params: text(conf.job_comp_params, "slurm_conf.job_comp_params")?,
        state_save_location: state_save_location.map(PathBuf::from),
        jobcomp_debug: conf.debug_flags & DEBUG_FLAG_JOBCOMP != 0,
    })
}

/// What slurmctld's own find_job_record says about a job id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobLookup {
    /// The record slurmctld has for the id (NULL: none).
    Found(*const c_void),
    /// The host has no find_job_record (the tests' C host, the fuzz targets):
    /// the check is skipped.
    NoLookup,
}

type FindJobRecordFn = unsafe extern "C" fn(u32) -> *const c_void;
static FIND_JOB_RECORD: OnceCell<Option<FindJobRecordFn>> = OnceCell::new();
/// find_job_record calls made in this process (the guard's count of records
/// it checked against slurmctld's own lookup).
static LOOKUPS: AtomicU64 = AtomicU64::new(0);

/// How many times find_job_record was called in this process.
pub fn job_record_lookups() -> u64 {
    LOOKUPS.load(Ordering::Relaxed)
}

/// find_job_record(job_id) of slurmctld (a hash lookup under the job lock the
/// caller holds; no system call). Used by the guard's checked reads only.
pub fn find_job_record(job_id: u32) -> JobLookup {
    let function = FIND_JOB_RECORD.get_or_init(|| {
        let f = symbol("find_job_record");
        // SAFETY: slurmctld's `job_record_t *find_job_record(uint32_t job_id)`.
        (!f.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, FindJobRecordFn>(f) })
    });
    match function {
        Some(find) => {
            LOOKUPS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: see above; the caller holds the job lock (log_record's contract).
            JobLookup::Found(unsafe { find(job_id) })
        }
        None => JobLookup::NoLookup,
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
