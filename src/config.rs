// SPDX-License-Identifier: GPL-2.0-or-later
//! JobCompLoc (a file of librdkafka properties) and JobCompParams parsing.
//!
//! Pure logic plus one plain file read: nothing here logs, touches Slurm or
//! Kafka. Problems come back as values ([`ConfigError`], [`Problem`]) whose text
//! is a complete sentence the caller can log as it is.
//!
//! # The properties file (JobCompLoc)
//!
//! One `key=value` per line, split at the first `=`; whitespace around key and
//! value is trimmed; blank lines are skipped; CRLF line ends and a UTF-8 byte
//! order mark are accepted.
//!
//! Comments: a line whose first non-blank character is `#` is a comment. A `#`
//! later in a line starts a comment only when it is preceded by a blank (space
//! or tab), as in `bootstrap.servers=k1:9092  # primary site`. SchedMD's C
//! plugin cuts the value at *any* `#`, which silently truncates a password such
//! as `sasl.password=ab#cd`; we keep such values whole, while the usual
//! "value, blanks, `# remark`" style of existing C-plugin files still works.
//! A value that really contains ` #` cannot be written in this file.
//!
//! A line with no `=`, or with an empty key, is an error naming the file and
//! line (the C plugin skips such lines silently, which hides typos). The text
//! of a bad line is never repeated in the error: it might hold a secret.
//!
//! A key given more than once: the last value wins. Only the last occurrence is
//! kept, in file order, so what is logged is what librdkafka gets.
//!
//! # JobCompParams
//!
//! See [`parse_params`].

use std::fmt;
use std::time::Duration;

use crate::release::Release;

// ---------------------------------------------------------------------------
// librdkafka properties
// ---------------------------------------------------------------------------

/// One librdkafka property from the JobCompLoc file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    pub key: String,
    pub value: String,
    /// 1-based line number in the file.
    pub line: usize,
}

/// A JobCompLoc problem that stops the plugin from configuring librdkafka. The
/// text is a complete sentence naming the file (and line, where there is one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The property that must be present (or its librdkafka alias).
const BROKER_KEYS: [&str; 2] = ["bootstrap.servers", "metadata.broker.list"];

/// Parses the text of a JobCompLoc file. `path` is only used in messages.
pub fn parse_properties(text: &str, path: &str) -> Result<Vec<Property>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut props: Vec<Property> = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line_no = index + 1;
        let line = strip_comment(raw.strip_suffix('\r').unwrap_or(raw)).trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(ConfigError(format!(
                "{path}:{line_no}: this line is not a librdkafka property: \
                 expected key=value (or a comment starting with '#')."
            )));
        };
        let key = key.trim();
        let value = value.trim();
        if key.is_empty() {
            return Err(ConfigError(format!(
                "{path}:{line_no}: this line has an empty property name before '='."
            )));
        }
        if key.chars().any(char::is_whitespace) {
            return Err(ConfigError(format!(
                "{path}:{line_no}: a property name cannot contain blanks; \
                 expected key=value."
            )));
        }
        // The last occurrence wins; keep file order of what survives.
        props.retain(|p| p.key != key);
        props.push(Property {
            key: key.to_string(),
            value: value.to_string(),
            line: line_no,
        });
    }
    if !props.iter().any(|p| BROKER_KEYS.contains(&p.key.as_str())) {
        return Err(ConfigError(format!(
            "{path} sets no bootstrap.servers (nor metadata.broker.list): \
             librdkafka needs at least one broker address."
        )));
    }
    Ok(props)
}

/// Removes a comment: the whole line when its first non-blank character is '#',
/// else from the first '#' that follows a space or tab.
fn strip_comment(line: &str) -> &str {
    if line.trim_start().starts_with('#') {
        return "";
    }
    let bytes = line.as_bytes();
    for i in 1..bytes.len() {
        if bytes[i] == b'#' && (bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') {
            return &line[..i];
        }
    }
    line
}

/// Reads and parses a JobCompLoc file. The path must be absolute (slurmctld's
/// working directory is not something to rely on).
pub fn read_properties_file(path: &str) -> Result<Vec<Property>, ConfigError> {
    if path.trim().is_empty() {
        return Err(ConfigError(
            "JobCompLoc is not set: it must be the absolute path of a file of \
             librdkafka properties (key=value lines)."
                .to_string(),
        ));
    }
    if !std::path::Path::new(path).is_absolute() {
        return Err(ConfigError(format!(
            "JobCompLoc \"{path}\" is not an absolute path: it must be the absolute \
             path of a file of librdkafka properties."
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigError(format!(
            "Cannot read the librdkafka properties file {path} (JobCompLoc): {e}."
        ))
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        ConfigError(format!(
            "{path}:{line}: the librdkafka properties file is not valid UTF-8 text."
        ))
    })?;
    parse_properties(&text, path)
}

/// Properties librdkafka itself treats as sensitive (redacted in its own
/// configuration dumps, wiped from memory after use): `_RK_SENSITIVE` in
/// librdkafka 2.12.1's src/rdkafka_conf.c, plus the alias of one of them.
const LIBRDKAFKA_SENSITIVE: [&str; 14] = [
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.client.credentials.client.secret",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
    "ssl.ca.pem",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl_key",
    "ssl.keystore.password",
];

/// Who the broker will take this JobCompLoc for, in the words of the
/// properties that decide it, for an error line about a missing ACL: Kafka
/// names the principal by the mechanism (the SASL user name, the Kerberos
/// principal after the broker's sasl.kerberos.principal.to.local.rules, the
/// OIDC token's subject, the client certificate's subject after
/// ssl.principal.mapping.rules, else User:ANONYMOUS). Only what the file says;
/// the broker's mapping is not known here.
pub fn principal_hint<'a>(properties: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut get = std::collections::HashMap::new();
    for (key, value) in properties {
        get.insert(key.trim(), value.trim());
    }
    let protocol = get.get("security.protocol").map(|v| v.to_ascii_uppercase()).unwrap_or_default();
    let mechanism = get.get("sasl.mechanisms").or(get.get("sasl.mechanism")).map(|v| v.to_ascii_uppercase()).unwrap_or_default();
    if protocol.starts_with("SASL") {
        let named = |key: &str, then: &str| match get.get(key) {
            Some(value) => format!("{key}={value}{then}"),
            None => format!("{key} unset{then}"),
        };
        return match mechanism.as_str() {
            "GSSAPI" => named("sasl.kerberos.principal", ", as the broker's sasl.kerberos.principal.to.local.rules map it"),
            "OAUTHBEARER" => named("sasl.oauthbearer.client.id", ": the subject (sub) of its token"),
            _ => named("sasl.username", ""),
        };
    }
    match get.get("ssl.certificate.location") {
        Some(path) if protocol == "SSL" => {
            format!("the subject of ssl.certificate.location={path}, as the broker's ssl.principal.mapping.rules map it")
        }
        _ => "User:ANONYMOUS: no SASL login, no client certificate".to_string(),
    }
}

/// True for properties whose value must never be logged: every property
/// librdkafka treats as sensitive, and anything else named like a password,
/// secret, token, private key or a config that may embed one. Deliberately
/// generous: a false positive only hides a value from a log line.
pub fn is_secret_property(key: &str) -> bool {
    let k = key.trim().to_ascii_lowercase();
    if LIBRDKAFKA_SENSITIVE.contains(&k.as_str()) {
        return true;
    }
    const WORDS: [&str; 9] = [
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "private",
        "jaas",
        "passphrase",
        "apikey",
    ];
    const KEYS: [&str; 6] = [
        "ssl.key.pem",
        "ssl_key",
        "ssl.keystore.password",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.extensions",
        "sasl.oauthbearer.assertion.claim.template.file",
    ];
    WORDS.iter().any(|w| k.contains(w))
        || KEYS.contains(&k.as_str())
        || k.ends_with("key.pem")
        || k.ends_with(".key")
        || k.ends_with("_key")
        || k.contains("api.key")
        || k.contains("api_key")
}

/// True when the value itself is a secret, not a name or a path that leads to
/// one (sasl.username, ssl.key.location, ...private.key.file are redacted in
/// logs as librdkafka does, but a file holding them gives nothing away; the key
/// file's own mode protects the key).
fn value_is_secret(key: &str, value: &str) -> bool {
    let k = key.trim().to_ascii_lowercase();
    is_secret_property(&k)
        && !value.trim().is_empty()
        && k != "sasl.username"
        && !k.ends_with(".location")
        && !k.ends_with(".file")
}

/// The warning init logs when the JobCompLoc file holds a secret and its
/// permission bits (`mode`) let group or others read it; None otherwise.
pub fn readable_secrets_warning(path: &str, mode: u32, properties: &[Property]) -> Option<String> {
    if mode & 0o044 == 0 {
        return None;
    }
    let secrets: Vec<&str> = properties.iter().filter(|p| value_is_secret(&p.key, &p.value)).map(|p| p.key.as_str()).collect();
    if secrets.is_empty() {
        return None;
    }
    Some(format!(
        "{path} (JobCompLoc) holds secrets ({}) and is readable by {} (mode {:04o}): \
         run `chmod 600 {path}` (owner SlurmUser).",
        secrets.join(", "),
        match (mode & 0o040 != 0, mode & 0o004 != 0) {
            (true, true) => "group and others",
            (true, false) => "its group",
            _ => "others",
        },
        mode & 0o7777
    ))
}

/// [`readable_secrets_warning`] for the file as it is now (no warning when it
/// cannot be examined: reading it just succeeded or failed with its own error).
pub fn secrets_file_warning(path: &str, properties: &[Property]) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    readable_secrets_warning(path, mode, properties)
}

