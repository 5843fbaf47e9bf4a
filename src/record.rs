//! Builds the JSON record of record-format.md from a [`JobSnapshot`]. Pure.
//!
//! The record is a list of (key, value) entries in emission order, written in
//! json-c's text form ([`crate::jsonc`]) so that the bytes match what SchedMD's
//! plugin produces through json-c. Which keys appear, and how their
//! values are derived, depends on the Slurm release ([`Rules`]).
//!
//! Strings from the snapshot are raw C bytes. They are taken as they are when
//! valid UTF-8 (almost always), else converted with `String::from_utf8_lossy`:
//! invalid UTF-8 becomes U+FFFD, so the record is always
//! valid JSON. This is a deliberate difference from the C plugin, which copies the
//! bytes and can emit invalid JSON.

use std::borrow::Cow;

use crate::jsonc;
use crate::release::Release;
use crate::snapshot::{Bytes, DetailsSnapshot, Event, JobSnapshot};

/// Slurm's "no value" sentinels (slurm.h).
pub const NO_VAL: u32 = 0xffff_fffe;
pub const NO_VAL16: u16 = 0xfffe;
pub const INFINITE: u32 = 0xffff_ffff;

/// `job_state` bits (slurm.h): the base state is the low byte; flags above it.
const JOB_STATE_BASE: u32 = 0xff;
const JOB_REQUEUE: u32 = 1 << 10;
const JOB_REQUEUE_HOLD: u32 = 1 << 11;
const JOB_SPECIAL_EXIT: u32 = 1 << 12;
const JOB_RESIZING: u32 = 1 << 13;
const JOB_CONFIGURING: u32 = 1 << 14;
const JOB_COMPLETING: u32 = 1 << 15;
const JOB_STOPPED: u32 = 1 << 16;
const JOB_REVOKED: u32 = 1 << 19;
const JOB_REQUEUE_FED: u32 = 1 << 20;
const JOB_RESV_DEL_HOLD: u32 = 1 << 21;
const JOB_SIGNALING: u32 = 1 << 22;
const JOB_STAGE_OUT: u32 = 1 << 23;

/// What the record depends on besides the job: the release and JobCompParams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordOptions {
    pub release: Release,
    /// JobCompParams `send_script` (25.05+).
    pub send_script: bool,
    /// JobCompParams `send_comment` (26.05+).
    pub send_comment: bool,
}

/// Whether the delivery thread should read the batch script file for this job (so
/// it does not read files it will not use).
pub fn wants_script(job: &JobSnapshot, _event: Event, opts: &RecordOptions) -> bool {
    // "script" is not a finish-only field: a 25.05+ start record carries it too.
    job.batch_flag != 0 && Rules::for_release(opts.release).script_allowed(opts)
}

/// The JSON text of one record, fields in record-format.md order and per-series
/// rules for `opts.release`. `script` is the batch script file's bytes when it
/// was read (from a NUL on, they are left out).
///
/// `Event::Start` only exists from 25.05 on; for older releases every record is
/// built as a finish record.
pub fn build_record(
    job: &JobSnapshot,
    event: Event,
    script: Option<&[u8]>,
    opts: &RecordOptions,
) -> Vec<u8> {
    RecordBuilder::new(job, event, opts).build(script).to_json()
}

// ---------------------------------------------------------------------------
// Per-release rules
// ---------------------------------------------------------------------------

/// Everything in the record that changes between releases.
#[derive(Clone, Copy, Debug)]
struct Rules {
    /// 23.11.1: elapsed is 0 unless 0 < start < end (before: end - start, even
    /// negative); the tres_*_raw pair is added.
    guarded_elapsed_and_raw_tres: bool,
    /// 23.11.9 / 24.05.1: time fields that are not dates ("Unknown", "None") and a
    /// negative @queue_wait are left out instead of being sent.
    omit_invalid_times: bool,
    /// 24.05: "priority".
    priority: bool,
    /// 25.05: start events; partition from part_ptr; script only with send_script.
    start_events: bool,
    /// 26.05: "sluid", "original_sluid", "admin_comment", "comment".
    sluid_and_comments: bool,
}

impl Rules {
    fn for_release(r: Release) -> Rules {
        Rules {
            guarded_elapsed_and_raw_tres: r.at_least(23, 11, 1),
            omit_invalid_times: r.at_least(24, 5, 1) || (r.series() == (23, 11) && r.micro >= 9),
            priority: r.at_least(24, 5, 0),
            start_events: r.at_least(25, 5, 0),
            sluid_and_comments: r.at_least(26, 5, 0),
        }
    }

    /// <= 24.11 sends the script of every batch job; 25.05+ only with send_script.
    fn script_allowed(self, opts: &RecordOptions) -> bool {
        !self.start_events || opts.send_script
    }
}

// ---------------------------------------------------------------------------
// The record as ordered entries
// ---------------------------------------------------------------------------

/// One JSON value of the record.
enum Value<'a> {
    Null,
    Int(i64),
    Float(f64),
    Text(Cow<'a, str>),
    Short(ShortText),
}

impl Value<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Int(v) => jsonc::write_i64(out, *v),
            Value::Float(v) => jsonc::write_f64(out, *v),
            Value::Text(s) => jsonc::write_str(out, s),
            Value::Short(s) => jsonc::write_str(out, s.as_str()),
        }
    }

    /// An upper bound of the bytes it takes when no character needs an escape.
    fn plain_len(&self) -> usize {
        match self {
            Value::Text(s) => s.len() + 2,
            _ => 32,
        }
    }
}

/// The record: keys in emission order.
struct Record<'a> {
    entries: Vec<(&'static str, Value<'a>)>,
}

impl Record<'_> {
    /// The compact JSON object, in one allocation unless strings need escapes.
    fn to_json(&self) -> Vec<u8> {
        let size = self.entries.iter().map(|(key, value)| key.len() + 4 + value.plain_len()).sum::<usize>() + 2;
        let mut out = Vec::with_capacity(size);
        out.push(b'{');
        for (i, (key, value)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            jsonc::write_str(&mut out, key);
            out.push(b':');
            value.write(&mut out);
        }
        out.push(b'}');
        out
    }
}

/// A short ASCII string built without allocating (times, exit codes, sluids).
/// 32 bytes hold the longest: a time string of an extreme year is at most 28.
#[derive(Clone, Copy)]
struct ShortText {
    buf: [u8; 32],
    len: usize,
}

impl ShortText {
    fn new() -> ShortText {
        ShortText {
            buf: [0; 32],
            len: 0,
        }
    }

    fn literal(s: &str) -> ShortText {
        let mut text = ShortText::new();
        text.push_str(s);
        text
    }

    fn push(&mut self, byte: u8) {
        if self.len < self.buf.len() {
            self.buf[self.len] = byte;
            self.len += 1;
        }
    }

    fn push_str(&mut self, s: &str) {
        s.bytes().for_each(|b| self.push(b));
    }

    /// Decimal, at least `width` digits (zero-padded), '-' for negatives.
    fn push_decimal(&mut self, value: i64, width: usize) {
        if value < 0 {
            self.push(b'-');
        }
        let mut digits = [0u8; 20];
        let mut n = value.unsigned_abs();
        let mut count = 0;
        while n > 0 || count < width.max(1) {
            digits[count] = b'0' + (n % 10) as u8;
            n /= 10;
            count += 1;
        }
        digits[..count].iter().rev().for_each(|&d| self.push(d));
    }

