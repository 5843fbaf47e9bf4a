// SPDX-License-Identifier: GPL-2.0-or-later
//! The librdkafka inside the built plugin has every feature of Debian trixie's
//! librdkafka (the one SchedMD's jobcomp/kafka runs on), so that a site's JobCompLoc
//! keeps working when it switches plugins.
//!
//! Probed through the .so as slurmctld loads it (the C host): librdkafka refuses
//! `builtin.features=<list>` when any listed feature is missing from its build, so
//! init succeeds only if all of them are in.

mod common;

use common::*;

/// `builtin.features` of Debian trixie's librdkafka1 2.8.0 (see
/// /work/shared/kafka/librdkafka-features.md), written out here, not taken from the
/// build under test.
const DEBIAN_TRIXIE_FEATURES: [&str; 14] = [
    "gzip",
    "snappy",
    "ssl",
    "sasl",
    "regex",
    "lz4",
    "sasl_gssapi",
    "sasl_plain",
    "sasl_scram",
    "plugins",
    "zstd",
    "sasl_oauthbearer",
    "http",
    "oidc",
];

/// init with `builtin.features=<features>` in the JobCompLoc file: the reply's rc
/// and the plugin's log.
fn init_requiring(cluster: &str, features: &str) -> (i32, String) {
    let rig = Rig::new(cluster, &[("builtin.features", features)]);
    let mut host = rig.host("");
    let rc = host.cmd("init").rc;
    if rc == 0 {
        host.ok("fini");
    }
    let log = host.quit().join("\n");
    (rc, log)
}

#[test]
fn has_every_feature_of_debians_librdkafka() {
    let (rc, log) = init_requiring("jk_features", &DEBIAN_TRIXIE_FEATURES.join(","));
    assert_eq!(
        rc, 0,
        "the plugin's librdkafka lacks a builtin.feature of Debian's librdkafka \
         (librdkafka names it in the log); log:\n{log}"
    );
    assert!(!log.contains("builtin.features"), "builtin.features was complained about; log:\n{log}");
    assert!(!log.contains("Kafka is not set up"), "log:\n{log}");
}

/// The probe is real: a feature no librdkafka has is refused, named in one
/// error line (init itself succeeds: records wait in the spool until JobCompLoc
/// is fixed, tests/startup_without_kafka.rs).
#[test]
fn an_unknown_feature_is_refused_and_named() {
    let (_, log) = init_requiring("jk_features_bogus", "gzip,jk_no_such_feature");
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("error:") && l.contains("builtin.features") && l.contains("jk_no_such_feature"))
        .collect();
    assert_eq!(refusals.len(), 1, "one error line names the refused feature; log:\n{log}");
    assert!(refusals[0].contains("Kafka is not set up"), "{}", refusals[0]);
}