/// The secret values of `properties` to look for in free text, longest first:
/// each whole value and each of its blank-separated words (librdkafka quotes a
/// config it cannot parse from the word where parsing stopped). Only pieces of
/// 4 characters or more: a shorter one would be found in, and garble, most lines
/// (it is still never logged as a property value).
pub fn secret_values<'a>(properties: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let mut pieces: Vec<String> = Vec::new();
    for (key, value) in properties {
        if !value_is_secret(key, value) {
            continue;
        }
        for piece in std::iter::once(value.trim()).chain(value.split_whitespace()) {
            if piece.len() >= 4 && !pieces.iter().any(|p| p == piece) {
                pieces.push(piece.to_string());
            }
        }
    }
    pieces.sort_by_key(|p| std::cmp::Reverse(p.len()));
    pieces
}

/// `text` with every one of `secrets` ([`secret_values`]) replaced by
/// "(redacted)": for lines that may quote a value (librdkafka's errors quote
/// the text they could not parse, e.g. of sasl.oauthbearer.config).
pub fn redact_secret_values(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "(redacted)");
        }
    }
    out
}

/// The value as it may be logged: "(redacted)" for secrets.
pub fn display_value(p: &Property) -> &str {
    if is_secret_property(&p.key) {
        "(redacted)"
    } else {
        &p.value
    }
}

// ---------------------------------------------------------------------------
// JobCompParams
// ---------------------------------------------------------------------------

pub const DEFAULT_FLUSH_TIMEOUT_MS: i32 = 500;
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How often the spool is made durable (fdatasync) against power loss.
pub const DEFAULT_SPOOL_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// How large the spool may grow (MiB) before new records are kept in memory only.
pub const DEFAULT_SPOOL_MAX_MB: u64 = 4096;
/// While jobs finish, the delivery thread takes new records this often: a
/// record waits half of it on average before it is produced, and each tick is a
/// thread wake-up (CPU). See the delivery loop in `plugin/delivery/mod.rs`.
pub const DEFAULT_TICK: Duration = Duration::from_millis(10);
/// How often the metrics file is rewritten (`metrics_interval`).
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(5);
/// Bounds of `tick_ms`.
pub const TICK_MS_RANGE: std::ops::RangeInclusive<u64> = 1..=1000;

/// The plugin's settings from JobCompParams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// Milliseconds `fini` waits for outstanding messages; -1 = wait forever.
    pub flush_timeout_ms: i32,
    /// How often the delivery thread serves librdkafka's callbacks; never zero.
    pub poll_interval: Duration,
    /// `None`: ClusterName (resolved by [`resolve_topics`]).
    pub topic: Option<String>,
    pub requeue_on_msg_timeout: bool,
    pub purge_in_flight: bool,
    pub purge_non_blocking: bool,
    pub requeue_purge_in_flight: bool,
    /// 25.05+.
    pub enable_job_start: bool,
    /// 25.05+. `None`: "<ClusterName>-job-start".
    pub topic_job_start: Option<String>,
    /// 25.05+.
    pub send_script: bool,
    /// 26.05+.
    pub send_comment: bool,
    /// fdatasync cadence of the spool; never zero.
    pub spool_sync_interval: Duration,
    /// Size limit of the spool in MiB.
    pub spool_max_mb: u64,
    /// The delivery thread's tick while jobs finish (`tick_ms`).
    pub tick: Duration,
    /// Prometheus text file the delivery thread rewrites (`metrics_file`; off
    /// by default), and how often (`metrics_interval`, seconds).
    pub metrics_file: Option<std::path::PathBuf>,
    pub metrics_interval: Duration,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            flush_timeout_ms: DEFAULT_FLUSH_TIMEOUT_MS,
            poll_interval: DEFAULT_POLL_INTERVAL,
            topic: None,
            requeue_on_msg_timeout: false,
            purge_in_flight: false,
            purge_non_blocking: false,
            requeue_purge_in_flight: false,
            enable_job_start: false,
            topic_job_start: None,
            send_script: false,
            send_comment: false,
            spool_sync_interval: DEFAULT_SPOOL_SYNC_INTERVAL,
            spool_max_mb: DEFAULT_SPOOL_MAX_MB,
            tick: DEFAULT_TICK,
            metrics_file: None,
            metrics_interval: DEFAULT_METRICS_INTERVAL,
        }
    }
}

