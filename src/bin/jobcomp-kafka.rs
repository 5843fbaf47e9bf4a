// SPDX-License-Identifier: GPL-2.0-or-later
//! `jobcomp-kafka`: inspect and resend what the jobcomp/kafka plugin keeps in
//! slurmctld's StateSaveLocation. The logic is in `jobcomp_kafka::ops`.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = jobcomp_kafka::ops::cli::run(&args);
    let _ = std::io::stdout().write_all(outcome.stdout.as_bytes());
    let _ = std::io::stderr().write_all(outcome.stderr.as_bytes());
    std::process::exit(outcome.code);
}
