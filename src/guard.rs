//! The run-time layout guard's pure half: what a refused check is called, the
//! plausibility of a record read through a layout, the one error line, and the
//! once-a-minute count of records not taken.
//!
//! The plugin reads slurmctld's private structs through declarations chosen by
//! release (`release::Release::layout`). A micro release or a site patch can
//! move a member; reading through the wrong layout follows garbage pointers
//! inside slurmctld. `slurm::guard` therefore reads the first records after
//! init with reads that cannot fault and runs these checks; a layout that fails
//! them is never read again in the process. Nothing here touches memory.

use crate::release::{Layout, Release};
use crate::snapshot::JobView;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The check a record failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// A pointer the reader would follow points at memory that is not readable.
    Unreadable,
    /// A pointer is not aligned for the struct it should point to.
    Misaligned,
    /// A string has no NUL within `STRING_BOUND` bytes.
    Unterminated,
    /// A magic number is not the struct's (JOB_MAGIC, DETAILS_MAGIC, PART_MAGIC).
    Magic { found: u32, expected: u32 },
    /// slurmctld's own find_job_record(job_id) does not return this record.
    LookupMismatch { job_id: u32 },
    /// The embedded step id (25.11+) names another job than `job_id`.
    StepIdMismatch { step_job_id: u32, job_id: u32 },
    /// A value outside what Slurm ever stores there.
    Implausible { value: i64 },
    /// slurm_conf does not say what slurmctld must have said to load this plugin.
    Inconsistent,
}

/// A failed check and the member it was made on ("job_record.details").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub check: Check,
    pub field: &'static str,
}

impl Refusal {
    pub const fn new(check: Check, field: &'static str) -> Refusal {
        Refusal { check, field }
    }

    /// "job_details.magic is 0x0 where 0x0dea84e7 was expected".
    pub fn describe(&self) -> String {
        let field = self.field;
        match self.check {
            Check::Unreadable => format!("{field} points at unreadable memory"),
            Check::Misaligned => format!("{field} is not an aligned pointer"),
            Check::Unterminated => format!("{field} is not NUL-terminated within {STRING_BOUND} bytes"),
            Check::Magic { found, expected } => {
                format!("{field} is {found:#010x} where {expected:#010x} was expected")
            }
            Check::LookupMismatch { job_id } => {
                format!("{field} {job_id} is not the record slurmctld's find_job_record({job_id}) returns")
            }
            Check::StepIdMismatch { step_job_id, job_id } => {
                format!("{field} is {step_job_id} but job_record.job_id is {job_id}")
            }
            Check::Implausible { value } => format!("{field} has the implausible value {value}"),
            Check::Inconsistent => format!("{field} does not match what slurmctld loaded this plugin with"),
        }
    }
}

/// Longest string the guard follows: a record member longer than this (a
/// megabyte of comment) is taken for a pointer into something that is not a
/// string.
pub const STRING_BOUND: usize = 1 << 20;

/// The one error line of a layout that failed: the release, the layout that
/// was assumed, the failed check, and the remedy.
pub fn failure_line(release: Release, layout: &str, refusal: &Refusal) -> String {
    format!(
        "layout guard: this plugin was built for Slurm {release} assuming the struct layout {layout}, \
         and slurmctld's memory does not match it: {}. No job record is read in this process any more \
         (each log_record returns an error; records are not published). Remedy: rebuild the plugin with \
         SLURM_SRC_DIR pointing at this site's configured Slurm {release} source tree \
         (`SLURM_SRC_DIR=/path/to/slurm-{release} make build`, after ./configure), and restart slurmctld",
        refusal.describe()
    )
}

/// The line (verbose) once the first records after init passed every check:
/// how many, and how many of them slurmctld's own find_job_record confirmed
/// (0 outside slurmctld, where that check is skipped: a test host).
pub fn verified_line(layout: &str, records: u32, lookups: u64) -> String {
    format!(
        "layout guard: the struct layout {layout} verified on {records} job record(s), \
         {lookups} of them found by slurmctld's find_job_record"
    )
}

/// How the layout is named in the error line.
pub fn layout_name(layout: Layout, from_source: bool) -> String {
    if from_source {
        "of the Slurm source tree given in SLURM_SRC_DIR at build time".to_string()
    } else {
        format!("measured on {} (slurm-headers/layout_{}.h)", layout.measured_on(), layout.tag())
    }
}

