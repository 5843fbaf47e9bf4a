#!/usr/bin/env bash
# End-to-end tests on Slurm 26.05.5 (Debian forky, in a chroot): our
# jobcomp_kafka.so with start events on and off, and side by side with
# SchedMD's own 26.05.5 plugin (finish and start records), against Apache
# Kafka 4.x (ci/rig/kafka.sh). See tests/e2e26/conftest.py.
#
#   ci/e2e26.sh [PYTEST ARGS...]      e.g. ci/e2e26.sh -k differential
#
# 1. installs what it needs (Debian packages, the rigs' venv + pytest),
# 2. builds the plugin for 26.05.5 (make build SLURM_VERSION=26.05.5) while the
#    forky chroot is built (once per machine, ~30 s cold),
# 3. runs tests/e2e26 (broker 127.0.0.1:61092, clusters on 47817/47818),
# 4. prints the pytest log and, last, "N passed, M failed"; exits non-zero on
#    any failure.
# Everything it starts is stopped by PID, also on failure or Ctrl-C.
# Environment: JK_E2E_DEADLINE (s, default 420) for the test phase;
# JK_E2E_KEEP=1 keeps the test directories.
set -euo pipefail
cd "$(dirname "$0")/.."
RIG_NAME=e2e26
. ci/lib/common.sh
. ci/lib/e2e.sh

RELEASE=26.05.5
DEADLINE=${JK_E2E_DEADLINE:-420}
export JK_E2E_TAG=${JK_E2E_TAG:-$$}
export PYTHONDONTWRITEBYTECODE=1
OUT=/tmp/jk-26-e2e-$JK_E2E_TAG-out
ROOT=${JK_FORKY_ROOT:-$RIG_CACHE/chroot-forky}
export JK_FORKY_ROOT=$ROOT RIG_CACHE
export SUITE=forky JK_CHROOT_SUITE=forky
T0=$(now_ms)
# One Apache Kafka node for the session (ci/rig/kafka.sh), started while the
# plugin builds. JK_E2E26_KAFKA_PORT (default 61090, the controller the next).
KAFKA_PORT=${JK_E2E26_KAFKA_PORT:-61090}
KAFKA_DIR=$OUT/kafka
BG_PIDS=()

# Stop what is still running: pytest (SIGINT first, so that its fixtures stop
# the clusters and the broker), then any rig left in this run's directories.
e2e_trap_cleanup INT "$ROOT" "$ROOT/rig/jk-26-e2e-$JK_E2E_TAG-*/" "/tmp/jk-26-e2e-$JK_E2E_TAG/kafka*" "$KAFKA_DIR"

rm -rf "$OUT"
mkdir -p "$OUT"

# --- 1. prerequisites -----------------------------------------------------------
phase "prerequisites"
ci/install-deps.sh
e2e_install_pytest

# --- 2. builds ----------------------------------------------------------------
phase "Kafka and forky chroot (background), plugin build"
ci/rig/kafka.sh start "$KAFKA_DIR" --port "$KAFKA_PORT" --version 4 --heap 256m >"$OUT/kafka-start.log" 2>&1 &
KAFKA_PID=$!
ci/rig/slurm-chroot.sh build "$ROOT" >"$OUT/chroot-build.log" 2>&1 &
CHROOT_PID=$!
BG_PIDS+=("$KAFKA_PID" "$CHROOT_PID")
make --no-print-directory build SLURM_VERSION="$RELEASE"
if ! wait "$CHROOT_PID"; then
	cat "$OUT/chroot-build.log" >&2
	die "forky chroot build failed"
fi
wait "$KAFKA_PID" || { cat "$OUT/kafka-start.log" >&2; die "Kafka did not start"; }
BG_PIDS=()
grep -h 'up in' "$OUT/kafka-start.log" >&2 || true
tail -n 2 "$OUT/chroot-build.log" >&2
have=$(ci/rig/slurm-chroot.sh version "$ROOT")
[[ ${have%-*} == "$RELEASE" ]] || die "the forky chroot has Slurm $have, not $RELEASE"
phase "builds done"

# --- 3. tests -------------------------------------------------------------------
phase "pytest tests/e2e26; log in $OUT/pytest.log"
# Own session: a Ctrl-C in the terminal reaches only this script, which passes
# one SIGINT on.
setsid "$RIG_VENV/bin/python" -m pytest tests/e2e26 -p no:cacheprovider -v -rfEX \
	--kafka-bootstrap "127.0.0.1:$KAFKA_PORT" --counts-file "$OUT/counts.json" "$@" >"$OUT/pytest.log" 2>&1 &
P=$!
BG_PIDS+=("$P")
deadline=$(($(now_ms) + DEADLINE * 1000))
last_beat=$(now_ms)
while pid_alive "$P"; do
	if (($(now_ms) >= deadline)); then
		log "ERROR: tests still running after ${DEADLINE}s: interrupting them"
		kill -INT "$P" 2>/dev/null || true
		wait_pid_gone "$P" 60 || stop_pid "$P" 5 pytest
		break
	fi
	if (($(now_ms) - last_beat >= 30000)); then
		last_beat=$(now_ms)
		phase "running: $(grep -cE ' (PASSED|FAILED|ERROR|XFAIL|XPASS) ' "$OUT/pytest.log" || true) test(s) done"
	fi
	sleep 0.5
done
RC=0
wait "$P" || RC=$?
BG_PIDS=()

# --- 4. report --------------------------------------------------------------------
echo
echo "################ Slurm $RELEASE: pytest log ################"
cat "$OUT/pytest.log" || true
echo
e2e_session_result "$RELEASE" "$OUT/counts.json"
((RC == 0)) || E2E_OK=0
phase "done"
echo "e2e26 wall time: $((($(now_ms) - T0) / 1000)) s"
echo "$E2E_PASSED passed, $E2E_FAILED failed"
ci/rig/kafka.sh stop "$KAFKA_DIR" >/dev/null 2>&1 || true
if ((E2E_OK && E2E_FAILED == 0)); then rm -rf "$KAFKA_DIR"; fi # the node's data; kept after a failure
((E2E_OK && E2E_FAILED == 0))
