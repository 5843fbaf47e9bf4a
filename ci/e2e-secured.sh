#!/usr/bin/env bash
# Secured Kafka end to end (tests/e2e_secured): TLS, mutual TLS, bad
# certificates, SCRAM, Kerberos, OIDC and ACLs, with our plugin in a real
# slurmctld 22.05.8 (host) and real peers: Apache Kafka 4.x itself
# (ci/rig/kafka.sh, one node for the session, a listener per case), MIT's
# KDC, npm's oidc-provider. The JobCompLoc files are docs/securing-kafka.md's
# examples; the broker's settings and the ACLs are the blocks of
# docs/apache-kafka-security.md. Called by `make e2e-secured`.
#
#   ci/e2e-secured.sh [PYTEST ARGS...]      e.g. ci/e2e-secured.sh -k tls
#
# Ports: 127.0.0.1:21100-21199 only (tests/e2e_secured/secured.py), so it may
# run next to ci/e2e.sh and ci/e2e26.sh. Prints a last line "N passed, M failed".
# Environment: JK_E2E_KEEP=1 keeps the test directories (/tmp/jk-sec-<tag>).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC2034 # read by log() in common.sh
RIG_NAME=e2e-secured
. ci/lib/common.sh
. ci/lib/e2e.sh
T0=$(now_ms)
export JK_E2E_TAG=${JK_E2E_TAG:-sec$$}
export PYTHONDONTWRITEBYTECODE=1
OUT=/tmp/jk-sec-$JK_E2E_TAG-out
rm -rf "$OUT"
mkdir -p "$OUT"

phase "prerequisites"
ci/install-deps.sh
ci/rig/slurm-host.sh install
deb_installed openssl || apt_install openssl
ci/rig/kafka.sh install 4 >/dev/null
ci/rig/kdc.sh install
ci/rig/oidc.sh install
e2e_install_pytest
HOST_RELEASE=$(ci/slurm-version.sh)

phase "plugin build"
make --no-print-directory build SLURM_VERSION="$HOST_RELEASE"

phase "pytest tests/e2e_secured (Slurm $HOST_RELEASE)"
rc=0
setsid "$RIG_VENV/bin/python" -m pytest tests/e2e_secured -p no:cacheprovider -v -rfEX \
	--counts-file "$OUT/counts.json" "$@" || rc=$?
e2e_session_result "$HOST_RELEASE secured" "$OUT/counts.json"
((rc == 0)) || E2E_OK=0
echo "e2e-secured wall time: $((($(now_ms) - T0) / 1000)) s"
echo "$E2E_PASSED passed, $E2E_FAILED failed"
rm -rf "$OUT"
((E2E_OK && E2E_FAILED == 0))