    fn as_str(&self) -> &str {
        // Only ASCII is ever pushed.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

/// Lossy UTF-8 view of C bytes: borrowed when valid. `from_utf8` first: its
/// validation runs a word at a time over ASCII, `from_utf8_lossy`'s a chunk at
/// a time, several times slower on the long strings of a record.
fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// A C string that may be NULL: the string, or JSON null.
fn text_or_null(bytes: &Bytes) -> Value<'_> {
    match bytes {
        Some(b) => Value::Text(lossy(b)),
        None => Value::Null,
    }
}

// ---------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------

struct RecordBuilder<'a> {
    job: &'a JobSnapshot,
    opts: &'a RecordOptions,
    rules: Rules,
    /// A 25.05+ start event: finish-only fields are left out, "state" is null.
    start_event: bool,
    entries: Vec<(&'static str, Value<'a>)>,
}

impl<'a> RecordBuilder<'a> {
    fn new(job: &'a JobSnapshot, event: Event, opts: &'a RecordOptions) -> RecordBuilder<'a> {
        let rules = Rules::for_release(opts.release);
        RecordBuilder {
            job,
            opts,
            rules,
            start_event: rules.start_events && event == Event::Start,
            entries: Vec::with_capacity(64),
        }
    }

    fn build(mut self, script: Option<&'a [u8]>) -> Record<'a> {
        self.put_identity();
        self.put_run_times();
        self.put_placement();
        self.put_outcome();
        self.put_array_and_het();
        self.put_scheduling();
        self.put_io_paths();
        self.put_association();
        self.put_task_layout();
        self.put_time_limit();
        self.put_names();
        self.put_tres();
        self.put_account_and_comments();
        self.put_script(script);
        self.put_parent_accounts();
        Record {
            entries: self.entries,
        }
    }

    fn put(&mut self, key: &'static str, value: Value<'a>) {
        self.entries.push((key, value));
    }

    /// Key always present: the string, or null.
    fn put_text(&mut self, key: &'static str, bytes: &'a Bytes) {
        self.put(key, text_or_null(bytes));
    }

    /// Key present only when the string is set.
    fn put_text_if_set(&mut self, key: &'static str, bytes: &'a Bytes) {
        if let Some(b) = bytes {
            self.put(key, Value::Text(lossy(b)));
        }
    }

    /// A time string; from 23.11.9 / 24.05.1 on, left out unless it is a date.
    fn put_time_text(&mut self, key: &'static str, text: ShortText) {
        if !self.rules.omit_invalid_times || is_valid_date(&text) {
            self.put(key, Value::Short(text));
        }
    }

    fn put_int(&mut self, key: &'static str, value: impl Into<i64>) {
        self.put(key, Value::Int(value.into()));
    }

    /// jobid, [sluid, original_sluid,] container, user and group.
    fn put_identity(&mut self) {
        let job = self.job;
        self.put_int("jobid", job.job_id);
        if self.rules.sluid_and_comments {
            self.put("sluid", Value::Short(sluid_text(job.db_index)));
            if job.step_sluid != 0 {
                self.put("original_sluid", Value::Short(sluid_text(job.step_sluid)));
            }
        }
        self.put_text("container", &job.container);
        self.put_text("username", &job.user_name);
        self.put_int("user_id", job.user_id);
        self.put_text("groupname", &job.group_name);
        self.put_int("group_id", job.group_id);
    }

    /// @start, and for finish records @end and elapsed.
    fn put_run_times(&mut self) {
        let job = self.job;
        self.put_time_text("@start", start_text(job));
        if self.start_event {
            return;
        }
        self.put_time_text("@end", end_text(job));
        let elapsed = self.elapsed();
        self.put_int("elapsed", elapsed);
    }

    fn elapsed(&self) -> i64 {
        let job = self.job;
        if !self.rules.guarded_elapsed_and_raw_tres {
            return job.end_time.wrapping_sub(job.start_time);
        }
        if job.start_time > 0 && job.start_time < job.end_time {
            job.end_time - job.start_time
        } else {
            0
        }
    }

    /// partition, alloc_node, nodes, total_cpus, total_nodes.
    fn put_placement(&mut self) {
        let job = self.job;
        let partition = if self.rules.start_events && job.part_ptr_name.is_some() {
            &job.part_ptr_name
        } else {
            &job.partition
        };
        self.put_text("partition", partition);
        self.put_text("alloc_node", &job.alloc_node);
        self.put_text("nodes", &job.nodes);
        self.put_int("total_cpus", job.total_cpus);
        self.put_int("total_nodes", job.total_nodes);
    }

    /// derived_ec, exit_code, state, failed_node, cpu_hours (state only, as null,
    /// on a start event).
    fn put_outcome(&mut self) {
        let job = self.job;
        if self.start_event {
            self.put("state", Value::Null);
            return;
        }
        self.put("derived_ec", Value::Short(exit_signal_text(job.derived_ec)));
        self.put("exit_code", Value::Short(exit_signal_text(job.exit_code)));
        let state = Cow::Borrowed(state_name(job.job_state));
        self.put("state", Value::Text(state));
        self.put_text("failed_node", &job.failed_node);
        let hours = cpu_hours(self.elapsed(), job.total_cpus);
        self.put("cpu_hours", Value::Float(hours));
    }

    /// array_job_id/array_task_id; pack_* and het_* (finish records only).
    fn put_array_and_het(&mut self) {
        let job = self.job;
        if job.array_task_id != NO_VAL {
            self.put_int("array_job_id", job.array_job_id);
            self.put_int("array_task_id", job.array_task_id);
        }
        if job.het_job_id != NO_VAL {
            // The old "pack" names are still sent next to the new ones, in finish
            // records only; start records (25.05+) carry just the het pair, as
            // SchedMD's 26.05.5 plugin was seen to send (tests/e2e26 differential).
            if !self.start_event {
                self.put_int("pack_job_id", job.het_job_id);
                self.put_int("pack_job_offset", job.het_job_offset);
            }
            self.put_int("het_job_id", job.het_job_id);
            self.put_int("het_job_offset", job.het_job_offset);
        }
    }

    /// priority, @submit, @eligible, @queue_wait.
    fn put_scheduling(&mut self) {
        let job = self.job;
        if self.rules.priority && job.priority != NO_VAL && job.priority != INFINITE {
            self.put_int("priority", job.priority);
        }
        let Some(details) = &job.details else { return };
        if details.submit_time != 0 {
            self.put_time_text("@submit", time_text(details.submit_time));
        }
        if details.begin_time != 0 {
            self.put_time_text("@eligible", time_text(details.begin_time));
            self.put_queue_wait(details);
        }
    }

    fn put_queue_wait(&mut self, details: &DetailsSnapshot) {
        if self.job.start_time == 0 {
            return;
        }
        let wait = difftime(self.job.start_time, details.begin_time);
        if wait >= 0 || !self.rules.omit_invalid_times {
            self.put_int("@queue_wait", wait);
        }
    }

    /// work_dir, std_err, std_in, std_out.
    fn put_io_paths(&mut self) {
        let Some(details) = &self.job.details else {
            return;
        };
        self.put_text_if_set("work_dir", &details.work_dir);
        self.put_text_if_set("std_err", &details.std_err);
        self.put_text_if_set("std_in", &details.std_in);
        self.put_text_if_set("std_out", &details.std_out);
    }

    /// cluster, qos.
    fn put_association(&mut self) {
        self.put_text_if_set("cluster", &self.job.cluster);
        self.put_text_if_set("qos", &self.job.qos);
    }

    /// ntasks, ntasks_per_node, ntasks_per_tres, cpus_per_task, orig_dependency,
    /// excluded_nodes, features.
    fn put_task_layout(&mut self) {
        let Some(details) = &self.job.details else {
            return;
        };
        if details.num_tasks != NO_VAL {
            self.put_int("ntasks", details.num_tasks);
        }
        let per_task_counts = [
            ("ntasks_per_node", details.ntasks_per_node),
            ("ntasks_per_tres", details.ntasks_per_tres),
            ("cpus_per_task", details.cpus_per_task),
        ];
        for (key, count) in per_task_counts {
            if count != NO_VAL16 {
                self.put_int(key, count);
            }
        }
        self.put_text_if_set("orig_dependency", &details.orig_dependency);
        self.put_text_if_set("excluded_nodes", &details.exc_nodes);
        self.put_text_if_set("features", &details.features);
    }

    /// time_limit in seconds: minutes * 60 in 32-bit unsigned arithmetic, as C does
    /// (it wraps for huge limits); the partition's MaxTime when the job has none.
    fn put_time_limit(&mut self) {
        let job = self.job;
        let minutes = match (job.time_limit, job.part_max_time) {
            (NO_VAL, Some(part_max)) => part_max,
            (own, _) => own,
        };
        if minutes != INFINITE {
            self.put_int("time_limit", minutes.wrapping_mul(60));
        }
    }

    /// job_name, reservation_name, wc_key.
    fn put_names(&mut self) {
        let job = self.job;
        self.put_text_if_set("job_name", &job.name);
        self.put_text_if_set("reservation_name", &job.resv_name);
        self.put_text_if_set("wc_key", &job.wckey);
    }

    /// tres_req_raw (23.11.1+), tres_req, tres_alloc_raw (23.11.1+), tres_alloc.
    fn put_tres(&mut self) {
        let job = self.job;
        let raw = self.rules.guarded_elapsed_and_raw_tres;
        if raw {
            self.put_text_if_set("tres_req_raw", &job.tres_req_str);
        }
        self.put_text_if_set("tres_req", &job.tres_fmt_req_str);
        if raw {
            self.put_text_if_set("tres_alloc_raw", &job.tres_alloc_str);
        }
        self.put_text_if_set("tres_alloc", &job.tres_fmt_alloc_str);
    }

    /// account; admin_comment (26.05+); comment (26.05+ with send_comment).
    fn put_account_and_comments(&mut self) {
        let job = self.job;
        self.put_text_if_set("account", &job.account);
        if !self.rules.sluid_and_comments {
            return;
        }
        self.put_text_if_set("admin_comment", &job.admin_comment);
        if self.opts.send_comment {
            self.put_text_if_set("comment", &job.comment);
        }
    }

    /// The batch script, when it was read, for batch jobs, where the release sends
    /// it. C reads it as a C string, so it ends at the first NUL byte.
    fn put_script(&mut self, script: Option<&'a [u8]>) {
        let Some(script) = script else { return };
        if self.job.batch_flag == 0 || !self.rules.script_allowed(self.opts) {
            return;
        }
        let text = before_nul(script);
        self.put("script", Value::Text(lossy(text)));
    }

    /// "/root/.../acct": the association's account and its parents', root first;
    /// null when none of them has an account.
    fn put_parent_accounts(&mut self) {
        let Some(chain) = &self.job.assoc_chain else {
            return;
        };
        if chain.is_empty() {
            self.put("parent_accounts", Value::Null);
            return;
        }
        let mut path = String::with_capacity(chain.iter().map(|a| a.len() + 1).sum());
        for account in chain.iter().rev() {
            path.push('/');
            path.push_str(&lossy(account));
        }
        self.put("parent_accounts", Value::Text(Cow::Owned(path)));
    }
}

