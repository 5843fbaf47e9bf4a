# shellcheck shell=bash
# What ci/e2e.sh and ci/e2e26.sh share: the pytest in the rigs' venv, progress
# lines, stopping what a run left behind, the outcome counts of a session.
# Sourced after common.sh; the caller sets T0 (now_ms) first.

E2E_PYTEST_VERSION=8.4.2
# The record schemas (schema/) are checked with jsonschema (tests/e2e/jk.py
# validates every record the suites consume).
E2E_JSONSCHEMA_VERSION=4.26.0

phase() { log "[$(((($(now_ms) - T0) + 500) / 1000))s] $*"; }

# The rigs' venv with the pinned pytest and jsonschema (under the venv lock:
# ci/e2e.sh, ci/e2e26.sh and ci/consumers.sh may run at the same time).
e2e_install_pytest() {
	ensure_venv
	with_lock "$RIG_CACHE/venv.lock" _e2e_install_pytest
}
_e2e_install_pytest() {
	venv_pip_pin pytest "$E2E_PYTEST_VERSION"
	venv_pip_pin jsonschema "$E2E_JSONSCHEMA_VERSION"
}

# venv_pip_pin DIST VERSION [PIP SPEC]: pip install SPEC (default
# DIST==VERSION) into the rigs' venv unless DIST is at VERSION there. The
# caller holds the venv lock.
venv_pip_pin() {
	local dist=$1 version=$2 spec=${3:-$1==$2}
	if [[ $("$RIG_VENV/bin/python" -c 'import sys; from importlib.metadata import version; print(version(sys.argv[1]))' "$dist" 2>/dev/null) != "$version" ]]; then
		log "pip install $spec into $RIG_VENV"
		"$RIG_VENV/bin/python" -m pip install -q --disable-pip-version-check "$spec" >&2
	fi
}

# e2e_stop_children SIGNAL PID...: SIGNAL to each (pytest takes it like
# Ctrl-C and its fixtures stop the clusters and brokers), then up to 60 s for
# each to go, then SIGKILL.
e2e_stop_children() {
	local sig=$1 pid
	shift
	for pid in "$@"; do
		pid_alive "$pid" && kill "-$sig" "$pid" 2>/dev/null || true
	done
	for pid in "$@"; do
		if ! wait_pid_gone "$pid" 60; then
			log "pid $pid still running 60 s after SIG$sig"
			stop_pid "$pid" 5 "$RIG_NAME child"
		fi
	done
}

# e2e_trap_cleanup SIGNAL CHROOT_ROOT PATTERN...: on exit (INT and TERM exit
# 130 and 143), e2e_stop_children SIGNAL on the script's BG_PIDS, then
# e2e_stop_leftovers CHROOT_ROOT on the directories the glob PATTERNs match
# by then; the script's exit status is kept.
e2e_trap_cleanup() {
	E2E_CLEANUP_SIGNAL=$1 E2E_CLEANUP_ROOT=$2
	shift 2
	E2E_CLEANUP_PATTERNS=("$@")
	trap _e2e_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

_e2e_cleanup() {
	local rc=$? pattern
	local -a dirs=()
	trap - EXIT INT TERM
	e2e_stop_children "$E2E_CLEANUP_SIGNAL" "${BG_PIDS[@]}"
	shopt -s nullglob
	for pattern in "${E2E_CLEANUP_PATTERNS[@]}"; do
		# shellcheck disable=SC2206 # expanded here, when the directories exist
		dirs+=($pattern)
	done
	e2e_stop_leftovers "$E2E_CLEANUP_ROOT" "${dirs[@]}"
	exit "$rc"
}

# e2e_stop_leftovers CHROOT_ROOT DIR...: stop any cluster or broker still
# running from one of these test directories (a cluster under CHROOT_ROOT
# runs in the chroot, any other on the host), then unmount the chroot's bind
# mounts (refused while another rig runs there).
e2e_stop_leftovers() {
	local root=$1 d
	shift
	for d in "$@"; do
		d=${d%/}
		if [[ -f $d/rig.env ]] && { pidfile_alive "$d/slurmctld.pid" || pidfile_alive "$d/slurmd.pid"; }; then
			log "stopping leftover cluster $d"
			if [[ $d == "$root"/* ]]; then ci/rig/slurm-chroot.sh stop "$d" || true; else ci/rig/slurm-host.sh stop "$d" || true; fi
		fi
		if pidfile_alive "$d/tansu.pid"; then
			log "stopping leftover broker $d"
			ci/rig/tansu.sh stop "$d" || true
		fi
		if pidfile_alive "$d/kafka.pid"; then
			log "stopping leftover Kafka node $d"
			ci/rig/kafka.sh stop "$d" || true
		fi
	done
	if [[ -d $root ]]; then ci/rig/slurm-chroot.sh unmount "$root" >/dev/null 2>&1 || true; fi
}

# e2e_session_result RELEASE COUNTS_FILE: print the line "e2e RELEASE: N
# passed, ..." and add to the totals E2E_PASSED and E2E_FAILED (failed,
# errors and xpassed); E2E_OK=0 when pytest did not exit 0, ran no test or
# did not finish.
# shellcheck disable=SC2034 # E2E_OK is read by the callers
E2E_PASSED=0 E2E_FAILED=0 E2E_OK=1
e2e_session_result() {
	local rel=$1 f=$2 p fl er xp xf sk st
	if [[ -s $f ]]; then
		read -r p fl er xp xf sk st < <("$RIG_VENV/bin/python" -c '
import json, sys
c = json.load(open(sys.argv[1]))
print(c["passed"], c["failed"], c["error"], c["xpassed"], c["xfailed"], c["skipped"], c["exitstatus"])' "$f")
		echo "e2e $rel: $p passed, $fl failed, $er errors, $xf xfailed, $xp xpassed, $sk skipped (pytest exit $st)"
		E2E_PASSED=$((E2E_PASSED + p))
		E2E_FAILED=$((E2E_FAILED + fl + er + xp))
		((st == 0)) || E2E_OK=0
		((p + fl + er + xp + xf > 0)) || { echo "e2e $rel: ran no test"; E2E_OK=0; }
	else
		echo "e2e $rel: no result (pytest did not finish)"
		E2E_FAILED=$((E2E_FAILED + 1))
		E2E_OK=0
	fi
}
