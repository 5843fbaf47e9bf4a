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
pub struct DetailsFields<S> {
    pub submit_time: i64,
    pub begin_time: i64,
    pub work_dir: Option<S>,
    pub std_err: Option<S>,
    pub std_in: Option<S>,
    pub std_out: Option<S>,
    pub num_tasks: u32,
    pub ntasks_per_node: u16,
    pub ntasks_per_tres: u16,
    pub cpus_per_task: u16,
    pub orig_dependency: Option<S>,
    pub exc_nodes: Option<S>,
    pub features: Option<S>,
}

/// Details as copied (owned bytes).
pub type DetailsSnapshot = DetailsFields<Vec<u8>>;

/// Everything a record needs from `job_record_t` and the structs it points to.
/// `S` is how a string is held: borrowed from slurmctld's memory while the
/// hot path encodes it ([`JobView`]), or owned ([`JobSnapshot`]). `C` holds the
/// association chain.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobFields<S, C> {
    pub job_id: u32,
    /// `db_index` (26.05's "sluid" is derived from it).
    pub db_index: u64,
    /// `step_id.sluid` (25.11+; 0 when the layout has none).
    pub step_sluid: u64,
    pub container: Option<S>,
    pub user_id: u32,
    pub group_id: u32,
    /// User name carried by slurmctld (23.11+ identity `pw_name`); `None` means
    /// "resolve `user_id` with the name service" -- done off the hot path.
    pub user_name: Option<S>,
    /// Group name for `group_id` from the identity (23.11+); `None` as above.
    pub group_name: Option<S>,
    pub start_time: i64,
    pub end_time: i64,
    pub resize_time: i64,
    /// The full `job_state`, flags included.
    pub job_state: u32,
    /// `partition`: the job's (possibly requested, comma-separated) partition list.
    pub partition: Option<S>,
    /// `part_ptr->name` (`None` when part_ptr is NULL).
    pub part_ptr_name: Option<S>,
    /// `part_ptr->max_time` (`None` when part_ptr is NULL).
    pub part_max_time: Option<u32>,
    pub alloc_node: Option<S>,
    pub nodes: Option<S>,
    pub total_cpus: u32,
    pub total_nodes: u32,
    pub derived_ec: u32,
    pub exit_code: u32,
    /// `failed_node` (23.02+; `None` on 22.05).
    pub failed_node: Option<S>,
    pub array_job_id: u32,
    pub array_task_id: u32,
    pub het_job_id: u32,
    pub het_job_offset: u32,
    pub priority: u32,
    pub details: Option<DetailsFields<S>>,
    /// `assoc_ptr->cluster` (`None` when assoc_ptr is NULL).
    pub cluster: Option<S>,
    /// `qos_ptr->name`.
    pub qos: Option<S>,
    pub time_limit: u32,
    pub name: Option<S>,
    pub resv_name: Option<S>,
    pub wckey: Option<S>,
    pub tres_req_str: Option<S>,
    pub tres_fmt_req_str: Option<S>,
    pub tres_alloc_str: Option<S>,
    pub tres_fmt_alloc_str: Option<S>,
    pub account: Option<S>,
    pub admin_comment: Option<S>,
    pub comment: Option<S>,
    pub batch_flag: u16,
    /// The `acct` of `assoc_ptr` and each parent association, child first, as
    /// walked under the association read lock. `None` when assoc_ptr is NULL.
    pub assoc_chain: Option<C>,
    /// Wall-clock time (Unix seconds) at which the snapshot was taken; stands in
    /// for "now" (e.g. @end of a resizing job).
    pub taken_at: i64,
}

/// A record as the delivery thread uses it (owned bytes).
pub type JobSnapshot = JobFields<Vec<u8>, Vec<Vec<u8>>>;

/// A record as the hot path reads it: strings borrowed from slurmctld's memory,
/// valid while slurmctld's locks are held, encoded into the spool at once and
/// never copied one by one (no allocation per string).
pub type JobView<'a> = JobFields<&'a [u8], AssocChain<'a>>;

/// Longest association chain kept (a guard against a cycle in corrupt data;
/// real hierarchies are a handful deep).
pub const MAX_ASSOC_DEPTH: usize = 64;

/// The accounts of an association chain, borrowed, without an allocation.
#[derive(Clone, Debug, PartialEq)]
pub struct AssocChain<'a> {
    len: usize,
    accounts: [&'a [u8]; MAX_ASSOC_DEPTH],
}

impl Default for AssocChain<'_> {
    fn default() -> Self {
        AssocChain { len: 0, accounts: [&[]; MAX_ASSOC_DEPTH] }
    }
}

