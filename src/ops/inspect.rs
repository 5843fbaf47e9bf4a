//! Reading a StateSaveLocation without disturbing the slurmctld that may run on
//! it: files are only opened for reading (never truncated, rewritten or locked;
//! the spool lock's holder is read from /proc/locks), and an entry being
//! written while it is read is reported as an incomplete last entry, not as
//! damage.

use super::{event_time, payload_time};
use crate::names::NameCache;
use crate::plugin::{unix_now, REFUSED_DIR};
use crate::record::{self, RecordOptions};
use crate::snapshot::{codec, Event};
use crate::spool::{self, parse_segment, segment_path, Damage, Kind, Location, Suffix, SPOOL_DIR};
use crate::state_file::{self, STATE_FILE_NAME};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a StateSaveLocation cannot be read; the text says what to do.
#[derive(Debug, PartialEq, Eq)]
pub struct OpsError(pub String);

impl fmt::Display for OpsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn io_error(what: &Path, e: &io::Error) -> OpsError {
    if e.kind() == io::ErrorKind::PermissionDenied {
        OpsError(format!(
            "cannot read {}: permission denied; run jobcomp-kafka as SlurmUser (the owner of StateSaveLocation) or root",
            what.display()
        ))
    } else {
        OpsError(format!("cannot read {}: {e}", what.display()))
    }
}

/// A StateSaveLocation the plugin has used.
#[derive(Debug)]
pub struct StateDir {
    pub dir: PathBuf,
    pub spool: PathBuf,
}

impl StateDir {
    /// Checks that `dir` is a readable StateSaveLocation with the plugin's
    /// files (the spool directory, a state file or refused records), and that
    /// its spool is of this build's format.
    pub fn open(dir: &Path) -> Result<StateDir, OpsError> {
        let meta = fs::metadata(dir).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => OpsError(format!("{}: no such directory (give the StateSaveLocation of slurm.conf)", dir.display())),
            _ => io_error(dir, &e),
        })?;
        if !meta.is_dir() {
            return Err(OpsError(format!("{} is not a directory (give the StateSaveLocation of slurm.conf)", dir.display())));
        }
        let names: Vec<String> = fs::read_dir(dir)
            .map_err(|e| io_error(dir, &e))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let ours = [SPOOL_DIR, STATE_FILE_NAME, REFUSED_DIR];
        if !names.iter().any(|n| ours.contains(&n.as_str()) || n.starts_with(STATE_FILE_NAME)) {
            return Err(OpsError(format!(
                "{} holds none of {}, {} or {}: not a StateSaveLocation the jobcomp/kafka plugin has used",
                dir.display(),
                SPOOL_DIR,
                STATE_FILE_NAME,
                REFUSED_DIR
            )));
        }
        let spool = dir.join(SPOOL_DIR);
        if spool.exists() {
            fs::read_dir(&spool).map_err(|e| io_error(&spool, &e))?;
            for (segment, suffix) in spool::list_segments(&spool) {
                let path = segment_path(&spool, segment, suffix);
                let mut head = [0u8; 4];
                let read = fs::File::open(&path).and_then(|f| std::os::unix::fs::FileExt::read_at(&f, &mut head, 0));
                match read {
                    Ok(4) => {
                        if let Some(version) = spool::foreign_format(&head) {
                            return Err(OpsError(format!(
                                "{} is a spool of format version {version}; this jobcomp-kafka reads version {} \
                                 (use the jobcomp-kafka installed with the plugin that wrote it)",
                                path.display(),
                                spool::FORMAT_VERSION
                            )));
                        }
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {} // retired meanwhile
                    Err(e) => return Err(io_error(&path, &e)),
                }
            }
        }
        Ok(StateDir { dir: dir.to_path_buf(), spool })
    }

    pub fn refused_dir(&self) -> PathBuf {
        self.dir.join(REFUSED_DIR)
    }
}

/// One record that waits for Kafka.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiting {
    pub record_id: u64,
    pub job_id: u32,
    pub event: Event,
    /// The topic it was produced to; `None` when only its snapshot is spooled
    /// (slurmctld stopped before building it): the next start sends it to the
    /// configured topic.
    pub topic: Option<String>,
    /// The record's JSON text: as spooled, or built from the snapshot.
    pub json: Vec<u8>,
    /// Bytes of the JSON text as the plugin counts them (the metrics' waiting bytes).
    pub bytes: u64,
    pub time: i64,
}

