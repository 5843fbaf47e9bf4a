//! The crash-safe spool: every record is on disk (in the page cache) before
//! `log_record` returns, and stays there until Kafka acknowledged it.
//!
//! Layout: `<StateSaveLocation>/jobcomp_kafka_spool/seg-<N>.snap` and
//! `seg-<N>.dlv`, N a hex segment number that only grows.
//! - `.snap` files are appended by the hot path: one `Snapshot` entry per record
//!   (the job fields as copied from slurmctld, see `snapshot::codec`), copied
//!   into a shared mapping of the file (`mapped`), no system call, no fsync: a
//!   process crash cannot lose what the page cache holds; the delivery thread
//!   makes it durable with fdatasync on a cadence (power loss), and allocates
//!   and faults in the space ahead of the hot path.
//! - `.dlv` files are appended by the delivery thread: the record's JSON text
//!   (`Payload`, so that a record produced again after a restart is the same
//!   bytes; `CompressedPayload`, the same text as a zstd frame, for records
//!   spooled while Kafka acknowledges nothing: an outage, see `DeliveryLog`)
//!   and `Ack` entries listing the ids Kafka acknowledged.
//!
//! Every entry carries a CRC32 of its header and body. Recovery reads every
//! segment: a torn tail (a crash in the middle of a write) is cut off, a damaged
//! entry elsewhere is reported and skipped, the rest is used. A record is
//! outstanding until an `Ack` for its id is found.
//!
//! Ordering rule that makes deletion safe: a record's `Payload` and `Ack` are
//! always written to a segment at least as new as its `Snapshot`, and segments
//! are deleted oldest first, only when every record they own is acknowledged.
//! So an acknowledgement is never deleted while the record it retires is still
//! on disk, and an acknowledged record is never produced again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

mod compress;
mod mapped;
pub use compress::Zstd;
use mapped::MappedSegment;

pub const SPOOL_DIR: &str = "jobcomp_kafka_spool";
const MAGIC: u32 = 0x4A4B_5331; // "1SKJ" little-endian

/// The spool format version of a segment that starts with `head`, when it is
/// another version than this one's ("<digit>SKJ"): a spool written by another
/// build of the plugin.
pub fn foreign_format(head: &[u8]) -> Option<char> {
    let magic = MAGIC.to_le_bytes();
    match head.get(0..4) {
        Some(h) if h[1..] == magic[1..] && h[0] != magic[0] && h[0].is_ascii_digit() => Some(h[0] as char),
        _ => None,
    }
}

/// This build's spool format version.
pub const FORMAT_VERSION: char = '1';
const HEADER: usize = 32;
const ALIGN: usize = 8;
/// What a payload entry takes in the spool beyond its text, as the spool's
/// size accounting (spool_max_mb) counts it: the entry header, the topic's
/// length and the padding to ALIGN. (The topic's own bytes are not counted:
/// a rough figure, kept the same wherever a payload entry is accounted.)
pub const PAYLOAD_ENTRY_OVERHEAD: u64 = (HEADER + ALIGN) as u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Snapshot = 1,
    Payload = 2,
    Ack = 3,
    /// A payload whose JSON text is a zstd frame: topic as in `Payload`, then
    /// the text's length (u32), then the frame.
    CompressedPayload = 4,
}

impl Kind {
    fn from_u8(value: u8) -> Option<Kind> {
        match value {
            1 => Some(Kind::Snapshot),
            2 => Some(Kind::Payload),
            3 => Some(Kind::Ack),
            4 => Some(Kind::CompressedPayload),
            _ => None,
        }
    }
}

/// Where an entry's body lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub segment: u64,
    pub suffix: Suffix,
    pub offset: u64,
    pub len: u32,
    /// The text's length when the body there is a zstd frame of it
    /// (`Kind::CompressedPayload`); `None`: the body is the text.
    pub zstd_len: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suffix {
    Snap,
    Dlv,
}

impl Suffix {
    fn as_str(self) -> &'static str {
        match self {
            Suffix::Snap => "snap",
            Suffix::Dlv => "dlv",
        }
    }
}

pub fn segment_path(dir: &Path, segment: u64, suffix: Suffix) -> PathBuf {
    dir.join(format!("seg-{segment:016x}.{}", suffix.as_str()))
}

/// Appends one entry to `out`: header, body, zero padding to 8 bytes.
pub fn encode_entry(kind: Kind, event: u8, record_id: u64, job_id: u32, body: &[u8], out: &mut Vec<u8>) {
    let start = begin_entry(out);
    out.extend_from_slice(body);
    finish_entry(out, start, kind, event, record_id, job_id);
}

/// Reserves an entry's header at the end of `out`; the body is appended after
/// it (so that it is written in place, not copied), then `finish_entry`.
fn begin_entry(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    start
}

/// Fills in the header of the entry begun at `start`, whose body is the rest
/// of `out`, with its checksum, and pads the entry.
fn finish_entry(out: &mut Vec<u8>, start: usize, kind: Kind, event: u8, record_id: u64, job_id: u32) {
    let body_len = (out.len() - start - HEADER) as u32;
    let head = &mut out[start..start + HEADER];
    head[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    head[4] = kind as u8;
    head[5] = event;
    head[8..12].copy_from_slice(&body_len.to_le_bytes());
    // 12..16: the CRC, below
    head[16..24].copy_from_slice(&record_id.to_le_bytes());
    head[24..28].copy_from_slice(&job_id.to_le_bytes());
    let crc = entry_crc(&out[start..start + 8], &out[start + 16..]);
    out[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
    out.resize(out.len().next_multiple_of(ALIGN), 0);
}

fn entry_crc(head: &[u8], rest: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(head);
    hasher.update(rest);
    hasher.finalize()
}

/// One entry found in a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub kind: Kind,
    pub event: u8,
    pub record_id: u64,
    pub job_id: u32,
    pub body: &'a [u8],
    pub body_offset: u64,
}

/// Something wrong found while reading a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The file ends inside an entry, or in bytes that are no entry: the normal
    /// trace of a crash in the middle of a write.
    TornTail { offset: u64 },
    /// Bytes that are no valid entry, followed by valid entries again.
    Corrupt { offset: u64, skipped: u64 },
}

