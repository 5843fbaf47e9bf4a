// SPDX-License-Identifier: GPL-2.0-or-later
//! The state file `<StateSaveLocation>/jobcomp_kafka_state`: messages that were
//! not delivered when the plugin stopped, produced again at the next start.
//!
//! The format is the C plugin's, so either plugin can read the other's file.
//! Big-endian:
//!
//! ```text
//! u16 protocol version            (Slurm's SLURM_<series>_PROTOCOL_VERSION)
//! u32 message count
//! per message:
//!   u32 event                     (only from 25.05's 0x2b00 on; 1 finish, 2 start)
//!   u32 job id
//!   u32 length                    (payload bytes + 1)
//!   payload bytes, then one NUL
//! ```
//!
//! 22.05 has no C plugin; our 22.05 build writes protocol 0x2600 in the
//! 23.02 - 24.11 layout (no event field).
//!
//! Pure logic plus plain file I/O: nothing here logs. Problems come back as
//! sentences for the caller to log.
//!
//! # Replaying exactly once per file
//!
//! SchedMD's plugin never removes the file after loading it, and falls back to
//! `<f>.old` when `<f>` cannot be read; both replay stale records again as
//! duplicates. Here [`take_for_replay`] moves the messages into a claim file
//! (`<f>.replaying`) and removes `<f>`; [`finish_replay`] removes the claim once
//! every replayed message is settled. `<f>.old` is never read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::release::{Release, SERIES};
use crate::snapshot::Event;

/// The file's name inside StateSaveLocation (the C plugin's name).
pub const STATE_FILE_NAME: &str = "jobcomp_kafka_state";

/// Protocol version from which each message carries its event (25.05).
const EVENT_FIELD_SINCE: u16 = 0x2b00;

/// One message kept for a later start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedMessage {
    pub event: Event,
    pub job_id: u32,
    /// The record, without the file's trailing NUL. Any bytes, NULs included.
    pub payload: Vec<u8>,
}

/// The protocol version this build writes. A release outside the supported
/// range cannot be built (it has no layout); should one get here anyway, the
/// nearest supported series' number is used rather than panicking.
fn own_version(release: Release) -> u16 {
    if let Some(v) = release.protocol_version() {
        return v;
    }
    let (first, last) = (SERIES[0], SERIES[SERIES.len() - 1]);
    let nearest = if release.series() < first {
        first
    } else {
        last
    };
    Release::new(nearest.0, nearest.1, 0)
        .protocol_version()
        .unwrap_or(0x2600)
}

/// The state file's bytes, in `release`'s series format.
///
/// Before 25.05 the format has no event field, so a `Start` message would be
/// read back as `Finish`; those releases never produce start records. A payload
/// of 4 GiB - 1 bytes or more cannot be represented and is left out (Kafka
/// messages are far smaller; librdkafka caps them at 1e9 bytes).
pub fn encode(release: Release, msgs: &[SavedMessage]) -> Vec<u8> {
    let version = own_version(release);
    let with_event = version >= EVENT_FIELD_SINCE;
    let fits: Vec<&SavedMessage> = msgs
        .iter()
        .filter(|m| m.payload.len() < u32::MAX as usize)
        .collect();
    let size: usize = 6 + fits.iter().map(|m| 13 + m.payload.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&(fits.len() as u32).to_be_bytes());
    for m in fits {
        if with_event {
            out.extend_from_slice(&(m.event as u32).to_be_bytes());
        }
        out.extend_from_slice(&m.job_id.to_be_bytes());
        out.extend_from_slice(&((m.payload.len() + 1) as u32).to_be_bytes());
        out.extend_from_slice(&m.payload);
        out.push(0);
    }
    out
}

/// What [`decode`] recovered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Every message read before the first problem (all of them when none).
    pub messages: Vec<SavedMessage>,
    /// What is wrong with the file, as a sentence; `None` when it is sound.
    pub problem: Option<String>,
}

/// A bounds-checked big-endian reader.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.remaining() < n {
            return None;
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Some(s)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// The release series whose protocol version is `version`, if supported.
fn series_of(version: u16) -> Option<(u8, u8)> {
    SERIES
        .iter()
        .copied()
        .find(|s| Release::new(s.0, s.1, 0).protocol_version() == Some(version))
}

