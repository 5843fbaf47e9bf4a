//! The run-time layout guard's memory half (the checks and the error line are
//! pure, in `crate::guard`).
//!
//! - The first `RECORDS_TO_VERIFY` records after init are read with checked
//!   reads (`memory::Checked`: nothing can fault) and the guard's checks:
//!   magics, slurmctld's find_job_record, the step id, every pointer and string,
//!   plausibility. Then the layout is trusted: plain loads plus the cheap
//!   checks (magics, step id, plausibility; no system call).
//! - A trusted read that fails a cheap check is read again, checked; a checked
//!   read that fails refuses the layout for the rest of the process: one error
//!   line, then every record is refused without being touched and counted
//!   (`guard::NotTaken`, a line a minute).
//! - slurm_conf is checked at init (`host::read_settings`); a refusal there
//!   refuses the layout the same way.

use super::host;
use super::job::{self, JobRead, Reader};
use super::log;
use super::memory::{Checked, Trusted};
use crate::guard::{self, NotTaken, Refusal};
use crate::release::Layout;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Records read checked after each init before the layout is trusted.
pub const RECORDS_TO_VERIFY: u32 = 3;

const UNVERIFIED: u8 = 0;
const VERIFIED: u8 = 1;
const REFUSED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNVERIFIED);
static VERIFIED_RECORDS: AtomicU32 = AtomicU32::new(0);
/// find_job_record calls counted by `host` when the verification began.
static LOOKUPS_AT_RESET: AtomicU64 = AtomicU64::new(0);
static NOT_TAKEN: NotTaken = NotTaken::new();

/// init: verify the layout again on the next records. A refused layout stays
/// refused: the process's Slurm does not change.
pub fn reset() {
    let _ = STATE.compare_exchange(VERIFIED, UNVERIFIED, Ordering::Relaxed, Ordering::Relaxed);
    VERIFIED_RECORDS.store(0, Ordering::Relaxed);
    LOOKUPS_AT_RESET.store(host::job_record_lookups(), Ordering::Relaxed);
}

/// The layout as the guard's lines name it.
fn layout_name() -> String {
    let mut name = guard::layout_name(crate::target::LAYOUT, crate::target::LAYOUT_FROM_SOURCE);
    if let Some(variant) = crate::target::LAYOUT_TEST_VARIANT {
        name.push_str(&format!(" with {variant}"));
    }
    name
}

/// True once the layout was refused in this process.
pub fn refused() -> bool {
    STATE.load(Ordering::Relaxed) == REFUSED
}

/// Refuses the layout: the one error line (only the first time).
pub fn refuse(refusal: &Refusal, now: i64) {
    if STATE.swap(REFUSED, Ordering::Relaxed) == REFUSED {
        return;
    }
    NOT_TAKEN.start(now);
    log::error(&guard::failure_line(crate::target::RELEASE, &layout_name(), refusal));
}

/// A record refused because the layout was: counted, a line a minute.
pub fn not_taken(now: i64) {
    if let Some(line) = NOT_TAKEN.note(now) {
        log::error(&line);
    }
}

/// fini: the count since the last line.
pub fn report_not_taken() {
    if let Some(line) = NOT_TAKEN.report() {
        log::error(&line);
    }
}

/// Reads slurmctld's record `job` (not NULL) through the target layout, under
/// the guard. `None`: refused (the layout is refused from now on).
///
/// # Safety
/// `job` is a job record passed by slurmctld, which holds its job lock.
pub unsafe fn read_target<'a>(job: *const c_void, now: i64) -> Option<JobRead<'a>> {
    let reader = job::target_reader();
    match STATE.load(Ordering::Relaxed) {
        VERIFIED => match trusted(reader, job, now) {
            Ok(read) => Some(read),
            // A cheap check failed: look again without trusting anything.
            Err(_) => verify(reader, job, now),
        },
        UNVERIFIED => verify(reader, job, now),
        _ => None,
    }
    .map(|mut read| {
        read.view.taken_at = now;
        read
    })
}

unsafe fn trusted<'a>(reader: Reader, job: *const c_void, now: i64) -> Result<JobRead<'a>, Refusal> {
    let read = job::read_with(&Trusted, reader, job)?;
    guard::check_plausible(&read.view, now)?;
    Ok(read)
}

unsafe fn verify<'a>(reader: Reader, job: *const c_void, now: i64) -> Option<JobRead<'a>> {
    match checked(reader, job, now) {
        Ok(read) => {
            let records = VERIFIED_RECORDS.fetch_add(1, Ordering::Relaxed) + 1;
            if records >= RECORDS_TO_VERIFY
                && STATE.compare_exchange(UNVERIFIED, VERIFIED, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                // Once per init: how the layout was verified, the lookups in
                // slurmctld's own find_job_record included (none outside
                // slurmctld, where that check is skipped).
                let lookups = host::job_record_lookups() - LOOKUPS_AT_RESET.load(Ordering::Relaxed);
                log::verbose(&guard::verified_line(&layout_name(), records, lookups));
            }
            Some(read)
        }
        Err(refusal) => {
            refuse(&refusal, now);
            None
        }
    }
}

unsafe fn checked<'a>(reader: Reader, job: *const c_void, now: i64) -> Result<JobRead<'a>, Refusal> {
    let read = job::read_with(&Checked, reader, job)?;
    guard::check_plausible(&read.view, now)?;
    Ok(read)
}

/// The guard and a layout's reader over a record image in this process's own
/// memory (the fuzz target "job readers over arbitrary bytes through the
/// guard", and the tests feeding every layout every other layout's records).
/// `image` is copied into an aligned buffer, zero-filled to the layout's
/// sizeof; its pointers may point anywhere: every one is followed only through
/// checked reads, so this never faults, and it returns the snapshot the reader
/// would produce or the first check that failed. Does not change the guard's
/// state. slurmctld's find_job_record is not there (not slurmctld): skipped.
pub fn check_image(layout: Layout, image: &[u8], now: i64) -> Result<crate::snapshot::JobSnapshot, Refusal> {
    // 8-byte aligned, larger than any job_record.
    let mut buffer = [0u64; 256];
    // SAFETY: u64s viewed as bytes.
    let bytes = unsafe { std::slice::from_raw_parts_mut(buffer.as_mut_ptr() as *mut u8, buffer.len() * 8) };
    let n = image.len().min(bytes.len());
    bytes[..n].copy_from_slice(&image[..n]);
    check_record(layout, buffer.as_ptr() as *const c_void, now)
}

/// As [`check_image`], over a record in place (the tests' records of other
/// layouts, with real pointers). `job` is any pointer: it is only read
/// through checked reads, hence not an `unsafe fn`.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn check_record(layout: Layout, job: *const c_void, now: i64) -> Result<crate::snapshot::JobSnapshot, Refusal> {
    // SAFETY: checked reads only; the view is copied before this returns.
    unsafe { checked(Reader::Table(layout), job, now) }.map(|read| {
        let mut view = read.view;
        view.taken_at = now;
        view.to_snapshot()
    })
}