/// The entry at `offset`, if a complete and valid one starts there.
fn entry_at(bytes: &[u8], offset: usize) -> Option<(Entry<'_>, usize)> {
    let head = bytes.get(offset..offset + HEADER)?;
    if u32::from_le_bytes(head[0..4].try_into().ok()?) != MAGIC {
        return None;
    }
    let kind = Kind::from_u8(head[4])?;
    let body_len = u32::from_le_bytes(head[8..12].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[12..16].try_into().ok()?);
    let body_start = offset + HEADER;
    let body = bytes.get(body_start..body_start.checked_add(body_len)?)?;
    if entry_crc(&head[0..8], &bytes[offset + 16..body_start + body_len]) != crc {
        return None;
    }
    let entry = Entry {
        kind,
        event: head[5],
        record_id: u64::from_le_bytes(head[16..24].try_into().ok()?),
        job_id: u32::from_le_bytes(head[24..28].try_into().ok()?),
        body,
        body_offset: body_start as u64,
    };
    Some((entry, (HEADER + body_len).next_multiple_of(ALIGN)))
}

/// Every valid entry of a segment, and what was wrong in between.
pub fn parse_segment(bytes: &[u8]) -> (Vec<Entry<'_>>, Vec<Damage>) {
    let mut entries = Vec::new();
    let mut damage = Vec::new();
    let mut offset = 0usize;
    while offset < bytes.len() {
        if let Some((entry, size)) = entry_at(bytes, offset) {
            entries.push(entry);
            offset += size;
            continue;
        }
        // Zero bytes to the end: space reserved and never written (a snapshot
        // segment's normal end, see `mapped`).
        if bytes[offset..].iter().all(|&b| b == 0) {
            break;
        }
        let bad_start = offset;
        let mut next = offset + ALIGN;
        while next < bytes.len() && entry_at(bytes, next).is_none() {
            next += ALIGN;
        }
        if next >= bytes.len() {
            damage.push(Damage::TornTail { offset: bad_start as u64 });
            break;
        }
        damage.push(Damage::Corrupt { offset: bad_start as u64, skipped: (next - bad_start) as u64 });
        offset = next;
    }
    (entries, damage)
}

/// An append-only segment file.
struct SegmentFile {
    dir: PathBuf,
    suffix: Suffix,
    segment: u64,
    file: Option<File>,
    size: u64,
}

impl SegmentFile {
    fn new(dir: &Path, suffix: Suffix, segment: u64) -> SegmentFile {
        SegmentFile { dir: dir.to_path_buf(), suffix, segment, file: None, size: 0 }
    }

    /// Switches to segment `segment` (creating its file at the next append).
    fn move_to(&mut self, segment: u64) {
        if segment != self.segment {
            self.segment = segment;
            self.file = None;
            self.size = 0;
        }
    }

    /// Appends `bytes` (one or more whole entries); returns the offset they start
    /// at. On a failed or short write the file is cut back, so no partial entry
    /// stays in the middle of the segment.
    fn append(&mut self, bytes: &[u8]) -> io::Result<u64> {
        if self.file.is_none() {
            let path = segment_path(&self.dir, self.segment, self.suffix);
            let file = OpenOptions::new().create(true).append(true).mode(0o600).open(&path)?;
            self.size = file.metadata()?.len();
            self.file = Some(file);
        }
        let file = self.file.as_mut().expect("opened above");
        let offset = self.size;
        if let Err(error) = file.write_all(bytes) {
            let _ = file.set_len(offset);
            return Err(error);
        }
        self.size += bytes.len() as u64;
        Ok(offset)
    }

    fn handle(&self) -> Option<File> {
        self.file.as_ref().and_then(|f| f.try_clone().ok())
    }
}

/// The hot path's side of the spool: appends `Snapshot` entries, each a
/// `memcpy` into a mapped segment (see `mapped`). Segments are created ahead of
/// time by the delivery thread through [`SnapshotPrep`].
pub struct SnapshotLog {
    current: Option<Arc<MappedSegment>>,
    /// The segment appended to (the first one to create while `current` is None).
    segment: u64,
    /// The entry being written (see `stage`), and the length of its body.
    buffer: Vec<u8>,
    staged_body: usize,
    /// Entries written to `current` (reported when the writer leaves it).
    entries_in_current: usize,
    shared: Arc<SnapshotShared>,
}

/// What the hot path and the delivery thread share about the snapshot segments.
/// Its lock is taken by the hot path only when it changes segment.
struct SnapshotShared {
    dir: PathBuf,
    segment_bytes: u64,
    inner: Mutex<SharedSegments>,
}

struct SharedSegments {
    current: Option<Arc<MappedSegment>>,
    /// Created ahead of time by the delivery thread, for the hot path to switch to.
    next: Option<Arc<MappedSegment>>,
    /// Segments the hot path has left: trimmed and synced by the delivery thread.
    finished: Vec<Arc<MappedSegment>>,
    /// Segments the writer has left, with how many entries it wrote to each
    /// (final: it never writes to them again); taken by the delivery thread
    /// (`SnapshotPrep::take_closed`).
    closed: Vec<(u64, usize)>,
    /// The next unused segment number. Whoever creates a segment takes its
    /// number from here under the lock, so the hot path and the delivery thread
    /// never create the same file (numbers may be skipped; they only grow).
    next_free: u64,
    /// The delivery thread is creating a segment (outside the lock).
    creating: bool,
}

impl SnapshotShared {
    fn create(&self, segment: u64, min_capacity: usize) -> io::Result<Arc<MappedSegment>> {
        let capacity = (self.segment_bytes as usize).max(min_capacity);
        MappedSegment::create(&segment_path(&self.dir, segment, Suffix::Snap), segment, capacity).map(Arc::new)
    }

    fn remove(&self, segment: &MappedSegment) {
        let _ = fs::remove_file(segment_path(&self.dir, segment.segment, Suffix::Snap));
    }
}