/// Reads a state file. Files of any supported series from 22.05 up to
/// `release`'s own are accepted (messages of files without event fields are
/// `Finish`). A newer, unknown or pre-22.05 version gives a problem and no
/// messages. Damage stops the reading at the first bad message: the messages
/// before it are returned and `problem` says what is wrong and where.
pub fn decode(bytes: &[u8], release: Release) -> Decoded {
    let mut out = Decoded::default();
    let mut r = Reader { bytes, pos: 0 };
    let fail = |out: &mut Decoded, text: String| {
        let recovered = out.messages.len();
        out.problem = Some(format!(
            "{text}; {recovered} message{} before it {} recovered.",
            if recovered == 1 { "" } else { "s" },
            if recovered == 1 { "was" } else { "were" }
        ));
    };

    if bytes.is_empty() {
        out.problem = Some("The state file is empty (0 bytes); no messages recovered.".into());
        return out;
    }
    let Some(version) = r.u16() else {
        out.problem = Some(format!(
            "The state file is truncated: {} byte is too short for the protocol \
             version; no messages recovered.",
            bytes.len()
        ));
        return out;
    };
    let own = own_version(release);
    if version > own {
        out.problem = Some(format!(
            "The state file was written by a newer Slurm (protocol version 0x{version:04x}) \
             than this plugin's {release} (0x{own:04x}); its messages are not read."
        ));
        return out;
    }
    if series_of(version).is_none() {
        out.problem = Some(format!(
            "The state file was written by an unsupported Slurm (protocol version \
             0x{version:04x}; this plugin reads 0x2600 (22.05) to 0x{own:04x} ({release})); \
             its messages are not read."
        ));
        return out;
    }
    let with_event = version >= EVENT_FIELD_SINCE;
    let Some(count) = r.u32() else {
        out.problem = Some(format!(
            "The state file is truncated: it ends inside the message count (file size \
             {} bytes); no messages recovered.",
            bytes.len()
        ));
        return out;
    };

    for index in 0..count {
        let start = r.pos;
        let number = u64::from(index) + 1;
        let where_ = format!("message {number} of {count} (at byte offset {start})");
        let event = if with_event {
            let Some(raw) = r.u32() else {
                fail(
                    &mut out,
                    format!("The state file is truncated: it ends inside the event of {where_}"),
                );
                return out;
            };
            match Event::from_u32(raw) {
                Some(e) => e,
                None => {
                    fail(
                        &mut out,
                        format!(
                            "The state file is damaged: {where_} has an unknown event value {raw}"
                        ),
                    );
                    return out;
                }
            }
        } else {
            Event::Finish
        };
        let Some(job_id) = r.u32() else {
            fail(
                &mut out,
                format!("The state file is truncated: it ends inside the job id of {where_}"),
            );
            return out;
        };
        let length_at = r.pos;
        let Some(length) = r.u32() else {
            fail(
                &mut out,
                format!("The state file is truncated: it ends inside the length of {where_}"),
            );
            return out;
        };
        if length == 0 {
            fail(
                &mut out,
                format!(
                    "The state file is damaged: {where_} (job {job_id}) has a payload length of 0 \
                 (length field at byte offset {length_at})"
                ),
            );
            return out;
        }
        let length = length as usize;
        let available = r.remaining();
        let Some(data) = r.take(length) else {
            fail(
                &mut out,
                format!(
                    "The state file is truncated or damaged: {where_} (job {job_id}) announces \
                 {length} bytes but only {available} remain after its length field (at byte \
                 offset {length_at})"
                ),
            );
            return out;
        };
        let (payload, last) = data.split_at(length - 1);
        if last != [0] {
            fail(
                &mut out,
                format!(
                    "The state file is damaged: {where_} (job {job_id}) does not end with a NUL \
                 byte (byte offset {})",
                    r.pos - 1
                ),
            );
            return out;
        }
        out.messages.push(SavedMessage {
            event,
            job_id,
            payload: payload.to_vec(),
        });
    }
    if r.remaining() > 0 {
        out.problem = Some(format!(
            "The state file is damaged: {} unexpected bytes follow its last message \
             (from byte offset {}); all {count} messages were recovered.",
            r.remaining(),
            r.pos
        ));
    }
    out
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to `tmp` (created fresh, mode 0600) and fsyncs it.
fn write_new(tmp: &Path, bytes: &[u8]) -> io::Result<()> {
    remove_if_present(tmp)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Saves `msgs` as `<dir>/jobcomp_kafka_state`.
///
/// Writes `<f>.new` (mode 0600, fsynced), keeps the previous `<f>` as `<f>.old`
/// (a hard link, so `<f>` never goes missing; a rename where links are not
/// possible), renames `<f>.new` to `<f>` and fsyncs the directory.
///
/// With no messages nothing is written: an existing `<f>` is moved to `<f>.old`
/// so that nothing is replayed at the next start, while a copy stays for
/// inspection. `<f>.old` is never read back (see the module documentation).
pub fn write(dir: &Path, release: Release, msgs: &[SavedMessage]) -> io::Result<()> {
    let file = dir.join(STATE_FILE_NAME);
    let old = with_suffix(&file, ".old");
    let new = with_suffix(&file, ".new");
    if msgs.is_empty() {
        match fs::rename(&file, &old) {
            Ok(()) => return sync_dir(dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    write_new(&new, &encode(release, msgs))?;
    remove_if_present(&old)?;
    match fs::hard_link(&file, &old) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) => match fs::rename(&file, &old) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        },
    }
    fs::rename(&new, &file)?;
    sync_dir(dir)
}

/// Messages taken from the state file at start-up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// To be produced again, oldest first.
    pub messages: Vec<SavedMessage>,
    /// Sentences for the log: damaged files, files set aside, disk errors.
    pub problems: Vec<String>,
    /// The claim file holding `messages`; pass it to [`finish_replay`] once
    /// every one of them is delivered or saved again. `None` when there is
    /// nothing to finish (no messages, or the claim could not be written).
    pub claim: Option<PathBuf>,
}

/// How one input file turned out.
enum Loaded {
    Absent,
    /// Read and decoded without a problem.
    Clean(Vec<SavedMessage>),
    /// Decoded with a problem; set aside (`true`) or not (`false`, then it must
    /// stay where it is).
    Damaged(Vec<SavedMessage>, bool),
    /// Could not be read; left alone.
    Unreadable,
}

impl Loaded {
    fn messages(&self) -> &[SavedMessage] {
        match self {
            Loaded::Clean(m) | Loaded::Damaged(m, _) => m,
            _ => &[],
        }
    }

    /// Present and allowed to be removed once its messages are safe elsewhere.
    fn removable(&self) -> bool {
        matches!(self, Loaded::Clean(_) | Loaded::Damaged(_, true))
    }
}

/// A free name `<base>.corrupt.<now>` (with `-N` appended if taken).
fn corrupt_name(base: &Path, unix_now: i64) -> PathBuf {
    let first = with_suffix(base, &format!(".corrupt.{unix_now}"));
    if fs::symlink_metadata(&first).is_err() {
        return first;
    }
    (1..1000)
        .map(|n| with_suffix(base, &format!(".corrupt.{unix_now}-{n}")))
        .find(|p| fs::symlink_metadata(p).is_err())
        .unwrap_or(first)
}

/// Keeps a copy of `path` at `dest` without removing `path` (hard link, or a
/// byte copy where links are refused).
fn set_aside(path: &Path, dest: &Path) -> io::Result<()> {
    match fs::hard_link(path, dest) {
        Ok(()) => Ok(()),
        Err(_) => {
            let bytes = fs::read(path)?;
            write_new(dest, &bytes)
        }
    }
}

fn load(path: &Path, release: Release, unix_now: i64, problems: &mut Vec<String>) -> Loaded {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Loaded::Absent,
        Err(e) => {
            problems.push(format!(
                "Cannot read the state file {}: {e}; it is left in place and its \
                 messages are not replayed.",
                path.display()
            ));
            return Loaded::Unreadable;
        }
    };
    let decoded = decode(&bytes, release);
    let Some(problem) = decoded.problem else {
        return Loaded::Clean(decoded.messages);
    };
    let dest = corrupt_name(path, unix_now);
    match set_aside(path, &dest) {
        Ok(()) => {
            problems.push(format!(
                "{}: {problem} The file is kept as {}; {} recovered message{} will be \
                 produced again.",
                path.display(),
                dest.display(),
                decoded.messages.len(),
                if decoded.messages.len() == 1 { "" } else { "s" }
            ));
            Loaded::Damaged(decoded.messages, true)
        }
        Err(e) => {
            problems.push(format!(
                "{}: {problem} It could not be set aside as {} ({e}), so it stays in \
                 place; its {} recovered message{} will be produced again now and again \
                 at the next start.",
                path.display(),
                dest.display(),
                decoded.messages.len(),
                if decoded.messages.len() == 1 { "" } else { "s" }
            ));
            Loaded::Damaged(decoded.messages, false)
        }
    }
}

