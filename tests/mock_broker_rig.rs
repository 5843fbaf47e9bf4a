// SPDX-License-Identifier: GPL-2.0-or-later
//! The host tests' rig (tests/common): a mock broker can be taken down and
//! brought back up while other test threads spawn child processes. Without
//! common's spawn guard this aborts the test process within a few
//! rounds (librdkafka cannot re-bind the broker's port while a forked child
//! still holds the old listening socket); CI lost a whole unit run to it.

mod common;

use common::*;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[test]
fn brokers_go_down_and_up_while_other_threads_spawn_children() {
    let kafka = Kafka::new(1);
    let stop = Arc::new(AtomicBool::new(false));
    let spawner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut spawned = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let out = run(&mut Command::new("true")).expect("run true");
                assert!(out.status.success());
                spawned += 1;
            }
            spawned
        })
    };
    // Unguarded, the abort came within the first ten rounds in each of three tries.
    for _ in 0..30 {
        kafka.down();
        kafka.up();
    }
    stop.store(true, Ordering::Relaxed);
    let spawned = spawner.join().expect("the spawning thread");
    assert!(spawned > 100, "children were spawned while the broker went down and up ({spawned})");
}
