//! The `jobcomp_sync` thread: the spool's periodic fdatasync, so that the
//! delivery thread never waits for the disk.

use super::hot_spool::HotSpool;
use crate::slurm::log;
use crossbeam_channel::Sender;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// One periodic sync.
pub(super) struct SyncJob {
    /// The delivery thread's files to fdatasync (with the hot path's own).
    pub(super) delivery_files: Vec<std::fs::File>,
    /// Snapshot files whose every record has its JSON text in the files
    /// above: deleted once those are synced (no longer needed to rebuild a
    /// record after a crash or a power loss).
    pub(super) then_delete: Vec<PathBuf>,
}

/// Runs the spool's periodic fdatasync off the delivery thread.
pub(super) struct Syncer {
    pub(super) sender: Sender<SyncJob>,
    pub(super) busy: Arc<AtomicBool>,
    pub(super) thread: JoinHandle<()>,
}

impl Syncer {
    pub(super) fn start(hot: Arc<HotSpool>) -> Option<Syncer> {
        let (sender, receiver) = crossbeam_channel::bounded::<SyncJob>(1);
        let busy = Arc::new(AtomicBool::new(false));
        let done = busy.clone();
        let thread = std::thread::Builder::new()
            .name("jobcomp_sync".into())
            .spawn(move || {
                crate::background::lower_this_thread();
                for job in receiver {
                    if hot.sync(&job.delivery_files) {
                        hot.delete_snapshot_files(&job.then_delete);
                    }
                    done.store(false, Ordering::Release);
                }
            })
            .map_err(|e| log::error(&format!("cannot start the spool's sync thread ({e}); syncing on the delivery thread")))
            .ok()?;
        Some(Syncer { sender, busy, thread })
    }

    pub(super) fn stop(self) {
        drop(self.sender);
        let _ = self.thread.join();
    }
}
