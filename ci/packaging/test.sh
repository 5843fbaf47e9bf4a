#!/usr/bin/env bash
# make test-packages: every package test, on a fresh machine too (installs the
# Debian tools, builds the rig's chroots when missing). Builds are kept in
# /var/tmp/jobcomp-kafka/packages (CARGO_TARGET_DIR per kind of build), so a
# second run rebuilds this crate only.
set -euo pipefail
RIG_NAME=test-packages
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib/e2e.sh"
t0=$(now_ms)
"$here/install-tools.sh"
# jsonschema in the rigs' venv: expect_records checks the record contract.
e2e_install_pytest
"$here/test-dist.sh"
"$here/test-rpm.sh"
"$here/test-deb.sh" trixie
"$here/test-deb.sh" forky
log "PASS: all package tests in $(($(now_ms) - t0)) ms"
