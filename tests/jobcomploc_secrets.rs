// SPDX-License-Identifier: GPL-2.0-or-later
//! Secrets in the JobCompLoc file, with the plugin loaded in the C host: a file
//! that holds one and that group or others can read gets one warning at init; no
//! log line ever shows a secret's value.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn warnings(log: &[String]) -> Vec<&String> {
    log.iter().filter(|l| l.contains("chmod 600")).collect()
}

#[test]
fn a_readable_file_with_a_secret_is_warned_about_once() {
    let rig = Rig::new("jk_secret_mode", &[("sasl.password", "pw-Secret-77"), ("sasl.username", "slurm")]);
    let loc = rig.loc.to_string_lossy().to_string();
    chmod(&rig.loc, 0o644);
    let mut host = rig.host("");
    host.ok("init");
    host.ok("fini");
    // Fixed: the next init says nothing.
    chmod(&rig.loc, 0o600);
    host.ok("init");
    host.ok("fini");
    let log = host.quit();
    let warned = warnings(&log);
    assert_eq!(warned.len(), 1, "one warning for the mode-0644 init, none for 0600; log:\n{}", log.join("\n"));
    for needle in [loc.as_str(), "0644", "chmod 600", "sasl.password", "warning"] {
        assert!(warned[0].contains(needle), "{needle:?} missing from {:?}", warned[0]);
    }
    assert!(!warned[0].contains("pw-Secret-77"), "{}", warned[0]);

    // A readable file without a secret (a user name is not one) is fine.
    let rig = Rig::new("jk_secret_none", &[("sasl.username", "slurm")]);
    chmod(&rig.loc, 0o644);
    let mut host = rig.host("");
    host.ok("init");
    host.ok("fini");
    let log = host.quit();
    assert!(warnings(&log).is_empty(), "warned without a secret: {log:?}");
}

/// Every property librdkafka 2.12.1 treats as sensitive (`_RK_SENSITIVE` in its
/// src/rdkafka_conf.c; written out here), each given a value no other line has,
/// with DebugFlags=JobComp (which logs every property).
const SENSITIVE: [&str; 14] = [
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
    "ssl.keystore.password",
    "ssl_key",
];

#[test]
fn debug_logging_shows_no_sensitive_value() {
    let values: Vec<String> = (0..SENSITIVE.len()).map(|i| format!("jkSecretValue{i:02}x")).collect();
    let props: Vec<(&str, &str)> = SENSITIVE.iter().copied().zip(values.iter().map(String::as_str)).collect();
    let rig = Rig::new("jk_secret_debug", &props);
    chmod(&rig.loc, 0o600);
    let mut host = rig.host("");
    host.conf(&[("debug", "1")]);
    // librdkafka refuses some of these values (ssl_key is set only through its
    // API, a PEM must be one): init may fail, after logging the properties.
    let init = host.cmd("init");
    let log = host.quit();
    println!("init rc={}", init.rc);
    for key in SENSITIVE {
        assert!(
            log.iter().any(|l| l.contains(&format!("librdkafka property {key}=(redacted)"))),
            "no redacted line for {key}; log:\n{}",
            log.join("\n")
        );
    }
    let leaked: Vec<&String> = log.iter().filter(|l| values.iter().any(|v| l.contains(v.as_str()))).collect();
    assert!(leaked.is_empty(), "secret values in the log: {leaked:?}");
}

/// librdkafka's own lines may quote a value: with the unsecured-JWT handler, a
/// sasl.oauthbearer.config it cannot parse is quoted in its error
/// ("Unrecognized sasl.oauthbearer.config beginning at: ..."). The plugin scrubs
/// the configuration's secrets from every librdkafka line it logs.
#[test]
fn librdkafka_errors_do_not_quote_a_secret() {
    let secret = "jkOauthConfigSecret42";
    let rig = Rig::new(
        "jk_secret_quote",
        &[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanisms", "OAUTHBEARER"),
            ("enable.sasl.oauthbearer.unsecure.jwt", "true"),
            ("sasl.oauthbearer.config", &format!("principal=slurm {secret}")),
        ],
    );
    chmod(&rig.loc, 0o600);
    let mut host = rig.host("");
    let init = host.cmd("init");
    // The token refresh runs in librdkafka's background; wait for its complaint.
    let complained = host.wait_log(&["sasl.oauthbearer.config"], 1, std::time::Duration::from_secs(20));
    if init.rc == 0 {
        host.ok("fini");
    }
    let log = host.quit();
    assert!(complained, "librdkafka never complained about the config; log:\n{}", log.join("\n"));
    let leaked: Vec<&String> = log.iter().filter(|l| l.contains(secret)).collect();
    assert!(leaked.is_empty(), "the secret in the log: {leaked:?}");
    assert!(log.iter().any(|l| l.contains("(redacted)")), "log:\n{}", log.join("\n"));
}
