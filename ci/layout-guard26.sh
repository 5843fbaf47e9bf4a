#!/usr/bin/env bash
# The run-time layout guard inside the real slurmctld 26.05.5 (Debian forky
# chroot); see tests/layout_guard26/test_layout_guard26.py and README "Layout
# guard".
#
#   ci/layout-guard26.sh [PYTEST ARGS...]
#
# 1. installs what it needs (Debian packages, the rigs' venv + pytest),
# 2. builds, while the forky chroot is built (once per machine):
#    - the plugin for 26.05.5 (make build SLURM_VERSION=26.05.5),
#    - TEST-ONLY plugins with 26.05.5's plugin_version but another layout
#      (JK_TEST_FORCE_LAYOUT=<tag>, for each tag in JK_GUARD_LAYOUTS, and
#      26_05_5+job_id_moved) into build/layout-guard/,
# 3. runs the tests on 127.0.0.1 ports 20101 (broker), 20110/20111 (cluster):
#    this suite's own range 20100-20199, free of the other suites' ports.
# Everything it starts is stopped by PID, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
RIG_NAME=layout-guard26
. ci/lib/common.sh
. ci/lib/e2e.sh

RELEASE=26.05.5
export JK_GUARD_LAYOUTS=${JK_GUARD_LAYOUTS:-26_05_3 24_11_7}
export JK_E2E_TAG=${JK_E2E_TAG:-$$}
export PYTHONDONTWRITEBYTECODE=1
ROOT=${JK_FORKY_ROOT:-$RIG_CACHE/chroot-forky}
export JK_FORKY_ROOT=$ROOT RIG_CACHE
export SUITE=forky JK_CHROOT_SUITE=forky
T0=$(now_ms)
BG_PIDS=()

# Stop what is still running: pytest (SIGINT first, so that its fixtures stop
# the clusters and the broker), then any rig left in this run's directories.
e2e_trap_cleanup INT "$ROOT" "$ROOT/rig/jk-guard26-$JK_E2E_TAG-*/" "/tmp/jk-guard26-$JK_E2E_TAG/kafka"

phase "prerequisites"
ci/install-deps.sh
# Apache Kafka 4.x for the suite's broker (Maven Central, cached; a no-op once installed).
ci/rig/kafka.sh install 4 >/dev/null
e2e_install_pytest

phase "forky chroot (background) and plugin builds"
LOGDIR=$(mktemp -d /tmp/jk-guard26-build.XXXXXX)
ci/rig/slurm-chroot.sh build "$ROOT" >"$LOGDIR/chroot-build.log" 2>&1 &
CHROOT_PID=$!
BG_PIDS+=("$CHROOT_PID")
mkdir -p build/layout-guard
PROFILE_DIR=${CARGO_TARGET_DIR:-target}/release
build_forced() { # LAYOUT: a plugin for $RELEASE that assumes LAYOUT (test-only switch)
	SLURM_VERSION=$RELEASE JK_TEST_FORCE_LAYOUT=$1 cargo build --release --lib --quiet
	install -m 0755 "$PROFILE_DIR/libjobcomp_kafka.so" "build/layout-guard/jobcomp_kafka-$RELEASE-as-$1.so"
}
# And 26.05.5's own layout with one job_record member moved (slurm_conf_t as
# it is): refused by the record checks, not at init.
for layout in $JK_GUARD_LAYOUTS 26_05_5+job_id_moved; do
	with_lock "$(build_lock "$PROFILE_DIR")" build_forced "$layout"
done
# Last, so that target/ is left with the ordinary build.
make --no-print-directory build SLURM_VERSION="$RELEASE"
if ! wait "$CHROOT_PID"; then
	cat "$LOGDIR/chroot-build.log" >&2
	die "forky chroot build failed"
fi
BG_PIDS=()
rm -rf "$LOGDIR"
have=$(ci/rig/slurm-chroot.sh version "$ROOT")
[[ ${have%-*} == "$RELEASE" ]] || die "the forky chroot has Slurm $have, not $RELEASE"

phase "pytest tests/layout_guard26"
setsid timeout -s INT -k 60 900 "$RIG_VENV/bin/python" -m pytest tests/layout_guard26 -p no:cacheprovider -v -rfEX "$@" &
P=$!
BG_PIDS+=("$P")
RC=0
wait "$P" || RC=$?
BG_PIDS=()
phase "done (pytest exit $RC)"
exit "$RC"