impl SnapshotLog {
    pub fn new(dir: &Path, first_segment: u64, segment_bytes: u64) -> SnapshotLog {
        SnapshotLog {
            current: None,
            segment: first_segment,
            buffer: Vec::with_capacity(4096),
            staged_body: 0,
            entries_in_current: 0,
            shared: Arc::new(SnapshotShared {
                dir: dir.to_path_buf(),
                segment_bytes,
                inner: Mutex::new(SharedSegments {
                    current: None,
                    next: None,
                    finished: Vec::new(),
                    closed: Vec::new(),
                    next_free: first_segment,
                    creating: false,
                }),
            }),
        }
    }

    /// The delivery thread's handle.
    pub fn prep(&self) -> SnapshotPrep {
        SnapshotPrep { shared: self.shared.clone() }
    }

    /// Writes one record's snapshot (`body`, from `snapshot::codec`): a copy into
    /// the mapped segment, no system call unless the delivery thread has fallen
    /// behind in preparing space.
    pub fn append(&mut self, record_id: u64, job_id: u32, event: u8, body: &[u8]) -> io::Result<Location> {
        self.stage(record_id, event, |out| {
            out.extend_from_slice(body);
            Some(job_id)
        });
        self.write_staged()
    }

    /// Builds the next entry in the writer's buffer with the body `encode`
    /// appends to it (the snapshot, encoded in place: no copy of it), and
    /// returns `encode`'s job id; `None` (nothing to record) stages nothing.
    /// `write_staged` then appends the entry.
    pub fn stage(&mut self, record_id: u64, event: u8, encode: impl FnOnce(&mut Vec<u8>) -> Option<u32>) -> Option<u32> {
        self.buffer.clear();
        let start = begin_entry(&mut self.buffer);
        let job_id = encode(&mut self.buffer)?;
        self.staged_body = self.buffer.len() - HEADER;
        finish_entry(&mut self.buffer, start, Kind::Snapshot, event, record_id, job_id);
        Some(job_id)
    }

    /// The body of the staged entry (kept in memory when the spool cannot take it).
    pub fn staged_body(&self) -> &[u8] {
        &self.buffer[HEADER..HEADER + self.staged_body]
    }

    /// The size on disk of the staged entry.
    pub fn staged_len(&self) -> usize {
        self.buffer.len()
    }

    /// Appends the staged entry: a copy into the mapped segment, no system call
    /// unless the delivery thread has fallen behind in preparing space.
    pub fn write_staged(&mut self) -> io::Result<Location> {
        let len = self.buffer.len();
        let full = match &self.current {
            None => true,
            Some(current) => current.used() as u64 >= self.shared.segment_bytes || !current.fits(len),
        };
        if full {
            self.switch_segment(len)?;
        }
        let current = self.current.as_ref().expect("a segment after switch_segment");
        let offset = current.append(&self.buffer)?;
        self.entries_in_current += 1;
        Ok(Location {
            segment: current.segment,
            suffix: Suffix::Snap,
            offset: (offset + HEADER) as u64,
            len: self.staged_body as u32,
            zstd_len: None,
        })
    }

    /// Moves to the next segment: the one the delivery thread prepared, or a new
    /// one created here (start-up, a burst, an entry larger than a segment).
    fn switch_segment(&mut self, len: usize) -> io::Result<()> {
        let mut inner = self.shared.inner.lock();
        let segment = match inner.next.take() {
            Some(next) if next.capacity() >= len => next,
            unusable => {
                if let Some(small) = unusable {
                    // Too small for this entry: a larger one is created below.
                    self.shared.remove(&small);
                }
                let number = inner.next_free;
                inner.next_free += 1;
                self.shared.create(number, len)?
            }
        };
        if let Some(old) = inner.current.replace(segment.clone()) {
            inner.closed.push((old.segment, std::mem::take(&mut self.entries_in_current)));
            inner.finished.push(old);
        }
        self.segment = segment.segment;
        self.current = Some(segment);
        Ok(())
    }

    pub fn segment(&self) -> u64 {
        self.segment
    }
}

impl Drop for SnapshotLog {
    /// Gives back the space reserved past the last entry, and removes a prepared
    /// segment nobody wrote to.
    fn drop(&mut self) {
        let mut inner = self.shared.inner.lock();
        for segment in inner.current.iter().chain(inner.finished.iter()) {
            segment.trim();
        }
        if let Some(next) = inner.next.take() {
            self.shared.remove(&next);
        }
    }
}

/// The delivery thread's side of the snapshot segments: keeps space ready
/// ahead of the hot path and syncs what it wrote.
pub struct SnapshotPrep {
    shared: Arc<SnapshotShared>,
}

impl SnapshotPrep {
    /// Allocates and faults in space ahead of the writer, and creates the next
    /// segment once the current one is half full (or before the first record).
    /// `after_sync`: the pages were just written back.
    pub fn prepare(&self, after_sync: bool) -> io::Result<()> {
        let (current, number) = {
            let mut inner = self.shared.inner.lock();
            let current = inner.current.clone();
            let half_full = current.as_ref().is_none_or(|c| c.used() as u64 >= self.shared.segment_bytes / 2);
            let number = (inner.next.is_none() && !inner.creating && half_full).then(|| {
                inner.creating = true;
                inner.next_free += 1;
                inner.next_free - 1
            });
            (current, number)
        };
        if let Some(current) = &current {
            current.prepare_ahead(after_sync)?;
        }
        if let Some(number) = number {
            let created = self.shared.create(number, 0);
            let mut inner = self.shared.inner.lock();
            inner.creating = false;
            let next = created?;
            if inner.current.as_ref().is_none_or(|c| c.segment < number) {
                inner.next = Some(next);
            } else {
                // The hot path could not wait and created a later one itself.
                self.shared.remove(&next);
            }
        }
        Ok(())
    }

    /// Runs `read` on a snapshot body the hot path wrote to a segment still
    /// mapped (the current one, or one finished since the last sync), without
    /// a system call or a copy; `None` when that segment is no longer mapped
    /// (the caller reads the file instead).
    pub fn with_mapped<R>(&self, at: &Location, read: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if at.suffix != Suffix::Snap {
            return None;
        }
        let segment = {
            let inner = self.shared.inner.lock();
            let mut mapped = inner.current.iter().chain(inner.finished.iter());
            mapped.find(|s| s.segment == at.segment)?.clone()
        };
        let bytes = segment.bytes_at(usize::try_from(at.offset).ok()?, at.len as usize)?;
        Some(read(bytes))
    }