// ---------------------------------------------------------------------------
// Field values
// ---------------------------------------------------------------------------

fn is_resizing(job: &JobSnapshot) -> bool {
    job.job_state & JOB_RESIZING != 0
}

/// @start: resize_time if set; "Unknown" when the job "started" after it ended
/// (cancelled while pending, with an expected start in the future); else
/// start_time. A resizing job never gets "Unknown".
fn start_text(job: &JobSnapshot) -> ShortText {
    if job.resize_time != 0 {
        time_text(job.resize_time)
    } else if !is_resizing(job) && job.start_time > job.end_time {
        ShortText::literal("Unknown")
    } else {
        time_text(job.start_time)
    }
}

/// @end: end_time; "now" (the snapshot time) for a resizing job.
fn end_text(job: &JobSnapshot) -> ShortText {
    if is_resizing(job) {
        time_text(job.taken_at)
    } else {
        time_text(job.end_time)
    }
}

/// Slurm's `parse_time_make_str_utc`: "Unknown" for 0 and INFINITE, "None" for
/// NO_VAL, else UTC `%Y-%m-%dT%H:%M:%S` (glibc does not pad the year).
fn time_text(time: i64) -> ShortText {
    if time == 0 || time == i64::from(INFINITE) {
        return ShortText::literal("Unknown");
    }
    if time == i64::from(NO_VAL) {
        return ShortText::literal("None");
    }
    let civil = CivilTime::from_unix(time);
    let mut text = ShortText::new();
    text.push_decimal(civil.year, 1);
    for (separator, value) in [
        (b'-', civil.month),
        (b'-', civil.day),
        (b'T', civil.hour),
        (b':', civil.minute),
        (b':', civil.second),
    ] {
        text.push(separator);
        text.push_decimal(i64::from(value), 2);
    }
    text
}

/// The 23.11.9 / 24.05.1 check: a time string is sent only when it is a date.
fn is_valid_date(text: &ShortText) -> bool {
    let s = text.as_str();
    !(s.is_empty() || s.eq_ignore_ascii_case("unknown") || s.eq_ignore_ascii_case("none"))
}

/// A UTC calendar time.
#[derive(Debug, PartialEq, Eq)]
struct CivilTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl CivilTime {
    fn from_unix(time: i64) -> CivilTime {
        let days = time.div_euclid(86_400);
        let secs = time.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        CivilTime {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
        }
    }
}

/// Proleptic Gregorian date of a day count from 1970-01-01, counting in 400-year
/// eras (146097 days) of years that start on March 1st, so that the leap day is
/// the last day of a year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    const DAYS_PER_ERA: i64 = 146_097;
    // 1970-01-01 is day 719468 counted from 0000-03-01.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(DAYS_PER_ERA);
    let day_of_era = shifted.rem_euclid(DAYS_PER_ERA); // 0..=146096
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // 0 = March .. 11 = February
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// C's `difftime(a, b)` converted to int64: the difference as a double, truncated.
fn difftime(a: i64, b: i64) -> i64 {
    (i128::from(a) - i128::from(b)) as f64 as i64
}

