//! The `jobcomp_sync` thread: the spool's periodic fdatasync, so that the
//! delivery thread never waits for the disk.

use super::hot_spool::HotSpool;
use crate::slurm::log;
use crossbeam_channel::Sender;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Runs the spool's periodic fdatasync off the delivery thread.
pub(super) struct Syncer {
    pub(super) sender: Sender<Vec<std::fs::File>>,
    pub(super) busy: Arc<AtomicBool>,
    pub(super) thread: JoinHandle<()>,
}

impl Syncer {
    pub(super) fn start(hot: Arc<HotSpool>) -> Option<Syncer> {
        let (sender, receiver) = crossbeam_channel::bounded::<Vec<std::fs::File>>(1);
        let busy = Arc::new(AtomicBool::new(false));
        let done = busy.clone();
        let thread = std::thread::Builder::new()
            .name("jobcomp_sync".into())
            .spawn(move || {
                crate::background::lower_this_thread();
                for delivery_files in receiver {
                    hot.sync(&delivery_files);
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
