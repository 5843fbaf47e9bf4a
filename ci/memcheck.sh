#!/usr/bin/env bash
# The plugin's unsafe code under valgrind memcheck (issues 16, 21):
#   - every C host (tests/host/slurmctld.c with jobcomp_kafka.so loaded, i.e.
#     the plugin's entry points, its reads of the host's structs, librdkafka,
#     the spool's mmap) that the host tests start runs under valgrind, through
#     JK_HOST_WRAPPER (tests/common/mod.rs): tests/plugin_host.rs,
#     spool_faults.rs, startup_without_kafka.rs, metrics_host.rs,
#     jobcomploc_secrets.rs and layout_guard.rs;
#   - the spool unit tests (src/spool.rs, src/spool/mapped.rs): the test binary
#     itself under valgrind (cargo's runner).
# Any memcheck error (invalid read/write, use of uninitialised memory, bad
# free) in any process fails the run and its report is printed. Errors are
# counted from the lines valgrind writes before each error report
# (--error-markers), in every log: a host killed with SIGKILL (the kill -9
# tests, the random kill points, hosts killed on Drop) never writes an ERROR
# SUMMARY, and its errors count all the same. Every host the tests started
# (listed in JK_HOST_STARTS by tests/common/mod.rs) must have its valgrind
# log, and every test binary must have started hosts: a run where the wrapper
# went unused fails. Leaks are not checked: a host killed with SIGKILL, or
# exiting without fini, leaks by design.
# Logs: target/memcheck/. Usage: ci/memcheck.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
ci/fuzz-deps.sh
logs=$PWD/target/memcheck
rm -rf "$logs"
mkdir -p "$logs"
marker=memcheck-error-report-begins
valgrind=(valgrind --tool=memcheck --error-exitcode=99 --num-callers=40 --leak-check=no
  "--error-markers=$marker,memcheck-error-report-ends")
start=$SECONDS

# The host tests, the C hosts under valgrind. Valgrind keeps the pid, stdio and
# exit status, which the tests use.
# --leak-check=no also matters for time: the leak scan at exit covers the
# spool's mapped segments and took ~50 s per host on a loaded machine, past the
# tests' 10 s bound for an exit. One test at a time for spool_faults (its
# damage test gives the delivery thread 500 ms to write every record's JSON
# copy, which valgrind's slowdown on a busy machine can exceed) and for the
# binaries added in issue 21 (timings written for a host at full speed).
# The host tests: the Makefile's HOST_TESTS, also run for every API family.
read -ra HOST_TESTS <<<"${HOST_TESTS:-$(make -s --no-print-directory host-tests)}"
export JK_HOST_WRAPPER="${valgrind[*]} --log-file=$logs/host.%p.log"
export JK_HOST_STARTS=$logs/host-starts
: >"$JK_HOST_STARTS"
# A failing test does not stop the run: the logs are still examined (a host
# that exits with valgrind's error exit code fails its test).
failed=()
for t in "${HOST_TESTS[@]}"; do
  case $t in
    plugin_host) cargo test --release --test "$t" "$@" || failed+=("$t") ;;
    *) cargo test --release --test "$t" "$@" -- --test-threads=1 || failed+=("$t") ;;
  esac
done
unset JK_HOST_WRAPPER JK_HOST_STARTS

# The spool's own tests, the test binary under valgrind.
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="${valgrind[*]} --log-file=$logs/unit.%p.log" \
  cargo test --release --lib spool || failed+=("spool unit tests")

fail=0
if [ ${#failed[@]} -gt 0 ]; then
  echo "memcheck: tests failed under valgrind: ${failed[*]}" >&2
  fail=1
fi
# Every host started has its log, written by valgrind (its preamble names the
# tool); every test binary started hosts (with no test filter given).
missing=0
while read -r pid binary; do
  if ! grep -q "Memcheck, a memory error detector" "$logs/host.$pid.log" 2>/dev/null; then
    echo "memcheck: host $pid ($binary) has no valgrind log $logs/host.$pid.log: it ran without JK_HOST_WRAPPER" >&2
    missing=$((missing + 1))
  fi
done <"$logs/host-starts"
hosts=$(wc -l <"$logs/host-starts")
host_logs=$(find "$logs" -name 'host.*.log' | wc -l)
if [ "$hosts" -eq 0 ] || [ "$missing" -gt 0 ] || [ "$host_logs" -ne "$hosts" ]; then
  echo "memcheck: $hosts hosts started, $host_logs host logs, $missing hosts without one" >&2
  fail=1
fi
if [ $# -eq 0 ]; then
  for t in "${HOST_TESTS[@]}"; do
    if ! grep -q " $t\$" "$logs/host-starts"; then
      echo "memcheck: tests/$t.rs started no host (JK_HOST_STARTS lists none)" >&2
      fail=1
    fi
  done
fi
if ! ls "$logs"/unit.*.log >/dev/null 2>&1; then
  echo "memcheck: no log of the spool unit tests under valgrind" >&2
  fail=1
fi

# Errors: valgrind's marker line before each error report, in every log
# (killed or not); a log that ran to exit must also say 0 errors.
bad=()
errors=0
for log in "$logs"/*.log; do
  n=$(grep -c "$marker" "$log" || true)
  if [ "$n" -gt 0 ] || { grep -q "ERROR SUMMARY" "$log" && ! grep -q "ERROR SUMMARY: 0 errors" "$log"; }; then
    bad+=("$log")
    errors=$((errors + n))
  fi
done
processes=$(ls "$logs"/*.log | wc -l)
summaries=$(cat "$logs"/*.log | grep -c "ERROR SUMMARY" || true)
if [ ${#bad[@]} -gt 0 ]; then
  for log in "${bad[@]}"; do
    echo "=== $log" >&2
    cat "$log" >&2
  done
  echo "memcheck: $errors error report(s) in ${#bad[@]} of $processes processes (logs in $logs)" >&2
  fail=1
fi
[ "$fail" -eq 0 ] || exit 1
echo "memcheck: $processes processes under valgrind ($hosts hosts, every one with its log;" \
  "$summaries ran to exit, the rest were killed by the tests), 0 errors, $((SECONDS - start)) s"
