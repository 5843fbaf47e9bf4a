// SPDX-License-Identifier: GPL-2.0-or-later
//! The record builder over arbitrary jobs, events, JobCompParams switches,
//! releases and batch scripts: the text is always valid UTF-8 and valid JSON
//! (parsed with serde_json), a JSON object whose "jobid" is the job's id. And
//! json-c's double form (record.rs's cpu_hours, jsonc.rs) reads back as the
//! same number.
#![no_main]
use jobcomp_kafka::jsonc::JsonCDouble;
use jobcomp_kafka::record::{build_record, wants_script, RecordOptions};
use jobcomp_kafka::snapshot::Event;
use jobcomp_kafka_fuzz::{release, snapshot};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let opts = RecordOptions { release: release(&mut u)?, send_script: u.arbitrary()?, send_comment: u.arbitrary()? };
    let event = if u.arbitrary()? { Event::Start } else { Event::Finish };
    let number: f64 = u.arbitrary()?;
    let script_len = u.arbitrary_len::<u8>()?.min(256);
    let script = u.bytes(script_len)?.to_vec();
    let with_script = u.arbitrary::<bool>()?;
    let job = snapshot(&mut u)?;

    let script = (with_script && wants_script(&job, event, &opts)).then_some(&script[..]);
    let text = build_record(&job, event, script, &opts);
    let text = std::str::from_utf8(&text).expect("the record is not UTF-8");
    let value: serde_json::Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("the record is not JSON ({e}): {text}"));
    let object = value.as_object().expect("the record is not a JSON object");
    assert_eq!(object.get("jobid").and_then(|v| v.as_u64()), Some(u64::from(job.job_id)), "{text}");

    let double = JsonCDouble::new(number);
    if number.is_finite() {
        let back: f64 = double.as_str().parse().expect("the double's text is not a number");
        assert!(back == number, "{number:?} printed as {}", double.as_str());
        let _: serde_json::Value = serde_json::from_str(double.as_str()).expect("the double is not JSON");
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = check(data);
});
