//! `jobcomp-kafka`'s command line: arguments, and the text each command prints.
//! The binary (src/bin/jobcomp-kafka.rs) only calls [`run`].

use super::inspect::{self, OpsError, StateDir, Waiting};
use super::resend::{self, Sent};
use super::utc_text;
use crate::plugin::unix_now;
use crate::snapshot::Event;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const USAGE: &str = "\
usage: jobcomp-kafka [-d STATE_SAVE_LOCATION] COMMAND [OPTIONS]

Inspects what the jobcomp/kafka plugin keeps in slurmctld's StateSaveLocation
(default: StateSaveLocation from slurm.conf, $SLURM_CONF or /etc/slurm/slurm.conf).
Read-only unless the command says otherwise; safe while slurmctld runs.

commands:
  status [--max-age SECONDS]   records waiting for Kafka (count, bytes, oldest and
                               newest), refused records, the state file, the spool
                               lock's holder. Exit 2 when the oldest record has
                               waited longer than SECONDS (a monitoring check).
  dump [--waiting|--refused|--saved]
                               records as JSON lines (all kinds unless one is named):
                               state, record_id, job_id, event, topic, time, record.
  verify                       every spool entry's checksum, the state file and the
                               refused records; damage with file and byte offset.
                               Exit 1 on damage.
  resend --loc FILE [--topic TOPIC] [--wait SECONDS]
                               sends the records in jobcomp_kafka_refused/ with the
                               librdkafka properties of FILE (JobCompLoc) to TOPIC
                               (default: the record's cluster, the plugin's default
                               topic); a file is removed only once Kafka acknowledged
                               its record. Exit 1 when any is left.

exit status: 0 fine, 1 problems found, 2 records wait too long (status),
             3 the directory cannot be read, 64 wrong usage.
";

pub const EXIT_PROBLEMS: i32 = 1;
pub const EXIT_TOO_OLD: i32 = 2;
pub const EXIT_UNREADABLE: i32 = 3;
pub const EXIT_USAGE: i32 = 64;

/// What a command printed and its exit status.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

fn usage(why: &str) -> Outcome {
    Outcome { code: EXIT_USAGE, stdout: String::new(), stderr: format!("jobcomp-kafka: {why}\n{USAGE}") }
}

fn unreadable(e: OpsError) -> Outcome {
    Outcome { code: EXIT_UNREADABLE, stdout: String::new(), stderr: format!("jobcomp-kafka: {e}\n") }
}

/// StateSaveLocation from slurm.conf's text (keys are case-insensitive).
pub fn state_save_location(conf: &str) -> Option<PathBuf> {
    conf.lines().find_map(|line| {
        let line = line.split('#').next()?.trim();
        let (key, value) = line.split_once('=')?;
        key.trim().eq_ignore_ascii_case("StateSaveLocation").then(|| PathBuf::from(value.trim()))
    })
}

/// Runs the command line `args` (without the program name).
pub fn run(args: &[String]) -> Outcome {
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    if args.is_empty() || args.iter().any(|a| *a == "-h" || *a == "--help") {
        return Outcome { code: if args.is_empty() { EXIT_USAGE } else { 0 }, stdout: USAGE.into(), stderr: String::new() };
    }
    let mut dir = None;
    if matches!(args[0], "-d" | "--state-dir") {
        let Some(value) = args.get(1) else { return usage("-d needs a directory") };
        dir = Some(PathBuf::from(value));
        args.drain(..2);
    }
    let dir = match dir {
        Some(dir) => dir,
        None => {
            let conf = std::env::var("SLURM_CONF").unwrap_or_else(|_| "/etc/slurm/slurm.conf".into());
            match std::fs::read_to_string(&conf).ok().as_deref().and_then(state_save_location) {
                Some(dir) => dir,
                None => return usage(&format!("no StateSaveLocation found in {conf}; give it with -d")),
            }
        }
    };
    let Some((&command, options)) = args.split_first() else { return usage("no command") };
    if !["status", "dump", "verify", "resend"].contains(&command) {
        return usage(&format!("unknown command {command}"));
    }
    let mut opts = Options::default();
    let mut i = 0;
    while i < options.len() {
        let value = options.get(i + 1).copied();
        let take = |slot: &mut Option<String>| -> bool {
            match value {
                Some(v) => {
                    *slot = Some(v.to_string());
                    true
                }
                None => false,
            }
        };
        let ok = match options[i] {
            "--max-age" => take(&mut opts.max_age),
            "--loc" => take(&mut opts.loc),
            "--topic" => take(&mut opts.topic),
            "--wait" => take(&mut opts.wait),
            "--waiting" | "--refused" | "--saved" => {
                opts.kinds.push(options[i].trim_start_matches('-').to_string());
                i += 1;
                continue;
            }
            other => return usage(&format!("unknown option {other} for {command}")),
        };
        if !ok {
            return usage(&format!("{} needs a value", options[i]));
        }
        i += 2;
    }
    let state = match StateDir::open(&dir) {
        Ok(state) => state,
        Err(e) => return unreadable(e),
    };
    let result = match command {
        "status" => {
            let max_age = match opts.max_age.as_deref().map(str::parse::<i64>) {
                None => None,
                Some(Ok(s)) if s >= 0 => Some(s),
                Some(_) => return usage("--max-age takes a whole number of seconds"),
            };
            status(&state, max_age, unix_now())
        }
        "dump" => dump(&state, &opts.kinds),
        "verify" => verify(&state),
        "resend" => {
            let Some(loc) = opts.loc.as_deref() else { return usage("resend needs --loc FILE (the JobCompLoc file)") };
            let wait = match opts.wait.as_deref().map(str::parse::<u64>) {
                None => 60,
                Some(Ok(s)) => s,
                Some(Err(_)) => return usage("--wait takes a whole number of seconds"),
            };
            resend_refused(&state, loc, opts.topic.as_deref(), Duration::from_secs(wait))
        }
        other => return usage(&format!("unknown command {other}")),
    };
    result.unwrap_or_else(unreadable)
}

