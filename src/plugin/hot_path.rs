//! The hot path: `submit`, called by slurmctld's threads under the job write
//! lock. One look at the plugin's state, the snapshot copied into the mapped
//! spool, a channel send, the bell (`bell`: one atomic load; a FUTEX_WAKE only
//! when the delivery thread is parked with nothing to do); no allocation, no
//! other system call, no lock but the spool writer's.

use super::hot_spool::NotSpooled;
use super::lifecycle::{Running, RUNNING};
use super::{event_index, Command, MEMORY_ONLY_LIMIT};
use crate::slurm::log;
use crate::snapshot::Event;
use std::sync::atomic::Ordering;

/// Why `submit` did not take a record.
#[derive(Debug, PartialEq, Eq)]
pub enum NotTaken {
    /// No successful init (or after fini).
    NotRunning,
    /// `read` found no record to read.
    Unreadable,
    /// Neither the spool nor memory could hold it (counted, logged).
    Lost,
}

/// The hot path's hand-off: read the record (only when running) and spool it,
/// queue its place for the delivery thread. `encode` reads the job and appends
/// its snapshot (`snapshot::codec`) to the buffer it is given, returning the
/// job id (`None`: nothing to read); it runs under the spool writer's lock, so
/// the record goes from slurmctld's memory to the spool without an allocation.
/// One look at the plugin's state; never blocks on the network or fsync.
pub fn submit(event: Event, encode: impl FnOnce(&mut Vec<u8>) -> Option<u32>) -> Result<(), NotTaken> {
    let running = RUNNING.read();
    let Some(running) = running.as_ref() else { return Err(NotTaken::NotRunning) };
    // Metrics on: the TSC read before and after (no system call), relaxed adds.
    let latency = running.counters.latency.as_ref();
    let started = latency.map(|l| l.clock.now());
    let taken = take(running, event, encode);
    if taken.is_ok() {
        running.counters.taken[event_index(event)].fetch_add(1, Ordering::Relaxed);
    }
    if let (Some(latency), Some(started)) = (latency, started) {
        latency.observe_since(started);
    }
    taken
}

fn take(running: &Running, event: Event, encode: impl FnOnce(&mut Vec<u8>) -> Option<u32>) -> Result<(), NotTaken> {
    let id = running.next_id.fetch_add(1, Ordering::Relaxed);
    let spooled = match running.spool.as_ref() {
        Some(spool) => spool.append(id, event, encode),
        None => {
            let mut bytes = Vec::new();
            match encode(&mut bytes) {
                Some(job_id) => Err(NotSpooled::InMemory { job_id, snapshot: bytes }),
                None => Err(NotSpooled::NothingToRead),
            }
        }
    };
    let command = match spooled {
        Ok((job_id, location)) => Command::Record { encoded: None, job_id, event, id, snapshot: Some(location) },
        Err(NotSpooled::NothingToRead) => return Err(NotTaken::Unreadable),
        Err(NotSpooled::InMemory { job_id, snapshot: bytes }) => {
            if running.counters.memory_only.fetch_add(1, Ordering::Relaxed) >= MEMORY_ONLY_LIMIT {
                running.counters.memory_only.fetch_sub(1, Ordering::Relaxed);
                let lost = running.counters.lost.fetch_add(1, Ordering::Relaxed) + 1;
                if lost.is_power_of_two() {
                    log::error(&format!(
                        "job {job_id}: record lost: the spool cannot be written and {MEMORY_ONLY_LIMIT} records already wait in memory ({lost} lost so far)"
                    ));
                }
                return Err(NotTaken::Lost);
            }
            Command::Record { encoded: Some(bytes), job_id, event, id, snapshot: None }
        }
    };
    // The channel, then the bell: one atomic load, and a FUTEX_WAKE only when
    // the delivery thread is parked with nothing to do.
    if running.send(command) { Ok(()) } else { Err(NotTaken::NotRunning) }
}