/// At init: takes the saved messages for producing again, so that one file is
/// never replayed twice.
///
/// Reads `<f>.replaying` (left by a process that died before its replayed
/// messages were settled) and `<f>`. When `<f>` is missing but `<f>.new` is a
/// complete, sound file (a save interrupted between its fsync and its rename),
/// that file stands in for `<f>`; otherwise a leftover `<f>.new` is only
/// reported. `<f>.old` is never read: falling back to it is how SchedMD's
/// plugin replays records that were already delivered.
///
/// A damaged file is copied aside as `<name>.corrupt.<unix_now>` (a problem
/// says so and how many messages were recovered); a file that cannot be read
/// at all is left alone. All recovered messages (those of `.replaying` first)
/// are written to `<f>.replaying` (0600, fsynced, via a temporary file), and
/// only then is `<f>` removed. A crash at any point therefore replays some
/// messages twice at worst, never loses them. A missing directory or file is
/// no problem; disk errors become problems, never panics.
pub fn take_for_replay(dir: &Path, release: Release, unix_now: i64) -> Replay {
    let mut replay = Replay::default();
    let problems = &mut replay.problems;
    let file = dir.join(STATE_FILE_NAME);
    let claim = with_suffix(&file, ".replaying");
    let claim_tmp = with_suffix(&claim, ".new");
    let new = with_suffix(&file, ".new");

    let leftover = load(&claim, release, unix_now, problems);
    let mut main_path = file.clone();
    let mut main = load(&file, release, unix_now, problems);
    if matches!(main, Loaded::Absent) {
        if let Ok(bytes) = fs::read(&new) {
            let decoded = decode(&bytes, release);
            if decoded.problem.is_none() {
                main_path = new.clone();
                main = Loaded::Clean(decoded.messages);
                problems.push(format!(
                    "{} is missing but {} holds a complete save that was not renamed \
                     into place; its {} message{} will be produced again.",
                    file.display(),
                    new.display(),
                    main.messages().len(),
                    if main.messages().len() == 1 { "" } else { "s" }
                ));
            }
        }
    }
    if main_path == file && fs::symlink_metadata(&new).is_ok() {
        problems.push(format!(
            "{} is left over from a save that did not finish; it is not replayed \
             (the next save replaces it).",
            new.display()
        ));
    }

    let mut messages = leftover.messages().to_vec();
    messages.extend_from_slice(main.messages());
    let _ = remove_if_present(&claim_tmp);

    if messages.is_empty() {
        // Nothing to replay: clear what was read (damaged ones were set aside).
        let mut changed = false;
        for (loaded, path) in [(&leftover, &claim), (&main, &main_path)] {
            if loaded.removable() {
                match remove_if_present(path) {
                    Ok(removed) => changed |= removed,
                    Err(e) => problems.push(format!("Cannot remove {}: {e}.", path.display())),
                }
            }
        }
        if changed {
            if let Err(e) = sync_dir(dir) {
                problems.push(format!("Cannot sync the directory {}: {e}.", dir.display()));
            }
        }
        return replay;
    }

    let claim_is_current = matches!(leftover, Loaded::Clean(_)) && main.messages().is_empty();
    if !claim_is_current {
        let saved = write_new(&claim_tmp, &encode(release, &messages))
            .and_then(|()| fs::rename(&claim_tmp, &claim))
            .and_then(|()| sync_dir(dir));
        if let Err(e) = saved {
            let _ = remove_if_present(&claim_tmp);
            problems.push(format!(
                "Cannot save the {} messages to replay in {}: {e}; they are produced \
                 again now, and the files they came from stay in place, so they will \
                 be produced again at the next start too.",
                messages.len(),
                claim.display()
            ));
            replay.messages = messages;
            return replay;
        }
    }
    if main.removable() {
        match remove_if_present(&main_path).and_then(|_| sync_dir(dir)) {
            Ok(()) => {}
            Err(e) => problems.push(format!(
                "Cannot remove {} after taking its messages: {e}; they may be produced \
                 again at the next start.",
                main_path.display()
            )),
        }
    }
    replay.messages = messages;
    replay.claim = Some(claim);
    replay
}

