// SPDX-License-Identifier: GPL-2.0-or-later
//! What the fuzz targets share: the releases to try, a job snapshot drawn from
//! the fuzzer's bytes, and a scratch directory for the parsers that read files.

use std::path::PathBuf;

use jobcomp_kafka::release::{Layout, Release};
use jobcomp_kafka::snapshot::{DetailsSnapshot, JobSnapshot};
use libfuzzer_sys::arbitrary::{Result, Unstructured};

/// Releases whose rules differ (every measured layout, plus the micro releases
/// where the record, the state file or JobCompParams change), and one micro
/// release newer than any measured of its series.
pub fn releases() -> Vec<Release> {
    let mut all: Vec<Release> = Layout::ALL.iter().map(|l| l.measured_on()).collect();
    all.extend([
        Release::new(23, 11, 0),
        Release::new(23, 11, 1),
        Release::new(23, 11, 9),
        Release::new(24, 5, 0),
        Release::new(24, 5, 1),
        Release::new(25, 5, 0),
        Release::new(26, 5, 200),
    ]);
    all.sort();
    all.dedup();
    all
}

/// One of [`releases`], chosen by the input.
pub fn release(u: &mut Unstructured) -> Result<Release> {
    Ok(*u.choose(&releases())?)
}

/// A C string as slurmctld may hold it: NULL, or any bytes without a NUL
/// (invalid UTF-8, control bytes, quotes and backslashes included).
pub fn c_string(u: &mut Unstructured) -> Result<Option<Vec<u8>>> {
    if u.ratio(1, 8)? {
        return Ok(None);
    }
    let len = u.int_in_range(0..=u.len().min(64))?;
    let mut bytes = u.bytes(len)?.to_vec();
    bytes.retain(|&b| b != 0);
    Ok(Some(bytes))
}

/// A number that is often one of Slurm's sentinels or a boundary.
fn int<T>(u: &mut Unstructured, special: &[T]) -> Result<T>
where
    T: Copy + for<'a> libfuzzer_sys::arbitrary::Arbitrary<'a>,
{
    if !special.is_empty() && u.ratio(1, 2)? {
        return Ok(*u.choose(special)?);
    }
    u.arbitrary()
}

const U32S: [u32; 8] = [0, 1, 0xffff_fffe, 0xffff_ffff, 0x7fff_ffff, 0x8000_0000, 3, 60];
const U16S: [u16; 5] = [0, 1, 0xfffe, 0xffff, 4];
/// Times: unset, ordinary dates, the ends of i64 and of what C's gmtime takes.
const TIMES: [i64; 10] = [
    0,
    -1,
    1_714_557_600,
    1_714_561_261,
    i64::MIN,
    i64::MAX,
    67_768_036_191_676_799,
    -67_768_040_609_740_800,
    253_402_300_800,
    0x7fff_fffe,
];

/// A job snapshot with every field drawn from the input.
pub fn snapshot(u: &mut Unstructured) -> Result<JobSnapshot> {
    let details = if u.ratio(1, 6)? {
        None
    } else {
        Some(DetailsSnapshot {
            submit_time: int(u, &TIMES)?,
            begin_time: int(u, &TIMES)?,
            work_dir: c_string(u)?,
            std_err: c_string(u)?,
            std_in: c_string(u)?,
            std_out: c_string(u)?,
            num_tasks: int(u, &U32S)?,
            ntasks_per_node: int(u, &U16S)?,
            ntasks_per_tres: int(u, &U16S)?,
            cpus_per_task: int(u, &U16S)?,
            orig_dependency: c_string(u)?,
            exc_nodes: c_string(u)?,
            features: c_string(u)?,
        })
    };
    let assoc_chain = if u.ratio(1, 4)? {
        None
    } else {
        let n = u.int_in_range(0..=8)?;
        let mut chain = Vec::with_capacity(n);
        for _ in 0..n {
            chain.push(c_string(u)?.unwrap_or_default());
        }
        Some(chain)
    };
    Ok(JobSnapshot {
        job_id: int(u, &U32S)?,
        db_index: u.arbitrary()?,
        step_sluid: u.arbitrary()?,
        container: c_string(u)?,
        user_id: int(u, &U32S)?,
        group_id: int(u, &U32S)?,
        user_name: c_string(u)?,
        group_name: c_string(u)?,
        start_time: int(u, &TIMES)?,
        end_time: int(u, &TIMES)?,
        resize_time: int(u, &TIMES)?,
        job_state: int(u, &U32S)?,
        partition: c_string(u)?,
        part_ptr_name: c_string(u)?,
        part_max_time: if u.arbitrary()? { Some(int(u, &U32S)?) } else { None },
        alloc_node: c_string(u)?,
        nodes: c_string(u)?,
        total_cpus: int(u, &U32S)?,
        total_nodes: int(u, &U32S)?,
        derived_ec: int(u, &U32S)?,
        exit_code: int(u, &U32S)?,
        failed_node: c_string(u)?,
        array_job_id: int(u, &U32S)?,
        array_task_id: int(u, &U32S)?,
        het_job_id: int(u, &U32S)?,
        het_job_offset: int(u, &U32S)?,
        priority: int(u, &U32S)?,
        details,
        cluster: c_string(u)?,
        qos: c_string(u)?,
        time_limit: int(u, &U32S)?,
        name: c_string(u)?,
        resv_name: c_string(u)?,
        wckey: c_string(u)?,
        tres_req_str: c_string(u)?,
        tres_fmt_req_str: c_string(u)?,
        tres_alloc_str: c_string(u)?,
        tres_fmt_alloc_str: c_string(u)?,
        account: c_string(u)?,
        admin_comment: c_string(u)?,
        comment: c_string(u)?,
        batch_flag: int(u, &U16S)?,
        assoc_chain,
        taken_at: int(u, &TIMES)?,
    })
}

/// An empty directory of this process's own, emptied again at each call (in
/// $JK_FUZZ_SCRATCH, else /dev/shm when there is one: the spool and file
/// targets write a few files per input).
pub fn scratch_dir(target: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| make_scratch_dir(target));
    for entry in std::fs::read_dir(dir).expect("read the scratch directory").flatten() {
        std::fs::remove_file(entry.path()).expect("empty the scratch directory");
    }
    dir.clone()
}

fn make_scratch_dir(target: &str) -> PathBuf {
    let base = std::env::var_os("JK_FUZZ_SCRATCH")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()))
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("jk-fuzz-{target}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}
