#!/usr/bin/env bash
# The consumers' side (issue #24): the record schemas (schema/), jobcomp-wait
# and jobcomp-sink (python/). Called by `make test-consumers`.
#
#   ci/consumers.sh [PYTEST ARGS...]     e.g. ci/consumers.sh -k sink
#
# 1. installs what it needs: Slurm 22.05.8 on the host, PostgreSQL (Debian),
#    Apache Kafka 4 (ci/rig/kafka.sh: Maven Central, cached), the rigs' venv
#    with pytest, jsonschema and psycopg (pinned, under the venv lock);
# 2. builds the plugin for the host's Slurm;
# 3. `pip install ./python` (docs/consumers.md's install block; no dependencies:
#    the venv has them) into the
#    run's directory, so the tests run the installed commands;
# 4. one pytest session: tests/schema (the schemas), tests/consumers (the
#    logic without a rig, then the sink on Kafka + PostgreSQL, then the waiter
#    on jobs of a real slurmctld).
# Ports 21600-21699 only (JK_CONSUMERS_PORT_BASE moves them; see
# tests/consumers/conftest.py). JK_CONSUMERS_BROKER=tansu runs on tansu
# instead of Apache Kafka. JK_CONSUMERS_DEADLINE (s, default 900) bounds the
# tests; JK_E2E_KEEP=1 keeps the run's directory.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC2034 # read by log() in common.sh
RIG_NAME=consumers
. ci/lib/common.sh
. ci/lib/e2e.sh

PSYCOPG_VERSION=3.3.9
WHEEL_VERSION=0.45.1
DEADLINE=${JK_CONSUMERS_DEADLINE:-900}
BASE=${JK_CONSUMERS_PORT_BASE:-21600}
BROKER=${JK_CONSUMERS_BROKER:-kafka}
export JK_CONSUMERS_DIR=${JK_CONSUMERS_DIR:-/tmp/jk-consumers-$$}
export PYTHONDONTWRITEBYTECODE=1
T0=$(now_ms)
SITE=$JK_CONSUMERS_DIR-site

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	# pytest's fixtures stop what they started; this is for a run cut short.
	shopt -s nullglob
	e2e_stop_leftovers /nonexistent "$JK_CONSUMERS_DIR"/*/
	[[ -f $JK_CONSUMERS_DIR/kafka/kafka.pid ]] && ci/rig/kafka.sh stop "$JK_CONSUMERS_DIR/kafka" --kill >/dev/null 2>&1 || true
	[[ -f $JK_CONSUMERS_DIR/postgres/postgres.pid ]] && ci/rig/postgres.sh stop "$JK_CONSUMERS_DIR/postgres" >/dev/null 2>&1 || true
	((rc == 0)) && [[ -z ${JK_E2E_KEEP:-} ]] && rm -rf "$SITE"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. prerequisites ---------------------------------------------------------------
phase "prerequisites"
ci/install-deps.sh
ci/rig/slurm-host.sh install
ci/rig/postgres.sh install
e2e_install_pytest
consumers_venv() {
	venv_pip_pin psycopg "$PSYCOPG_VERSION" "psycopg[binary]==$PSYCOPG_VERSION"
	# setuptools 66 (the venv's) builds ./python with wheel's bdist_wheel.
	venv_pip_pin wheel "$WHEEL_VERSION"
}
with_lock "$RIG_CACHE/venv.lock" consumers_venv
[[ $BROKER == kafka ]] && ci/rig/kafka.sh install 4 >/dev/null
HOST_RELEASE=$(ci/slurm-version.sh)

# --- 2. the plugin ------------------------------------------------------------------
phase "plugin build (Slurm $HOST_RELEASE)"
make --no-print-directory build SLURM_VERSION="$HOST_RELEASE"

# --- 3. pip install ./python ----------------------------------------------------------
phase "pip install ./python into $SITE"
rm -rf "$SITE"
"$RIG_VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
	--target "$SITE" ./python >&2
[[ -x $SITE/bin/jobcomp-wait && -x $SITE/bin/jobcomp-sink ]] || die "pip install ./python installed no commands"
export JK_CONSUMERS_SITE=$SITE

# --- 4. tests -----------------------------------------------------------------------
phase "pytest (broker: $BROKER; directory $JK_CONSUMERS_DIR)"
rc=0
timeout --signal=TERM --kill-after=90 "$DEADLINE" \
	"$RIG_VENV/bin/python" -m pytest tests/schema tests/consumers -p no:cacheprovider -v -rfEX \
	--broker "$BROKER" --broker-port $((BASE + 92)) --pg-port $((BASE + 32)) \
	--ctld-port $((BASE + 17)) --slurmd-port $((BASE + 18)) "$@" || rc=$?
phase "done: pytest exit $rc"
echo "consumers wall time: $((($(now_ms) - T0) / 1000)) s"
exit "$rc"
