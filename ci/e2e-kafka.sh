#!/usr/bin/env bash
# What only Apache Kafka itself can show (issue 22), in real slurmctld
# processes; `make e2e-kafka`. Two Kafka nodes, 4.x and 3.9.x, both with
# auto.create.topics.enable=false, and three pytest sessions in parallel:
#  - the broker's rules (tests/e2e/test_kafka_rules.py), each test on both
#    nodes, 4.x first: a topic that does not exist and a record larger than
#    the limits, with our plugin in slurmctld 22.05.8 (host) and with
#    SchedMD's in 24.11.5 (trixie chroot), one session each;
#  - the job mix (tests/e2e/test_job_mix.py, 22.05.8) into the 3.9.x node,
#    its topic created first (the suites' own runs use 4.x: ci/e2e.sh,
#    ci/e2e26.sh).
# Meanwhile, while the plugin builds: the rig's second run needs no network
# (ci/rig/kafka-selftest.sh --offline: both lines installed from the warm
# cache and started in a network namespace with loopback only).
#
#   ci/e2e-kafka.sh [PYTEST ARGS...]     (given to the two rules sessions)
#
# Ports (127.0.0.1): JK_KAFKA_E2E_PORT_BASE, default 20800: Kafka 4.x +0/+1,
# Kafka 3.9 +2/+3, the 3.9 session's broker gate +4, rules clusters +10..+25
# (per node 8: slots 0-1 ours, 2-3 SchedMD's), the 3.9 mix cluster +30/+31.
# The offline check's node listens in its own namespace (21046, 21048).
# JK_E2E_DEADLINE (s, default 600); JK_E2E_KEEP=1 keeps the directories.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC2034 # read by log() in common.sh
RIG_NAME=e2e-kafka
. ci/lib/common.sh
. ci/lib/e2e.sh

CHROOT_RELEASE=24.11.5
BASE=${JK_KAFKA_E2E_PORT_BASE:-20800}
KAFKA_PORT=$BASE
KAFKA39_PORT=$((BASE + 2))
GATE39_PORT=$((BASE + 4))
PORT_BASE=$((BASE + 10))
MIX39_CTLD_PORT=$((BASE + 30))
DEADLINE=${JK_E2E_DEADLINE:-600}
TAG=${JK_E2E_TAG:-kafka$$}
export JK_E2E_TAG=$TAG
export PYTHONDONTWRITEBYTECODE=1
ROOT=${JK_ROOT:-$RIG_CACHE/chroot-trixie}
export JK_ROOT=$ROOT RIG_CACHE
export SUITE=trixie JK_CHROOT_SUITE=trixie
T0=$(now_ms)
OUT=/tmp/jk-e2e-$TAG-out
KAFKA_DIR=$OUT/kafka
KAFKA39_DIR=$OUT/kafka39
BG_PIDS=()

# Stop what is still running: pytest (SIGTERM: its fixtures stop the clusters
# and the nodes), then any rig left in this run's directories.
e2e_trap_cleanup TERM "$ROOT" "/tmp/jk-e2e-$TAG*-*/*/" "$ROOT/rig/jk-e2e-$TAG*-*/" "$KAFKA_DIR" "$KAFKA39_DIR"

rm -rf "$OUT"
mkdir -p "$OUT"

phase "prerequisites"
ci/install-deps.sh
ci/rig/slurm-host.sh install
e2e_install_pytest
HOST_RELEASE=$(ci/slurm-version.sh)

phase "Kafka 4.x and 3.9.x, the chroot, the rig offline (background), plugin builds"
printf 'auto.create.topics.enable=false\n' >"$OUT/kafka-rules.properties"
ci/rig/kafka.sh start "$KAFKA_DIR" --port "$KAFKA_PORT" --version 4 --heap 256m \
	--props "$OUT/kafka-rules.properties" >"$OUT/kafka-start.log" 2>&1 &
KAFKA_PID=$!
ci/rig/kafka.sh start "$KAFKA39_DIR" --port "$KAFKA39_PORT" --version 3.9 --heap 256m \
	--props "$OUT/kafka-rules.properties" >"$OUT/kafka39-start.log" 2>&1 &