/// Something wrong in the configuration. The text is a complete sentence that
/// names the offending token and says what is done instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Understood or ignored; the plugin works, maybe not as intended.
    Warning(String),
    /// A value was rejected and a default is used instead.
    Error(String),
}

impl Problem {
    pub fn text(&self) -> &str {
        match self {
            Problem::Warning(t) | Problem::Error(t) => t,
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Problem::Error(_))
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flag {
    RequeueOnMsgTimeout,
    PurgeInFlight,
    PurgeNonBlocking,
    RequeuePurgeInFlight,
    EnableJobStart,
    SendScript,
    SendComment,
}

const FLAGS: [(&str, Flag, (u8, u8)); 7] = [
    ("requeue_on_msg_timeout", Flag::RequeueOnMsgTimeout, (0, 0)),
    ("purge_in_flight", Flag::PurgeInFlight, (0, 0)),
    ("purge_non_blocking", Flag::PurgeNonBlocking, (0, 0)),
    (
        "requeue_purge_in_flight",
        Flag::RequeuePurgeInFlight,
        (0, 0),
    ),
    ("enable_job_start", Flag::EnableJobStart, (25, 5)),
    ("send_script", Flag::SendScript, (25, 5)),
    ("send_comment", Flag::SendComment, (26, 5)),
];

/// Value tokens and the series they need.
const VALUE_KEYS: [(&str, (u8, u8)); 9] = [
    ("metrics_file", (0, 0)),
    ("metrics_interval", (0, 0)),
    ("flush_timeout", (0, 0)),
    ("poll_interval", (0, 0)),
    ("spool_sync_interval", (0, 0)),
    ("spool_max_mb", (0, 0)),
    ("tick_ms", (0, 0)),
    ("topic", (0, 0)),
    ("topic_job_start", (25, 5)),
];

fn flag_mut(params: &mut Params, flag: Flag) -> &mut bool {
    match flag {
        Flag::RequeueOnMsgTimeout => &mut params.requeue_on_msg_timeout,
        Flag::PurgeInFlight => &mut params.purge_in_flight,
        Flag::PurgeNonBlocking => &mut params.purge_non_blocking,
        Flag::RequeuePurgeInFlight => &mut params.requeue_purge_in_flight,
        Flag::EnableJobStart => &mut params.enable_job_start,
        Flag::SendScript => &mut params.send_script,
        Flag::SendComment => &mut params.send_comment,
    }
}

fn supported(release: Release, needs: (u8, u8)) -> bool {
    release.series() >= needs
}

fn needs_text(needs: (u8, u8)) -> String {
    format!("{}.{:02}", needs.0, needs.1)
}

/// Parses JobCompParams (`None` or empty: all defaults).
///
/// Comma-separated tokens; blanks around tokens, keys and values are trimmed,
/// empty tokens are ignored. A token is matched as a whole, its key
/// case-insensitively (`Poll_Interval=5` is fine); a flag name appearing
/// inside another token (a topic named `x_send_script`) means nothing.
///
/// - `flush_timeout=<ms>`: integer >= -1 (-1 waits forever), default 500.
/// - `poll_interval=<s>`: whole seconds >= 1, default 2. 0 is refused (the C
///   plugin turns bad values into 0 and spins a core).
/// - `topic=<name>`, `topic_job_start=<name>`: a valid Kafka topic name
///   ([`topic_name_problem`]).
/// - flags: `requeue_on_msg_timeout`, `purge_in_flight`, `purge_non_blocking`,
///   `requeue_purge_in_flight`, `enable_job_start`, `send_script`,
///   `send_comment`.
///
/// A bad value is an [`Problem::Error`] and the default stays. A flag given a
/// value gets a [`Problem::Warning`]: `yes`/`true`/`on`/`1` turn it on,
/// `no`/`false`/`off`/`0` leave it off (the C plugin, matching substrings,
/// would have turned it on even for `=no`), anything else ignores the token
/// (flag off). Tokens of a newer Slurm series than `release`, unknown tokens,
/// and a value token given twice (the last one wins) are warnings.
pub fn parse_params(text: Option<&str>, release: Release) -> (Params, Vec<Problem>) {
    let mut params = Params::default();
    let mut problems = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let Some(text) = text else {
        return (params, problems);
    };
    for token in text.split(',') {
        let token = token.trim();
        if token.is_empty() {
            continue;
        }
        let (key_raw, value) = match token.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (token, None),
        };
        let key = key_raw.to_ascii_lowercase();

        if let Some(&(name, flag, needs)) = FLAGS.iter().find(|f| f.0 == key) {
            if !supported(release, needs) {
                problems.push(Problem::Warning(format!(
                    "JobCompParams \"{token}\" ignored: needs Slurm {} or newer \
                     (this is {release}).",
                    needs_text(needs)
                )));
                continue;
            }
            let on = match value {
                None => true,
                Some(v) => match v.to_ascii_lowercase().as_str() {
                    "yes" | "true" | "on" | "1" | "y" => {
                        problems.push(Problem::Warning(format!(
                            "JobCompParams \"{token}\": {name} is a flag and takes \
                             no value; understood as {name} (enabled)."
                        )));
                        true
                    }
                    "no" | "false" | "off" | "0" | "n" => {
                        problems.push(Problem::Warning(format!(
                            "JobCompParams \"{token}\": {name} is a flag and takes \
                             no value; understood as disabled (leave the flag out \
                             instead)."
                        )));
                        false
                    }
                    _ => {
                        problems.push(Problem::Warning(format!(
                            "JobCompParams \"{token}\" ignored: {name} is a flag and \
                             takes no value; write just \"{name}\" to enable it."
                        )));
                        continue;
                    }
                },
            };
            *flag_mut(&mut params, flag) = on;
            continue;
        }

        let Some(&(name, needs)) = VALUE_KEYS.iter().find(|v| v.0 == key) else {
            problems.push(Problem::Warning(format!(
                "JobCompParams \"{token}\" ignored: unknown setting."
            )));
            continue;
        };
        if !supported(release, needs) {
            problems.push(Problem::Warning(format!(
                "JobCompParams \"{token}\" ignored: needs Slurm {} or newer \
                 (this is {release}).",
                needs_text(needs)
            )));
            continue;
        }
        if seen.iter().any(|s| s == name) {
            problems.push(Problem::Warning(format!(
                "JobCompParams sets {name} more than once; the last one, \"{token}\", \
                 is used."
            )));
        } else {
            seen.push(name.to_string());
        }
        let value = value.unwrap_or("");
        match name {
            "flush_timeout" => match value.parse::<i32>() {
                Ok(ms) if ms >= -1 => params.flush_timeout_ms = ms,
                _ => {
                    params.flush_timeout_ms = DEFAULT_FLUSH_TIMEOUT_MS;
                    problems.push(Problem::Error(format!(
                        "JobCompParams \"{token}\" is invalid: flush_timeout must be \
                         a whole number of milliseconds, -1 (wait forever) or more; \
                         using the default of {DEFAULT_FLUSH_TIMEOUT_MS} ms."
                    )));
                }
            },
            "poll_interval" => match value.parse::<u32>() {
                Ok(s) if s >= 1 => params.poll_interval = Duration::from_secs(u64::from(s)),
                _ => {
                    params.poll_interval = DEFAULT_POLL_INTERVAL;
                    problems.push(Problem::Error(format!(
                        "JobCompParams \"{token}\" is invalid: poll_interval must be \
                         a whole number of seconds, 1 or more; using the default of \
                         {} s.",
                        DEFAULT_POLL_INTERVAL.as_secs()
                    )));
                }
            },
            "spool_sync_interval" => match value.parse::<u32>() {
                Ok(s) if s >= 1 => params.spool_sync_interval = Duration::from_secs(u64::from(s)),
                _ => {
                    params.spool_sync_interval = DEFAULT_SPOOL_SYNC_INTERVAL;
                    problems.push(Problem::Error(format!(
                        "JobCompParams \"{token}\" is invalid: spool_sync_interval must be \
                         a whole number of seconds, 1 or more; using the default of {} s.",
                        DEFAULT_SPOOL_SYNC_INTERVAL.as_secs()
                    )));
                }
            },
            "spool_max_mb" => match value.parse::<u64>() {
                Ok(mb) if mb >= 1 => params.spool_max_mb = mb,
                _ => {
                    params.spool_max_mb = DEFAULT_SPOOL_MAX_MB;
                    problems.push(Problem::Error(format!(
                        "JobCompParams \"{token}\" is invalid: spool_max_mb must be a whole \
                         number of MiB, 1 or more; using the default of {DEFAULT_SPOOL_MAX_MB}."
                    )));
                }
            },
            "metrics_file" => {
                // Checked for writability at init (MetricsFile::open).
                params.metrics_file = (!value.is_empty()).then(|| std::path::PathBuf::from(value));
                if value.is_empty() {
                    problems.push(Problem::Error(format!(
                        "JobCompParams \"{token}\" is invalid: metrics_file needs the path of \
                         the file to write (e.g. /var/lib/prometheus/node-exporter/jobcomp_kafka.prom); \
                         running without metrics."
                    )));
                }
            }
            "metrics_interval" => match value.parse::<u32>() {
                Ok(s) if s >= 1 => params.metrics_interval = Duration::from_secs(u64::from(s)),
                _ => {
                    params.metrics_interval = DEFAULT_METRICS_INTERVAL;
                    problems.push(Problem::Error(format!(
                        "JobCompParams \"{token}\" is invalid: metrics_interval must be a whole \
                         number of seconds, 1 or more; using the default of {} s.",
                        DEFAULT_METRICS_INTERVAL.as_secs()
                    )));
                }
            },
            "tick_ms" => match value.parse::<u64>() {
                Ok(ms) if TICK_MS_RANGE.contains(&ms) => params.tick = Duration::from_millis(ms),
                _ => {
                    params.tick = DEFAULT_TICK;
                    problems.push(Problem::Error(format!(
                        "JobCompParams \"{token}\" is invalid: tick_ms must be a whole number of \
                         milliseconds from {} to {}; using the default of {} ms.",
                        TICK_MS_RANGE.start(),
                        TICK_MS_RANGE.end(),
                        DEFAULT_TICK.as_millis()
                    )));
                }
            },
            _ => {
                // topic / topic_job_start
                let slot = if name == "topic" {
                    &mut params.topic
                } else {
                    &mut params.topic_job_start
                };
                match topic_name_problem(value) {
                    None => *slot = Some(value.to_string()),
                    Some(why) => {
                        *slot = None;
                        let default = if name == "topic" {
                            "ClusterName"
                        } else {
                            "<ClusterName>-job-start"
                        };
                        problems.push(Problem::Error(format!(
                            "JobCompParams \"{token}\" is invalid: {why}; using the \
                             default topic ({default})."
                        )));
                    }
                }
            }
        }
    }
    (params, problems)
}

/// Why `name` is not a valid Kafka topic name, or `None` when it is: 1 to 249
/// characters of `[a-zA-Z0-9._-]`, not "." or "..".
pub fn topic_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a Kafka topic name cannot be empty")
    } else if name == "." || name == ".." {
        Some("a Kafka topic name cannot be \".\" or \"..\"")
    } else if name.len() > 249 {
        Some("a Kafka topic name is at most 249 characters long")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        Some("a Kafka topic name may only contain ASCII letters, digits, '.', '_' and '-'")
    } else {
        None
    }
}