/// Once every replayed message is delivered or saved again (in a new state
/// file): removes the claim. A claim that is already gone is fine.
pub fn finish_replay(claim: &Path) -> io::Result<()> {
    if remove_if_present(claim)? {
        if let Some(dir) = claim.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            sync_dir(dir)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn rel(s: &str) -> Release {
        Release::parse(s).unwrap()
    }

    fn msg(event: Event, job_id: u32, payload: &[u8]) -> SavedMessage {
        SavedMessage {
            event,
            job_id,
            payload: payload.to_vec(),
        }
    }

    fn three() -> Vec<SavedMessage> {
        vec![
            msg(Event::Finish, 101, br#"{"job_id":101}"#),
            msg(Event::Start, 102, b"a\0b\xff\xfe"),
            msg(Event::Finish, 103, b"x"),
        ]
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "jck-state-{}-{}-{name}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn round_trip_every_series() {
        for (major, minor) in SERIES {
            let r = Release::new(major, minor, 1);
            let mut msgs = three();
            if !r.at_least(25, 5, 0) {
                for m in &mut msgs {
                    m.event = Event::Finish;
                }
            }
            let bytes = encode(r, &msgs);
            assert_eq!(&bytes[..2], &r.protocol_version().unwrap().to_be_bytes());
            let d = decode(&bytes, r);
            assert_eq!(d.problem, None, "{r}");
            assert_eq!(d.messages, msgs, "{r}");
            let empty = decode(&encode(r, &[]), r);
            assert_eq!(empty, Decoded::default());
        }
    }

    #[test]
    fn encoding_is_byte_exact() {
        let msgs = [
            msg(Event::Start, 0x0102_0304, b"{}"),
            msg(Event::Finish, 7, b""),
        ];
        #[rustfmt::skip]
        let new: Vec<u8> = vec![
            0x2d, 0x00,             // protocol 26.05
            0, 0, 0, 2,             // count
            0, 0, 0, 2,             // event start
            1, 2, 3, 4,             // job id
            0, 0, 0, 3,             // length incl. NUL
            b'{', b'}', 0,
            0, 0, 0, 1,             // event finish
            0, 0, 0, 7,
            0, 0, 0, 1,
            0,
        ];
        assert_eq!(encode(rel("26.05.5"), &msgs), new);
        #[rustfmt::skip]
        let old: Vec<u8> = vec![
            0x2a, 0x00,             // protocol 24.11
            0, 0, 0, 2,
            1, 2, 3, 4,
            0, 0, 0, 3,
            b'{', b'}', 0,
            0, 0, 0, 7,
            0, 0, 0, 1,
            0,
        ];
        assert_eq!(encode(rel("24.11.5"), &msgs), old);
        let mut v22 = old.clone();
        v22[0] = 0x26;
        assert_eq!(encode(rel("22.05.8"), &msgs), v22);
        // 22.05's file reads back on a 23.02 build.
        let d = decode(&v22, rel("23.02.7"));
        assert_eq!(d.problem, None);
        assert_eq!(d.messages[0], msg(Event::Finish, 0x0102_0304, b"{}"));
    }

    #[test]
    fn older_series_file_reads_on_newer_build() {
        let msgs = vec![
            msg(Event::Finish, 5, b"five"),
            msg(Event::Finish, 6, b"six"),
        ];
        let bytes = encode(rel("24.11.5"), &msgs);
        let d = decode(&bytes, rel("26.05.5"));
        assert_eq!(d.problem, None);
        assert_eq!(d.messages, msgs);
        let bytes = encode(rel("25.05.2"), &three());
        let d = decode(&bytes, rel("26.05.5"));
        assert_eq!(d.messages, three());
    }

    #[test]
    fn newer_or_unknown_versions_rejected() {
        let bytes = encode(rel("26.05.5"), &three());
        let d = decode(&bytes, rel("24.11.5"));
        assert!(d.messages.is_empty());
        let p = d.problem.unwrap();
        assert!(p.contains("newer") && p.contains("0x2d00"), "{p}");

        for v in [0x2500u16, 0x0000, 0x2a01, 0xffff, 0x2e00] {
            let mut b = bytes.clone();
            b[..2].copy_from_slice(&v.to_be_bytes());
            let d = decode(&b, rel("26.05.5"));
            assert!(d.messages.is_empty(), "{v:#x}");
            let p = d.problem.unwrap();
            assert!(p.contains(&format!("0x{v:04x}")), "{p}");
        }
    }

    #[test]
    fn every_truncation_keeps_earlier_messages() {
        for r in [rel("24.11.5"), rel("26.05.5")] {
            let msgs = if r.at_least(25, 5, 0) {
                three()
            } else {
                three()
                    .into_iter()
                    .map(|m| SavedMessage {
                        event: Event::Finish,
                        ..m
                    })
                    .collect()
            };
            let bytes = encode(r, &msgs);
            // Byte offset where each message ends.
            let per = if r.at_least(25, 5, 0) { 13 } else { 9 };
            let mut ends = vec![];
            let mut pos = 6;
            for m in &msgs {
                pos += per + m.payload.len();
                ends.push(pos);
            }
            for cut in 0..bytes.len() {
                let d = decode(&bytes[..cut], r);
                let whole = ends.iter().filter(|e| **e <= cut).count();
                assert_eq!(d.messages, msgs[..whole].to_vec(), "{r} cut {cut}");
                let p = d.problem.expect("problem for a cut file");
                assert!(
                    p.contains("truncated") || p.contains("empty"),
                    "{r} cut {cut}: {p}"
                );
                if cut >= 6 {
                    assert!(p.contains(&format!("message {} of 3", whole + 1)), "{p}");
                    assert!(p.contains("byte offset"), "{p}");
                }
            }
            assert_eq!(decode(&bytes, r).problem, None);
        }
    }

    #[test]
    fn damaged_fields_are_reported() {
        let r = rel("26.05.5");
        let bytes = encode(r, &three());
        // Offsets inside message 2 (starts at 6 + 13 + 14 = 33).
        let m2 = 6 + 13 + three()[0].payload.len();
        let len_at = m2 + 8;

        // Unknown event.
        let mut b = bytes.clone();
        b[m2 + 3] = 9;
        let d = decode(&b, r);
        assert_eq!(d.messages.len(), 1);
        let p = d.problem.unwrap();
        assert!(
            p.contains("unknown event value 9") && p.contains("message 2 of 3"),
            "{p}"
        );
        assert!(p.contains(&format!("byte offset {m2}")), "{p}");

        // Zero length.
        let mut b = bytes.clone();
        b[len_at..len_at + 4].copy_from_slice(&[0, 0, 0, 0]);
        let d = decode(&b, r);
        assert_eq!(d.messages.len(), 1);
        assert!(d.problem.unwrap().contains("length of 0"));

        // Length beyond the end (huge).
        let mut b = bytes.clone();
        b[len_at..len_at + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        let d = decode(&b, r);
        assert_eq!(d.messages.len(), 1);
        assert!(d.problem.unwrap().contains("4294967295 bytes"));

        // Length one too small / too large: NUL check or a misparse that is caught.
        for delta in [-1i64, 1, 2, -5] {
            let mut b = bytes.clone();
            let len = u32::from_be_bytes(b[len_at..len_at + 4].try_into().unwrap());
            let len = (len as i64 + delta) as u32;
            b[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
            let d = decode(&b, r);
            assert!(d.problem.is_some(), "delta {delta}");
            assert_eq!(d.messages[..1], three()[..1]);
            assert!(d.messages.len() < 3, "delta {delta}: {:?}", d.messages);
        }

        // Flip every bit of every length field: never a panic, earlier messages kept.
        let mut lens = vec![];
        let mut pos = 6;
        for m in three() {
            lens.push(pos + 8);
            pos += 13 + m.payload.len();
        }
        for (i, at) in lens.iter().enumerate() {
            for byte in 0..4 {
                for bit in 0..8 {
                    let mut b = bytes.clone();
                    b[at + byte] ^= 1 << bit;
                    let d = decode(&b, r);
                    assert!(d.problem.is_some(), "msg {i} byte {byte} bit {bit}");
                    assert!(d.messages.len() >= i, "msg {i} byte {byte} bit {bit}");
                    assert_eq!(d.messages[..i], three()[..i]);
                }
            }
        }

        // Missing NUL at the end of the last payload.
        let mut b = bytes.clone();
        let last = b.len() - 1;
        b[last] = b'!';
        let d = decode(&b, r);
        assert_eq!(d.messages.len(), 2);
        let p = d.problem.unwrap();
        assert!(p.contains("NUL") && p.contains("message 3 of 3"), "{p}");
        assert!(p.contains(&format!("byte offset {last}")), "{p}");

        // Count larger than what is there.
        let mut b = bytes.clone();
        b[2..6].copy_from_slice(&u32::MAX.to_be_bytes());
        let d = decode(&b, r);
        assert_eq!(d.messages, three());
        assert!(d.problem.unwrap().contains("message 4 of 4294967295"));

        // Trailing garbage.
        let mut b = bytes.clone();
        b.extend_from_slice(b"junk");
        let d = decode(&b, r);
        assert_eq!(d.messages, three());
        let p = d.problem.unwrap();
        assert!(
            p.contains("4 unexpected bytes") && p.contains(&format!("{}", bytes.len())),
            "{p}"
        );
    }

    #[test]
    fn payload_bytes_survive() {
        let payloads: [&[u8]; 4] = [b"\0", b"\0\0\0", b"\xff\xfe\x00\x80", b"end with nul\0"];
        for r in [rel("23.02.7"), rel("25.11.2")] {
            let msgs: Vec<_> = payloads.iter().map(|p| msg(Event::Finish, 1, p)).collect();
            let d = decode(&encode(r, &msgs), r);
            assert_eq!(d.problem, None);
            assert_eq!(d.messages, msgs);
        }
    }

    #[test]
    fn write_keeps_old_copy_and_mode() {
        let t = TempDir::new("write");
        let r = rel("26.05.5");
        let first = vec![msg(Event::Finish, 1, b"one")];
        write(&t.0, r, &first).unwrap();
        assert_eq!(names(&t.0), vec![STATE_FILE_NAME]);
        write(&t.0, r, &three()).unwrap();
        let f = t.0.join(STATE_FILE_NAME);
        let old = t.0.join("jobcomp_kafka_state.old");
        assert_eq!(
            names(&t.0),
            vec![
                STATE_FILE_NAME.to_string(),
                format!("{STATE_FILE_NAME}.old")
            ]
        );
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(decode(&fs::read(&f).unwrap(), r).messages, three());
        assert_eq!(decode(&fs::read(&old).unwrap(), r).messages, first);

        // A stale .new with loose permissions is replaced, not reused.
        let new = t.0.join("jobcomp_kafka_state.new");
        fs::write(&new, b"stale").unwrap();
        fs::set_permissions(&new, fs::Permissions::from_mode(0o666)).unwrap();
        write(&t.0, r, &first).unwrap();
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!new.exists());
        assert_eq!(decode(&fs::read(&old).unwrap(), r).messages, three());

        // Nothing to save: <f> goes (kept as .old) so nothing is replayed.
        write(&t.0, r, &[]).unwrap();
        assert!(!f.exists());
        assert_eq!(decode(&fs::read(&old).unwrap(), r).messages, first);
        write(&t.0, r, &[]).unwrap();
        assert!(write(&t.0.join("no-such-dir"), r, &[]).is_ok());
        assert!(write(&t.0.join("no-such-dir"), r, &first).is_err());
    }

    #[test]
    fn replay_happens_once() {
        let t = TempDir::new("once");
        let r = rel("26.05.5");
        write(&t.0, r, &three()).unwrap();

        let first = take_for_replay(&t.0, r, 1000);
        assert_eq!(first.messages, three());
        assert!(first.problems.is_empty(), "{:?}", first.problems);
        let claim = first.claim.clone().unwrap();
        assert_eq!(claim, t.0.join("jobcomp_kafka_state.replaying"));
        assert!(!t.0.join(STATE_FILE_NAME).exists());
        assert_eq!(
            fs::metadata(&claim).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // The process died before finishing: the leftover claim is replayed again.
        let second = take_for_replay(&t.0, r, 1001);
        assert_eq!(second.messages, three());
        assert_eq!(second.claim.as_deref(), Some(claim.as_path()));

        finish_replay(&claim).unwrap();
        finish_replay(&claim).unwrap();
        let third = take_for_replay(&t.0, r, 1002);
        assert_eq!(third, Replay::default());
        // .old (the copy kept by write) is never replayed.
        assert!(!names(&t.0).iter().any(|n| n.ends_with(".replaying")));
    }

    #[test]
    fn replay_merges_leftover_claim_and_new_file() {
        let t = TempDir::new("merge");
        let r = rel("25.05.0");
        write(&t.0, r, &three()[..1]).unwrap();
        let a = take_for_replay(&t.0, r, 1);
        assert_eq!(a.messages, three()[..1].to_vec());
        // The next process saved other messages before dying without finishing.
        write(&t.0, r, &three()[1..]).unwrap();
        let b = take_for_replay(&t.0, r, 2);
        assert_eq!(b.messages, three());
        assert!(b.problems.is_empty(), "{:?}", b.problems);
        assert_eq!(names(&t.0), vec![format!("{STATE_FILE_NAME}.replaying")]);
        finish_replay(b.claim.as_ref().unwrap()).unwrap();
        assert!(take_for_replay(&t.0, r, 3).messages.is_empty());
    }

    #[test]
    fn replay_sets_corrupt_file_aside() {
        let t = TempDir::new("corrupt");
        let r = rel("26.05.5");
        let f = t.0.join(STATE_FILE_NAME);
        let mut bytes = encode(r, &three());
        bytes.truncate(bytes.len() - 3);
        fs::write(&f, &bytes).unwrap();
        let rep = take_for_replay(&t.0, r, 1234);
        assert_eq!(rep.messages, three()[..2].to_vec());
        assert_eq!(rep.problems.len(), 1);
        let p = &rep.problems[0];
        assert!(p.contains("jobcomp_kafka_state.corrupt.1234"), "{p}");
        assert!(p.contains("2 recovered messages"), "{p}");
        assert_eq!(
            fs::read(t.0.join("jobcomp_kafka_state.corrupt.1234")).unwrap(),
            bytes
        );
        assert!(!f.exists());
        assert!(rep.claim.is_some());

        // Same second, another damaged file: a distinct name.
        fs::write(&f, b"\x2d").unwrap();
        let rep2 = take_for_replay(&t.0, r, 1234);
        assert_eq!(rep2.messages, three()[..2].to_vec()); // the leftover claim
        assert!(
            rep2.problems[0].contains("corrupt.1234-1"),
            "{:?}",
            rep2.problems
        );
        assert!(!f.exists());

        // A file from a newer Slurm is set aside too, not replayed and not lost.
        finish_replay(rep2.claim.as_ref().unwrap()).unwrap();
        fs::write(&f, encode(rel("26.05.5"), &three())).unwrap();
        let rep3 = take_for_replay(&t.0, rel("24.11.5"), 99);
        assert!(rep3.messages.is_empty());
        assert!(rep3.claim.is_none());
        assert!(rep3.problems[0].contains("newer"));
        assert!(t.0.join("jobcomp_kafka_state.corrupt.99").exists());
        assert!(!f.exists());
    }

    #[test]
    fn replay_edge_cases() {
        // Missing directory: nothing, no problem.
        let t = TempDir::new("edge");
        let rep = take_for_replay(&t.0.join("missing"), rel("24.11.5"), 1);
        assert_eq!(rep, Replay::default());

        // A C-plugin file with zero messages is simply cleared.
        let r = rel("24.11.5");
        let f = t.0.join(STATE_FILE_NAME);
        fs::write(&f, encode(r, &[])).unwrap();
        assert_eq!(take_for_replay(&t.0, r, 1), Replay::default());
        assert!(!f.exists());

        // A 24.11 file taken by a 26.05 build: claim is in 26.05 format.
        fs::write(&f, encode(r, &three()[..1])).unwrap();
        let rep = take_for_replay(&t.0, rel("26.05.5"), 1);
        assert_eq!(rep.messages, three()[..1].to_vec());
        let claim = fs::read(rep.claim.as_ref().unwrap()).unwrap();
        assert_eq!(&claim[..2], &[0x2d, 0x00]);
        finish_replay(rep.claim.as_ref().unwrap()).unwrap();

        // An interrupted save: only <f>.new, complete.
        let new = t.0.join("jobcomp_kafka_state.new");
        fs::write(&new, encode(r, &three()[2..])).unwrap();
        let rep = take_for_replay(&t.0, r, 1);
        assert_eq!(rep.messages, three()[2..].to_vec());
        assert!(!new.exists());
        assert_eq!(rep.problems.len(), 1);
        finish_replay(rep.claim.as_ref().unwrap()).unwrap();

        // A partial <f>.new next to a good <f>: reported, not replayed.
        write(&t.0, r, &three()[..1]).unwrap();
        fs::write(&new, &encode(r, &three()[..1])[..7]).unwrap();
        let rep = take_for_replay(&t.0, r, 1);
        assert_eq!(rep.messages, three()[..1].to_vec());
        assert_eq!(rep.problems.len(), 1);
        assert!(rep.problems[0].contains(".new"));

        // The state file is a directory: a problem, left alone.
        let t2 = TempDir::new("edge2");
        fs::create_dir(t2.0.join(STATE_FILE_NAME)).unwrap();
        let rep = take_for_replay(&t2.0, r, 1);
        assert!(rep.messages.is_empty());
        assert_eq!(rep.problems.len(), 1);
        assert!(t2.0.join(STATE_FILE_NAME).is_dir());
    }
}
