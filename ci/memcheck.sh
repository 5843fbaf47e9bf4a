#!/usr/bin/env bash
# The plugin's unsafe code under valgrind memcheck (issue 16):
#   - tests/plugin_host.rs and tests/spool_faults.rs: every C host they start
#     (tests/host/slurmctld.c with jobcomp_kafka.so loaded, i.e. the plugin's
#     entry points, its reads of the host's structs, librdkafka, the spool's
#     mmap) runs under valgrind, through JK_HOST_WRAPPER (tests/common/mod.rs);
#   - the spool unit tests (src/spool.rs, src/spool/mapped.rs): the test binary
#     itself under valgrind (cargo's runner).
# Any memcheck error (invalid read/write, use of uninitialised memory, bad
# free) in any process fails the run and its report is printed. Leaks are not
# checked: a host killed with SIGKILL, or exiting without fini, leaks by design.
# Logs: target/memcheck/. Usage: ci/memcheck.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
ci/fuzz-deps.sh
logs=$PWD/target/memcheck
rm -rf "$logs"
mkdir -p "$logs"
valgrind=(valgrind --tool=memcheck --error-exitcode=99 --num-callers=40 --leak-check=no)
start=$SECONDS

# The hosts: valgrind keeps the pid, stdio and exit status, which the tests use.
# --leak-check=no also matters for time: the leak scan at exit covers the
# spool's mapped segments and took ~50 s per host on a loaded machine, past the
# tests' 10 s bound for an exit. spool_faults one test at a time: its damage
# test gives the delivery thread 500 ms to write every record's JSON copy,
# which valgrind's slowdown on a busy machine can exceed.
export JK_HOST_WRAPPER="${valgrind[*]} --log-file=$logs/host.%p.log"
cargo test --release --test plugin_host "$@"
cargo test --release --test spool_faults "$@" -- --test-threads=1
unset JK_HOST_WRAPPER

# The spool's own tests, the test binary under valgrind.
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="${valgrind[*]} --log-file=$logs/unit.%p.log" \
  cargo test --release --lib spool

bad=$(grep -L "ERROR SUMMARY: 0 errors" "$logs"/*.log | xargs -r grep -l "ERROR SUMMARY" || true)
processes=$(ls "$logs"/*.log | wc -l)
summaries=$(cat "$logs"/*.log | grep -c "ERROR SUMMARY" || true)
if [ -n "$bad" ]; then
  for log in $bad; do
    echo "=== $log" >&2
    cat "$log" >&2
  done
  echo "memcheck: errors in $(echo "$bad" | wc -l) of $processes processes (logs in $logs)" >&2
  exit 1
fi
echo "memcheck: $processes processes under valgrind ($summaries ran to exit; the rest were killed" \
  "by the tests), 0 errors, $((SECONDS - start)) s"