/// What waits in the spool, oldest first (by record id), without the JSON
/// text unless `with_json`.
pub fn waiting(state: &StateDir, with_json: bool) -> Result<Vec<Waiting>, OpsError> {
    if !state.spool.exists() {
        return Ok(Vec::new());
    }
    // `recover` only reads (the spool directory exists: it creates nothing).
    let found = spool::recover(&state.spool).map_err(|e| io_error(&state.spool, &e))?;
    let mut files: HashMap<(u64, Suffix), Option<Vec<u8>>> = HashMap::new();
    let mut zstd = None;
    let mut read = |at: &Location| -> Option<Vec<u8>> {
        let bytes = files
            .entry((at.segment, at.suffix))
            .or_insert_with(|| fs::read(segment_path(&state.spool, at.segment, at.suffix)).ok());
        let body = bytes.as_ref()?.get(at.offset as usize..at.offset as usize + at.len as usize)?.to_vec();
        spool::payload_text(at.zstd_len, body, &mut zstd)
    };
    let mut names = NameCache::default();
    let options = RecordOptions { release: crate::target::RELEASE, send_script: false, send_comment: false };
    let mut out = Vec::with_capacity(found.records.len());
    for record in found.records {
        let Some(event) = Event::from_u32(record.event as u32) else { continue };
        let topic = record.topic.as_deref().map(|t| String::from_utf8_lossy(t).into_owned());
        let (json, bytes, time) = match (record.payload, record.snapshot) {
            (Some(at), _) => {
                let json = read(&at).unwrap_or_default();
                let time = payload_time(event, &json).unwrap_or_else(unix_now);
                (if with_json { json } else { Vec::new() }, u64::from(at.zstd_len.unwrap_or(at.len)), time)
            }
            (None, Some(at)) => {
                let Some(mut job) = read(&at).as_deref().and_then(codec::decode) else { continue };
                let time = event_time(&job, event);
                if job.user_name.is_none() {
                    job.user_name = names.user(job.user_id);
                }
                if job.group_name.is_none() {
                    job.group_name = names.group(job.group_id);
                }
                let json = record::build_record(&job, event, None, &options);
                let bytes = json.len() as u64;
                (if with_json { json } else { Vec::new() }, bytes, time)
            }
            (None, None) => continue,
        };
        out.push(Waiting { record_id: record.record_id, job_id: record.job_id, event, topic, json, bytes, time });
    }
    out.sort_by_key(|w| w.record_id);
    Ok(out)
}

/// A record set aside in jobcomp_kafka_refused/ (`<job id>.<record id>.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    pub path: PathBuf,
    pub job_id: u32,
    pub record_id: u64,
}

pub fn refused(state: &StateDir) -> Result<Vec<Refused>, OpsError> {
    let dir = state.refused_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(&dir, &e)),
    };
    let mut out: Vec<Refused> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let (job, id) = name.strip_suffix(".json")?.split_once('.')?;
            Some(Refused { path: entry.path(), job_id: job.parse().ok()?, record_id: id.parse().ok()? })
        })
        .collect();
    out.sort_by_key(|r| r.record_id);
    Ok(out)
}

/// The state file (records handed over at fini, SchedMD's format).
#[derive(Debug, Default, PartialEq)]
pub struct StateFile {
    pub present: bool,
    pub messages: Vec<state_file::SavedMessage>,
    pub problem: Option<String>,
}

pub fn read_state_file(state: &StateDir) -> Result<StateFile, OpsError> {
    let path = state.dir.join(STATE_FILE_NAME);
    match fs::read(&path) {
        Ok(bytes) => {
            let decoded = state_file::decode(&bytes, crate::target::RELEASE);
            Ok(StateFile { present: true, messages: decoded.messages, problem: decoded.problem })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(StateFile::default()),
        Err(e) => Err(io_error(&path, &e)),
    }
}

/// Who holds the spool lock (flock on `<spool>/lock`), from /proc/locks:
/// `Ok(None)` when nobody does, `Err` when it cannot be told.
pub fn lock_holder(state: &StateDir) -> Result<Option<(u32, String)>, String> {
    let lock = state.spool.join("lock");
    let meta = match fs::metadata(&lock) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", lock.display())),
    };
    let locks = fs::read_to_string("/proc/locks").map_err(|e| format!("/proc/locks: {e}"))?;
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    Ok(holder_in(&locks, major, minor, meta.ino()).map(|pid| {
        let name = fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim().to_string()).unwrap_or_default();
        (pid, name)
    }))
}

