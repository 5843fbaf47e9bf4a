// SPDX-License-Identifier: GPL-2.0-or-later
//! The snapshot codec (the spool's binary form of a job). Arbitrary bytes
//! decode or are refused without a panic, and what decodes encodes back to a
//! form that decodes to the same job; any job drawn from the input survives an
//! encode and decode unchanged.
#![no_main]
use jobcomp_kafka::snapshot::codec;
use jobcomp_kafka_fuzz::snapshot;
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(job) = codec::decode(data) {
        let mut bytes = Vec::new();
        codec::encode(&job, &mut bytes);
        assert_eq!(codec::decode(&bytes).as_ref(), Some(&job), "decoded job changed through encode");
    }
    let mut u = Unstructured::new(data);
    if let Ok(job) = snapshot(&mut u) {
        let mut bytes = Vec::new();
        codec::encode(&job, &mut bytes);
        assert_eq!(codec::decode(&bytes), Some(job), "encoded job does not decode to itself");
        // Every cut of a valid snapshot is refused, never misread.
        let cut = usize::from(u.arbitrary::<u16>().unwrap_or(0)) % bytes.len();
        assert_eq!(codec::decode(&bytes[..cut]), None, "a truncated snapshot was accepted");
    }
});