impl<'a> AssocChain<'a> {
    /// False when the chain is full (the account is not kept).
    pub fn push(&mut self, account: &'a [u8]) -> bool {
        if self.len == MAX_ASSOC_DEPTH {
            return false;
        }
        self.accounts[self.len] = account;
        self.len += 1;
        true
    }

    pub fn is_full(&self) -> bool {
        self.len == MAX_ASSOC_DEPTH
    }
}

impl<'a> AsRef<[&'a [u8]]> for AssocChain<'a> {
    fn as_ref(&self) -> &[&'a [u8]] {
        &self.accounts[..self.len]
    }
}

impl JobView<'_> {
    /// The owned copy (tests; the hot path encodes the view directly).
    pub fn to_snapshot(&self) -> JobSnapshot {
        let mut bytes = Vec::new();
        codec::encode(self, &mut bytes);
        codec::decode(&bytes).expect("a freshly encoded snapshot decodes")
    }
}

impl<S, C> JobFields<S, C> {
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

/// The spool's binary form of a snapshot (little-endian; strings as a u32 length,
/// `u32::MAX` for NULL, then the bytes). Written on the hot path, so it is a
/// plain field-by-field copy; versioned so that a spool survives an upgrade.
pub mod codec {
    use super::{Bytes, DetailsSnapshot, JobFields, JobSnapshot};

    const VERSION: u8 = 1;
    const NULL: u32 = u32::MAX;

    /// Appends `job`'s binary form to `out` (owned or borrowed strings alike).
    pub fn encode<S: AsRef<[u8]>, C: AsRef<[S]>>(job: &JobFields<S, C>, out: &mut Vec<u8>) {
        let mut w = Writer(out);
        w.u8(VERSION);
        w.u32(job.job_id);
        w.u64(job.db_index);
        w.u64(job.step_sluid);
        w.bytes(&job.container);
        w.u32(job.user_id);
        w.u32(job.group_id);
        w.bytes(&job.user_name);
        w.bytes(&job.group_name);
        w.i64(job.start_time);
        w.i64(job.end_time);
        w.i64(job.resize_time);
        w.u32(job.job_state);
        w.bytes(&job.partition);
        w.bytes(&job.part_ptr_name);
        w.u8(job.part_max_time.is_some() as u8);
        w.u32(job.part_max_time.unwrap_or(0));
        w.bytes(&job.alloc_node);
        w.bytes(&job.nodes);
        w.u32(job.total_cpus);
        w.u32(job.total_nodes);
        w.u32(job.derived_ec);
        w.u32(job.exit_code);
        w.bytes(&job.failed_node);
        w.u32(job.array_job_id);
        w.u32(job.array_task_id);
        w.u32(job.het_job_id);
        w.u32(job.het_job_offset);
        w.u32(job.priority);
        match &job.details {
            None => w.u8(0),
            Some(d) => {
                w.u8(1);
                w.i64(d.submit_time);
                w.i64(d.begin_time);
                w.bytes(&d.work_dir);
                w.bytes(&d.std_err);
                w.bytes(&d.std_in);
                w.bytes(&d.std_out);
                w.u32(d.num_tasks);
                w.u16(d.ntasks_per_node);
                w.u16(d.ntasks_per_tres);
                w.u16(d.cpus_per_task);
                w.bytes(&d.orig_dependency);
                w.bytes(&d.exc_nodes);
                w.bytes(&d.features);
            }
        }
        w.bytes(&job.cluster);
        w.bytes(&job.qos);
        w.u32(job.time_limit);
        for text in [
            &job.name,
            &job.resv_name,
            &job.wckey,
            &job.tres_req_str,
            &job.tres_fmt_req_str,
            &job.tres_alloc_str,
            &job.tres_fmt_alloc_str,
            &job.account,
            &job.admin_comment,
            &job.comment,
        ] {
            w.bytes(text);
        }
        w.u16(job.batch_flag);
        match &job.assoc_chain {
            None => w.u32(NULL),
            Some(chain) => {
                let chain = chain.as_ref();
                w.u32(chain.len() as u32);
                for acct in chain {
                    w.raw(acct.as_ref());
                }
            }
        }
        w.i64(job.taken_at);
    }

    /// `None` when the bytes are not a snapshot of a known version (the spool's
    /// checksum has already vouched for them, so this means another version).
    pub fn decode(bytes: &[u8]) -> Option<JobSnapshot> {
        let mut job = JobSnapshot::default();
        decode_into(bytes, &mut job).then_some(job)
    }

    /// `decode` into `job`, reusing the buffers its strings already have: the
    /// delivery thread decodes every record into the same snapshot, so a
    /// record costs no allocation per field. False (and `job` in an unspecified
    /// state) when the bytes are not a snapshot of a known version.
    pub fn decode_into(bytes: &[u8], job: &mut JobSnapshot) -> bool {
        fill(&mut Reader(bytes), job).is_some()
    }

