//! A snapshot segment written through a shared file mapping.
//!
//! Why: the hot path (under slurmctld's job write lock) must put each record on
//! disk before it returns. A `write()` does that, but on the VMs this runs on a
//! `write()` after some idle time costs 10-25 us (bench/README.md, finding 1), most
//! of the hot path. A store into a `MAP_SHARED` mapping of the segment file lands
//! in the same page cache, so it has the same crash safety (a killed slurmctld
//! loses nothing the page cache holds; fdatasync on the delivery thread's cadence
//! covers power loss), at the cost of a `memcpy`.
//!
//! Two things would make a store into the mapping slow or fatal, and the
//! delivery thread prevents both ahead of the hot path:
//! - a store to a page past the end of the file, or to a hole the file system
//!   cannot fill (disk full), raises SIGBUS. So the file only grows by
//!   `posix_fallocate`, whose blocks are real, and the writer never writes past
//!   `reserved` (what was allocated). A failed allocation is an `io::Error` for
//!   the caller, never a signal.
//! - the first store to a page (and the first one after writeback) takes a page
//!   fault into the file system. `MADV_POPULATE_WRITE` takes those faults on the
//!   delivery thread, for the pages the hot path will write next.
//!
//! Space that was reserved but not written is zeros; `parse_segment` reads
//! zeros at the end of a segment as its clean end.

use parking_lot::Mutex;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The file grows by this much at a time. Small, because allocated space is
/// taken from the disk before it is needed: on a nearly full disk the spool
/// should not be what fills it.
pub const CHUNK: usize = 64 << 10;
/// How far ahead of the writer the delivery thread keeps pages allocated and
/// faulted in: about 100 records, a few seconds at a busy controller's rate
/// (the pages are faulted in again after each sync anyway). A burst beyond it
/// makes the writer allocate a chunk itself, one system call per ~100 records.
pub const LOOKAHEAD: usize = 64 << 10;
/// The most the delivery thread prepares ahead during a burst.
pub const MAX_LOOKAHEAD: usize = 8 << 20;

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as usize
    } else {
        4096
    }
}

/// One mapped segment file. Shared between the writer (the hot path, the only
/// one who stores into it) and the delivery thread (which reserves and faults in
/// pages ahead of it).
pub struct MappedSegment {
    pub segment: u64,
    file: File,
    base: NonNull<u8>,
    /// Length of the mapping; the file never grows past it.
    capacity: usize,
    /// Bytes of the file allocated so far (its size). Only grows, under `grow`.
    reserved: AtomicUsize,
    /// Bytes holding complete entries (the writer's position).
    used: AtomicUsize,
    /// Serialises growing the file (writer and delivery thread).
    grow: Mutex<()>,
    /// `MADV_POPULATE_WRITE` refused (kernel older than 5.14): not tried again.
    no_populate: AtomicBool,
    /// `used` at the delivery thread's last `prepare_ahead` (its own use only).
    used_at_last_prepare: AtomicUsize,
}

// SAFETY: the mapping is plain shared memory. Only one thread (the writer,
// holding the hot path's lock) stores into it, and only below `reserved`; the
// delivery thread only grows the file and asks the kernel to fault pages in,
// which does not change their contents.
unsafe impl Send for MappedSegment {}
unsafe impl Sync for MappedSegment {}