    /// The segments the writer has left since the last call, with the number of
    /// entries in each.
    pub fn take_closed(&self) -> Vec<(u64, usize)> {
        std::mem::take(&mut self.shared.inner.lock().closed)
    }

    /// Descriptors to fdatasync: the current segment and those finished since
    /// the last call (trimmed to their entries first).
    pub fn sync_handles(&self) -> Vec<File> {
        let (current, finished) = {
            let mut inner = self.shared.inner.lock();
            (inner.current.clone(), std::mem::take(&mut inner.finished))
        };
        let mut files = Vec::new();
        for segment in &finished {
            segment.trim();
            files.extend(segment.sync_handle());
        }
        files.extend(current.and_then(|c| c.sync_handle()));
        files
    }
}

/// The delivery thread's side: `Payload` and `Ack` entries, reading bodies back,
/// and deleting retired segments.
pub struct DeliveryLog {
    dir: PathBuf,
    file: SegmentFile,
    buffer: Vec<u8>,
    readers: HashMap<(u64, Suffix), File>,
    /// Outstanding records per owning segment (the segment of the record's first entry).
    owned: BTreeMap<u64, usize>,
    /// Made at the first compressed entry written or read.
    zstd: Option<Zstd>,
}

impl DeliveryLog {
    pub fn new(dir: &Path, first_segment: u64, owned: BTreeMap<u64, usize>) -> DeliveryLog {
        DeliveryLog {
            dir: dir.to_path_buf(),
            file: SegmentFile::new(dir, Suffix::Dlv, first_segment),
            buffer: Vec::with_capacity(4096),
            readers: HashMap::new(),
            owned,
            zstd: None,
        }
    }

    /// Keeps the delivery log in a segment at least as new as `segment` (the
    /// hot path's current one): see the ordering rule in the module docs.
    pub fn follow(&mut self, segment: u64) {
        if segment > self.file.segment {
            self.file.move_to(segment);
        }
    }

    pub fn segment(&self) -> u64 {
        self.file.segment
    }

    /// Writes a record's JSON text and the topic it is for (a record produced
    /// again after a restart goes where it was meant to go, whatever a
    /// reconfigure changed since). `new_record`: it has no snapshot entry
    /// (replayed from a state file), so this entry's segment owns it.
    /// `compress`: the record is expected to wait (Kafka acknowledges nothing):
    /// the text is written as a zstd frame when that is smaller, so that an
    /// outage fills the spool about three times more slowly. The location
    /// returned is the JSON text's (or its frame's).
    #[allow(clippy::too_many_arguments)]
    pub fn append_payload(
        &mut self,
        record_id: u64,
        job_id: u32,
        event: u8,
        topic: &[u8],
        payload: &[u8],
        new_record: bool,
        compress: bool,
    ) -> io::Result<Location> {
        let topic = &topic[..topic.len().min(u16::MAX as usize)];
        // The body is written in place behind the header: the JSON text (or its
        // frame) is copied once, into the buffer handed to write().
        self.buffer.clear();
        let start = begin_entry(&mut self.buffer);
        self.buffer.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        self.buffer.extend_from_slice(topic);
        let text_at = self.buffer.len() - start;
        let compressed = compress && self.compress_into_buffer(payload);
        let (kind, body_at, zstd_len) = if compressed {
            (Kind::CompressedPayload, text_at + 4, Some(payload.len() as u32))
        } else {
            self.buffer.extend_from_slice(payload);
            (Kind::Payload, text_at, None)
        };
        let len = (self.buffer.len() - start - body_at) as u32;
        finish_entry(&mut self.buffer, start, kind, event, record_id, job_id);
        let offset = self.file.append(&self.buffer)?;
        if new_record {
            *self.owned.entry(self.file.segment).or_default() += 1;
        }
        Ok(Location { segment: self.file.segment, suffix: Suffix::Dlv, offset: offset + body_at as u64, len, zstd_len })
    }

    /// Appends the text's length and its zstd frame to the buffer; false (the
    /// buffer as it was) when that would not be smaller or zstd is unavailable.
    fn compress_into_buffer(&mut self, text: &[u8]) -> bool {
        let Ok(len) = u32::try_from(text.len()) else { return false };
        let Some(zstd) = zstd_context(&mut self.zstd) else { return false };
        let length_at = self.buffer.len();
        self.buffer.extend_from_slice(&len.to_le_bytes());
        if zstd.compress_into(text, &mut self.buffer) {
            return true;
        }
        self.buffer.truncate(length_at);
        false
    }

    /// A snapshot written by the hot path now belongs to `segment`'s count.
    pub fn count_snapshot(&mut self, segment: u64) {
        *self.owned.entry(segment).or_default() += 1;
    }

