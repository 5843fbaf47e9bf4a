// SPDX-License-Identifier: GPL-2.0-or-later
//! Spool segments as found at start-up: a `.snap` and a `.dlv` file of any
//! bytes (torn, bit-flipped, foreign), under any segment number. Reading them
//! (`parse_segment`, `recover`) and reading back every body recovery points at
//! (`DeliveryLog::read`, then the snapshot codec) never panics, and every
//! location it returns lies inside its file.
//!
//! Input: byte 0 picks the two segment numbers, bytes 1..5 (LE) the length of
//! the `.snap` part; the rest is the `.snap` bytes then the `.dlv` bytes.
#![no_main]
use std::collections::BTreeMap;

use jobcomp_kafka::snapshot::codec;
use jobcomp_kafka::spool::{parse_segment, recover, segment_path, DeliveryLog, Entry, Suffix};
use jobcomp_kafka_fuzz::scratch_dir;
use libfuzzer_sys::fuzz_target;

const SEGMENTS: [u64; 8] = [0, 1, 2, 7, 0x7fff_ffff_ffff_ffff, u64::MAX - 1, u64::MAX, 0x1_0000_0000];

/// Entries lie inside the segment, in order, 8-byte aligned, without overlap.
fn check_entries(bytes: &[u8], entries: &[Entry<'_>]) {
    let mut end = 0u64;
    for entry in entries {
        assert!(entry.body_offset >= end + 32, "entry overlaps the previous one");
        assert_eq!((entry.body_offset - 32) % 8, 0, "entry not aligned");
        let body_end = entry.body_offset + entry.body.len() as u64;
        assert!(body_end <= bytes.len() as u64, "entry body past the end");
        assert_eq!(&bytes[entry.body_offset as usize..body_end as usize], entry.body);
        end = body_end;
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let snap_segment = SEGMENTS[usize::from(data[0] & 7)];
    let dlv_segment = SEGMENTS[usize::from(data[0] >> 3 & 7)];
    let rest = &data[5..];
    let split = (u32::from_le_bytes(data[1..5].try_into().unwrap()) as usize).min(rest.len());
    let (snap, dlv) = rest.split_at(split);

    for bytes in [snap, dlv] {
        let (entries, _damage) = parse_segment(bytes);
        check_entries(bytes, &entries);
    }

    let dir = scratch_dir("spool");
    std::fs::write(segment_path(&dir, snap_segment, Suffix::Snap), snap).unwrap();
    std::fs::write(segment_path(&dir, dlv_segment, Suffix::Dlv), dlv).unwrap();
    let found = recover(&dir).expect("recover");
    let mut reader = DeliveryLog::new(&dir, found.next_segment, BTreeMap::new());
    for record in &found.records {
        for location in [record.snapshot, record.payload].into_iter().flatten() {
            let file = if location.suffix == Suffix::Snap { snap } else { dlv };
            let end = location.offset + u64::from(location.len);
            assert!(end <= file.len() as u64, "location past the end of its file");
            let body = reader.read(&location).expect("read a recovered body");
            assert_eq!(body, &file[location.offset as usize..end as usize]);
            if location.suffix == Suffix::Snap {
                let _ = codec::decode(&body);
            }
        }
    }
    for segment in [snap_segment, dlv_segment] {
        if segment <= u64::MAX >> 1 {
            assert!(found.next_segment > segment, "new segments would not come after segment {segment:#x}");
        } else {
            assert!(found.errors.iter().any(|e| e.contains("never writes")), "foreign segment {segment:#x} not reported");
        }
    }
});
