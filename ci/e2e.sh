#!/usr/bin/env bash
# End-to-end tests: jobcomp_kafka.so in real slurmctld processes (22.05.8 on
# the host, 24.11.5 in the Debian trixie chroot, next to SchedMD's plugin)
# against Apache Kafka 4.x: one node (ci/rig/kafka.sh) for both sessions, each
# test on topics of its own. Called by `make e2e` / `make test`.
#
#   ci/e2e.sh [PYTEST ARGS...]      e.g. ci/e2e.sh -k reconfigure
#
# 1. installs what it needs (Debian packages, the rigs' venv + pytest),
# 2. builds the plugin for both releases and the chroot (once per machine;
#    in parallel with the builds),
# 3. runs tests/e2e as two pytest sessions in parallel, one per release
#    (separate ports and directories, see tests/e2e/conftest.py),
# 4. prints both logs and summaries and a last line "N passed, M failed";
#    exits non-zero on any failure.
# Everything it starts is stopped by PID, also on failure or Ctrl-C.
# Environment: JK_E2E_DEADLINE (s, default 540) for the test phase;
# JK_E2E_KEEP=1 keeps the test directories; JK_E2E_KAFKA_PORT (default 29090,
# the controller the next) and JK_E2E_KAFKA_VERSION (default 4) for the node.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC2034 # read by log() in common.sh
RIG_NAME=e2e
. ci/lib/common.sh
. ci/lib/e2e.sh

CHROOT_RELEASE=24.11.5
DEADLINE=${JK_E2E_DEADLINE:-540}
export JK_E2E_TAG=${JK_E2E_TAG:-$$}
export PYTHONDONTWRITEBYTECODE=1
OUT=/tmp/jk-e2e-$JK_E2E_TAG-out
ROOT=${JK_ROOT:-$RIG_CACHE/chroot-trixie}
export JK_ROOT=$ROOT RIG_CACHE
# The trixie chroot (Slurm 24.11.5), whatever the caller's environment says.
export SUITE=trixie JK_CHROOT_SUITE=trixie
T0=$(now_ms)
KAFKA_PORT=${JK_E2E_KAFKA_PORT:-29090}
KAFKA_VERSION=${JK_E2E_KAFKA_VERSION:-4}
KAFKA_DIR=$OUT/kafka

BG_PIDS=()

# Stop what is still running: our background jobs (pytest takes SIGTERM like
# Ctrl-C and its fixtures stop the clusters and brokers), then any rig left in
# this run's directories.
e2e_trap_cleanup TERM "$ROOT" "/tmp/jk-e2e-$JK_E2E_TAG-*/*/" "$ROOT/rig/jk-e2e-$JK_E2E_TAG-*/" "$KAFKA_DIR"

rm -rf "$OUT"
mkdir -p "$OUT"

# --- 1. prerequisites -----------------------------------------------------------
phase "prerequisites"
ci/install-deps.sh
ci/install-promtool.sh
ci/rig/slurm-host.sh install
e2e_install_pytest
HOST_RELEASE=$(ci/slurm-version.sh)
[[ $HOST_RELEASE == 22.05.* ]] || log "WARNING: the host's Slurm is $HOST_RELEASE (the suite expects 22.05.8)"

# --- 2. builds ----------------------------------------------------------------
# The chroot (debootstrap + apt, network-bound, ~90 s cold) while cargo builds.
phase "Kafka and chroot build (background), plugin builds"
ci/rig/kafka.sh start "$KAFKA_DIR" --port "$KAFKA_PORT" --version "$KAFKA_VERSION" --heap 256m \
	>"$OUT/kafka-start.log" 2>&1 &
KAFKA_PID=$!
ci/rig/slurm-chroot.sh build "$ROOT" >"$OUT/chroot-build.log" 2>&1 &
CHROOT_PID=$!
BG_PIDS+=("$KAFKA_PID" "$CHROOT_PID")
# The Makefile exports SLURM_VERSION to its children: always name the release.
make --no-print-directory build SLURM_VERSION="$HOST_RELEASE"
make --no-print-directory build SLURM_VERSION="$CHROOT_RELEASE"
if ! wait "$CHROOT_PID"; then
	cat "$OUT/chroot-build.log" >&2
	die "chroot build failed"
fi
tail -n 3 "$OUT/chroot-build.log" >&2
wait "$KAFKA_PID" || { cat "$OUT/kafka-start.log" >&2; die "Kafka did not start"; }
BG_PIDS=()
grep -h 'up in' "$OUT/kafka-start.log" >&2 || true
phase "builds done, Apache Kafka up on 127.0.0.1:$KAFKA_PORT"

# --- 3. the two sessions ----------------------------------------------------------
run_session() { # RELEASE BROKER_PORT
	local rel=$1 port=$2
	# Own session: a Ctrl-C in the terminal reaches only this script, which
	# passes one SIGTERM on (a second signal would cut pytest's teardown short).
	exec setsid "$RIG_VENV/bin/python" -m pytest tests/e2e -p no:cacheprovider -v -rfEX \
		--release "$rel" --broker-port "$port" --kafka-bootstrap "127.0.0.1:$KAFKA_PORT" --counts-file "$OUT/counts-$rel.json" "${@:3}" \
		>"$OUT/pytest-$rel.log" 2>&1
}
phase "pytest: $HOST_RELEASE (host) and $CHROOT_RELEASE (chroot) in parallel; logs in $OUT"
run_session "$HOST_RELEASE" 29092 "$@" &
P1=$!
run_session "$CHROOT_RELEASE" 29093 "$@" &
P2=$!
BG_PIDS+=("$P1" "$P2")
deadline=$(($(now_ms) + DEADLINE * 1000))
last_beat=$(now_ms)
while pid_alive "$P1" || pid_alive "$P2"; do
	if (($(now_ms) >= deadline)); then
		log "ERROR: tests still running after ${DEADLINE}s: interrupting them"
		for p in "$P1" "$P2"; do pid_alive "$p" && kill -TERM "$p" 2>/dev/null || true; done
		for p in "$P1" "$P2"; do wait_pid_gone "$p" 60 || { kill -KILL "$p" 2>/dev/null; wait_pid_gone "$p" 5 || true; }; done
		break
	fi
	if (($(now_ms) - last_beat >= 30000)); then
		last_beat=$(now_ms)
		phase "running: $(cat "$OUT"/pytest-*.log 2>/dev/null | grep -cE ' (PASSED|FAILED|ERROR|XFAIL|XPASS) ' || true) test(s) done"
	fi
	sleep 0.5
done
RC1=0 RC2=0
wait "$P1" || RC1=$?
wait "$P2" || RC2=$?
BG_PIDS=()

# --- 4. report --------------------------------------------------------------------
for rel in "$HOST_RELEASE" "$CHROOT_RELEASE"; do
	echo
	echo "################ Slurm $rel: pytest log ################"
	cat "$OUT/pytest-$rel.log" || true
done
echo
for rel in "$HOST_RELEASE" "$CHROOT_RELEASE"; do
	e2e_session_result "$rel" "$OUT/counts-$rel.json"
done
((RC1 == 0 && RC2 == 0)) || E2E_OK=0
phase "done"
echo "e2e wall time: $((($(now_ms) - T0) / 1000)) s"
echo "$E2E_PASSED passed, $E2E_FAILED failed"
if ((E2E_OK && E2E_FAILED == 0)); then
	ci/rig/kafka.sh stop "$KAFKA_DIR" >/dev/null 2>&1 || true
	rm -rf "$OUT" # everything is printed above; kept after a failure
	exit 0
fi
exit 1