    /// Records acknowledged by Kafka: one `Ack` entry; `owners` are the owning
    /// segments of those records.
    pub fn append_acks(&mut self, ids: &[u64], owners: &[u64]) -> io::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let body: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
        self.buffer.clear();
        encode_entry(Kind::Ack, 0, 0, 0, &body, &mut self.buffer);
        self.file.append(&self.buffer)?;
        for owner in owners {
            if let Some(count) = self.owned.get_mut(owner) {
                *count = count.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// Reads a body back (a payload waiting for librdkafka's queue to drain, or a
    /// snapshot to rebuild a record from).
    pub fn read(&mut self, location: &Location) -> io::Result<Vec<u8>> {
        let key = (location.segment, location.suffix);
        if !self.readers.contains_key(&key) {
            let file = File::open(segment_path(&self.dir, location.segment, location.suffix))?;
            self.readers.insert(key, file);
        }
        let mut body = vec![0; location.len as usize];
        self.readers[&key].read_exact_at(&mut body, location.offset)?;
        payload_text(location.zstd_len, body, &mut self.zstd)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a compressed record text does not decompress"))
    }

    /// Deletes the oldest segments whose records are all acknowledged, stopping
    /// at the first that is not, and never touching `active` or newer. Returns
    /// how many segments went and how many bytes that freed.
    pub fn retire(&mut self, active: u64) -> (usize, u64) {
        let mut retired = 0;
        let mut freed = 0;
        let mut segments: Vec<u64> = self.owned.keys().copied().collect();
        segments.sort_unstable();
        for segment in segments {
            if segment >= active.min(self.file.segment) || self.owned[&segment] > 0 {
                break;
            }
            for suffix in [Suffix::Snap, Suffix::Dlv] {
                self.readers.remove(&(segment, suffix));
                let path = segment_path(&self.dir, segment, suffix);
                freed += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let _ = fs::remove_file(path);
            }
            self.owned.remove(&segment);
            retired += 1;
        }
        (retired, freed)
    }

    pub fn sync_handle(&self) -> Option<File> {
        self.file.handle()
    }

    /// Descriptors of the `.dlv` files of segments `first` up to (not
    /// including) the one written now, for an fdatasync: the payloads of a
    /// snapshot segment's records are in those (see the ordering rule).
    pub fn older_files_from(&self, first: u64) -> Vec<File> {
        (first..self.file.segment).filter_map(|segment| File::open(segment_path(&self.dir, segment, Suffix::Dlv)).ok()).collect()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes every segment file (everything was handed over elsewhere, e.g.
    /// written to the state file at fini).
    pub fn remove_all(&mut self) {
        self.readers.clear();
        self.owned.clear();
        self.file.file = None;
        for segment in list_segments(&self.dir).into_iter().map(|(s, _)| s) {
            for suffix in [Suffix::Snap, Suffix::Dlv] {
                let _ = fs::remove_file(segment_path(&self.dir, segment, suffix));
            }
        }
    }
}

/// Total size of the segment files in `dir`.
pub fn disk_usage(dir: &Path) -> u64 {
    list_segments(dir)
        .into_iter()
        .filter_map(|(segment, suffix)| fs::metadata(segment_path(dir, segment, suffix)).ok())
        .map(|m| m.len())
        .sum()
}

/// An exclusive lock on the spool directory, held while the plugin runs: a
/// backup controller sharing StateSaveLocation takes the spool over only once
/// the primary has let go of it.
pub struct SpoolLock(#[allow(dead_code)] File);

impl SpoolLock {
    pub fn acquire(dir: &Path) -> io::Result<SpoolLock> {
        use std::os::unix::io::AsRawFd;
        let file = OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(dir.join("lock"))?;
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SpoolLock(file))
    }
}

/// fdatasync on a file and its directory (the entries of new segment files).
pub fn sync(files: &[File], dir: &Path) -> io::Result<()> {
    for file in files {
        file.sync_data()?;
    }
    File::open(dir)?.sync_all()
}

/// (segment, suffix) of every segment file in `dir`, oldest first.
pub fn list_segments(dir: &Path) -> Vec<(u64, Suffix)> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix("seg-") else { continue };
        let (number, suffix) = match rest.split_once('.') {
            Some((n, "snap")) => (n, Suffix::Snap),
            Some((n, "dlv")) => (n, Suffix::Dlv),
            _ => continue,
        };
        if let Ok(segment) = u64::from_str_radix(number, 16) {
            found.push((segment, suffix));
        }
    }
    found.sort_by_key(|(segment, suffix)| (*segment, *suffix == Suffix::Dlv));
    found
}

/// A `Payload` body: (topic, where the JSON text starts), `None` when malformed.
fn split_payload(body: &[u8]) -> Option<(&[u8], usize)> {
    let len = u16::from_le_bytes(body.get(0..2)?.try_into().ok()?) as usize;
    let topic = body.get(2..2 + len)?;
    Some((topic, 2 + len))
}

/// A payload entry's topic, how many bytes precede its text (or the text's
/// frame), and for `Kind::CompressedPayload` the text's length.
pub fn split_payload_entry(kind: Kind, body: &[u8]) -> Option<(&[u8], usize, Option<u32>)> {
    let (topic, skip) = split_payload(body)?;
    match kind {
        Kind::CompressedPayload => {
            let len = u32::from_le_bytes(body.get(skip..skip + 4)?.try_into().ok()?);
            Some((topic, skip + 4, Some(len)))
        }
        _ => Some((topic, skip, None)),
    }
}

/// The JSON text of a payload body: the body itself, or for a zstd frame of a
/// text of `zstd_len` bytes (`Location::zstd_len`) that text; `None` when the
/// frame does not decompress to that length. `zstd` is the caller's context,
/// made here at the first frame.
pub fn payload_text(zstd_len: Option<u32>, body: Vec<u8>, zstd: &mut Option<Zstd>) -> Option<Vec<u8>> {
    let Some(len) = zstd_len else { return Some(body) };
    zstd_context(zstd)?.decompress(&body, len as usize)
}

/// The zstd context in `slot`, made at the first use; `None` when zstd cannot
/// allocate one.
fn zstd_context(slot: &mut Option<Zstd>) -> Option<&mut Zstd> {
    if slot.is_none() {
        *slot = Zstd::new();
    }
    slot.as_mut()
}

/// A record still to be delivered, as found at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outstanding {
    pub record_id: u64,
    pub job_id: u32,
    pub event: u8,
    pub snapshot: Option<Location>,
    /// The JSON text (with `topic`, the topic it was produced to).
    pub payload: Option<Location>,
    pub topic: Option<std::sync::Arc<[u8]>>,
}

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Outstanding records, oldest first.
    pub records: Vec<Outstanding>,
    /// Owning segment -> outstanding records in it.
    pub owned: BTreeMap<u64, usize>,
    /// The segment new entries go to (past every existing one).
    pub next_segment: u64,
    pub max_record_id: u64,
    /// Error lines (damaged entries; unreadable files).
    pub errors: Vec<String>,
    /// Informational lines (torn tails after a crash).
    pub notes: Vec<String>,
    pub acknowledged: usize,
}

/// The largest segment number `recover` accepts. Segments are numbered from 1
/// upward, one per `segment_bytes` of records, so a larger number is a file
/// this plugin did not write; following it, the numbers of new segments would
/// overflow (and wrap below the existing ones, breaking their order).
const LAST_SEGMENT: u64 = u64::MAX >> 1;