/// JOB_END: the base job states are below it (`job_state & JOB_STATE_BASE`).
const JOB_STATE_END: u32 = 12;
const JOB_STATE_BASE: u32 = 0xff;
/// 2000-01-01: no Slurm time is older, except 0 (unset).
const EARLIEST_TIME: i64 = 946_684_800;
/// Ten years ahead of now: end_time of an INFINITE job is start + one year.
const FUTURE_SLACK: i64 = 10 * 365 * 86_400;
/// More nodes or CPUs than any cluster has, below Slurm's NO_VAL / INFINITE.
const MAX_NODES: u32 = 1 << 24;
const MAX_CPUS: u32 = 1 << 30;
const NO_VAL: u32 = 0xffff_fffe;
const INFINITE: u32 = 0xffff_ffff;
/// NGROUPS_MAX on Linux.
pub const MAX_GROUPS: i32 = 65_536;

/// Times, counts and states of a record read through a layout, in the ranges
/// Slurm ever stores. `now` is the Unix time (0: unknown, no upper bound).
/// Cheap: pure arithmetic, run on every record.
pub fn check_plausible(view: &JobView, now: i64) -> Result<(), Refusal> {
    let implausible = |field, value: i64| Err(Refusal::new(Check::Implausible { value }, field));
    if view.job_id == 0 || view.job_id == NO_VAL || view.job_id == INFINITE {
        return implausible("job_record.job_id", view.job_id.into());
    }
    if view.job_state & JOB_STATE_BASE >= JOB_STATE_END {
        return implausible("job_record.job_state", view.job_state.into());
    }
    let latest = if now > 0 { now.saturating_add(FUTURE_SLACK) } else { i64::MAX };
    let time_ok = |t: i64| t == 0 || (EARLIEST_TIME..=latest).contains(&t);
    let mut times = [
        ("job_record.start_time", view.start_time),
        ("job_record.end_time", view.end_time),
        ("job_record.resize_time", view.resize_time),
        ("job_details.submit_time", 0),
        ("job_details.begin_time", 0),
    ];
    if let Some(details) = &view.details {
        times[3].1 = details.submit_time;
        times[4].1 = details.begin_time;
    }
    for (field, time) in times {
        if !time_ok(time) {
            return implausible(field, time);
        }
    }
    let count_ok = |n: u32, max: u32| n <= max || n == NO_VAL || n == INFINITE;
    if !count_ok(view.total_nodes, MAX_NODES) {
        return implausible("job_record.total_nodes", view.total_nodes.into());
    }
    if !count_ok(view.total_cpus, MAX_CPUS) {
        return implausible("job_record.total_cpus", view.total_cpus.into());
    }
    Ok(())
}

/// slurm_conf.job_comp_type as slurmctld must have it to have loaded this
/// plugin: a slurm_conf_t layout that is off reads another member here.
pub fn job_comp_type_is_ours(job_comp_type: Option<&str>) -> bool {
    job_comp_type == Some("jobcomp/kafka")
}

/// StateSaveLocation as slurmctld accepts it: unset, or a non-empty path
/// without control characters (a misplaced member reads as binary bytes).
pub fn state_save_location_plausible(location: Option<&str>) -> bool {
    location.is_none_or(|l| !l.is_empty() && !l.chars().any(|c| c.is_control() || c == '\u{fffd}'))
}

/// The records refused after the layout failed, logged at most once a minute
/// from the refusing call itself (it already reads the clock once per record,
/// so counting costs no extra system call, and nothing is logged per record).
#[derive(Debug, Default)]
pub struct NotTaken {
    total: AtomicU64,
    reported: AtomicU64,
    next_report: AtomicI64,
}

/// Seconds between two count lines.
pub const REPORT_EVERY: i64 = 60;

impl NotTaken {
    pub const fn new() -> NotTaken {
        NotTaken { total: AtomicU64::new(0), reported: AtomicU64::new(0), next_report: AtomicI64::new(0) }
    }

    /// Starts counting at `now` (the time of the failure line).
    pub fn start(&self, now: i64) {
        self.next_report.store(now.saturating_add(REPORT_EVERY), Ordering::Relaxed);
    }

    /// Counts one record; `Some(line)` when a minute has passed since the last line.
    pub fn note(&self, now: i64) -> Option<String> {
        self.total.fetch_add(1, Ordering::Relaxed);
        let due = self.next_report.load(Ordering::Relaxed);
        if now < due {
            return None;
        }
        // One caller wins the minute (log_record calls are serialized by
        // slurmctld anyway).
        if self.next_report.compare_exchange(due, now + REPORT_EVERY, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return None;
        }
        self.report()
    }

    /// The count since the last line (`None`: nothing new), e.g. at fini.
    pub fn report(&self) -> Option<String> {
        let total = self.total.load(Ordering::Relaxed);
        let since = total - self.reported.swap(total, Ordering::Relaxed);
        (since > 0).then(|| {
            format!(
                "layout guard: {since} job record(s) not taken since the last count ({total} since the layout was refused); \
                 rebuild the plugin with SLURM_SRC_DIR (see the layout guard's error line)"
            )
        })
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::DetailsFields;

    const NOW: i64 = 1_800_000_000;

    fn good() -> JobView<'static> {
        JobView {
            job_id: 7,
            job_state: 3 | 0x8000,
            start_time: NOW - 100,
            end_time: NOW,
            total_cpus: 4,
            total_nodes: 1,
            details: Some(DetailsFields { submit_time: NOW - 200, ..Default::default() }),
            ..JobView::default()
        }
    }

