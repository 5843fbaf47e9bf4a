// SPDX-License-Identifier: GPL-2.0-or-later
//! The job readers over arbitrary bytes, through the layout guard
//! (slurm::guard::check_image): any layout's reader given any record image
//! never faults, and whatever it accepts makes a valid JSON record.
//!
//! Input: byte 0 picks the layout; bytes 1..3 (LE) the image's length; then
//! the image, then an arena. Any 8-byte aligned word, in the image or the
//! arena, whose top 16 bits are 0xa5a5 is replaced by a pointer into the arena
//! (its low 32 bits mod the arena's length, so misaligned too): the fuzzer
//! can build job_details, part_record, strings (with or without their NUL)
//! and association chains the readers follow. Every other word is taken as
//! is: a pointer to nowhere, which the checked reads must refuse.
#![no_main]
use jobcomp_kafka::record::{build_record, RecordOptions};
use jobcomp_kafka::release::Layout;
use jobcomp_kafka::slurm::guard::check_image;
use jobcomp_kafka::slurm::job::JOB_MAGIC;
use jobcomp_kafka::snapshot::Event;
use libfuzzer_sys::fuzz_target;

const MARK: u64 = 0xa5a5;
/// "Now" for the plausibility checks: 2024-05-01T12:00:00Z.
const NOW: i64 = 1_714_564_800;

fn plant(words: &mut [u64], arena_base: u64, arena_len: u64) {
    for word in words {
        if *word >> 48 == MARK {
            *word = arena_base + (*word & 0xffff_ffff) % arena_len.max(1);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let layout = Layout::ALL[usize::from(data[0]) % Layout::ALL.len()];
    let image_len = usize::from(u16::from_le_bytes([data[1], data[2]])).min(data.len() - 3);
    let (image_bytes, arena_bytes) = data[3..].split_at(image_len);
    let words = |bytes: &[u8]| -> Vec<u64> {
        bytes.chunks(8).map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_ne_bytes(w)
        }).collect()
    };
    let mut arena = words(arena_bytes);
    let mut image = words(image_bytes);
    let (base, len) = (arena.as_ptr() as u64, (arena.len() * 8) as u64);
    plant(&mut arena, base, len);
    plant(&mut image, base, len);
    let image: Vec<u8> = image.iter().flat_map(|w| w.to_ne_bytes()).collect();

    if let Ok(job) = check_image(layout, &image[..image_len], NOW) {
        assert!(
            image.windows(4).any(|w| w == JOB_MAGIC.to_ne_bytes()),
            "{layout:?} accepted a record without JOB_MAGIC"
        );
        let opts = RecordOptions { release: layout.measured_on(), send_script: false, send_comment: true };
        let text = build_record(&job, Event::Finish, None, &opts);
        let _: serde_json::Value = serde_json::from_slice(&text).expect("a record from an accepted image is not JSON");
    }
    drop(arena);
});