/// The topics records go to: (finish topic, job-start topic, problems).
///
/// Defaults: ClusterName and "<ClusterName>-job-start". A default built from
/// an unusable ClusterName is an [`Problem::Error`] (the names are still
/// returned). When `enable_job_start` is set and both topics are the same, a
/// [`Problem::Warning`] says so (start and end records would be mixed). The
/// job-start topic is only checked when `enable_job_start` is set.
pub fn resolve_topics(params: &Params, cluster_name: &str) -> (String, String, Vec<Problem>) {
    let mut problems = Vec::new();
    let topic = match &params.topic {
        Some(t) => t.clone(),
        None => {
            let t = cluster_name.to_string();
            if let Some(why) = topic_name_problem(&t) {
                problems.push(Problem::Error(format!(
                    "ClusterName \"{cluster_name}\" cannot be used as the default Kafka \
                     topic: {why}; set topic=<name> in JobCompParams."
                )));
            }
            t
        }
    };
    let start = match &params.topic_job_start {
        Some(t) => t.clone(),
        None => {
            let t = format!("{cluster_name}-job-start");
            if params.enable_job_start {
                if let Some(why) = topic_name_problem(&t) {
                    problems.push(Problem::Error(format!(
                        "\"{t}\" (from ClusterName) cannot be used as the default \
                         job-start topic: {why}; set topic_job_start=<name> in \
                         JobCompParams."
                    )));
                }
            }
            t
        }
    };
    if params.enable_job_start && start == topic {
        problems.push(Problem::Warning(format!(
            "The job-start topic and the job-end topic are both \"{topic}\": start and \
             end records will be mixed in one topic."
        )));
    }
    (topic, start, problems)
}

