//! The hot path's side of the spool: snapshot appends under slurmctld's job
//! write lock, and the fdatasync of the whole spool (from the sync thread, or
//! the delivery thread at start-up and fini).

use super::MEMORY_ONLY_LIMIT;
use crate::config::Params;
use crate::slurm::log;
use crate::snapshot::Event;
use crate::spool::{self, Location, SnapshotLog, SnapshotPrep, SpoolLock};
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

/// Writers of the spool, as bits of `HotSpool::failing`.
pub(super) const SNAPSHOTS: u8 = 1;
pub(super) const TEXTS: u8 = 2;

/// `writer` failed: true when no writer was failing (a run of failures opens).
fn failure_opens_a_run(failing: &AtomicU8, writer: u8) -> bool {
    failing.fetch_or(writer, Ordering::Relaxed) == 0
}

/// `writer` wrote: true when it was the only one failing (the run closes).
fn success_closes_a_run(failing: &AtomicU8, writer: u8) -> bool {
    failing.fetch_and(!writer, Ordering::Relaxed) == writer
}

/// The hot path's side of the spool.
pub(super) struct HotSpool {
    pub(super) dir: PathBuf,
    pub(super) writer: Mutex<SnapshotLog>,
    /// The delivery thread's side of the snapshot segments (space made ready
    /// ahead of the writer, syncing).
    pub(super) prep: SnapshotPrep,
    /// The segment the writer appends to, published after each append so that
    /// the delivery thread need not take the writer's lock (the hot path's) to
    /// learn it.
    pub(super) segment: AtomicU64,
    /// Approximate size of the spool on disk.
    pub(super) bytes: AtomicU64,
    pub(super) max_bytes: AtomicU64,
    /// Which writers last failed to write to the spool: the hot path's
    /// snapshots (`SNAPSHOTS`) and the delivery thread's texts (`TEXTS`). One
    /// word, so that one error line opens a run of failures and one info line
    /// closes it, however the two writers' successes and failures interleave
    /// on a nearly full disk (a small snapshot may fit where a text does not).
    failing: AtomicU8,
    /// The last sync failed (logged once until it works again).
    pub(super) sync_failing: AtomicBool,
    pub(super) _lock: SpoolLock,
}

/// Why a record was not spooled.
pub(super) enum NotSpooled {
    /// `encode` found no record to read.
    NothingToRead,
    /// The spool cannot take it now: it is kept in memory only, as these bytes.
    InMemory { job_id: u32, snapshot: Vec<u8> },
}

impl HotSpool {
    /// Spools the snapshot `encode` writes (see `submit`); the job id and
    /// where the snapshot is.
    pub(super) fn append(
        &self,
        id: u64,
        event: Event,
        encode: impl FnOnce(&mut Vec<u8>) -> Option<u32>,
    ) -> Result<(u32, Location), NotSpooled> {
        let mut writer = self.writer.lock();
        let job_id = writer.stage(id, event as u8, encode).ok_or(NotSpooled::NothingToRead)?;
        let len = writer.staged_len() as u64;
        if !self.has_room(len) {
            let max = self.max_bytes.load(Ordering::Relaxed);
            self.failed(SNAPSHOTS, &format!("the spool in {} reached spool_max_mb={}", self.dir.display(), max >> 20));
            return Err(NotSpooled::InMemory { job_id, snapshot: writer.staged_body().to_vec() });
        }
        match writer.write_staged() {
            Ok(location) => {
                self.segment.store(location.segment, Ordering::Release);
                self.bytes.fetch_add(len, Ordering::Relaxed);
                self.wrote(SNAPSHOTS);
                Ok((job_id, location))
            }
            Err(e) => {
                self.failed(SNAPSHOTS, &format!("cannot write to the spool in {}: {e}", self.dir.display()));
                Err(NotSpooled::InMemory { job_id, snapshot: writer.staged_body().to_vec() })
            }
        }
    }

    /// fdatasync of the whole spool: the hot path's segment files first, and
    /// their pages faulted in again right after (writeback write-protects them,
    /// and a store of the hot path before that would fault, and may wait on the
    /// file system, in slurmctld's thread); then `delivery_files` and the
    /// directory. One error line per run of failures. True when all is synced.
    pub(super) fn sync(&self, delivery_files: &[std::fs::File]) -> bool {
        let snapshots = self.prep.sync_handles();
        let synced = snapshots.iter().try_for_each(|file| file.sync_data());
        let _ = self.prep.prepare(true);
        match synced.and_then(|()| spool::sync(delivery_files, &self.dir)) {
            Ok(()) => {
                if self.sync_failing.swap(false, Ordering::Relaxed) {
                    log::info(&format!("the spool in {} can be synced again", self.dir.display()));
                }
                true
            }
            Err(e) => {
                if !self.sync_failing.swap(true, Ordering::Relaxed) {
                    log::error(&format!("cannot sync the spool in {}: {e}", self.dir.display()));
                }
                false
            }
        }
    }