/// The pid holding a FLOCK on device `major:minor`, inode `ino`, in the text
/// of /proc/locks ("1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF").
pub fn holder_in(locks: &str, major: u32, minor: u32, ino: u64) -> Option<u32> {
    locks.lines().find_map(|line| {
        if line.contains("->") {
            return None; // a process waiting for the lock, not its holder
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flock = fields.iter().position(|f| *f == "FLOCK")?;
        let pid: u32 = fields.get(flock + 3)?.parse().ok()?;
        let mut id = fields.get(flock + 4)?.split(':');
        let (maj, min, inode) = (id.next()?, id.next()?, id.next()?);
        let matches = u32::from_str_radix(maj, 16).ok()? == major
            && u32::from_str_radix(min, 16).ok()? == minor
            && inode.parse::<u64>().ok()? == ino;
        matches.then_some(pid)
    })
}

/// What `verify` found.
#[derive(Debug, Default, PartialEq)]
pub struct Verification {
    /// Damage: file, byte offset, what.
    pub damage: Vec<(PathBuf, u64, String)>,
    /// Not damage: incomplete last entries (a crash, or a write in progress).
    pub notes: Vec<String>,
    pub entries: u64,
    pub files: u64,
}

/// Checks every spool entry's checksum, the state file and the refused records.
pub fn verify(state: &StateDir) -> Result<Verification, OpsError> {
    let mut out = Verification::default();
    let mut zstd = None;
    for (segment, suffix) in spool::list_segments(&state.spool) {
        let path = segment_path(&state.spool, segment, suffix);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // retired meanwhile
            Err(e) => return Err(io_error(&path, &e)),
        };
        out.files += 1;
        let (entries, damage) = parse_segment(&bytes);
        out.entries += entries.len() as u64;
        for entry in &entries {
            if !matches!(entry.kind, Kind::Payload | Kind::CompressedPayload) {
                continue;
            }
            match spool::split_payload_entry(entry.kind, entry.body) {
                None => out.damage.push((path.clone(), entry.body_offset - 32, "malformed record entry (its topic overruns it)".into())),
                Some((_, skip, zstd_len @ Some(_))) => {
                    if spool::payload_text(zstd_len, entry.body[skip..].to_vec(), &mut zstd).is_none() {
                        out.damage.push((path.clone(), entry.body_offset - 32, "compressed record text does not decompress".into()));
                    }
                }
                Some(_) => {}
            }
        }
        for problem in damage {
            match problem {
                Damage::Corrupt { offset, skipped } => out.damage.push((
                    path.clone(),
                    offset,
                    format!("{skipped} byte(s) are no valid entry (checksum mismatch); the entries after them are sound"),
                )),
                Damage::TornTail { offset } => out.notes.push(format!(
                    "{}: incomplete last entry at byte {offset} (a crash during a write, or a write in progress); \
                     the plugin cuts it off at its next start",
                    path.display()
                )),
            }
        }
    }
    let state_file = read_state_file(state)?;
    if let Some(problem) = state_file.problem {
        out.damage.push((state.dir.join(STATE_FILE_NAME), 0, problem));
    }
    for record in refused(state)? {
        let bytes = fs::read(&record.path).map_err(|e| io_error(&record.path, &e))?;
        out.files += 1;
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            out.damage.push((record.path.clone(), e.column() as u64, format!("not valid JSON: {e}")));
        }
    }
    Ok(out)
}

/// Record ids waiting in the spool (for tests and `dump`'s de-duplication).
pub fn ids(records: &[Waiting]) -> HashSet<u64> {
    records.iter().map(|r| r.record_id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_holder_is_found_in_proc_locks() {
        let text = "1: POSIX  ADVISORY  WRITE 77 fd:01:99 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 4321 fd:01:5678 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 999 fd:01:5678 0 EOF\n";
        assert_eq!(holder_in(text, 0xfd, 1, 5678), Some(4321));
        assert_eq!(holder_in(text, 0xfd, 1, 99), None, "a POSIX lock is not the spool lock");
        assert_eq!(holder_in(text, 0xfd, 2, 5678), None);
    }
}
