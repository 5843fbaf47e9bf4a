#!/usr/bin/env bash
# Issue 23: the plugin against a replicated Apache Kafka cluster, fault by
# fault (tests/e2e_cluster/run.py; docs/kafka-cluster.md).
#
#   ci/e2e-cluster.sh [run.py ARGS...]     e.g. --scenarios 1,3:schedmd --seed 7
#
# 1. installs what it needs (Debian packages incl. Java and Maven, the rigs'
#    venv, Apache Kafka from Maven Central via ci/rig/kafka.sh),
# 2. builds the plugin for 24.11.5 and 26.05.5 while the trixie and forky
#    chroots are built (both cached per machine),
# 3. runs the scenarios: three brokers + three controllers in the network
#    namespaces jk23-k1..3 (10.213.23.11-13, ci/rig/netns.sh), Slurm clusters
#    on ports 21210-21289, everything stopped by PID at the end, also on
#    failure or Ctrl-C,
# 4. prints the table last; exits non-zero when a run of our plugin is not
#    0 lost, 0 duplicated, 0 out of order with full delivery.
# Environment: JK_CLUSTER_SEED (else the time; printed), JK_CLUSTER_MIN_JOBS
# (default 300), JK_CLUSTER_OUT (default /tmp/jk-cluster-<pid>).
set -euo pipefail
cd "$(dirname "$0")/.."
RIG_NAME=e2e-cluster
. ci/lib/common.sh
. ci/lib/e2e.sh

T0=$(now_ms)
export PYTHONDONTWRITEBYTECODE=1
export JK_CLUSTER_OUT=${JK_CLUSTER_OUT:-/tmp/jk-cluster-$$}
PREFIX=jk23
BG_PIDS=()

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	e2e_stop_children TERM "${BG_PIDS[@]}"
	shopt -s nullglob
	local trixie=$RIG_CACHE/chroot-trixie forky=$RIG_CACHE/chroot-forky
	e2e_stop_leftovers "$trixie" "$trixie"/rig/cluster23-*/
	e2e_stop_leftovers "$forky" "$forky"/rig/cluster23-*/
	# Brokers and controllers (kafka.sh stop by PID file), then whatever still
	# runs in the namespaces, and the namespaces themselves.
	local d
	for d in "$JK_CLUSTER_OUT"/kafka/*/; do
		[[ -f $d/kafka.pid ]] && ci/rig/kafka.sh stop "$d" --kill >/dev/null 2>&1 || true
	done
	ci/rig/netns.sh down "$PREFIX" || true
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$JK_CLUSTER_OUT"
phase "prerequisites"
ci/install-deps.sh
ensure_venv
# ip (namespaces); Java 17 and Maven for Apache Kafka (ci/rig/kafka.sh).
apt_install iproute2 openjdk-17-jre-headless maven
ci/rig/kafka.sh install 4 >/dev/null

phase "chroots (background) and plugin builds"
(ci/rig/slurm-chroot.sh build && SUITE=forky ci/rig/slurm-chroot.sh build) >"$JK_CLUSTER_OUT/chroots.log" 2>&1 &
CHROOT_PID=$!
BG_PIDS+=("$CHROOT_PID")
make --no-print-directory build SLURM_VERSION=24.11.5
make --no-print-directory build SLURM_VERSION=26.05.5
if ! wait "$CHROOT_PID"; then
	cat "$JK_CLUSTER_OUT/chroots.log" >&2
	die "chroot build failed"
fi
BG_PIDS=()
phase "builds done"

phase "the counting, on synthetic messages (no broker)"
e2e_install_pytest
"$RIG_VENV/bin/python" -m pytest -q -p no:cacheprovider tests/e2e_cluster/test_counting.py

# A run that died may have left namespaces (and brokers in them) behind.
ci/rig/netns.sh down "$PREFIX"
phase "scenarios (output in $JK_CLUSTER_OUT/run.log)"
# Own session: a Ctrl-C in the terminal reaches only this script, which
# passes one SIGTERM on (run.py then stops what it started).
setsid "$RIG_VENV/bin/python" tests/e2e_cluster/run.py --out "$JK_CLUSTER_OUT" "$@" >"$JK_CLUSTER_OUT/run.log" 2>&1 &
P=$!
BG_PIDS+=("$P")
tail -n +1 -f --pid="$P" "$JK_CLUSTER_OUT/run.log" &
RC=0
wait "$P" || RC=$?
wait
BG_PIDS=()
phase "done"
echo "e2e-cluster wall time: $((($(now_ms) - T0) / 1000)) s"
exit "$RC"