/// "exit:signal" from a wait(2) status, as C's WIFSIGNALED / WIFEXITED read it;
/// NO_VAL (and a stopped status) give "0:0".
fn exit_signal_text(status: u32) -> ShortText {
    let (exit, signal) = split_wait_status(status);
    let mut text = ShortText::new();
    text.push_decimal(i64::from(exit), 1);
    text.push(b':');
    text.push_decimal(i64::from(signal), 1);
    text
}

fn split_wait_status(status: u32) -> (u32, u32) {
    if status == NO_VAL {
        return (0, 0);
    }
    let low = status & 0x7f;
    match low {
        0 => ((status >> 8) & 0xff, 0), // WIFEXITED
        0x7f => (0, 0),                 // stopped: neither
        signal => (0, signal),          // WIFSIGNALED
    }
}

/// The "state" value: the base state's name, or for a resizing job the name
/// Slurm's `job_state_string` gives the full state (normally "RESIZING").
fn state_name(job_state: u32) -> &'static str {
    if job_state & JOB_RESIZING != 0 {
        job_state_string(job_state)
    } else {
        job_state_string(job_state & JOB_STATE_BASE)
    }
}

/// Slurm's `job_state_string`: the first flag set, in Slurm's order, else the
/// base state's name.
fn job_state_string(state: u32) -> &'static str {
    const FLAG_NAMES: [(u32, &str); 12] = [
        (JOB_COMPLETING, "COMPLETING"),
        (JOB_STAGE_OUT, "STAGE_OUT"),
        (JOB_CONFIGURING, "CONFIGURING"),
        (JOB_RESIZING, "RESIZING"),
        (JOB_REQUEUE, "REQUEUED"),
        (JOB_REQUEUE_FED, "REQUEUE_FED"),
        (JOB_REQUEUE_HOLD, "REQUEUE_HOLD"),
        (JOB_SPECIAL_EXIT, "SPECIAL_EXIT"),
        (JOB_STOPPED, "STOPPED"),
        (JOB_REVOKED, "REVOKED"),
        (JOB_RESV_DEL_HOLD, "RESV_DEL_HOLD"),
        (JOB_SIGNALING, "SIGNALING"),
    ];
    if let Some((_, name)) = FLAG_NAMES.iter().find(|(flag, _)| state & flag != 0) {
        return name;
    }
    base_state_name(state & JOB_STATE_BASE)
}

fn base_state_name(base: u32) -> &'static str {
    const NAMES: [&str; 12] = [
        "PENDING",
        "RUNNING",
        "SUSPENDED",
        "COMPLETED",
        "CANCELLED",
        "FAILED",
        "TIMEOUT",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "OUT_OF_MEMORY",
    ];
    NAMES.get(base as usize).copied().unwrap_or("?")
}

/// cpu_hours as C computes it: `(elapsed * total_cpus) / 3600.0f` -- a 64-bit
/// integer product, converted to float, divided in single precision, and then
/// widened to double for json-c.
fn cpu_hours(elapsed: i64, total_cpus: u32) -> f64 {
    let cpu_seconds = elapsed.wrapping_mul(i64::from(total_cpus));
    f64::from(cpu_seconds as f32 / 3600.0f32)
}

/// Slurm's `sluid2str`: 's' and 13 Crockford base32 digits, most significant
/// first (the first digit holds the top 4 bits).
fn sluid_text(value: u64) -> ShortText {
    const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut text = ShortText::new();
    text.push(b's');
    for position in (0..13u32).rev() {
        let digit = (value >> (5 * position)) & 0x1f;
        text.push(CROCKFORD[digit as usize]);
    }
    text
}

/// `bytes` up to their first NUL (all of them without one). Through
/// `CStr::from_bytes_until_nul`, which scans a word at a time: batch scripts
/// are the longest field of a record.
pub fn before_nul(bytes: &[u8]) -> &[u8] {
    std::ffi::CStr::from_bytes_until_nul(bytes).map_or(bytes, |text| text.to_bytes())
}

#[cfg(test)]
mod tests {
    //! Expected texts are written from record-format.md (its example record,
    //! edited by hand per rule) and from values computed once with glibc, never
    //! from this module's own output.

    use super::*;
    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

    /// The example record of record-format.md, byte for byte.
    const EXAMPLE: &str = include_str!("../tests/data/records/example-24.11-finish.json");
    const SCRIPT: &[u8] = b"#!/bin/bash\n#SBATCH -n 4\nsrun hostname\n";
    const SCRIPT_ENTRY: &str = r##","script":"#!\/bin\/bash\n#SBATCH -n 4\nsrun hostname\n""##;
    /// 2024-05-01T10:00:00Z and 11:01:01Z; submit/eligible at 09:58:00Z.
    const START: i64 = 1_714_557_600;
    const END: i64 = START + 3661;
    const SUBMIT: i64 = START - 120;

    fn b(s: &str) -> Bytes {
        Some(s.as_bytes().to_vec())
    }

    /// The job behind the example record (24.11, finish event): exit 0, state
    /// COMPLETED (3) with the COMPLETING flag still set, 60 minutes limit, no
    /// array, an ordinary (het_job_id 0) job, batch.
    fn example_job() -> JobSnapshot {
        JobSnapshot {
            job_id: 1234,
            db_index: 0xbc06_4b44_83ea_1000,
            step_sluid: 0,
            container: None,
            user_id: 1000,
            group_id: 100,
            user_name: b("alice"),
            group_name: b("users"),
            start_time: START,
            end_time: END,
            resize_time: 0,
            job_state: JOB_COMPLETING | 3,
            partition: b("debug"),
            part_ptr_name: b("debug"),
            part_max_time: Some(INFINITE),
            alloc_node: b("login1"),
            nodes: b("node[01-02]"),
            total_cpus: 4,
            total_nodes: 2,
            derived_ec: 0,
            exit_code: 0,
            failed_node: None,
            array_job_id: 0,
            array_task_id: NO_VAL,
            het_job_id: 0,
            het_job_offset: 0,
            priority: 1,
            details: Some(DetailsSnapshot {
                submit_time: SUBMIT,
                begin_time: SUBMIT,
                work_dir: b("/home/alice"),
                std_err: None,
                std_in: b("/dev/null"),
                std_out: b("/home/alice/slurm-%j.out"),
                num_tasks: 4,
                ntasks_per_node: NO_VAL16,
                ntasks_per_tres: NO_VAL16,
                cpus_per_task: 1,
                orig_dependency: None,
                exc_nodes: None,
                features: None,
            }),
            cluster: b("cluster1"),
            qos: b("normal"),
            time_limit: 60,
            name: b("test.sh"),
            resv_name: None,
            wckey: None,
            tres_req_str: b("1=4,2=8000,4=2,5=4"),
            tres_fmt_req_str: b("cpu=4,mem=8000M,node=2,billing=4"),
            tres_alloc_str: b("1=4,2=8000,4=2,5=4"),
            tres_fmt_alloc_str: b("cpu=4,mem=8000M,node=2,billing=4"),
            account: b("physics"),
            admin_comment: b("checked by admin"),
            comment: b("user note"),
            batch_flag: 1,
            assoc_chain: Some(vec![
                b"physics".to_vec(),
                b"physics".to_vec(),
                b"root".to_vec(),
            ]),
            taken_at: END + 5,
        }
    }

    fn opts(release: &str) -> RecordOptions {
        RecordOptions {
            release: Release::parse(release).unwrap(),
            send_script: false,
            send_comment: false,
        }
    }