    /// True when `len` more bytes keep the spool within spool_max_mb.
    pub(super) fn has_room(&self, len: u64) -> bool {
        self.bytes.load(Ordering::Relaxed) + len <= self.max_bytes.load(Ordering::Relaxed)
    }

    /// Deletes snapshot files no longer needed (their records' texts are
    /// synced in the `.dlv` files), and counts the space they took as free.
    pub(super) fn delete_snapshot_files(&self, paths: &[PathBuf]) {
        for path in paths {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if std::fs::remove_file(path).is_ok() {
                let _ = self.bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(size)));
            }
        }
    }

    /// `writer` could not write: the error line when no writer was failing.
    pub(super) fn failed(&self, writer: u8, why: &str) {
        if failure_opens_a_run(&self.failing, writer) {
            log::error(&format!(
                "{why}; new records are kept in memory (at most {MEMORY_ONLY_LIMIT}) until it can be written again, \
                 and are lost if slurmctld stops before they are delivered"
            ));
        }
    }

    /// `writer` wrote: the info line when it was the last one failing.
    pub(super) fn wrote(&self, writer: u8) {
        if success_closes_a_run(&self.failing, writer) {
            log::info(&format!("the spool in {} is writable again", self.dir.display()));
        }
    }

    pub(super) fn segment(&self) -> u64 {
        self.segment.load(Ordering::Acquire)
    }
}

/// Opens the spool under StateSaveLocation; `None` (with an error line) when it
/// cannot be used: the plugin then keeps records in memory only.
pub(super) fn open_spool(state_dir: &Path, params: &Params) -> Option<(Arc<HotSpool>, spool::Recovered)> {
    let dir = state_dir.join(spool::SPOOL_DIR);
    let fail = |why: String| {
        log::error(&format!(
            "{why}: running without the crash-safe spool; records not yet delivered are lost if slurmctld dies"
        ));
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        fail(format!("cannot create {}: {e}", dir.display()));
        return None;
    }
    let lock = match SpoolLock::acquire(&dir) {
        Ok(lock) => lock,
        Err(e) => {
            fail(format!("{} is locked by another process ({e}); is another slurmctld using this StateSaveLocation?", dir.display()));
            return None;
        }
    };
    let recovered = match spool::recover(&dir) {
        Ok(recovered) => recovered,
        Err(e) => {
            fail(format!("cannot read {}: {e}", dir.display()));
            return None;
        }
    };
    for line in &recovered.errors {
        log::error(line);
    }
    for line in &recovered.notes {
        log::verbose(line);
    }
    let snapshots = SnapshotLog::new(&dir, recovered.next_segment, segment_bytes(params));
    let hot = HotSpool {
        prep: snapshots.prep(),
        writer: Mutex::new(snapshots),
        segment: AtomicU64::new(recovered.next_segment),
        bytes: AtomicU64::new(spool::disk_usage(&dir)),
        max_bytes: AtomicU64::new(params.spool_max_mb << 20),
        failing: AtomicU8::new(0),
        sync_failing: AtomicBool::new(false),
        dir,
        _lock: lock,
    };
    Some((Arc::new(hot), recovered))
}

/// Segment size: a sixteenth of the spool limit, between 1 and 64 MiB.
pub(super) fn segment_bytes(params: &Params) -> u64 {
    ((params.spool_max_mb << 20) / 16).clamp(1 << 20, 64 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a nearly full disk a small snapshot may fit where a text does not:
    /// the two writers' outcomes interleave, and still one error line opens
    /// the run and one info line closes it.
    #[test]
    fn interleaved_writers_open_and_close_one_run() {
        let failing = AtomicU8::new(0);
        assert!(failure_opens_a_run(&failing, TEXTS));
        assert!(!success_closes_a_run(&failing, SNAPSHOTS));
        assert!(!failure_opens_a_run(&failing, TEXTS));
        assert!(!failure_opens_a_run(&failing, SNAPSHOTS));
        assert!(!success_closes_a_run(&failing, SNAPSHOTS));
        assert!(!failure_opens_a_run(&failing, TEXTS));
        assert!(success_closes_a_run(&failing, TEXTS));
        assert!(!success_closes_a_run(&failing, TEXTS));
        assert!(failure_opens_a_run(&failing, SNAPSHOTS));
    }
}