impl MappedSegment {
    /// Creates the segment file (it must not exist) and maps `capacity` bytes of it
    /// (rounded up to pages), with the first chunk allocated.
    pub fn create(path: &Path, segment: u64, capacity: usize) -> io::Result<MappedSegment> {
        let page = page_size();
        let capacity = capacity.max(page).next_multiple_of(page);
        let file = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(path)?;
        // SAFETY: a fresh shared mapping of our own file descriptor; the kernel
        // chooses the address. Pages past the end of the file are never touched
        // (see `reserve`).
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                capacity,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            let error = io::Error::last_os_error();
            let _ = std::fs::remove_file(path);
            return Err(error);
        }
        let mapped = MappedSegment {
            segment,
            file,
            base: NonNull::new(base as *mut u8).expect("mmap returned a non-null address"),
            capacity,
            reserved: AtomicUsize::new(0),
            used: AtomicUsize::new(0),
            grow: Mutex::new(()),
            no_populate: AtomicBool::new(false),
            used_at_last_prepare: AtomicUsize::new(0),
        };
        if let Err(error) = mapped.reserve(CHUNK.min(capacity), true) {
            drop(mapped);
            let _ = std::fs::remove_file(path);
            return Err(error);
        }
        Ok(mapped)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// The complete entry bytes at `[offset, offset + len)`, read through the
    /// mapping (no system call); `None` when they are not all below the
    /// writer's position.
    pub fn bytes_at(&self, offset: usize, len: usize) -> Option<&[u8]> {
        let end = offset.checked_add(len)?;
        if end > self.used() {
            return None;
        }
        // SAFETY: `[offset, end)` lies below `used`, so inside the mapping and the
        // allocated file, and holds complete entries the writer never stores to
        // again (it only appends past `used`; the Acquire load above orders
        // these reads after its stores).
        Some(unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(offset), len) })
    }

    /// Bytes of disk the file takes (allocated).
    pub fn reserved(&self) -> usize {
        self.reserved.load(Ordering::Acquire)
    }

    /// Makes sure the first `end` bytes of the file exist and are allocated, and
    /// (`populate`) faults their pages in. Returns the bytes newly allocated.
    pub fn reserve(&self, end: usize, populate: bool) -> io::Result<usize> {
        if end <= self.reserved.load(Ordering::Acquire) {
            return Ok(0);
        }
        if end > self.capacity {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "entry larger than the segment"));
        }
        let _grow = self.grow.lock();
        let from = self.reserved.load(Ordering::Acquire);
        if end <= from {
            return Ok(0);
        }
        let to = end.next_multiple_of(CHUNK).min(self.capacity);
        // SAFETY: plain syscall on our descriptor.
        let rc = unsafe { libc::posix_fallocate(self.file.as_raw_fd(), from as libc::off_t, (to - from) as libc::off_t) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if populate {
            self.populate(from, to);
        }
        self.reserved.store(to, Ordering::Release);
        Ok(to - from)
    }

    /// Faults in the pages of `[from, to)` for writing (no change to their
    /// contents), so that the writer's stores do not fault.
    fn populate(&self, from: usize, to: usize) {
        if self.no_populate.load(Ordering::Relaxed) || to <= from {
            return;
        }
        let page = page_size();
        let start = from - from % page;
        let end = to.min(self.capacity);
        // SAFETY: the range lies inside our mapping and inside the file; advice
        // only, the contents are untouched.
        let rc = unsafe {
            libc::madvise(self.base.as_ptr().add(start) as *mut libc::c_void, end - start, libc::MADV_POPULATE_WRITE)
        };
        if rc != 0 {
            self.no_populate.store(true, Ordering::Relaxed);
        }
    }

    /// Delivery thread: keeps space past the writer allocated and faulted in:
    /// `LOOKAHEAD`, or twice what the writer used since the last call (a burst),
    /// at most `MAX_LOOKAHEAD`. `after_sync`: the pages were just written back
    /// (fdatasync), which makes the kernel write-protect them; fault them in
    /// again. Returns the bytes newly allocated.
    pub fn prepare_ahead(&self, after_sync: bool) -> io::Result<usize> {
        let used = self.used();
        let since = used.saturating_sub(self.used_at_last_prepare.swap(used, Ordering::Relaxed));
        let ahead = (2 * since).clamp(LOOKAHEAD, MAX_LOOKAHEAD);
        let added = self.reserve((used + ahead).min(self.capacity), true)?;
        if after_sync && added == 0 {
            self.populate(used, self.reserved());
        }
        Ok(added)
    }

    /// Writer: copies `bytes` (whole entries) to the end of the segment and
    /// returns the offset they start at. Allocates more of the file first if the
    /// delivery thread has not got that far (a burst); without faulting the
    /// pages in, which would make one call in a hundred slow: the stores then
    /// fault a page at a time.
    ///
    /// Only one thread may call this (the hot path holds its lock around it).
    pub fn append(&self, bytes: &[u8]) -> io::Result<usize> {
        let offset = self.used.load(Ordering::Relaxed);
        let end = offset + bytes.len();
        if end > self.reserved.load(Ordering::Acquire) {
            self.reserve(end, false)?;
        }
        // SAFETY: `[offset, end)` is inside the mapping (reserve checked against
        // the capacity) and inside the allocated file; nobody else stores there.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.as_ptr().add(offset), bytes.len()) };
        self.used.store(end, Ordering::Release);
        Ok(offset)
    }

    /// Whether `len` more bytes fit.
    pub fn fits(&self, len: usize) -> bool {
        self.used.load(Ordering::Relaxed) + len <= self.capacity
    }

    /// A descriptor for fdatasync (which also writes back what was stored
    /// through the mapping).
    pub fn sync_handle(&self) -> Option<File> {
        self.file.try_clone().ok()
    }

    /// Gives back the allocated space past the last entry (a segment that is
    /// finished with, or at fini).
    pub fn trim(&self) {
        let _grow = self.grow.lock();
        let used = self.used();
        let _ = self.file.set_len(used as u64);
        // Stores never happen again past `used`: pretend nothing more is reserved.
        self.reserved.store(used, Ordering::Release);
    }
}