    fn fill(r: &mut Reader, job: &mut JobSnapshot) -> Option<()> {
        if r.u8()? != VERSION {
            return None;
        }
        job.job_id = r.u32()?;
        job.db_index = r.u64()?;
        job.step_sluid = r.u64()?;
        r.bytes_into(&mut job.container)?;
        job.user_id = r.u32()?;
        job.group_id = r.u32()?;
        r.bytes_into(&mut job.user_name)?;
        r.bytes_into(&mut job.group_name)?;
        job.start_time = r.i64()?;
        job.end_time = r.i64()?;
        job.resize_time = r.i64()?;
        job.job_state = r.u32()?;
        r.bytes_into(&mut job.partition)?;
        r.bytes_into(&mut job.part_ptr_name)?;
        let has_max_time = r.u8()? == 1;
        let max_time = r.u32()?;
        job.part_max_time = has_max_time.then_some(max_time);
        r.bytes_into(&mut job.alloc_node)?;
        r.bytes_into(&mut job.nodes)?;
        job.total_cpus = r.u32()?;
        job.total_nodes = r.u32()?;
        job.derived_ec = r.u32()?;
        job.exit_code = r.u32()?;
        r.bytes_into(&mut job.failed_node)?;
        job.array_job_id = r.u32()?;
        job.array_task_id = r.u32()?;
        job.het_job_id = r.u32()?;
        job.het_job_offset = r.u32()?;
        job.priority = r.u32()?;
        if r.u8()? == 1 {
            let details = job.details.get_or_insert_with(DetailsSnapshot::default);
            details.submit_time = r.i64()?;
            details.begin_time = r.i64()?;
            r.bytes_into(&mut details.work_dir)?;
            r.bytes_into(&mut details.std_err)?;
            r.bytes_into(&mut details.std_in)?;
            r.bytes_into(&mut details.std_out)?;
            details.num_tasks = r.u32()?;
            details.ntasks_per_node = r.u16()?;
            details.ntasks_per_tres = r.u16()?;
            details.cpus_per_task = r.u16()?;
            r.bytes_into(&mut details.orig_dependency)?;
            r.bytes_into(&mut details.exc_nodes)?;
            r.bytes_into(&mut details.features)?;
        } else {
            job.details = None;
        }
        r.bytes_into(&mut job.cluster)?;
        r.bytes_into(&mut job.qos)?;
        job.time_limit = r.u32()?;
        for text in [
            &mut job.name,
            &mut job.resv_name,
            &mut job.wckey,
            &mut job.tres_req_str,
            &mut job.tres_fmt_req_str,
            &mut job.tres_alloc_str,
            &mut job.tres_fmt_alloc_str,
            &mut job.account,
            &mut job.admin_comment,
            &mut job.comment,
        ] {
            r.bytes_into(text)?;
        }
        job.batch_flag = r.u16()?;
        let count = r.u32()?;
        if count == NULL {
            job.assoc_chain = None;
        } else {
            let chain = job.assoc_chain.get_or_insert_with(Vec::new);
            // Never more entries than bytes left (4 each): a bad count cannot
            // make this allocate.
            if count as usize > r.0.len() / 4 {
                return None;
            }
            chain.resize_with(count as usize, Vec::new);
            for account in chain.iter_mut() {
                let mut slot = Some(std::mem::take(account));
                r.bytes_into(&mut slot)?;
                *account = slot.unwrap_or_default();
            }
        }
        job.taken_at = r.i64()?;
        r.0.is_empty().then_some(())
    }

    struct Writer<'a>(&'a mut Vec<u8>);