    fn render(job: &JobSnapshot, event: Event, script: Option<&[u8]>, o: &RecordOptions) -> String {
        let bytes = build_record(job, event, script, o);
        String::from_utf8(bytes).expect("record is UTF-8")
    }

    fn finish(job: &JobSnapshot, release: &str) -> String {
        render(job, Event::Finish, Some(SCRIPT), &opts(release))
    }

    /// `text` with `cut` removed; panics when `cut` is absent (a typo in a test).
    fn without(text: &str, cut: &str) -> String {
        assert!(text.contains(cut), "{cut} not in {text}");
        text.replacen(cut, "", 1)
    }

    fn replaced(text: &str, from: &str, to: &str) -> String {
        assert!(text.contains(from), "{from} not in {text}");
        text.replacen(from, to, 1)
    }

    /// The example as 23.02 - 23.11.0 send it: no priority, no raw TRES.
    fn example_without_priority_and_raw_tres() -> String {
        let text = without(EXAMPLE, r#""priority":1,"#);
        let text = without(&text, r#""tres_req_raw":"1=4,2=8000,4=2,5=4","#);
        without(&text, r#""tres_alloc_raw":"1=4,2=8000,4=2,5=4","#)
    }

    /// A JSON object's entries in document order (serde_json::Value sorts keys).
    struct Ordered(Vec<(String, serde_json::Value)>);

    impl<'de> Deserialize<'de> for Ordered {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ordered, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Ordered;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                    let mut entries = Vec::new();
                    while let Some(entry) = map.next_entry()? {
                        entries.push(entry);
                    }
                    Ok(Ordered(entries))
                }
            }
            d.deserialize_map(V)
        }
    }

    fn parse(text: &str) -> Vec<(String, serde_json::Value)> {
        serde_json::from_str::<Ordered>(text)
            .expect("valid JSON object")
            .0
    }