#[derive(Default)]
struct Options {
    max_age: Option<String>,
    loc: Option<String>,
    topic: Option<String>,
    wait: Option<String>,
    kinds: Vec<String>,
}

fn event_name(event: Event) -> &'static str {
    match event {
        Event::Finish => "finish",
        Event::Start => "start",
    }
}

fn describe(w: &Waiting, now: i64) -> String {
    format!(
        "job {}, record {}, {}, topic {}, {}, waiting {} s",
        w.job_id,
        w.record_id,
        event_name(w.event),
        w.topic.as_deref().unwrap_or("(the configured one)"),
        utc_text(w.time),
        (now - w.time).max(0)
    )
}

/// `status`: the text, and exit 2 when the oldest record waited longer than `max_age`.
pub fn status(state: &StateDir, max_age: Option<i64>, now: i64) -> Result<Outcome, OpsError> {
    let waiting = inspect::waiting(state, false)?;
    let refused = inspect::refused(state)?;
    let state_file = inspect::read_state_file(state)?;
    let mut out = String::new();
    let _ = writeln!(out, "state directory: {}", state.dir.display());
    let lock = match inspect::lock_holder(state) {
        Ok(Some((pid, name))) => format!("locked by pid {pid} ({name})"),
        Ok(None) => "not locked (no slurmctld uses it now)".to_string(),
        Err(e) => format!("lock holder unknown ({e})"),
    };
    let _ = writeln!(
        out,
        "spool: {}, {} bytes on disk, {lock}",
        state.spool.display(),
        crate::spool::disk_usage(&state.spool)
    );
    let bytes: u64 = waiting.iter().map(|w| w.bytes).sum();
    let _ = writeln!(out, "waiting: {} record(s), {bytes} bytes", waiting.len());
    if let (Some(oldest), Some(newest)) = (waiting.first(), waiting.last()) {
        let _ = writeln!(out, "oldest: {}", describe(oldest, now));
        let _ = writeln!(out, "newest: {}", describe(newest, now));
    }
    let oldest_age = waiting.first().map_or(0, |w| (now - w.time).max(0));
    let _ = writeln!(out, "oldest age: {oldest_age} s");
    match (&state_file.present, &state_file.problem) {
        (false, _) => {
            let _ = writeln!(out, "state file: none");
        }
        (true, None) => {
            let _ = writeln!(out, "state file: {} record(s) handed over at fini (produced at the next start)", state_file.messages.len());
        }
        (true, Some(problem)) => {
            let _ = writeln!(out, "state file: DAMAGED: {problem}");
        }
    }
    let _ = writeln!(out, "refused: {} record(s) in {}", refused.len(), state.refused_dir().display());
    let mut code = 0;
    if let Some(max_age) = max_age {
        if !waiting.is_empty() && oldest_age > max_age {
            code = EXIT_TOO_OLD;
            let _ = writeln!(out, "CRITICAL: the oldest record has waited {oldest_age} s, more than {max_age} s");
        } else {
            let _ = writeln!(out, "OK: no record has waited more than {max_age} s");
        }
    }
    Ok(Outcome { code, stdout: out, stderr: String::new() })
}

/// One JSON line: the fields, then the record itself as its exact bytes when
/// it is valid JSON (else as a string, `record_text`).
pub fn dump_line(fields: &[(&str, serde_json::Value)], record: &[u8]) -> String {
    let mut line = String::from("{");
    for (key, value) in fields {
        let _ = write!(line, "{}:{},", serde_json::Value::from(*key), value);
    }
    match (serde_json::from_slice::<serde_json::Value>(record).is_ok(), std::str::from_utf8(record)) {
        (true, Ok(text)) => {
            let _ = write!(line, "\"record\":{text}}}");
        }
        _ => {
            let _ = write!(line, "\"record_text\":{}}}", serde_json::Value::from(String::from_utf8_lossy(record)));
        }
    }
    line
}

