// SPDX-License-Identifier: GPL-2.0-or-later
//! Writes the seed corpora: files made by the plugin's own writers (state file
//! encoder, snapshot codec, spool SnapshotLog/DeliveryLog), SchedMD's state file
//! laid out by hand from its format, and the suite's configuration texts
//! (README's examples, tests/data). Usage: make_seeds <dir>; one subdirectory
//! per fuzz target.

use std::fs;
use std::path::Path;

use jobcomp_kafka::snapshot::{codec, DetailsSnapshot, Event, JobSnapshot};
use jobcomp_kafka::spool::{recover, DeliveryLog, SnapshotLog};
use jobcomp_kafka::state_file::{encode, SavedMessage};
use jobcomp_kafka_fuzz::releases;

const RECORD: &[u8] = include_bytes!("../../data/records/example-24.11-finish.json");

fn b(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}

/// The job of tests/data/records/example-24.11-finish.json.
fn example_job() -> JobSnapshot {
    JobSnapshot {
        job_id: 1234,
        db_index: 0xbc06_4b44_83ea_1000,
        user_id: 1000,
        group_id: 100,
        user_name: b("alice"),
        group_name: b("users"),
        start_time: 1_714_557_600,
        end_time: 1_714_561_261,
        job_state: (1 << 15) | 3,
        partition: b("debug"),
        part_ptr_name: b("debug"),
        part_max_time: Some(0xffff_ffff),
        alloc_node: b("login1"),
        nodes: b("node[01-02]"),
        total_cpus: 4,
        total_nodes: 2,
        array_task_id: 0xffff_fffe,
        priority: 1,
        details: Some(DetailsSnapshot {
            submit_time: 1_714_557_480,
            begin_time: 1_714_557_480,
            work_dir: b("/home/alice"),
            std_in: b("/dev/null"),
            std_out: b("/home/alice/slurm-%j.out"),
            num_tasks: 4,
            cpus_per_task: 1,
            ..DetailsSnapshot::default()
        }),
        cluster: b("cluster1"),
        qos: b("normal"),
        time_limit: 60,
        name: b("test.sh"),
        tres_req_str: b("1=4,2=8000,4=2,5=4"),
        tres_fmt_req_str: b("cpu=4,mem=8000M,node=2,billing=4"),
        tres_alloc_str: b("1=4,2=8000,4=2,5=4"),
        tres_fmt_alloc_str: b("cpu=4,mem=8000M,node=2,billing=4"),
        account: b("physics"),
        batch_flag: 1,
        assoc_chain: Some(vec![b"physics".to_vec(), b"root".to_vec()]),
        taken_at: 1_714_561_262,
        ..JobSnapshot::default()
    }
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = dir.join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

/// One message in SchedMD's layout, written here from its format (not by our
/// encoder): version, count, [event,] job id, length with the NUL, payload, NUL.
fn schedmd_state_file(version: u16, event: Option<u32>) -> Vec<u8> {
    let mut c = Vec::new();
    c.extend_from_slice(&version.to_be_bytes());
    c.extend_from_slice(&1u32.to_be_bytes());
    if let Some(event) = event {
        c.extend_from_slice(&event.to_be_bytes());
    }
    c.extend_from_slice(&1234u32.to_be_bytes());
    c.extend_from_slice(&(RECORD.len() as u32 + 1).to_be_bytes());
    c.extend_from_slice(RECORD);
    c.push(0);
    c
}

fn state_files(out: &Path) {
    let msgs = vec![
        SavedMessage { event: Event::Finish, job_id: 1234, payload: RECORD.to_vec() },
        SavedMessage { event: Event::Start, job_id: 1235, payload: b"{\"jobid\":1235}".to_vec() },
        SavedMessage { event: Event::Finish, job_id: 7, payload: Vec::new() },
    ];
    for release in releases() {
        let msgs: Vec<SavedMessage> = if release.at_least(25, 5, 0) {
            msgs.clone()
        } else {
            msgs.iter().filter(|m| m.event == Event::Finish).cloned().collect()
        };
        let bytes = encode(release, &msgs);
        write(out, "state_file", &format!("ours-{release}"), &bytes);
        write(out, "state_file", &format!("ours-{release}-torn"), &bytes[..bytes.len() - 7]);
        write(out, "state_file", &format!("ours-{release}-empty"), &encode(release, &[]));
    }
    // SchedMD's plugin: 25.05 (protocol 0x2b00, with the event field) and
    // 24.11 (0x2a00, without).
    write(out, "state_file", "schedmd-25.05", &schedmd_state_file(0x2b00, Some(1)));
    write(out, "state_file", "schedmd-24.11", &schedmd_state_file(0x2a00, None));
}

fn spool_input(snap_segment_code: u8, dlv_segment_code: u8, snap: &[u8], dlv: &[u8]) -> Vec<u8> {
    let mut input = vec![snap_segment_code | (dlv_segment_code << 3)];
    input.extend_from_slice(&(snap.len() as u32).to_le_bytes());
    input.extend_from_slice(snap);
    input.extend_from_slice(dlv);
    input
}

/// Segments written by the spool's own writers: snapshots by the hot path's
/// SnapshotLog, payloads and acknowledgements by the DeliveryLog.
fn spool(out: &Path) {
    let dir = std::env::temp_dir().join(format!("jk-seeds-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let mut snaps = SnapshotLog::new(&dir, 1, 1 << 16);
    snaps.prep().prepare(false).unwrap();
    let mut job = example_job();
    let mut delivery = DeliveryLog::new(&dir, 1, Default::default());
    for id in 1..=4u64 {
        job.job_id = 1233 + id as u32;
        let mut body = Vec::new();
        codec::encode(&job, &mut body);
        snaps.append(id, job.job_id, Event::Finish as u8, &body).unwrap();
        if id % 2 == 0 {
            delivery.append_payload(id, job.job_id, 1, b"cluster1", RECORD, false).unwrap();
        }
    }
    delivery.append_acks(&[1, 2], &[1, 1]).unwrap();
    delivery.append_payload(9, 99, 1, b"other-topic", b"{\"jobid\":99}", true).unwrap();
    drop(snaps);
    let snap = fs::read(dir.join("seg-0000000000000001.snap")).unwrap();
    let dlv = fs::read(dir.join("seg-0000000000000001.dlv")).unwrap();
    // The writers' files must recover: otherwise the seeds would mislead.
    assert!(recover(&dir).unwrap().errors.is_empty());
    let used = snap.iter().rposition(|&b| b != 0).map_or(0, |p| (p + 8) & !7);
    write(out, "spool", "written", &spool_input(1, 1, &snap[..used.min(snap.len())], &dlv));
    write(out, "spool", "written-mapped-tail", &spool_input(1, 1, &snap[..(used + 4096).min(snap.len())], &dlv));
    write(out, "spool", "torn-snap", &spool_input(1, 1, &snap[..used - 13], &dlv));
    write(out, "spool", "torn-dlv", &spool_input(1, 1, &snap[..used], &dlv[..dlv.len() - 5]));
    let mut flipped = snap[..used].to_vec();
    flipped[40] ^= 0x10;
    write(out, "spool", "bit-flipped-snap", &spool_input(1, 1, &flipped, &dlv));
    let mut flipped = dlv.clone();
    flipped[3] ^= 0x01;
    write(out, "spool", "bit-flipped-dlv-magic", &spool_input(1, 1, &snap[..used], &flipped));
    write(out, "spool", "big-segment-numbers", &spool_input(5, 6, &snap[..used], &dlv));
    let _ = fs::remove_dir_all(&dir);

    let mut body = Vec::new();
    codec::encode(&example_job(), &mut body);
    write(out, "snapshot_codec", "example", &body);
    let mut body = Vec::new();
    codec::encode(&JobSnapshot::default(), &mut body);
    write(out, "snapshot_codec", "empty-job", &body);
}

fn config(out: &Path) {
    let files: [(&str, &str); 4] = [
        ("plain", "bootstrap.servers=127.0.0.1:9092\n"),
        (
            "sasl",
            "bootstrap.servers=kafka1.example.org:9093,kafka2.example.org:9093\n\
             security.protocol=SASL_SSL\nsasl.mechanisms=SCRAM-SHA-512\nsasl.username=slurm-jobcomp\n\
             sasl.password=change-me\nssl.ca.location=/etc/ssl/certs/ca-certificates.crt\n\
             # Records must survive a broker outage\nmessage.timeout.ms=300000\n",
        ),
        (
            "host-test",
            "\u{feff}bootstrap.servers=127.0.0.1:20701\r\nmessage.timeout.ms=5000\r\n\
             reconnect.backoff.max.ms=500 # backoff\r\nsocket.connection.setup.timeout.ms=3000\n",
        ),
        ("no-broker", "  # nothing\n\nclient.id = slurm\n"),
    ];
    for (name, text) in files {
        write(out, "config_properties", name, text.as_bytes());
    }
    let params = [
        ("readme", "topic=slurm-jobs,poll_interval=2,flush_timeout=500"),
        ("reconfigure", "topic=b-topic,flush_timeout=1500\0cluster1"),
        (
            "all",
            "flush_timeout=-1, Poll_Interval=5 ,topic=t.1,topic_job_start=t-start,requeue_on_msg_timeout,\
             purge_in_flight,purge_non_blocking=yes,requeue_purge_in_flight=no,enable_job_start,send_script,\
             send_comment=on,spool_sync_interval=3,spool_max_mb=10,tick_ms=1000\0my cluster",
        ),
        ("bad", "poll_interval=0,flush_timeout=-2,topic=..,tick_ms=0,spool_max_mb=x,send_script=maybe,,bogus"),
    ];
    for (name, text) in params {
        write(out, "config_params", name, text.as_bytes());
    }
}

/// A word the job_reader target turns into a pointer to `offset` in its arena.
fn arena_pointer(offset: usize) -> usize {
    (0xa5a5usize << 48) | offset
}

fn step_job_id(job_id: u32) -> [std::os::raw::c_char; 16] {
    let mut pad = [0; 16];
    for (slot, byte) in pad.iter_mut().zip(job_id.to_ne_bytes()) {
        *slot = byte as std::os::raw::c_char;
    }
    pad
}

fn bytes_of<T>(value: &T) -> &[u8] {
    // SAFETY: plain-data bindgen structs, read as bytes.
    unsafe { std::slice::from_raw_parts(value as *const T as *const u8, std::mem::size_of::<T>()) }
}

/// Each layout's own record: job_record with its magic, job id, name, and
/// details / part_record (with their magics and a string each) in the arena.
fn job_records(out: &Path) {
    use jobcomp_kafka::slurm::job::{DETAILS_MAGIC, JOB_MAGIC, PART_MAGIC};
    use jobcomp_kafka::slurm::layouts::*;
    macro_rules! seed {
        ($index:expr, $module:ident $(, $step:ident)?) => {{
            use $module as l;
            let details = l::job_details { magic: DETAILS_MAGIC, ..Default::default() };
            let part = l::part_record { magic: PART_MAGIC, name: arena_pointer(0) as *mut _, ..Default::default() };
            let strings = b"debug\0test.sh\0\0\0";
            let part_at = strings.len();
            let details_at = part_at + std::mem::size_of::<l::part_record>().next_multiple_of(8);
            let mut arena = strings.to_vec();
            arena.extend_from_slice(bytes_of(&part));
            arena.resize(details_at, 0);
            arena.extend_from_slice(bytes_of(&details));
            let job = l::job_record {
                magic: JOB_MAGIC,
                job_id: 1234,
                name: arena_pointer(6) as *mut _,
                details: arena_pointer(details_at) as *mut _,
                part_ptr: arena_pointer(part_at) as *mut _,
                // 25.11+: the embedded step id repeats the job id (the u32
                // after sluid; our declaration keeps it in padding).
                $($step: l::slurm_step_id { _pad0: step_job_id(1234), ..Default::default() },)?
                ..Default::default()
            };
            let image = bytes_of(&job);
            let mut input = vec![$index as u8];
            input.extend_from_slice(&(image.len() as u16).to_le_bytes());
            input.extend_from_slice(image);
            input.extend_from_slice(&arena);
            write(out, "job_reader", stringify!($module), &input);
        }};
    }
    seed!(0, l22_05_8);
    seed!(1, l23_02_2);
    seed!(2, l23_02_7);
    seed!(3, l23_11_10);
    seed!(4, l24_05_8);
    seed!(5, l24_11_0);
    seed!(6, l24_11_3);
    seed!(7, l24_11_7);
    seed!(8, l25_05_8);
    seed!(9, l25_11_7, step_id);
    seed!(10, l26_05_3, step_id);
    seed!(11, l26_05_5, step_id);
}

fn main() {
    let out = std::env::args_os().nth(1).expect("usage: make_seeds <dir>");
    let out = Path::new(&out);
    state_files(out);
    spool(out);
    config(out);
    job_records(out);
    // The record target draws a job from any bytes; a few fixed ones to start.
    for (i, seed) in [&b"\x05\x01\x00\x01"[..], &[0xff; 64][..], &RECORD[..200]].iter().enumerate() {
        write(out, "record", &format!("seed-{i}"), seed);
    }
}