/// One line with every setting as the plugin uses it, for the start-up and
/// reconfigure log lines: the topics as resolved ([`resolve_topics`]), not
/// their defaults' descriptions; what cannot be turned off shown as `always`
/// (`requeue_on_msg_timeout`, `requeue_purge_in_flight`, and `send_script`
/// before 25.05); `purge_in_flight=yes` also when only `requeue_purge_in_flight`
/// asked for it (fini then purges in-flight requests); tokens of a later series
/// than `release` left out (they are ignored there).
pub fn describe(params: &Params, release: Release, topic: &str, start_topic: &str) -> String {
    let yn = |b: bool| if b { "yes" } else { "no" };
    let flush = if params.flush_timeout_ms == -1 {
        "-1 (wait forever)".to_string()
    } else {
        format!("{} ms", params.flush_timeout_ms)
    };
    let seconds = |d: Duration| {
        if d.subsec_nanos() == 0 {
            format!("{} s", d.as_secs())
        } else {
            format!("{} ms", d.as_millis())
        }
    };
    let mut parts = vec![format!("topic={topic}")];
    if release.at_least(25, 5, 0) {
        parts.push(format!("enable_job_start={}", yn(params.enable_job_start)));
        parts.push(format!("topic_job_start={start_topic}"));
        parts.push(format!("send_script={}", yn(params.send_script)));
    } else {
        parts.push("send_script=always".to_string());
    }
    if release.at_least(26, 5, 0) {
        parts.push(format!("send_comment={}", yn(params.send_comment)));
    }
    parts.extend([
        format!("flush_timeout={flush}"),
        format!("poll_interval={}", seconds(params.poll_interval)),
        "requeue_on_msg_timeout=always".to_string(),
        format!("purge_in_flight={}", yn(params.purge_in_flight || params.requeue_purge_in_flight)),
        format!("purge_non_blocking={}", yn(params.purge_non_blocking)),
        "requeue_purge_in_flight=always".to_string(),
        format!("spool_sync_interval={}", seconds(params.spool_sync_interval)),
        format!("spool_max_mb={}", params.spool_max_mb),
        format!("tick_ms={}", params.tick.as_millis()),
    ]);
    match &params.metrics_file {
        Some(path) => parts.extend([
            format!("metrics_file={}", path.display()),
            format!("metrics_interval={}", seconds(params.metrics_interval)),
        ]),
        None => parts.push("metrics_file=off".to_string()),
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "/etc/slurm/kafka.conf";

    fn r(s: &str) -> Release {
        Release::parse(s).unwrap()
    }

    fn kv(props: &[Property]) -> Vec<(&str, &str)> {
        props
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect()
    }

    #[test]
    fn properties_basic() {
        let text = "# brokers\n\
                    \n\
                    bootstrap.servers = k1:9092,k2:9092 \r\n\
                    \t  # indented comment\n\
                    compression.type=lz4\r\n\
                    sasl.password=ab#cd\n\
                    client.id=slurm  # trailing remark\n\
                    message.timeout.ms=\t300000\t#x\n\
                    linger.ms=";
        let props = parse_properties(text, P).unwrap();
        assert_eq!(
            kv(&props),
            vec![
                ("bootstrap.servers", "k1:9092,k2:9092"),
                ("compression.type", "lz4"),
                ("sasl.password", "ab#cd"),
                ("client.id", "slurm"),
                ("message.timeout.ms", "300000"),
                ("linger.ms", ""),
            ]
        );
        assert_eq!(props[0].line, 3);
        assert_eq!(props[1].line, 5);
        assert_eq!(props[5].line, 9);
    }

    #[test]
    fn properties_value_may_contain_equals_and_bom() {
        let text = "\u{feff}bootstrap.servers=b:9092\nsasl.oauthbearer.config=a=b c=d\n";
        let props = parse_properties(text, P).unwrap();
        assert_eq!(props[1].value, "a=b c=d");
        assert_eq!(props[0].key, "bootstrap.servers");
    }

    #[test]
    fn properties_duplicates_last_wins_in_order() {
        let text = "acks=1\nbootstrap.servers=a\nlinger.ms=5\nacks=all\n";
        let props = parse_properties(text, P).unwrap();
        assert_eq!(
            kv(&props),
            vec![
                ("bootstrap.servers", "a"),
                ("linger.ms", "5"),
                ("acks", "all")
            ]
        );
        assert_eq!(props[2].line, 4);
    }

    #[test]
    fn properties_errors() {
        let e = parse_properties("bootstrap.servers=a\nsecretword\n", P).unwrap_err();
        assert!(
            e.to_string().starts_with("/etc/slurm/kafka.conf:2: "),
            "{e}"
        );
        assert!(!e.to_string().contains("secretword"), "{e}");
        let e = parse_properties("bootstrap.servers=a\r\n  = x\n", P).unwrap_err();
        assert!(
            e.to_string().starts_with("/etc/slurm/kafka.conf:2: "),
            "{e}"
        );
        let e = parse_properties("sasl password=x\nbootstrap.servers=a\n", P).unwrap_err();
        assert!(
            e.to_string().starts_with("/etc/slurm/kafka.conf:1: "),
            "{e}"
        );
        let e = parse_properties("# nothing\nacks=all\n", P).unwrap_err();
        assert!(e.to_string().contains(P) && e.to_string().contains("bootstrap.servers"));
        assert!(parse_properties("", P).is_err());
        assert!(parse_properties("metadata.broker.list=x:1\n", P).is_ok());
        // A commented-out broker line does not count.
        assert!(parse_properties("#bootstrap.servers=a\n", P).is_err());
    }

    #[test]
    fn read_file_errors_name_the_path() {
        let e = read_properties_file("relative/kafka.conf").unwrap_err();
        assert!(e.to_string().contains("relative/kafka.conf"), "{e}");
        assert!(e.to_string().contains("absolute"), "{e}");
        let e = read_properties_file("").unwrap_err();
        assert!(e.to_string().contains("JobCompLoc"), "{e}");

        let dir = std::env::temp_dir().join(format!("jck-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.conf");
        let e = read_properties_file(missing.to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains(missing.to_str().unwrap()), "{e}");
        assert!(e.to_string().contains("No such file"), "{e}");

        let bad = dir.join("bad.conf");
        std::fs::write(&bad, b"bootstrap.servers=a\nclient.id=\xff\xfe\n").unwrap();
        let e = read_properties_file(bad.to_str().unwrap()).unwrap_err();
        assert!(
            e.to_string().contains(&format!("{}:2:", bad.display())),
            "{e}"
        );
        assert!(e.to_string().contains("UTF-8"), "{e}");

        let good = dir.join("good.conf");
        std::fs::write(&good, "bootstrap.servers=a:9092\n").unwrap();
        let props = read_properties_file(good.to_str().unwrap()).unwrap();
        assert_eq!(props.len(), 1);

        let e = read_properties_file(dir.to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains(dir.to_str().unwrap()), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The properties librdkafka 2.12.1 flags `_RK_SENSITIVE` in src/rdkafka_conf.c
    /// (its CONFIGURATION.md lists them without a marker), written out here from
    /// that file, plus the alias sasl.oauthbearer.client.credentials.client.secret.
    const LIBRDKAFKA_2_12_1_SENSITIVE: [&str; 14] = [
        "ssl.key.location",
        "ssl.key.password",
        "ssl.key.pem",
        "ssl_key",
        "ssl.ca.pem",
        "ssl.keystore.password",
        "sasl.username",
        "sasl.password",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.client.credentials.client.secret",
        "sasl.oauthbearer.assertion.private.key.file",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.assertion.private.key.pem",
    ];

    #[test]
    fn secrets_are_redacted() {
        for k in LIBRDKAFKA_2_12_1_SENSITIVE.iter().copied().chain([
            "SASL.PASSWORD",
            "some.future.token",
            "sasl.oauthbearer.extensions",
        ]) {
            assert!(is_secret_property(k), "{k}");
            let p = Property { key: k.into(), value: "hunter2".into(), line: 1 };
            assert_eq!(display_value(&p), "(redacted)", "{k}");
        }
        for k in [
            "bootstrap.servers",
            "ssl.ca.location",
            "ssl.certificate.location",
            "security.protocol",
            "sasl.mechanisms",
            "sasl.oauthbearer.client.id",
            "client.id",
        ] {
            assert!(!is_secret_property(k), "{k}");
        }
        let p = Property { key: "acks".into(), value: "all".into(), line: 1 };
        assert_eq!(display_value(&p), "all");
    }

    /// The librdkafka rdkafka-sys compiled (its copy of the source in the build
    /// directory): every property it flags `_RK_SENSITIVE` is redacted. Catches a
    /// librdkafka upgrade that adds one.
    #[test]
    fn every_sensitive_property_of_the_built_librdkafka_is_redacted() {
        let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
        let build = deps.parent().unwrap().join("build");
        let sources: Vec<_> = std::fs::read_dir(&build)
            .unwrap()
            .filter_map(|e| {
                let dir = e.ok()?.path();
                let name = dir.file_name()?.to_str()?.to_string();
                let conf_c = dir.join("out/src/rdkafka_conf.c");
                (name.starts_with("rdkafka-sys-") && conf_c.is_file()).then_some(conf_c)
            })
            .collect();
        assert!(!sources.is_empty(), "no librdkafka source under {}", build.display());
        for conf_c in sources {
            let text = std::fs::read_to_string(&conf_c).unwrap();
            let table_md = std::fs::read_to_string(conf_c.with_file_name("../CONFIGURATION.md")).unwrap();
            let mut flagged = Vec::new();
            for (at, _) in text.match_indices("_RK_SENSITIVE,") {
                // The property's name is the next string literal of its entry.
                let rest = &text[at..];
                let start = rest.find('"').unwrap() + 1;
                let name = &rest[start..start + rest[start..].find('"').unwrap()];
                flagged.push(name.to_string());
            }
            assert!(flagged.len() >= 13, "{}: only {flagged:?}", conf_c.display());
            for name in &flagged {
                assert!(
                    table_md.lines().any(|l| l.split('|').next().map(str::trim) == Some(name)),
                    "{name} (flagged in {}) is not a property of CONFIGURATION.md",
                    conf_c.display()
                );
                assert!(is_secret_property(name), "{name} is sensitive in librdkafka ({})", conf_c.display());
                assert!(LIBRDKAFKA_2_12_1_SENSITIVE.contains(&name.as_str()), "{name}: new in this librdkafka");
            }
        }
    }

    fn props(pairs: &[(&str, &str)]) -> Vec<Property> {
        pairs.iter().enumerate().map(|(i, (k, v))| Property { key: k.to_string(), value: v.to_string(), line: i + 1 }).collect()
    }

    #[test]
    fn a_file_with_secrets_readable_by_others_is_warned_about() {
        let path = "/etc/slurm/kafka.conf";
        let secret = props(&[("bootstrap.servers", "k:9092"), ("sasl.password", "pw-1234"), ("ssl.key.password", "kp-5678")]);
        assert_eq!(readable_secrets_warning(path, 0o100600, &secret), None);
        assert_eq!(readable_secrets_warning(path, 0o100400, &secret), None);
        assert_eq!(readable_secrets_warning(path, 0o100620, &secret), None, "writable is not readable");
        for (mode, who, shown) in [
            (0o100640, "its group", "0640"),
            (0o100604, "others", "0604"),
            (0o100644, "group and others", "0644"),
        ] {
            let w = readable_secrets_warning(path, mode, &secret).unwrap_or_else(|| panic!("{mode:o}"));
            for needle in [path, who, shown, "chmod 600 /etc/slurm/kafka.conf", "sasl.password", "ssl.key.password"] {
                assert!(w.contains(needle), "{needle:?} not in {w:?}");
            }
            assert!(!w.contains("pw-1234") && !w.contains("kp-5678"), "{w}");
        }
        for holds in [
            "ssl.key.pem",
            "ssl_key",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.client.credentials.client.secret",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.assertion.private.key.passphrase",
            "sasl.oauthbearer.assertion.private.key.pem",
        ] {
            let p = props(&[("bootstrap.servers", "k:9092"), (holds, "x-secret-x")]);
            assert!(readable_secrets_warning(path, 0o644, &p).is_some(), "{holds}");
        }
        // Names and paths that lead to a secret are not one; nor is an empty value.
        let p = props(&[
            ("bootstrap.servers", "k:9092"),
            ("sasl.username", "slurm"),
            ("ssl.key.location", "/etc/slurm/key.pem"),
            ("sasl.oauthbearer.assertion.private.key.file", "/etc/slurm/a.pem"),
            ("sasl.password", ""),
        ]);
        assert_eq!(readable_secrets_warning(path, 0o644, &p), None);
    }

    #[test]
    fn secret_values_are_scrubbed_from_free_text() {
        let secrets = secret_values([
            ("sasl.password", "hunter2-pw"),
            ("sasl.oauthbearer.config", "principal=admin extension_x=tok-99"),
            ("sasl.username", "slurm"),
            ("ssl.key.password", "abc"),
            ("bootstrap.servers", "k:9092"),
        ]);
        assert_eq!(
            secrets,
            ["principal=admin extension_x=tok-99", "extension_x=tok-99", "principal=admin", "hunter2-pw"]
        );
        let line = "config principal=admin extension_x=tok-99; auth failed for hunter2-pw at k:9092 user slurm";
        assert_eq!(
            redact_secret_values(line, &secrets),
            "config (redacted); auth failed for (redacted) at k:9092 user slurm"
        );
        // librdkafka quotes the rest of a config from the word it could not parse.
        let line = "Unrecognized sasl.oauthbearer.config beginning at: extension_x=tok-99";
        assert_eq!(
            redact_secret_values(line, &secrets),
            "Unrecognized sasl.oauthbearer.config beginning at: (redacted)"
        );
    }

    #[test]
    fn params_defaults() {
        let (p, probs) = parse_params(None, r("24.11.5"));
        assert_eq!(p, Params::default());
        assert!(probs.is_empty());
        let (p, probs) = parse_params(Some(" , ,"), r("24.11.5"));
        assert_eq!(p, Params::default());
        assert!(probs.is_empty());
        assert_eq!(p.flush_timeout_ms, 500);
        assert_eq!(p.poll_interval, Duration::from_secs(2));
    }

    #[test]
    fn params_values_and_flags() {
        let text = "flush_timeout=-1, Poll_Interval = 5 ,TOPIC=jobs.done,\
                    requeue_on_msg_timeout,Purge_In_Flight,purge_non_blocking,\
                    requeue_purge_in_flight,enable_job_start,topic_job_start=jobs-start,\
                    send_script,send_comment";
        let (p, probs) = parse_params(Some(text), r("26.05.5"));
        assert!(probs.is_empty(), "{probs:?}");
        assert_eq!(
            p,
            Params {
                flush_timeout_ms: -1,
                poll_interval: Duration::from_secs(5),
                topic: Some("jobs.done".into()),
                requeue_on_msg_timeout: true,
                purge_in_flight: true,
                purge_non_blocking: true,
                requeue_purge_in_flight: true,
                enable_job_start: true,
                topic_job_start: Some("jobs-start".into()),
                send_script: true,
                send_comment: true,
                spool_sync_interval: DEFAULT_SPOOL_SYNC_INTERVAL,
                spool_max_mb: DEFAULT_SPOOL_MAX_MB,
                tick: DEFAULT_TICK,
                ..Params::default()
            }
        );
    }

    #[test]
    fn params_no_substring_matching() {
        let (p, probs) = parse_params(
            Some("topic=x_send_script,requeue_purge_in_flight"),
            r("25.05.0"),
        );
        assert!(probs.is_empty(), "{probs:?}");
        assert!(!p.send_script);
        assert!(p.requeue_purge_in_flight);
        assert!(!p.purge_in_flight);
        assert_eq!(p.topic.as_deref(), Some("x_send_script"));
        let (p, probs) = parse_params(Some("xsend_script,send_scripts"), r("25.05.0"));
        assert!(!p.send_script);
        assert_eq!(probs.len(), 2);
        assert!(probs.iter().all(|p| !p.is_error()));
        assert!(probs[0].text().contains("xsend_script"));
        assert!(probs[0].text().contains("unknown"));
    }

    #[test]
    fn params_bad_values() {
        for bad in ["0", "-3", "abc", "", "1.5", "99999999999"] {
            let (p, probs) = parse_params(Some(&format!("poll_interval={bad}")), r("24.11.5"));
            assert_eq!(p.poll_interval, Duration::from_secs(2));
            assert_eq!(probs.len(), 1, "{bad}");
            assert!(probs[0].is_error());
            assert!(probs[0].text().contains(&format!("poll_interval={bad}")));
            assert!(probs[0].text().contains("default"));
        }
        let (p, _) = parse_params(Some("poll_interval"), r("24.11.5"));
        assert_eq!(p.poll_interval, Duration::from_secs(2));
        for bad in ["-2", "x", "", "3000000000"] {
            let (p, probs) = parse_params(Some(&format!("flush_timeout={bad}")), r("24.11.5"));
            assert_eq!(p.flush_timeout_ms, 500);
            assert!(probs[0].is_error() && probs[0].text().contains("flush_timeout"));
        }
        let (p, _) = parse_params(Some("flush_timeout=0"), r("24.11.5"));
        assert_eq!(p.flush_timeout_ms, 0);
        for bad in ["", ".", "..", "a b", "jobs/x", "ü", &"x".repeat(250)] {
            let (p, probs) = parse_params(Some(&format!("topic={bad}")), r("24.11.5"));
            assert_eq!(p.topic, None, "{bad}");
            assert!(probs[0].is_error(), "{bad}");
        }
        let (p, _) = parse_params(Some(&format!("topic={}", "x".repeat(249))), r("24.11.5"));
        assert_eq!(p.topic.unwrap().len(), 249);
        // A bad later value resets to the default, with a duplicate warning.
        let (p, probs) = parse_params(Some("topic=a,topic=b c"), r("24.11.5"));
        assert_eq!(p.topic, None);
        assert_eq!(probs.len(), 2);
        let (p, probs) = parse_params(Some("topic=a,topic=b"), r("24.11.5"));
        assert_eq!(p.topic.as_deref(), Some("b"));
        assert!(matches!(&probs[..], [Problem::Warning(_)]));
    }

    #[test]
    fn params_flag_with_value() {
        let (p, probs) = parse_params(
            Some("send_script=yes,requeue_on_msg_timeout=1"),
            r("25.05.1"),
        );
        assert!(p.send_script && p.requeue_on_msg_timeout);
        assert_eq!(probs.len(), 2);
        assert!(probs.iter().all(|p| !p.is_error()));
        assert!(probs[0].text().contains("send_script=yes"));
        let (p, probs) = parse_params(Some("send_script=no"), r("25.05.1"));
        assert!(!p.send_script);
        assert_eq!(probs.len(), 1);
        let (p, probs) = parse_params(Some("purge_in_flight=maybe"), r("25.05.1"));
        assert!(!p.purge_in_flight);
        assert!(probs[0].text().contains("purge_in_flight=maybe"));
    }

    #[test]
    fn params_version_gating() {
        let text = "enable_job_start,topic_job_start=s,send_script,send_comment";
        let (p, probs) = parse_params(Some(text), r("24.11.5"));
        assert_eq!(p, Params::default());
        assert_eq!(probs.len(), 4);
        assert!(probs[..3]
            .iter()
            .all(|p| p.text().contains("needs Slurm 25.05 or newer")));
        assert!(probs[3].text().contains("needs Slurm 26.05 or newer"));
        assert!(probs.iter().all(|p| !p.is_error()));

        let (p, probs) = parse_params(Some(text), r("25.11.2"));
        assert!(p.enable_job_start && p.send_script && !p.send_comment);
        assert_eq!(p.topic_job_start.as_deref(), Some("s"));
        assert_eq!(probs.len(), 1);
        assert!(probs[0].text().contains("send_comment"));
    }

    #[test]
    fn topics_resolve() {
        let p = Params::default();
        let (t, s, probs) = resolve_topics(&p, "cluster1");
        assert_eq!((t.as_str(), s.as_str()), ("cluster1", "cluster1-job-start"));
        assert!(probs.is_empty());

        let p = Params {
            enable_job_start: true,
            topic: Some("x".into()),
            topic_job_start: Some("x".into()),
            ..Params::default()
        };
        let (_, _, probs) = resolve_topics(&p, "c");
        assert!(matches!(&probs[..], [Problem::Warning(t)] if t.contains("\"x\"")));

        let p = Params {
            topic_job_start: Some("x".into()),
            topic: Some("x".into()),
            ..Params::default()
        };
        assert!(resolve_topics(&p, "c").2.is_empty());

        let p = Params {
            enable_job_start: true,
            ..Params::default()
        };
        let (_, _, probs) = resolve_topics(&p, "");
        assert_eq!(probs.len(), 1);
        assert!(probs[0].is_error());
    }

    #[test]
    fn describe_shows_the_values_in_use() {
        // Defaults on 22.05: the script is always sent, no start-event tokens.
        assert_eq!(
            describe(&Params::default(), r("22.05.8"), "mycluster", "mycluster-job-start"),
            "topic=mycluster, send_script=always, flush_timeout=500 ms, poll_interval=2 s, \
             requeue_on_msg_timeout=always, purge_in_flight=no, purge_non_blocking=no, \
             requeue_purge_in_flight=always, spool_sync_interval=1 s, spool_max_mb=4096, tick_ms=10, metrics_file=off"
        );
        // Defaults on 26.05: the real start topic, send_comment exists.
        assert_eq!(
            describe(&Params::default(), r("26.05.5"), "mycluster", "mycluster-job-start"),
            "topic=mycluster, enable_job_start=no, topic_job_start=mycluster-job-start, send_script=no, \
             send_comment=no, flush_timeout=500 ms, poll_interval=2 s, requeue_on_msg_timeout=always, \
             purge_in_flight=no, purge_non_blocking=no, requeue_purge_in_flight=always, \
             spool_sync_interval=1 s, spool_max_mb=4096, tick_ms=10, metrics_file=off"
        );
        // 25.05: no send_comment (26.05+). Every value changed from its default;
        // requeue_purge_in_flight alone makes fini purge in-flight requests.
        let p = Params {
            flush_timeout_ms: -1,
            poll_interval: Duration::from_millis(1500),
            topic: Some("jobs".into()),
            requeue_on_msg_timeout: false,
            purge_in_flight: false,
            purge_non_blocking: true,
            requeue_purge_in_flight: true,
            enable_job_start: true,
            topic_job_start: Some("starts".into()),
            send_script: true,
            send_comment: true,
            spool_sync_interval: Duration::from_secs(5),
            spool_max_mb: 100,
            tick: Duration::from_millis(40),
            metrics_file: Some("/run/jk.prom".into()),
            metrics_interval: Duration::from_secs(15),
        };
        assert_eq!(
            describe(&p, r("25.05.1"), "jobs", "starts"),
            "topic=jobs, enable_job_start=yes, topic_job_start=starts, send_script=yes, \
             flush_timeout=-1 (wait forever), poll_interval=1500 ms, requeue_on_msg_timeout=always, \
             purge_in_flight=yes, purge_non_blocking=yes, requeue_purge_in_flight=always, \
             spool_sync_interval=5 s, spool_max_mb=100, tick_ms=40, \
             metrics_file=/run/jk.prom, metrics_interval=15 s"
        );
    }

    #[test]
    fn spool_tokens() {
        let r = Release::new(24, 11, 5);
        let (p, problems) = parse_params(Some("spool_sync_interval=5,spool_max_mb=64,tick_ms=2"), r);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(p.spool_sync_interval, Duration::from_secs(5));
        assert_eq!(p.spool_max_mb, 64);
        assert_eq!(p.tick, Duration::from_millis(2));
        for bad in [
            "spool_sync_interval=0",
            "spool_sync_interval=x",
            "spool_max_mb=0",
            "spool_max_mb=-3",
            "tick_ms=0",
            "tick_ms=1001",
            "tick_ms=5ms",
        ] {
            let (p, problems) = parse_params(Some(bad), r);
            assert_eq!(p, Params::default(), "{bad}");
            assert!(matches!(&problems[..], [Problem::Error(text)] if text.contains(bad)), "{bad}: {problems:?}");
        }
    }

    #[test]
    fn metrics_tokens() {
        let r = Release::new(22, 5, 8);
        assert_eq!(Params::default().metrics_file, None, "metrics are off by default");
        let (p, problems) = parse_params(Some("Metrics_File=/var/lib/Node/jk.prom, metrics_interval=15"), r);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(p.metrics_file.as_deref(), Some(std::path::Path::new("/var/lib/Node/jk.prom")));
        assert_eq!(p.metrics_interval, Duration::from_secs(15));
        assert!(describe(&p, r, "c", "c-job-start").contains("metrics_file=/var/lib/Node/jk.prom, metrics_interval=15 s"));
        for bad in ["metrics_file=", "metrics_interval=0", "metrics_interval=fast"] {
            let (p, problems) = parse_params(Some(bad), r);
            assert_eq!(p, Params::default(), "{bad}");
            assert!(matches!(&problems[..], [Problem::Error(text)] if text.contains(bad)), "{bad}: {problems:?}");
        }
    }
    #[test]
    fn principal_hint_names_what_decides_the_principal() {
        let hint = |props: &[(&str, &str)]| principal_hint(props.iter().copied());
        assert_eq!(
            hint(&[("security.protocol", "SASL_SSL"), ("sasl.mechanisms", "SCRAM-SHA-512"), ("sasl.username", "slurm-jobcomp")]),
            "sasl.username=slurm-jobcomp"
        );
        assert!(hint(&[("security.protocol", "sasl_plaintext"), ("sasl.mechanisms", "GSSAPI"),
                       ("sasl.kerberos.principal", "slurm/ctld@EXAMPLE.ORG")])
            .starts_with("sasl.kerberos.principal=slurm/ctld@EXAMPLE.ORG, as the broker's"));
        assert!(hint(&[("security.protocol", "SASL_SSL"), ("sasl.mechanisms", "OAUTHBEARER"), ("sasl.oauthbearer.client.id", "c")])
            .starts_with("sasl.oauthbearer.client.id=c: the subject"));
        assert!(hint(&[("security.protocol", "SSL"), ("ssl.certificate.location", "/k/c.pem")])
            .starts_with("the subject of ssl.certificate.location=/k/c.pem"));
        assert!(hint(&[("security.protocol", "SSL")]).starts_with("User:ANONYMOUS"));
        assert!(hint(&[("sasl.username", "ignored-without-sasl")]).starts_with("User:ANONYMOUS"));
        assert_eq!(hint(&[("security.protocol", "SASL_SSL"), ("sasl.mechanisms", "PLAIN")]), "sasl.username unset");
    }

}
