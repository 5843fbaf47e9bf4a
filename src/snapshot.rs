//! What the hot path copies out of a Slurm job record.
//!
//! `jobcomp_p_log_record` runs under slurmctld's job write lock, so it does the
//! least it can: copy raw field values and strings (as bytes, no UTF-8 check, no
//! formatting) into a [`JobSnapshot`] and hand it to the delivery thread. Every
//! rule of record-format.md (what to omit, how to format) is applied later, off
//! the lock, by `record::build_record`.
//!
//! Values are Slurm's own: NO_VAL / NO_VAL16 / INFINITE sentinels stay as they are,
//! times are Unix seconds, 0 meaning "not set".

/// Which jobcomp event produced the snapshot. The numbers are Slurm's (25.05+
/// `record_job_end(job, event)` / `record_job_start(job, event)`), and they are
/// what the 25.05+ state file stores per message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Event {
    Finish = 1,
    Start = 2,
}

impl Event {
    pub fn from_u32(value: u32) -> Option<Event> {
        match value {
            1 => Some(Event::Finish),
            2 => Some(Event::Start),
            _ => None,
        }
    }
}

/// A C string copied out of Slurm memory: raw bytes without the NUL. `None` when
/// the pointer was NULL.
pub type Bytes = Option<Vec<u8>>;

/// Fields of `struct job_details` (NULL `details` pointer -> `JobSnapshot::details == None`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DetailsSnapshot {
    pub submit_time: i64,
    pub begin_time: i64,
    pub work_dir: Bytes,
    pub std_err: Bytes,
    pub std_in: Bytes,
    pub std_out: Bytes,
    pub num_tasks: u32,
    pub ntasks_per_node: u16,
    pub ntasks_per_tres: u16,
    pub cpus_per_task: u16,
    pub orig_dependency: Bytes,
    pub exc_nodes: Bytes,
    pub features: Bytes,
}

/// Everything a record needs, copied from `job_record_t` and the structs it points to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobSnapshot {
    pub job_id: u32,
    /// `db_index` (26.05's "sluid" is derived from it).
    pub db_index: u64,
    /// `step_id.sluid` (25.11+; 0 when the layout has none).
    pub step_sluid: u64,
    pub container: Bytes,
    pub user_id: u32,
    pub group_id: u32,
    /// User name carried by slurmctld (23.11+ identity `pw_name`); `None` means
    /// "resolve `user_id` with the name service" -- done off the hot path.
    pub user_name: Bytes,
    /// Group name for `group_id` from the identity (23.11+); `None` as above.
    pub group_name: Bytes,
    pub start_time: i64,
    pub end_time: i64,
    pub resize_time: i64,
    /// The full `job_state`, flags included.
    pub job_state: u32,
    /// `partition`: the job's (possibly requested, comma-separated) partition list.
    pub partition: Bytes,
    /// `part_ptr->name` (`None` when part_ptr is NULL).
    pub part_ptr_name: Bytes,
    /// `part_ptr->max_time` (`None` when part_ptr is NULL).
    pub part_max_time: Option<u32>,
    pub alloc_node: Bytes,
    pub nodes: Bytes,
    pub total_cpus: u32,
    pub total_nodes: u32,
    pub derived_ec: u32,
    pub exit_code: u32,
    /// `failed_node` (23.02+; `None` on 22.05).
    pub failed_node: Bytes,
    pub array_job_id: u32,
    pub array_task_id: u32,
    pub het_job_id: u32,
    pub het_job_offset: u32,
    pub priority: u32,
    pub details: Option<DetailsSnapshot>,
    /// `assoc_ptr->cluster` (`None` when assoc_ptr is NULL).
    pub cluster: Bytes,
    /// `qos_ptr->name`.
    pub qos: Bytes,
    pub time_limit: u32,
    pub name: Bytes,
    pub resv_name: Bytes,
    pub wckey: Bytes,
    pub tres_req_str: Bytes,
    pub tres_fmt_req_str: Bytes,
    pub tres_alloc_str: Bytes,
    pub tres_fmt_alloc_str: Bytes,
    pub account: Bytes,
    pub admin_comment: Bytes,
    pub comment: Bytes,
    pub batch_flag: u16,
    /// The `acct` of `assoc_ptr` and each parent association, child first, as
    /// walked under the association read lock. `None` when assoc_ptr is NULL.
    pub assoc_chain: Option<Vec<Vec<u8>>>,
    /// Wall-clock time (Unix seconds) at which the snapshot was taken; stands in
    /// for "now" (e.g. @end of a resizing job).
    pub taken_at: i64,
}

impl JobSnapshot {
    /// The job id whose directory holds the batch script: the array master's id
    /// for array tasks, else the job's own (plugin-abi.md).
    pub fn script_owner_id(&self) -> u32 {
        const NO_VAL: u32 = 0xffff_fffe;
        if self.array_task_id != NO_VAL && self.array_job_id != 0 {
            self.array_job_id
        } else {
            self.job_id
        }
    }
}
