#!/usr/bin/env bash
# End-to-end tests on Slurm 26.05.5 (Debian forky, in a chroot): our
# jobcomp_kafka.so with start events on and off, and side by side with
# SchedMD's own 26.05.5 plugin (finish and start records), against a real
# Kafka-protocol broker (tansu). See tests/e2e26/conftest.py.
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

PYTEST_VERSION=8.4.2
RELEASE=26.05.5
DEADLINE=${JK_E2E_DEADLINE:-420}
export JK_E2E_TAG=${JK_E2E_TAG:-$$}
export PYTHONDONTWRITEBYTECODE=1
OUT=/tmp/jk-26-e2e-$JK_E2E_TAG-out
ROOT=${JK_FORKY_ROOT:-$RIG_CACHE/chroot-forky}
export JK_FORKY_ROOT=$ROOT RIG_CACHE
export SUITE=forky JK_CHROOT_SUITE=forky
T0=$(now_ms)
BG_PIDS=()

phase() { log "[$(((($(now_ms) - T0) + 500) / 1000))s] $*"; }

# Stop what is still running: pytest (SIGINT first, so that its fixtures stop
# the clusters and the broker), then any rig left in this run's directories.
cleanup() {
	local rc=$? pid d
	trap - EXIT INT TERM
	for pid in "${BG_PIDS[@]}"; do
		pid_alive "$pid" && kill -INT "$pid" 2>/dev/null || true
	done
	for pid in "${BG_PIDS[@]}"; do
		if ! wait_pid_gone "$pid" 60; then
			log "pid $pid still running 60 s after SIGINT"
			stop_pid "$pid" 5 "e2e26 child"
		fi
	done
	shopt -s nullglob
	for d in "$ROOT"/rig/jk-26-e2e-"$JK_E2E_TAG"-*/; do
		d=${d%/}
		if [[ -f $d/rig.env ]] && { pidfile_alive "$d/slurmctld.pid" || pidfile_alive "$d/slurmd.pid"; }; then
			log "stopping leftover cluster $d"
			ci/rig/slurm-chroot.sh stop "$d" || true
		fi
	done
	d=/tmp/jk-26-e2e-$JK_E2E_TAG/kafka
	if pidfile_alive "$d/tansu.pid"; then
		log "stopping leftover broker $d"
		ci/rig/tansu.sh stop "$d" || true
	fi
	# The chroot's bind mounts (refused while another rig runs there).
	if [[ -d $ROOT ]]; then ci/rig/slurm-chroot.sh unmount "$ROOT" >/dev/null 2>&1 || true; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rm -rf "$OUT"
mkdir -p "$OUT"

# --- 1. prerequisites -----------------------------------------------------------
phase "prerequisites"
ci/install-deps.sh
ensure_venv
install_pytest() {
	if [[ $("$RIG_VENV/bin/python" -c 'import pytest; print(pytest.__version__)' 2>/dev/null) != "$PYTEST_VERSION" ]]; then
		log "pip install pytest==$PYTEST_VERSION into $RIG_VENV"
		"$RIG_VENV/bin/python" -m pip install -q --disable-pip-version-check "pytest==$PYTEST_VERSION" >&2
	fi
}
with_lock "$RIG_CACHE/venv.lock" install_pytest

# --- 2. builds ----------------------------------------------------------------
phase "forky chroot (background) and plugin build"
ci/rig/slurm-chroot.sh build "$ROOT" >"$OUT/chroot-build.log" 2>&1 &
CHROOT_PID=$!
BG_PIDS+=("$CHROOT_PID")
make --no-print-directory build SLURM_VERSION="$RELEASE"
if ! wait "$CHROOT_PID"; then
	cat "$OUT/chroot-build.log" >&2
	die "forky chroot build failed"
fi
BG_PIDS=()
tail -n 2 "$OUT/chroot-build.log" >&2
have=$(ci/rig/slurm-chroot.sh version "$ROOT")
[[ ${have%-*} == "$RELEASE" ]] || die "the forky chroot has Slurm $have, not $RELEASE"
phase "builds done"

# --- 3. tests -------------------------------------------------------------------
phase "pytest tests/e2e26; log in $OUT/pytest.log"
# Own session: a Ctrl-C in the terminal reaches only this script, which passes
# one SIGINT on.
setsid "$RIG_VENV/bin/python" -m pytest tests/e2e26 -p no:cacheprovider -v -rfEX \
	--counts-file "$OUT/counts.json" "$@" >"$OUT/pytest.log" 2>&1 &
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
passed=0 failed=0 ok=1
if [[ -s $OUT/counts.json ]]; then
	read -r p fl er xp xf sk st < <("$RIG_VENV/bin/python" -c '
import json, sys
c = json.load(open(sys.argv[1]))
print(c["passed"], c["failed"], c["error"], c["xpassed"], c["xfailed"], c["skipped"], c["exitstatus"])' "$OUT/counts.json")
	echo "e2e $RELEASE: $p passed, $fl failed, $er errors, $xf xfailed, $xp xpassed, $sk skipped (pytest exit $st)"
	passed=$p
	failed=$((fl + er + xp))
	((st == 0)) || ok=0
	((p + fl + er + xp + xf > 0)) || { echo "e2e $RELEASE: ran no test"; ok=0; }
else
	echo "e2e $RELEASE: no result (pytest did not finish)"
	failed=1
	ok=0
fi
((RC == 0)) || ok=0
phase "done"
echo "e2e26 wall time: $((($(now_ms) - T0) / 1000)) s"
echo "$passed passed, $failed failed"
((ok && failed == 0))