fn dump(state: &StateDir, kinds: &[String]) -> Result<Outcome, OpsError> {
    use serde_json::Value;
    let wants = |kind: &str| kinds.is_empty() || kinds.iter().any(|k| k == kind);
    let mut out = String::new();
    if wants("waiting") {
        for w in inspect::waiting(state, true)? {
            let fields = [
                ("state", Value::from("waiting")),
                ("record_id", Value::from(w.record_id)),
                ("job_id", Value::from(w.job_id)),
                ("event", Value::from(event_name(w.event))),
                ("topic", w.topic.clone().map_or(Value::Null, Value::from)),
                ("time", Value::from(w.time)),
            ];
            out.push_str(&dump_line(&fields, &w.json));
            out.push('\n');
        }
    }
    if wants("saved") {
        for m in inspect::read_state_file(state)?.messages {
            let time = super::payload_time(m.event, &m.payload);
            let fields = [
                ("state", Value::from("saved")),
                ("job_id", Value::from(m.job_id)),
                ("event", Value::from(event_name(m.event))),
                ("time", time.map_or(Value::Null, Value::from)),
            ];
            out.push_str(&dump_line(&fields, &m.payload));
            out.push('\n');
        }
    }
    if wants("refused") {
        for r in inspect::refused(state)? {
            let json = std::fs::read(&r.path).unwrap_or_default();
            let fields = [
                ("state", Value::from("refused")),
                ("record_id", Value::from(r.record_id)),
                ("job_id", Value::from(r.job_id)),
                ("file", Value::from(r.path.display().to_string())),
            ];
            out.push_str(&dump_line(&fields, &json));
            out.push('\n');
        }
    }
    Ok(Outcome { code: 0, stdout: out, stderr: String::new() })
}

fn verify(state: &StateDir) -> Result<Outcome, OpsError> {
    let found = inspect::verify(state)?;
    let mut out = String::new();
    for (file, offset, what) in &found.damage {
        let _ = writeln!(out, "DAMAGE {}: byte {offset}: {what}", file.display());
    }
    for note in &found.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let _ = writeln!(
        out,
        "{} file(s), {} spool entries checked: {}",
        found.files,
        found.entries,
        if found.damage.is_empty() { "no damage".to_string() } else { format!("{} damaged place(s)", found.damage.len()) }
    );
    Ok(Outcome { code: if found.damage.is_empty() { 0 } else { EXIT_PROBLEMS }, stdout: out, stderr: String::new() })
}

fn resend_refused(state: &StateDir, loc: &str, topic: Option<&str>, wait: Duration) -> Result<Outcome, OpsError> {
    if !Path::new(loc).is_file() {
        return Err(OpsError(format!("{loc}: no such file (give the JobCompLoc file of librdkafka properties)")));
    }
    let results = resend::resend(state, loc, topic, wait)?;
    let mut out = String::new();
    let mut failed = 0;
    for result in &results {
        match result {
            Sent::Delivered { path, topic, partition, offset } => {
                let _ = writeln!(out, "sent {} to {topic} [{partition}] at offset {offset}; file removed", path.display());
            }
            Sent::Failed { path, why } => {
                failed += 1;
                let _ = writeln!(out, "NOT sent {}: {why}; the file stays", path.display());
            }
        }
    }
    let _ = writeln!(out, "{} sent, {failed} left", results.len() - failed);
    Ok(Outcome { code: if failed == 0 { 0 } else { EXIT_PROBLEMS }, stdout: out, stderr: String::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_save_location_is_read_from_slurm_conf() {
        let conf = "ClusterName=c\n# StateSaveLocation=/old\nstatesavelocation = /var/spool/slurmctld # here\n";
        assert_eq!(state_save_location(conf), Some(PathBuf::from("/var/spool/slurmctld")));
        assert_eq!(state_save_location("ClusterName=c\n"), None);
    }

    #[test]
    fn a_dump_line_keeps_the_record_bytes() {
        let line = dump_line(&[("state", "waiting".into()), ("job_id", 7.into())], br#"{"z":1,"a":"x"}"#);
        assert_eq!(line, r#"{"state":"waiting","job_id":7,"record":{"z":1,"a":"x"}}"#);
        let line = dump_line(&[("state", "refused".into())], b"{broken");
        assert_eq!(line, r#"{"state":"refused","record_text":"{broken"}"#);
    }

    #[test]
    fn wrong_usage_is_exit_64() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(run(&args(&["-d", "/tmp", "frobnicate"])).code, EXIT_USAGE);
        assert_eq!(run(&args(&["-d", "/tmp", "status", "--max-age"])).code, EXIT_USAGE);
        assert_eq!(run(&args(&["-d"])).code, EXIT_USAGE);
        assert_eq!(run(&args(&[])).code, EXIT_USAGE);
    }
}
