// SPDX-License-Identifier: GPL-2.0-or-later
//! The state file (ours and SchedMD's C plugin's format: one format, with or
//! without the per-message event field by protocol version), read by every
//! series' build. Whatever the bytes: no panic, and what is recovered survives
//! a save and a read-back unchanged; a file read without a problem is exactly
//! what the writer of its protocol version writes for those messages.
#![no_main]
use jobcomp_kafka::snapshot::Event;
use jobcomp_kafka::state_file::{decode, encode};
use jobcomp_kafka_fuzz::releases;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for release in releases() {
        let decoded = decode(data, release);
        if decoded.problem.is_none() {
            let version = u16::from_be_bytes([data[0], data[1]]);
            let writer = releases()
                .into_iter()
                .find(|r| r.protocol_version() == Some(version))
                .expect("a sound file has a supported protocol version");
            assert!(writer.series() <= release.series(), "a newer series' file was read");
            assert_eq!(encode(writer, &decoded.messages), data, "sound file differs from its re-encoding");
        } else {
            assert!(!decoded.problem.as_deref().unwrap_or("").is_empty());
        }
        if !release.at_least(25, 5, 0) {
            assert!(decoded.messages.iter().all(|m| m.event == Event::Finish), "start event before 25.05");
        }
        let again = decode(&encode(release, &decoded.messages), release);
        assert_eq!(again.problem, None, "our own file is refused by {release}");
        assert_eq!(again.messages, decoded.messages, "messages changed through a save");
    }
});