impl Drop for MappedSegment {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping, which nobody uses any more (last owner).
        unsafe { libc::munmap(self.base.as_ptr() as *mut libc::c_void, self.capacity) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("jk-mapped-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("seg")
    }

    #[test]
    fn appended_bytes_are_in_the_file_and_the_tail_is_allocated_zeros() {
        let path = temp_file("append");
        let segment = MappedSegment::create(&path, 7, 1 << 20).unwrap();
        assert_eq!(segment.append(b"first ").unwrap(), 0);
        assert_eq!(segment.append(b"second").unwrap(), 6);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), CHUNK, "the file grows a chunk at a time");
        assert_eq!(&bytes[..12], b"first second");
        assert!(bytes[12..].iter().all(|&b| b == 0));
        segment.trim();
        assert_eq!(std::fs::read(&path).unwrap(), b"first second");
    }

    #[test]
    fn the_file_grows_past_a_chunk_and_stops_at_the_capacity() {
        let path = temp_file("grow");
        let segment = MappedSegment::create(&path, 1, 3 * CHUNK).unwrap();
        let block = vec![0xabu8; CHUNK / 2 + 8];
        let mut written = 0;
        while segment.fits(block.len()) {
            segment.append(&block).unwrap();
            written += block.len();
        }
        assert!(written > 2 * CHUNK);
        assert!(segment.append(&block).is_err(), "past the capacity is an error, not a store");
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 3 * CHUNK);
        assert!(bytes[..written].iter().all(|&b| b == 0xab));
    }

    #[test]
    fn preparing_ahead_allocates_past_the_writer() {
        let path = temp_file("ahead");
        let segment = MappedSegment::create(&path, 1, 4 * CHUNK).unwrap();
        segment.append(&vec![1u8; CHUNK - 10]).unwrap();
        assert_eq!(segment.reserved(), CHUNK);
        // Twice what the writer used since the last call (a burst), in whole chunks.
        assert_eq!(segment.prepare_ahead(false).unwrap(), 2 * CHUNK);
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, 3 * CHUNK);
        assert_eq!(segment.prepare_ahead(true).unwrap(), 0, "already far enough ahead");
    }

    #[test]
    fn an_entry_larger_than_the_mapping_is_refused() {
        // (A full disk is tests/spool_faults.rs's tmpfs test.)
        let path = temp_file("large");
        let segment = MappedSegment::create(&path, 1, 4096).unwrap();
        assert!(segment.append(&[0u8; 8192]).is_err());
        assert_eq!(segment.used(), 0);
    }
}