/// Reads every segment in `dir` (created if missing).
pub fn recover(dir: &Path) -> io::Result<Recovered> {
    fs::create_dir_all(dir)?;
    let mut found = Recovered::default();
    let mut first_seen: BTreeMap<u64, Outstanding> = BTreeMap::new();
    let mut owner: HashMap<u64, u64> = HashMap::new();
    let mut acked: HashSet<u64> = HashSet::new();
    let mut topics: HashMap<Vec<u8>, std::sync::Arc<[u8]>> = HashMap::new();
    let (segments, foreign): (Vec<_>, Vec<_>) =
        list_segments(dir).into_iter().partition(|(segment, _)| *segment <= LAST_SEGMENT);
    for (segment, suffix) in foreign {
        found.errors.push(format!(
            "spool file {} has a segment number this plugin never writes (above {LAST_SEGMENT:#x}: \
             no segment could follow it); it is not read: move it out of {}",
            segment_path(dir, segment, suffix).display(),
            dir.display()
        ));
    }
    for (segment, suffix) in &segments {
        found.next_segment = found.next_segment.max(segment + 1);
        let path = segment_path(dir, *segment, *suffix);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                found.errors.push(format!("spool file {} is unreadable ({e}); its records are skipped", path.display()));
                continue;
            }
        };
        let (entries, damage) = parse_segment(&bytes);
        for problem in damage {
            match problem {
                Damage::TornTail { offset } => found
                    .notes
                    .push(format!("spool file {}: incomplete last entry at byte {offset} cut off (a crash during a write)", path.display())),
                Damage::Corrupt { offset, skipped } => found.errors.push(format!(
                    "spool file {}: {skipped} damaged byte(s) at byte {offset} skipped (checksum mismatch); the records around them are kept",
                    path.display()
                )),
            }
        }
        for entry in entries {
            let mut location = Location {
                segment: *segment,
                suffix: *suffix,
                offset: entry.body_offset,
                len: entry.body.len() as u32,
                zstd_len: None,
            };
            let mut topic = None;
            if matches!(entry.kind, Kind::Payload | Kind::CompressedPayload) {
                let Some((name, skip, zstd_len)) = split_payload_entry(entry.kind, entry.body) else {
                    found.errors.push(format!("spool file {}: a malformed entry at byte {} is skipped", path.display(), entry.body_offset));
                    continue;
                };
                location.offset += skip as u64;
                location.len -= skip as u32;
                location.zstd_len = zstd_len;
                let shared = topics.entry(name.to_vec()).or_insert_with(|| name.into());
                topic = Some(shared.clone());
            }
            match entry.kind {
                Kind::Ack => {
                    for chunk in entry.body.chunks_exact(8) {
                        acked.insert(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
                    }
                }
                Kind::Snapshot | Kind::Payload | Kind::CompressedPayload => {
                    found.max_record_id = found.max_record_id.max(entry.record_id);
                    owner.entry(entry.record_id).or_insert(*segment);
                    let record = first_seen.entry(entry.record_id).or_insert(Outstanding {
                        record_id: entry.record_id,
                        job_id: entry.job_id,
                        event: entry.event,
                        snapshot: None,
                        payload: None,
                        topic: None,
                    });
                    if entry.kind == Kind::Snapshot {
                        record.snapshot = Some(location);
                    } else {
                        record.payload = Some(location);
                        record.topic = topic;
                    }
                }
            }
        }
    }
    for (id, record) in first_seen {
        if acked.contains(&id) {
            found.acknowledged += 1;
            continue;
        }
        *found.owned.entry(owner[&id]).or_default() += 1;
        found.records.push(record);
    }
    // Segments without outstanding records are retired at the first chance.
    for (segment, _) in segments {
        found.owned.entry(segment).or_default();
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("jk-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entry(kind: Kind, id: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_entry(kind, 1, id, id as u32 + 1000, body, &mut out);
        out
    }

    #[test]
    fn entries_round_trip_with_alignment() {
        let mut bytes = entry(Kind::Snapshot, 1, b"abc");
        bytes.extend(entry(Kind::Payload, 2, b""));
        bytes.extend(entry(Kind::Ack, 0, &7u64.to_le_bytes()));
        assert_eq!(bytes.len() % 8, 0);
        let (entries, damage) = parse_segment(&bytes);
        assert!(damage.is_empty());
        assert_eq!(entries.len(), 3);
        assert_eq!((entries[0].kind, entries[0].record_id, entries[0].job_id, entries[0].body), (Kind::Snapshot, 1, 1001, &b"abc"[..]));
        assert_eq!(entries[0].body_offset, 32);
        assert_eq!((entries[1].kind, entries[1].body), (Kind::Payload, &b""[..]));
        assert_eq!(entries[2].kind, Kind::Ack);
    }

    #[test]
    fn a_torn_tail_is_cut_at_every_possible_length() {
        let first = entry(Kind::Snapshot, 1, b"first record");
        let body = b"second record, torn";
        let second = entry(Kind::Snapshot, 2, body);
        // Cut anywhere before the body is complete (a cut in the padding after a
        // complete body leaves a complete entry).
        for cut in 1..HEADER + body.len() {
            let mut bytes = first.clone();
            bytes.extend_from_slice(&second[..cut]);
            let (entries, damage) = parse_segment(&bytes);
            assert_eq!(entries.len(), 1, "cut {cut}");
            assert_eq!(entries[0].record_id, 1);
            assert_eq!(damage, vec![Damage::TornTail { offset: first.len() as u64 }], "cut {cut}");
        }
    }

    #[test]
    fn a_flipped_bit_skips_one_entry_and_keeps_the_rest() {
        let entries: Vec<Vec<u8>> = (1..=3).map(|id| entry(Kind::Payload, id, b"{\"jobid\":1}")).collect();
        let clean: Vec<u8> = entries.concat();
        for byte in 0..entries[1].len() {
            for bit in [0u8, 3, 7] {
                let mut bytes = clean.clone();
                bytes[entries[0].len() + byte] ^= 1 << bit;
                let (found, damage) = parse_segment(&bytes);
                let ids: Vec<u64> = found.iter().map(|e| e.record_id).collect();
                // A flip in the padding is harmless; anywhere else entry 2 is lost.
                if byte >= HEADER + b"{\"jobid\":1}".len() {
                    assert_eq!(ids, vec![1, 2, 3]);
                } else {
                    assert_eq!(ids, vec![1, 3], "byte {byte} bit {bit}");
                    assert!(matches!(damage[..], [Damage::Corrupt { .. }]), "{damage:?}");
                }
            }
        }
    }

    #[test]
    fn recovery_returns_unacknowledged_records_and_retires_segments() {
        let dir = temp_dir("recover");
        let mut snaps = SnapshotLog::new(&dir, 0, 50); // tiny segments: two entries each
        let mut dlv = DeliveryLog::new(&dir, 0, BTreeMap::new());
        let mut locations = Vec::new();
        for id in 1..=6u64 {
            let location = snaps.append(id, id as u32, 1, format!("snapshot {id}").as_bytes()).unwrap();
            dlv.count_snapshot(location.segment);
            dlv.follow(snaps.segment());
            dlv.append_payload(id, id as u32, 1, b"topic-a", format!("payload {id}").as_bytes(), false, false).unwrap();
            locations.push(location);
        }
        assert!(snaps.segment() >= 2, "segments rotate");
        let owners: Vec<u64> = [1usize, 2, 4].iter().map(|i| locations[i - 1].segment).collect();
        dlv.append_acks(&[1, 2, 4], &owners).unwrap();
        assert_eq!(dlv.read(&locations[2]).unwrap(), b"snapshot 3");

        let found = recover(&dir).unwrap();
        let ids: Vec<u64> = found.records.iter().map(|r| r.record_id).collect();
        assert_eq!(ids, vec![3, 5, 6]);
        assert_eq!(found.acknowledged, 3);
        assert_eq!(found.max_record_id, 6);
        assert!(found.next_segment > snaps.segment());
        assert!(found.errors.is_empty() && found.notes.is_empty());
        let mut reader = DeliveryLog::new(&dir, found.next_segment, found.owned.clone());
        let third = &found.records[0];
        assert_eq!(reader.read(third.payload.as_ref().unwrap()).unwrap(), b"payload 3");
        assert_eq!(third.topic.as_deref(), Some(&b"topic-a"[..]));
        assert_eq!(reader.read(third.snapshot.as_ref().unwrap()).unwrap(), b"snapshot 3");

        // Nothing is deleted while an older segment still has an outstanding record.
        let before = list_segments(&dir).len();
        let first_owner = third.snapshot.unwrap().segment;
        reader.retire(found.next_segment);
        assert!(list_segments(&dir).iter().any(|(s, _)| *s == first_owner));
        // Once everything is acknowledged, every old segment goes.
        let rest: Vec<u64> = found.records.iter().map(|r| r.record_id).collect();
        let owners: Vec<u64> = found.records.iter().map(|r| r.snapshot.unwrap().segment).collect();
        reader.append_acks(&rest, &owners).unwrap();
        let (retired, freed) = reader.retire(found.next_segment + 1);
        assert!(retired > 0 && freed > 0);
        assert!(list_segments(&dir).len() < before);
        let again = recover(&dir).unwrap();
        assert!(again.records.is_empty(), "{:?}", again.records);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn recovery_reports_damage_and_keeps_the_rest() {
        let dir = temp_dir("damage");
        let mut snaps = SnapshotLog::new(&dir, 0, 1 << 20);
        for id in 1..=3 {
            snaps.append(id, 1, 1, b"0123456789abcdef").unwrap();
        }
        drop(snaps); // gives back the reserved space past the entries
        let path = segment_path(&dir, 0, Suffix::Snap);
        let mut bytes = fs::read(&path).unwrap();
        let entry_len = bytes.len() / 3;
        bytes[entry_len + 40] ^= 0xff; // inside the second entry's body
        bytes.extend_from_slice(&entry(Kind::Snapshot, 9, b"torn")[..20]);
        fs::write(&path, &bytes).unwrap();
        let found = recover(&dir).unwrap();
        let ids: Vec<u64> = found.records.iter().map(|r| r.record_id).collect();
        assert_eq!(ids, vec![1, 3]);
        assert_eq!(found.errors.len(), 1, "{:?}", found.errors);
        assert!(found.errors[0].contains("checksum"));
        assert_eq!(found.notes.len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_writer_switches_to_the_segment_prepared_for_it() {
        let dir = temp_dir("prepared");
        let mut snaps = SnapshotLog::new(&dir, 5, 64 << 10);
        let prep = snaps.prep();
        prep.prepare(false).unwrap();
        assert!(segment_path(&dir, 5, Suffix::Snap).exists(), "the first segment is made ready before any record");
        let body = vec![7u8; 1000];
        let first = snaps.append(1, 1, 1, &body).unwrap();
        assert_eq!(first.segment, 5);
        let mut id = 1;
        while snaps.segment() == 5 {
            prep.prepare(false).unwrap();
            id += 1;
            snaps.append(id, 1, 1, &body).unwrap();
        }
        assert_eq!(snaps.segment(), 6);
        // An entry larger than a segment gets a segment of its own.
        let large = vec![1u8; 200 << 10];
        let at = snaps.append(id + 1, 1, 1, &large).unwrap();
        assert_eq!((at.segment, at.len as usize), (7, large.len()));
        let handles = prep.sync_handles();
        assert_eq!(handles.len(), 3, "two finished segments and the current one");
        drop(snaps);
        let found = recover(&dir).unwrap();
        assert_eq!(found.records.len() as u64, id + 1);
        assert!(found.errors.is_empty() && found.notes.is_empty(), "{:?} {:?}", found.errors, found.notes);
        let mut reader = DeliveryLog::new(&dir, found.next_segment, found.owned.clone());
        assert_eq!(reader.read(&at).unwrap(), large);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn compressed_payloads_are_recovered_and_read_back_as_their_text() {
        let dir = temp_dir("compressed");
        let mut snaps = SnapshotLog::new(&dir, 0, 1 << 20);
        let mut dlv = DeliveryLog::new(&dir, 0, BTreeMap::new());
        let long = |id: u64| format!("{{\"jobid\":{id},\"script\":\"{}\"}}", "srun ./step --input /data/in ".repeat(30)).into_bytes();
        let mut written = Vec::new();
        for id in 1..=4u64 {
            let at = snaps.append(id, id as u32, 1, b"snapshot").unwrap();
            dlv.count_snapshot(at.segment);
            // 1 and 3 as in normal operation, 2 during an outage, 4 during an
            // outage but too short to shrink (written as text).
            let text = if id == 4 { b"{}".to_vec() } else { long(id) };
            let at = dlv.append_payload(id, id as u32, 1, b"t", &text, false, id % 2 == 0).unwrap();
            assert_eq!(at.zstd_len.is_some(), id == 2, "record {id}: {at:?}");
            written.push((id, at, text));
        }
        drop((snaps, dlv));
        let found = recover(&dir).unwrap();
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        let mut reader = DeliveryLog::new(&dir, found.next_segment, found.owned.clone());
        for (id, at, text) in written {
            let record = found.records.iter().find(|r| r.record_id == id).unwrap();
            assert_eq!(record.payload, Some(at), "record {id}: the location recovery finds is the one written");
            assert_eq!(record.topic.as_deref(), Some(&b"t"[..]));
            assert_eq!(reader.read(&at).unwrap(), text, "record {id}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn snapshots_are_read_through_the_mapping_while_it_is_kept() {
        let dir = temp_dir("mapped-read");
        let mut snaps = SnapshotLog::new(&dir, 0, 64 << 10);
        let prep = snaps.prep();
        let body = |id: u64| (0..700).map(|i| (i as u64 * 31 + id) as u8).collect::<Vec<u8>>();
        let first = snaps.append(1, 1, 1, &body(1)).unwrap();
        assert_eq!(prep.with_mapped(&first, <[u8]>::to_vec), Some(body(1)), "the current segment");
        let past_end = Location { len: first.len + 8, ..first };
        assert_eq!(prep.with_mapped(&past_end, |_| ()), None, "never past the writer's position");
        let mut id = 1;
        while snaps.segment() == 0 {
            id += 1;
            snaps.append(id, 1, 1, &body(id)).unwrap();
        }
        assert_eq!(prep.with_mapped(&first, <[u8]>::to_vec), Some(body(1)), "a finished segment, not yet synced");
        let _ = prep.sync_handles();
        assert_eq!(prep.with_mapped(&first, |_| ()), None, "unmapped once synced: the caller reads the file");
        let mut reader = DeliveryLog::new(&dir, 1, BTreeMap::new());
        assert_eq!(reader.read(&first).unwrap(), body(1));
        let dlv = Location { suffix: Suffix::Dlv, ..first };
        assert_eq!(prep.with_mapped(&dlv, |_| ()), None, "only snapshots are mapped");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_staged_entry_is_the_same_bytes_as_an_encoded_one() {
        let dir = temp_dir("staged");
        let mut snaps = SnapshotLog::new(&dir, 0, 1 << 20);
        assert_eq!(snaps.stage(5, 1, |_| None), None, "nothing to record");
        assert_eq!(snaps.stage(6, 2, |out| {
            out.extend_from_slice(b"in place");
            Some(77)
        }), Some(77));
        assert_eq!(snaps.staged_body(), b"in place");
        let mut expected = Vec::new();
        encode_entry(Kind::Snapshot, 2, 6, 77, b"in place", &mut expected);
        assert_eq!(snaps.staged_len(), expected.len());
        let at = snaps.write_staged().unwrap();
        drop(snaps);
        let bytes = fs::read(segment_path(&dir, at.segment, Suffix::Snap)).unwrap();
        assert_eq!(bytes, expected);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Found by the `spool` fuzz target (tests/fuzz): a file named with the
    /// last u64 segment number made `recover` overflow computing the next
    /// segment (a panic in a debug build, new segments numbered from 0 below
    /// the old ones in a release build).
    #[test]
    fn a_segment_number_past_the_last_is_reported_and_not_followed() {
        let dir = temp_dir("foreign-segment");
        fs::write(segment_path(&dir, 3, Suffix::Snap), entry(Kind::Snapshot, 1, b"kept")).unwrap();
        for segment in [LAST_SEGMENT + 1, u64::MAX] {
            fs::write(segment_path(&dir, segment, Suffix::Dlv), entry(Kind::Payload, 2, b"\0\0{}")).unwrap();
        }
        let found = recover(&dir).unwrap();
        assert_eq!(found.next_segment, 4);
        assert_eq!(found.records.iter().map(|r| r.record_id).collect::<Vec<_>>(), vec![1]);
        assert_eq!(found.errors.len(), 2, "{:?}", found.errors);
        assert!(found.errors[1].contains("seg-ffffffffffffffff.dlv"), "{}", found.errors[1]);
        assert!(found.errors[1].contains("never writes"), "{}", found.errors[1]);
        assert!(!found.owned.contains_key(&u64::MAX));

        // The last accepted number still has a successor.
        fs::write(segment_path(&dir, LAST_SEGMENT, Suffix::Snap), entry(Kind::Snapshot, 5, b"x")).unwrap();
        assert_eq!(recover(&dir).unwrap().next_segment, LAST_SEGMENT + 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_spool_lock_is_exclusive() {
        let dir = temp_dir("lock");
        let held = SpoolLock::acquire(&dir).unwrap();
        // flock locks belong to the open file description: a second open conflicts.
        assert!(SpoolLock::acquire(&dir).is_err());
        drop(held);
        assert!(SpoolLock::acquire(&dir).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_no_partial_entry() {
        // /dev/full fails every write with ENOSPC.
        let dir = temp_dir("full");
        let mut file = SegmentFile::new(&dir, Suffix::Snap, 0);
        file.file = Some(OpenOptions::new().write(true).open("/dev/full").unwrap());
        let error = file.append(&entry(Kind::Snapshot, 1, b"x")).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(file.size, 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