KAFKA39_PID=$!
ci/rig/slurm-chroot.sh build "$ROOT" >"$OUT/chroot-build.log" 2>&1 &
CHROOT_PID=$!
# The offline check warms the cache first (on a fresh machine: waits for the
# two starts above to install, under the rig's lock), then goes offline.
ci/rig/kafka-selftest.sh --offline >"$OUT/kafka-offline.log" 2>&1 &
OFFLINE_PID=$!
BG_PIDS+=("$KAFKA_PID" "$KAFKA39_PID" "$CHROOT_PID" "$OFFLINE_PID")
make --no-print-directory build SLURM_VERSION="$HOST_RELEASE"
make --no-print-directory build SLURM_VERSION="$CHROOT_RELEASE"
wait "$CHROOT_PID" || { cat "$OUT/chroot-build.log" >&2; die "chroot build failed"; }
wait "$KAFKA_PID" || { cat "$OUT/kafka-start.log" >&2; die "Kafka 4.x did not start"; }
wait "$KAFKA39_PID" || { cat "$OUT/kafka39-start.log" >&2; die "Kafka 3.9 did not start"; }
wait "$OFFLINE_PID" || { cat "$OUT/kafka-offline.log" >&2; die "the Kafka rig needs the network with its cache warm"; }
BG_PIDS=()
grep -h 'up in' "$OUT/kafka-start.log" "$OUT/kafka39-start.log" >&2 || true
grep -hE 'no network|control:' "$OUT/kafka-offline.log" >&2 || true
V4=$(cat "$KAFKA_DIR/version")
V39=$(cat "$KAFKA39_DIR/version")
phase "builds done; Kafka $V4 on 127.0.0.1:$KAFKA_PORT, $V39 on $KAFKA39_PORT"

# The rules on both nodes; both sessions share the port base (their tests
# use distinct slots).
run_session() { # RELEASE
	exec setsid "$RIG_VENV/bin/python" -m pytest tests/e2e/test_kafka_rules.py -p no:cacheprovider -v -rfEX \
		--release "$1" --kafka-bootstrap "127.0.0.1:$KAFKA_PORT" --rules-kafka "$V4=127.0.0.1:$KAFKA_PORT" \
		--rules-kafka "$V39=127.0.0.1:$KAFKA39_PORT" --rules-port-base "$PORT_BASE" \
		--counts-file "$OUT/counts-$1.json" "${@:2}" >"$OUT/pytest-$1.log" 2>&1
}
# The job mix of 22.05.8 into Kafka 3.9: its own session directory (tag) and
# cluster ports, next to the rules session of the same release.
run_mix39() {
	JK_E2E_TAG=${TAG}k39 exec setsid "$RIG_VENV/bin/python" -m pytest tests/e2e/test_job_mix.py -p no:cacheprovider \
		-v -rfEX --release "$HOST_RELEASE" --kafka-bootstrap "127.0.0.1:$KAFKA39_PORT" --broker-port "$GATE39_PORT" \
		--cluster-port-offset "$((MIX39_CTLD_PORT - 61817))" --create-topics --counts-file "$OUT/counts-kafka39.json" \
		>"$OUT/pytest-kafka39.log" 2>&1
}
phase "pytest: rules on $HOST_RELEASE (ours) and $CHROOT_RELEASE (SchedMD's) against $V4 and $V39, the job mix into $V39; logs in $OUT"
run_session "$HOST_RELEASE" "$@" &
P1=$!
run_session "$CHROOT_RELEASE" "$@" &
P2=$!
run_mix39 &
P3=$!
BG_PIDS+=("$P1" "$P2" "$P3")
deadline=$(($(now_ms) + DEADLINE * 1000))
while pid_alive "$P1" || pid_alive "$P2" || pid_alive "$P3"; do
	if (($(now_ms) >= deadline)); then
		log "ERROR: tests still running after ${DEADLINE}s: interrupting them"
		e2e_stop_children TERM "$P1" "$P2" "$P3"
		break
	fi
	sleep 0.5
done
RC1=0 RC2=0 RC3=0
wait "$P1" || RC1=$?
wait "$P2" || RC2=$?
wait "$P3" || RC3=$?
BG_PIDS=()

for rel in "$HOST_RELEASE" "$CHROOT_RELEASE" kafka39; do
	echo
	echo "################ $rel: pytest log ################"
	cat "$OUT/pytest-$rel.log" || true
done
echo
for rel in "$HOST_RELEASE" "$CHROOT_RELEASE" kafka39; do
	e2e_session_result "$rel" "$OUT/counts-$rel.json"
done
((RC1 == 0 && RC2 == 0 && RC3 == 0)) || E2E_OK=0
phase "done"
echo "e2e-kafka wall time: $((($(now_ms) - T0) / 1000)) s"
echo "$E2E_PASSED passed, $E2E_FAILED failed"
if ((E2E_OK && E2E_FAILED == 0)); then
	ci/rig/kafka.sh stop "$KAFKA_DIR" >/dev/null 2>&1 || true
	ci/rig/kafka.sh stop "$KAFKA39_DIR" >/dev/null 2>&1 || true
	rm -rf "$OUT"
	exit 0
fi
exit 1