    fn field(text: &str, key: &str) -> Option<serde_json::Value> {
        parse(text)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn keys(text: &str) -> Vec<String> {
        parse(text).into_iter().map(|(k, _)| k).collect()
    }

    // ----- whole records per series ----------------------------------------

    #[test]
    fn example_record_comes_out_byte_for_byte() {
        assert_eq!(finish(&example_job(), "24.11.5"), EXAMPLE);
        for micro in ["24.11.0", "24.11.3", "24.11.7"] {
            assert_eq!(finish(&example_job(), micro), EXAMPLE, "{micro}");
        }
    }

    #[test]
    fn example_is_valid_json_with_the_spec_field_order() {
        let expected = [
            "jobid",
            "container",
            "username",
            "user_id",
            "groupname",
            "group_id",
            "@start",
            "@end",
            "elapsed",
            "partition",
            "alloc_node",
            "nodes",
            "total_cpus",
            "total_nodes",
            "derived_ec",
            "exit_code",
            "state",
            "failed_node",
            "cpu_hours",
            "pack_job_id",
            "pack_job_offset",
            "het_job_id",
            "het_job_offset",
            "priority",
            "@submit",
            "@eligible",
            "@queue_wait",
            "work_dir",
            "std_in",
            "std_out",
            "cluster",
            "qos",
            "ntasks",
            "cpus_per_task",
            "time_limit",
            "job_name",
            "tres_req_raw",
            "tres_req",
            "tres_alloc_raw",
            "tres_alloc",
            "account",
            "script",
            "parent_accounts",
        ];
        assert_eq!(keys(&finish(&example_job(), "24.11.5")), expected);
    }

    #[test]
    fn series_24_05_adds_priority_to_the_23_11_set() {
        // 24.05.x sends the same record as 24.11 for this job.
        assert_eq!(finish(&example_job(), "24.05.0"), EXAMPLE);
        assert_eq!(finish(&example_job(), "24.05.8"), EXAMPLE);
        let without_priority = without(EXAMPLE, r#""priority":1,"#);
        assert_eq!(finish(&example_job(), "23.11.1"), without_priority);
        assert_eq!(finish(&example_job(), "23.11.10"), without_priority);
    }

    #[test]
    fn series_23_02_and_23_11_0_lack_raw_tres() {
        let expected = example_without_priority_and_raw_tres();
        assert_eq!(finish(&example_job(), "23.02.0"), expected);
        assert_eq!(finish(&example_job(), "23.02.7"), expected);
        assert_eq!(finish(&example_job(), "23.11.0"), expected);
    }

    #[test]
    fn series_22_05_uses_the_23_02_field_set() {
        // 22.05 has no failed_node: the snapshot holds None, the key stays, null.
        let job = example_job();
        assert_eq!(job.failed_node, None);
        assert_eq!(
            finish(&job, "22.05.8"),
            example_without_priority_and_raw_tres()
        );
        let mut failed = example_job();
        failed.failed_node = b("node02");
        let expected = replaced(
            &example_without_priority_and_raw_tres(),
            r#""failed_node":null"#,
            r#""failed_node":"node02""#,
        );
        assert_eq!(finish(&failed, "23.02.7"), expected);
    }

    #[test]
    fn series_25_05_finish_sends_script_only_with_send_script() {
        let no_script = without(EXAMPLE, SCRIPT_ENTRY);
        for release in ["25.05.0", "25.05.8", "25.11.2"] {
            assert_eq!(finish(&example_job(), release), no_script, "{release}");
            let mut o = opts(release);
            o.send_script = true;
            let text = render(&example_job(), Event::Finish, Some(SCRIPT), &o);
            assert_eq!(text, EXAMPLE, "{release} send_script");
        }
    }

    #[test]
    fn series_25_05_start_event_omits_finish_fields() {
        let text = without(EXAMPLE, r#","@end":"2024-05-01T11:01:01","elapsed":3661"#);
        let text = without(&text, r#""derived_ec":"0:0","exit_code":"0:0","#);
        let text = replaced(
            &text,
            concat!(
                r#""state":"COMPLETED","failed_node":null,"cpu_hours":4.0677776336669922,"#,
                r#""pack_job_id":0,"pack_job_offset":0,"het_job_id":0,"het_job_offset":0,"#
            ),
            r#""state":null,"het_job_id":0,"het_job_offset":0,"#,
        );
        let expected = without(&text, SCRIPT_ENTRY);
        let mut job = example_job();
        job.job_state = 1; // RUNNING: a start record carries no state anyway
        let o = opts("25.05.2");
        assert_eq!(render(&job, Event::Start, Some(SCRIPT), &o), expected);
        // With send_script a start record carries the script too.
        let o = RecordOptions {
            send_script: true,
            ..o
        };
        let with_script = replaced(
            &expected,
            r#","parent_accounts""#,
            &format!("{SCRIPT_ENTRY},\"parent_accounts\""),
        );
        assert_eq!(render(&job, Event::Start, Some(SCRIPT), &o), with_script);
    }

    #[test]
    fn start_event_before_25_05_is_a_finish_record() {
        let o = opts("24.11.5");
        assert_eq!(
            render(&example_job(), Event::Start, Some(SCRIPT), &o),
            EXAMPLE
        );
    }

    #[test]
    fn series_26_05_adds_sluid_and_comments() {
        // db_index 0xbc064b4483ea1000 is the vector of Slurm's own sluid unit test.
        let base = without(EXAMPLE, SCRIPT_ENTRY);
        let with_sluid = replaced(
            &base,
            r#""jobid":1234,"#,
            r#""jobid":1234,"sluid":"sBR1JB8J1YM400","#,
        );
        let expected = replaced(
            &with_sluid,
            r#""account":"physics","#,
            r#""account":"physics","admin_comment":"checked by admin","#,
        );
        assert_eq!(finish(&example_job(), "26.05.5"), expected);

        let mut o = opts("26.05.5");
        o.send_comment = true;
        let with_comment = replaced(
            &expected,
            r#""admin_comment":"checked by admin","#,
            r#""admin_comment":"checked by admin","comment":"user note","#,
        );
        assert_eq!(
            render(&example_job(), Event::Finish, Some(SCRIPT), &o),
            with_comment
        );
    }

    #[test]
    fn original_sluid_only_when_set() {
        let mut job = example_job();
        job.step_sluid = 1;
        let text = finish(&job, "26.05.0");
        assert!(text.starts_with(
            r#"{"jobid":1234,"sluid":"sBR1JB8J1YM400","original_sluid":"s0000000000001","container""#
        ));
        job.admin_comment = None;
        assert_eq!(field(&finish(&job, "26.05.0"), "admin_comment"), None);
        assert_eq!(field(&finish(&job, "25.11.7"), "sluid"), None);
    }

    // ----- @start / @end / elapsed ------------------------------------------

    /// Cancelled while pending: the expected start lies after the end.
    fn cancelled_pending_job() -> JobSnapshot {
        let mut job = example_job();
        job.start_time = END + 100;
        job.job_state = 4; // CANCELLED
        job
    }

    #[test]
    fn start_after_end_before_23_11_1_sends_unknown_and_negative_elapsed() {
        let text = finish(&cancelled_pending_job(), "23.11.0");
        // elapsed = end - start = -100; cpu_hours = (float)(-400) / 3600.0f widened,
        // -0.1111111119389534 per glibc printf("%.17g").
        let expected = concat!(
            r#""@start":"Unknown","@end":"2024-05-01T11:01:01","elapsed":-100,"#,
            r#""partition""#
        );
        assert!(text.contains(expected), "{text}");
        assert!(text.contains(
            r#""state":"CANCELLED","failed_node":null,"cpu_hours":-0.1111111119389534,"#
        ));
        assert!(text.contains(r#""@queue_wait":3881,"#));
    }

    #[test]
    fn start_after_end_from_23_11_1_gives_zero_elapsed() {
        for release in ["23.11.1", "23.11.8", "24.05.0"] {
            let text = finish(&cancelled_pending_job(), release);
            let expected = r#""@start":"Unknown","@end":"2024-05-01T11:01:01","elapsed":0,"#;
            assert!(text.contains(expected), "{release}: {text}");
            assert!(text.contains(r#""cpu_hours":0.0,"#), "{release}");
        }
    }

    #[test]
    fn unknown_start_is_omitted_from_23_11_9_and_24_05_1() {
        for release in [
            "23.11.9", "23.11.10", "24.05.1", "24.11.0", "25.05.0", "26.05.5",
        ] {
            let text = finish(&cancelled_pending_job(), release);
            assert_eq!(field(&text, "@start"), None, "{release}");
            let expected = r#""group_id":100,"@end":"2024-05-01T11:01:01","elapsed":0,"#;
            assert!(text.contains(expected), "{release}: {text}");
        }
    }

    #[test]
    fn unset_times_before_and_after_the_omit_rule() {
        let mut job = example_job();
        job.start_time = 0;
        job.end_time = 0;
        let old = finish(&job, "24.05.0");
        assert!(
            old.contains(r#""@start":"Unknown","@end":"Unknown","elapsed":0,"#),
            "{old}"
        );
        let new = finish(&job, "24.05.1");
        assert!(
            new.contains(r#""group_id":100,"elapsed":0,"partition""#),
            "{new}"
        );
        // 23.02: elapsed = end - start = 0 - 0.
        assert!(finish(&job, "23.02.7").contains(r#""@end":"Unknown","elapsed":0,"#));
    }

    #[test]
    fn unset_start_before_23_11_1_counts_from_the_epoch() {
        let mut job = example_job();
        job.start_time = 0;
        let text = finish(&job, "23.02.7");
        assert!(text.contains(&format!(
            r#""@start":"Unknown","@end":"2024-05-01T11:01:01","elapsed":{END},"#
        )));
        // Not sent at all without a start: no @queue_wait.
        assert_eq!(field(&text, "@queue_wait"), None);
        assert_eq!(field(&finish(&job, "24.11.5"), "elapsed"), Some(0.into()));
    }

    #[test]
    fn no_val_time_is_none_then_omitted() {
        let mut job = example_job();
        job.details.as_mut().unwrap().submit_time = i64::from(NO_VAL);
        job.details.as_mut().unwrap().begin_time = i64::from(INFINITE);
        let old = finish(&job, "24.05.0");
        assert!(
            old.contains(r#""@submit":"None","@eligible":"Unknown","@queue_wait":"#),
            "{old}"
        );
        let new = finish(&job, "24.05.1");
        assert_eq!(field(&new, "@submit"), None);
        assert_eq!(field(&new, "@eligible"), None);
    }

    #[test]
    fn resizing_job_uses_now_and_the_full_state_name() {
        let mut job = example_job();
        job.job_state = JOB_RESIZING | 1;
        job.start_time = END + 100; // never "Unknown" while resizing
        let text = finish(&job, "24.11.5");
        assert!(
            text.contains(r#""@start":"2024-05-01T11:02:41","@end":"2024-05-01T11:01:06","#),
            "{text}"
        );
        assert_eq!(field(&text, "state"), Some("RESIZING".into()));
        job.resize_time = START + 60;
        let text = finish(&job, "24.11.5");
        assert!(text.contains(r#""@start":"2024-05-01T10:01:00","@end":"2024-05-01T11:01:06","#));
    }

    #[test]
    fn resize_time_replaces_start_for_finished_jobs() {
        let mut job = example_job();
        job.resize_time = START + 1;
        let text = finish(&job, "24.11.5");
        assert!(text.contains(
            r#""@start":"2024-05-01T10:00:01","@end":"2024-05-01T11:01:01","elapsed":3661,"#
        ));
    }

    #[test]
    fn negative_queue_wait_is_omitted_from_the_fix_on() {
        let mut job = example_job();
        job.details.as_mut().unwrap().begin_time = START + 30;
        assert_eq!(
            field(&finish(&job, "24.05.0"), "@queue_wait"),
            Some((-30).into())
        );
        assert_eq!(
            field(&finish(&job, "23.11.8"), "@queue_wait"),
            Some((-30).into())
        );
        assert_eq!(field(&finish(&job, "23.11.9"), "@queue_wait"), None);
        assert_eq!(field(&finish(&job, "24.05.1"), "@queue_wait"), None);
        job.details.as_mut().unwrap().begin_time = START;
        assert_eq!(
            field(&finish(&job, "24.11.5"), "@queue_wait"),
            Some(0.into())
        );
    }

    // ----- omissions and sentinels -------------------------------------------

    #[test]
    fn sentinels_leave_fields_out() {
        let mut job = example_job();
        job.het_job_id = NO_VAL;
        job.priority = NO_VAL;
        job.time_limit = INFINITE;
        job.details.as_mut().unwrap().num_tasks = NO_VAL;
        job.details.as_mut().unwrap().cpus_per_task = NO_VAL16;
        let text = finish(&job, "24.11.5");
        for key in [
            "pack_job_id",
            "het_job_offset",
            "priority",
            "time_limit",
            "ntasks",
            "cpus_per_task",
        ] {
            assert_eq!(field(&text, key), None, "{key}");
        }
        job.priority = INFINITE;
        assert_eq!(field(&finish(&job, "24.11.5"), "priority"), None);
        job.priority = NO_VAL - 1;
        assert_eq!(
            field(&finish(&job, "24.11.5"), "priority"),
            Some((NO_VAL - 1).into())
        );
    }

    #[test]
    fn array_and_het_fields() {
        let mut job = example_job();
        job.array_job_id = 1200;
        job.array_task_id = 7;
        job.het_job_id = 1230;
        job.het_job_offset = 2;
        let text = finish(&job, "24.11.5");
        let expected = concat!(
            r#""cpu_hours":4.0677776336669922,"array_job_id":1200,"array_task_id":7,"#,
            r#""pack_job_id":1230,"pack_job_offset":2,"het_job_id":1230,"het_job_offset":2,"#,
            r#""priority":1,"#
        );
        assert!(text.contains(expected), "{text}");
        // A start record keeps the array fields and the het pair, not the pack one.
        let start = render(&job, Event::Start, None, &opts("25.05.0"));
        assert!(
            start.contains(concat!(
                r#""state":null,"array_job_id":1200,"array_task_id":7,"#,
                r#""het_job_id":1230,"het_job_offset":2,"priority":1,"#
            )),
            "{start}"
        );
    }

    #[test]
    fn all_optional_fields_in_order() {
        let mut job = example_job();
        let d = job.details.as_mut().unwrap();
        d.std_err = b("/e");
        d.ntasks_per_node = 2;
        d.ntasks_per_tres = 0;
        d.orig_dependency = b("afterok:1");
        d.exc_nodes = b("node09");
        d.features = b("gpu&ib");
        job.resv_name = b("maint");
        job.wckey = b("*proj");
        let text = finish(&job, "24.11.5");
        let expected = concat!(
            r#""work_dir":"\/home\/alice","std_err":"\/e","std_in":"\/dev\/null","#,
            r#""std_out":"\/home\/alice\/slurm-%j.out","cluster":"cluster1","qos":"normal","#,
            r#""ntasks":4,"ntasks_per_node":2,"ntasks_per_tres":0,"cpus_per_task":1,"#,
            r#""orig_dependency":"afterok:1","excluded_nodes":"node09","features":"gpu&ib","#,
            r#""time_limit":3600,"job_name":"test.sh","reservation_name":"maint","wc_key":"*proj","#
        );
        assert!(text.contains(expected), "{text}");
    }

    #[test]
    fn missing_pointers_leave_fields_out_or_null() {
        let mut job = example_job();
        job.details = None;
        job.cluster = None;
        job.qos = None;
        job.name = None;
        job.tres_req_str = None;
        job.tres_fmt_alloc_str = None;
        job.account = None;
        job.assoc_chain = None;
        job.user_name = None;
        job.partition = None;
        job.nodes = None;
        let text = finish(&job, "24.11.5");
        let expected = concat!(
            r#"{"jobid":1234,"container":null,"username":null,"user_id":1000,"groupname":"users","#,
            r#""group_id":100,"@start":"2024-05-01T10:00:00","@end":"2024-05-01T11:01:01","#,
            r#""elapsed":3661,"partition":null,"alloc_node":"login1","nodes":null,"total_cpus":4,"#,
            r#""total_nodes":2,"derived_ec":"0:0","exit_code":"0:0","state":"COMPLETED","#,
            r#""failed_node":null,"cpu_hours":4.0677776336669922,"pack_job_id":0,"#,
            r#""pack_job_offset":0,"het_job_id":0,"het_job_offset":0,"priority":1,"#,
            r#""time_limit":3600,"tres_req":"cpu=4,mem=8000M,node=2,billing=4","#,
            r#""tres_alloc_raw":"1=4,2=8000,4=2,5=4","#,
            r##""script":"#!\/bin\/bash\n#SBATCH -n 4\nsrun hostname\n"}"##
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn time_limit_rules() {
        let limit = |time_limit: u32, part: Option<u32>| {
            let mut job = example_job();
            job.time_limit = time_limit;
            job.part_max_time = part;
            field(&finish(&job, "24.11.5"), "time_limit")
        };
        assert_eq!(limit(NO_VAL, Some(120)), Some(7200.into()));
        assert_eq!(limit(NO_VAL, Some(INFINITE)), None);
        // No partition: NO_VAL itself is multiplied, 0xfffffffe * 60 mod 2^32.
        assert_eq!(limit(NO_VAL, None), Some(4_294_967_176u32.into()));
        // 0x7fffffff * 60 = 128849018820 = 29 * 2^32 + 4294967236.
        assert_eq!(limit(0x7fff_ffff, Some(5)), Some(4_294_967_236u32.into()));
        assert_eq!(limit(0, None), Some(0.into()));
        assert_eq!(limit(INFINITE, Some(5)), None);
    }

    #[test]
    fn partition_per_series() {
        let mut job = example_job();
        job.partition = b("debug,long");
        job.part_ptr_name = b("long");
        assert_eq!(
            field(&finish(&job, "24.11.5"), "partition"),
            Some("debug,long".into())
        );
        assert_eq!(
            field(&finish(&job, "25.05.0"), "partition"),
            Some("long".into())
        );
        job.part_ptr_name = None;
        assert_eq!(
            field(&finish(&job, "25.05.0"), "partition"),
            Some("debug,long".into())
        );
    }

    #[test]
    fn parent_accounts_walk_root_first() {
        let mut job = example_job();
        job.assoc_chain = Some(vec![
            b"alice-acct".to_vec(),
            b"dept".to_vec(),
            b"root".to_vec(),
        ]);
        let text = finish(&job, "24.11.5");
        assert!(text.ends_with(r#","parent_accounts":"\/root\/dept\/alice-acct"}"#));
        job.assoc_chain = Some(vec![]);
        assert!(finish(&job, "24.11.5").ends_with(r#","parent_accounts":null}"#));
        job.assoc_chain = None;
        assert_eq!(field(&finish(&job, "24.11.5"), "parent_accounts"), None);
    }

    // ----- script ----------------------------------------------------------------

    #[test]
    fn script_rules() {
        let mut job = example_job();
        assert_eq!(
            field(
                &render(&job, Event::Finish, None, &opts("24.11.5")),
                "script"
            ),
            None
        );
        let with_nul = b"#!/bin/sh\necho hi\n\0junk";
        let text = render(&job, Event::Finish, Some(with_nul), &opts("24.11.5"));
        assert_eq!(field(&text, "script"), Some("#!/bin/sh\necho hi\n".into()));
        job.batch_flag = 0;
        assert_eq!(field(&finish(&job, "24.11.5"), "script"), None);
    }

    #[test]
    fn wants_script_per_series() {
        let mut job = example_job();
        let send = |release: &str| RecordOptions {
            send_script: true,
            ..opts(release)
        };
        assert!(wants_script(&job, Event::Finish, &opts("22.05.8")));
        assert!(wants_script(&job, Event::Finish, &opts("24.11.7")));
        assert!(!wants_script(&job, Event::Finish, &opts("25.05.0")));
        assert!(wants_script(&job, Event::Finish, &send("25.05.0")));
        assert!(wants_script(&job, Event::Start, &send("26.05.5")));
        assert!(!wants_script(&job, Event::Start, &opts("26.05.5")));
        job.batch_flag = 0;
        assert!(!wants_script(&job, Event::Finish, &opts("24.11.7")));
        assert!(!wants_script(&job, Event::Finish, &send("25.05.0")));
    }

    // ----- text safety -------------------------------------------------------------

    #[test]
    fn invalid_utf8_and_control_bytes_stay_valid_json() {
        let mut job = example_job();
        job.user_name = Some(b"al\xffce".to_vec());
        job.name = Some(b"a\x01b\n\"q\"\\/\x7f".to_vec());
        job.account = Some(vec![0xc3]); // truncated two-byte sequence
        job.assoc_chain = Some(vec![b"\xe2\x82".to_vec(), b"root".to_vec()]);
        let script = b"#!/bin/sh\n\x1b[1m\xfe\n";
        let text = render(&job, Event::Finish, Some(script), &opts("24.11.5"));
        assert!(text.contains(r#""username":"al�ce","#));
        assert!(text.contains(r#""job_name":"a\u0001b\n\"q\"\\\/"#));
        assert_eq!(field(&text, "username"), Some("al\u{fffd}ce".into()));
        assert_eq!(
            field(&text, "job_name"),
            Some("a\u{1}b\n\"q\"\\/\u{7f}".into())
        );
        assert_eq!(field(&text, "account"), Some("\u{fffd}".into()));
        assert_eq!(
            field(&text, "script"),
            Some("#!/bin/sh\n\u{1b}[1m\u{fffd}\n".into())
        );
        assert_eq!(
            field(&text, "parent_accounts"),
            Some("/root/\u{fffd}".into())
        );
    }

    // ----- value helpers ---------------------------------------------------------

    #[test]
    fn time_text_matches_glibc_strftime() {
        // (time_t, glibc 2.36 strftime("%FT%T", gmtime_r(t))) computed once with a
        // small C program; glibc does not pad the year.
        let table: &[(i64, &str)] = &[
            (1, "1970-01-01T00:00:01"),
            (-1, "1969-12-31T23:59:59"),
            (-62_167_219_200, "0-01-01T00:00:00"),
            (-62_135_596_800, "1-01-01T00:00:00"),
            (-30_610_224_000, "1000-01-01T00:00:00"),
            (253_402_300_799, "9999-12-31T23:59:59"),
            (253_402_300_800, "10000-01-01T00:00:00"),
            (951_782_400, "2000-02-29T00:00:00"),
            (4_102_444_800, "2100-01-01T00:00:00"),
            (1_714_557_600, "2024-05-01T10:00:00"),
            (1_714_561_261, "2024-05-01T11:01:01"),
            (68_000_000_000, "4124-11-01T00:53:20"),
            (-1_000_000_000_000, "-29719-04-05T22:13:20"),
        ];
        for &(t, expected) in table {
            assert_eq!(time_text(t).as_str(), expected, "{t}");
        }
        assert_eq!(time_text(0).as_str(), "Unknown");
        assert_eq!(time_text(0xffff_ffff).as_str(), "Unknown");
        assert_eq!(time_text(0xffff_fffe).as_str(), "None");
        // Extremes fit the buffer.
        assert!(time_text(i64::MAX).as_str().ends_with("T15:30:07"));
        assert!(time_text(i64::MIN).as_str().starts_with('-'));
    }

    #[test]
    fn exit_codes_read_like_wait_status() {
        // Checked once against glibc's WIFSIGNALED/WTERMSIG/WIFEXITED/WEXITSTATUS.
        let cases: &[(u32, &str)] = &[
            (0, "0:0"),
            (0x100, "1:0"),
            (0xff00, "255:0"),
            (9, "0:9"),      // killed by SIGKILL
            (0x8b, "0:11"),  // SIGSEGV with core dump bit
            (0x7f, "0:0"),   // stopped: neither exited nor signaled
            (0x137f, "0:0"), // stopped by signal 19
            (NO_VAL, "0:0"),
            (INFINITE, "0:0"),
            (0x1ff, "0:0"),
        ];
        for &(status, expected) in cases {
            assert_eq!(exit_signal_text(status).as_str(), expected, "{status:#x}");
        }
        let mut job = example_job();
        job.exit_code = 0x200;
        job.derived_ec = NO_VAL;
        let text = finish(&job, "24.11.5");
        assert!(text.contains(r#""derived_ec":"0:0","exit_code":"2:0","#));
    }

    #[test]
    fn state_names() {
        let cases: &[(u32, &str)] = &[
            (0, "PENDING"),
            (JOB_REQUEUE, "PENDING"),
            (1, "RUNNING"),
            (2, "SUSPENDED"),
            (3, "COMPLETED"),
            (JOB_COMPLETING | 4, "CANCELLED"),
            (5, "FAILED"),
            (6, "TIMEOUT"),
            (7, "NODE_FAIL"),
            (8, "PREEMPTED"),
            (9, "BOOT_FAIL"),
            (10, "DEADLINE"),
            (11, "OUT_OF_MEMORY"),
            (12, "?"),
            (JOB_RESIZING | 1, "RESIZING"),
            (JOB_RESIZING | JOB_COMPLETING | 1, "COMPLETING"),
            (JOB_RESIZING | JOB_REQUEUE | 1, "RESIZING"),
        ];
        for &(state, expected) in cases {
            assert_eq!(state_name(state), expected, "{state:#x}");
        }
    }

    #[test]
    fn cpu_hours_in_single_precision() {
        // (elapsed, cpus, glibc printf("%.17g") of (double)((elapsed * cpus) / 3600.0f)
        // with elapsed a time_t and cpus a uint32_t), computed once with gcc.
        let cases: &[(i64, u32, &str)] = &[
            (-100, 4, "-0.1111111119389534"),
            (31_536_000, 100_000, "876000000"),
            (3661, 4, "4.0677776336669922"),
            (0, 4, "0"),
            (1, 1, "0.00027777778450399637"),
            (86_400, 7, "168"),
            (2_000_000_000, 4_000_000_000, "2222222252965888"),
            (16_777_217, 1, "4660.337890625"),
        ];
        for &(elapsed, cpus, expected) in cases {
            let text = jsonc::JsonCDouble::new(cpu_hours(elapsed, cpus));
            let expected = if expected.contains('.') {
                expected.to_string()
            } else {
                format!("{expected}.0")
            };
            assert_eq!(text.as_str(), expected, "{elapsed} * {cpus}");
        }
    }

    #[test]
    fn sluid_matches_slurm() {
        // Slurm's testsuite: sluid2str(0xbc064b4483ea1000) == "sBR1JB8J1YM400".
        assert_eq!(sluid_text(0xbc06_4b44_83ea_1000).as_str(), "sBR1JB8J1YM400");
        assert_eq!(sluid_text(0).as_str(), "s0000000000000");
        assert_eq!(sluid_text(u64::MAX).as_str(), "sFZZZZZZZZZZZZ");
        assert_eq!(sluid_text(32).as_str(), "s0000000000010");
    }
}