    #[test]
    fn plausible_records_pass() {
        assert_eq!(check_plausible(&good(), NOW), Ok(()));
        // Unset times and Slurm's NO_VAL counts are values Slurm stores.
        let mut v = good();
        (v.start_time, v.end_time, v.total_cpus, v.total_nodes) = (0, 0, NO_VAL, INFINITE);
        assert_eq!(check_plausible(&v, NOW), Ok(()));
        // An INFINITE job's end time is a year ahead.
        v.end_time = NOW + 365 * 86_400;
        assert_eq!(check_plausible(&v, NOW), Ok(()));
        // Unknown clock: no upper bound.
        v.end_time = NOW + 100 * 365 * 86_400;
        assert_eq!(check_plausible(&v, 0), Ok(()));
    }

    #[test]
    fn implausible_values_name_the_member() {
        let field = |mutate: fn(&mut JobView)| {
            let mut v = good();
            mutate(&mut v);
            check_plausible(&v, NOW).err().map(|r| r.field)
        };
        assert_eq!(field(|v| v.job_id = 0), Some("job_record.job_id"));
        assert_eq!(field(|v| v.job_state = 12), Some("job_record.job_state"));
        assert_eq!(field(|v| v.start_time = -5), Some("job_record.start_time"));
        assert_eq!(field(|v| v.end_time = 1234), Some("job_record.end_time"));
        assert_eq!(field(|v| v.resize_time = NOW + 20 * 365 * 86_400), Some("job_record.resize_time"));
        assert_eq!(field(|v| v.details.as_mut().unwrap().submit_time = i64::MAX), Some("job_details.submit_time"));
        assert_eq!(field(|v| v.details.as_mut().unwrap().begin_time = 17), Some("job_details.begin_time"));
        assert_eq!(field(|v| v.total_nodes = 1 << 25), Some("job_record.total_nodes"));
        assert_eq!(field(|v| v.total_cpus = 0x8000_0000), Some("job_record.total_cpus"));
    }

    #[test]
    fn failure_line_names_release_layout_check_and_remedy() {
        let refusal = Refusal::new(Check::Magic { found: 0, expected: 0x0dea84e7 }, "job_details.magic");
        let line = failure_line(Release::new(26, 5, 5), &layout_name(Layout::L26_05_3, false), &refusal);
        assert!(line.contains("Slurm 26.05.5"), "{line}");
        assert!(line.contains("measured on 26.05.3 (slurm-headers/layout_26_05_3.h)"), "{line}");
        assert!(line.contains("job_details.magic is 0x00000000 where 0x0dea84e7 was expected"), "{line}");
        assert!(line.contains("SLURM_SRC_DIR"), "{line}");
        assert!(!line.contains('\n'));
        let lookup = Refusal::new(Check::LookupMismatch { job_id: 9 }, "job_record.job_id").describe();
        assert_eq!(lookup, "job_record.job_id 9 is not the record slurmctld's find_job_record(9) returns");
    }

    #[test]
    fn slurm_conf_consistency() {
        assert!(job_comp_type_is_ours(Some("jobcomp/kafka")));
        assert!(!job_comp_type_is_ours(Some("jobcomp/elasticsearch")));
        assert!(!job_comp_type_is_ours(Some("")));
        assert!(!job_comp_type_is_ours(None));
        assert!(state_save_location_plausible(None));
        assert!(state_save_location_plausible(Some("/var/spool/slurmctld")));
        assert!(!state_save_location_plausible(Some("")));
        assert!(!state_save_location_plausible(Some("\u{1}\u{fffd}x")));
    }

    #[test]
    fn not_taken_is_reported_once_a_minute() {
        let n = NotTaken::default();
        n.start(NOW);
        assert_eq!(n.note(NOW), None);
        assert_eq!(n.note(NOW + 59), None);
        let line = n.note(NOW + 60).expect("a minute passed");
        assert!(line.starts_with("layout guard: 3 job record(s) not taken"), "{line}");
        assert_eq!(n.note(NOW + 61), None);
        assert_eq!(n.note(NOW + 119), None);
        let line = n.note(NOW + 125).expect("next minute");
        assert!(line.contains(" 3 job record(s)") && line.contains("(6 since"), "{line}");
        // fini: what is left since the last line, then nothing.
        n.note(NOW + 126);
        assert!(n.report().unwrap().contains(" 1 job record(s)"));
        assert_eq!(n.report(), None);
        assert_eq!(n.total(), 7);
    }
}