    impl Writer<'_> {
        fn u8(&mut self, v: u8) {
            self.0.push(v);
        }
        fn u16(&mut self, v: u16) {
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        fn u32(&mut self, v: u32) {
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        fn u64(&mut self, v: u64) {
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        fn i64(&mut self, v: i64) {
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        fn raw(&mut self, bytes: &[u8]) {
            self.u32(bytes.len() as u32);
            self.0.extend_from_slice(bytes);
        }
        fn bytes<S: AsRef<[u8]>>(&mut self, value: &Option<S>) {
            match value {
                Some(bytes) => self.raw(bytes.as_ref()),
                None => self.u32(NULL),
            }
        }
    }

    struct Reader<'a>(&'a [u8]);

    impl Reader<'_> {
        fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
            let (head, rest) = self.0.split_first_chunk::<N>()?;
            self.0 = rest;
            Some(*head)
        }
        fn u8(&mut self) -> Option<u8> {
            self.take::<1>().map(|b| b[0])
        }
        fn u16(&mut self) -> Option<u16> {
            self.take().map(u16::from_le_bytes)
        }
        fn u32(&mut self) -> Option<u32> {
            self.take().map(u32::from_le_bytes)
        }
        fn u64(&mut self) -> Option<u64> {
            self.take().map(u64::from_le_bytes)
        }
        fn i64(&mut self) -> Option<i64> {
            self.take().map(i64::from_le_bytes)
        }
        /// A string into `slot`, in the buffer it already has when there is one.
        fn bytes_into(&mut self, slot: &mut Bytes) -> Option<()> {
            let len = self.u32()?;
            if len == NULL {
                *slot = None;
                return Some(());
            }
            let (head, rest) = self.0.split_at_checked(len as usize)?;
            self.0 = rest;
            match slot {
                Some(buffer) => {
                    buffer.clear();
                    buffer.extend_from_slice(head);
                }
                None => *slot = Some(head.to_vec()),
            }
            Some(())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn full() -> JobSnapshot {
            let b = |t: &str| Some(t.as_bytes().to_vec());
            JobSnapshot {
                job_id: 7,
                db_index: u64::MAX - 1,
                step_sluid: 0xbc064b4483ea1000,
                container: b("c"),
                user_id: 1000,
                group_id: 100,
                user_name: Some(b"al\xffice".to_vec()),
                group_name: None,
                start_time: -5,
                end_time: 1_700_000_000,
                resize_time: 3,
                job_state: 0x2003,
                partition: b("a,b"),
                part_ptr_name: b("a"),
                part_max_time: Some(0),
                alloc_node: Some(Vec::new()),
                nodes: b("n[1-4]"),
                total_cpus: 4,
                total_nodes: 2,
                derived_ec: 0xfffffffe,
                exit_code: 9,
                failed_node: b("n3"),
                array_job_id: 5,
                array_task_id: 0xfffffffe,
                het_job_id: 1,
                het_job_offset: 2,
                priority: 0xffffffff,
                details: Some(DetailsSnapshot {
                    submit_time: 1,
                    begin_time: 2,
                    work_dir: b("/w \"x\"\t"),
                    std_err: None,
                    std_in: b("/dev/null"),
                    std_out: b("o"),
                    num_tasks: 3,
                    ntasks_per_node: 0xfffe,
                    ntasks_per_tres: 1,
                    cpus_per_task: 2,
                    orig_dependency: b("afterok:1"),
                    exc_nodes: None,
                    features: b("f"),
                }),
                cluster: b("c1"),
                qos: b("normal"),
                time_limit: 60,
                name: Some(b"n\0ul".to_vec()),
                resv_name: None,
                wckey: b("w"),
                tres_req_str: b("1=1"),
                tres_fmt_req_str: b("cpu=1"),
                tres_alloc_str: None,
                tres_fmt_alloc_str: b("cpu=2"),
                account: b("acct"),
                admin_comment: None,
                comment: b("comment"),
                batch_flag: 1,
                assoc_chain: Some(vec![b"u".to_vec(), Vec::new(), b"root".to_vec()]),
                taken_at: 42,
            }
        }

        #[test]
        fn round_trips_every_field() {
            for job in [full(), JobSnapshot::default(), JobSnapshot { details: None, assoc_chain: Some(vec![]), ..full() }] {
                let mut bytes = Vec::new();
                encode(&job, &mut bytes);
                assert_eq!(decode(&bytes), Some(job));
            }
        }

        #[test]
        fn decoding_into_a_used_snapshot_leaves_nothing_of_the_last_one() {
            let short_chain = JobSnapshot { assoc_chain: Some(vec![b"a".to_vec()]), user_name: None, ..full() };
            let no_details = JobSnapshot { details: None, assoc_chain: None, comment: None, ..full() };
            let sequence = [full(), JobSnapshot::default(), full(), short_chain, no_details, full(), JobSnapshot::default()];
            let mut reused = JobSnapshot::default();
            for job in sequence {
                let mut bytes = Vec::new();
                encode(&job, &mut bytes);
                assert!(decode_into(&bytes, &mut reused));
                assert_eq!(reused, job);
            }
            // A chain count larger than the bytes left is refused before anything is allocated.
            let mut bytes = Vec::new();
            encode(&JobSnapshot { assoc_chain: Some(vec![]), ..JobSnapshot::default() }, &mut bytes);
            let count_at = bytes.len() - 8 - 4;
            bytes[count_at..count_at + 4].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
            assert!(!decode_into(&bytes, &mut reused));
        }

        #[test]
        fn refuses_truncated_or_foreign_bytes() {
            let mut bytes = Vec::new();
            encode(&full(), &mut bytes);
            for cut in 0..bytes.len() {
                assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(decode(&longer), None);
            bytes[0] = 99;
            assert_eq!(decode(&bytes), None);
        }
    }
}
