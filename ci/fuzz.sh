#!/usr/bin/env bash
# Fuzzes the parsers of outside input (tests/fuzz, one libFuzzer target each).
#
#   ci/fuzz.sh run [SECONDS] [TARGET...]   each target SECONDS (default 60) from its corpus
#   ci/fuzz.sh check [TARGET...]           each target over its committed corpus, then a
#                                          short fresh run (FUZZ_CHECK_SECONDS, default 10)
#   ci/fuzz.sh seeds                       rewrite the seeds (tests/fuzz/corpus/*/seed-*)
#                                          with the plugin's own writers (tools/make_seeds.rs)
#   ci/fuzz.sh merge [TARGET...]           minimize what runs found into tests/fuzz/corpus
#
# Tooling: stable Rust only. The targets link libFuzzer through the libfuzzer-sys
# crate and are instrumented with rustc's stable codegen options (the sancov
# module pass: 8-bit counters, PC table, comparison tracing), the ones
# cargo-fuzz would pass; cargo-fuzz itself is not needed (it insists on
# -Zsanitizer, which stable rustc refuses). Debug assertions and overflow
# checks are on, so an overflow is a finding too. No AddressSanitizer: the
# parsers are safe Rust (the unsafe code is checked by ci/memcheck.sh).
#
# Corpora: tests/fuzz/corpus/<target> (committed: seeds and a minimized set of
# inputs earlier runs found) is read; new inputs go to target/fuzz/corpus/<target>.
# A crash leaves its input in target/fuzz/artifacts/<target>/ and fails the run,
# naming the binary that replays it. Every run's execution count is appended to
# target/fuzz/runs.log.
#
# The instrumented build (librdkafka's C sources included: some 6 min on 2
# cores) is kept in the machine's cache, one directory per checkout
# (JK_FUZZ_BUILD_DIR overrides it), so that a fresh clone at the same path,
# as CI's, rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
crate=$root/tests/fuzz
work_dir=$root/target/fuzz
export CARGO_TARGET_DIR=${JK_FUZZ_BUILD_DIR:-${RIG_CACHE:-/var/tmp/jobcomp-kafka}/target-fuzz-$(printf %s "$root" | sha256sum | cut -c1-12)}
triple=x86_64-unknown-linux-gnu
bin=$CARGO_TARGET_DIR/$triple/release
mkdir -p "$work_dir"
all_targets=(state_file spool config_properties config_params snapshot_codec record)
[ -e "$crate/fuzz_targets/job_reader.rs" ] && all_targets+=(job_reader)

ci/fuzz-deps.sh
command -v clang++ >/dev/null && export CXX=${CXX:-clang++}

build() {
  # --target keeps these flags off build scripts and proc macros.
  RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks" \
    cargo build --quiet --release --manifest-path "$crate/Cargo.toml" --target $triple
}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export JK_FUZZ_SCRATCH=$scratch

# fuzz TARGET SECONDS: one run; prints and logs its execution count.
fuzz() {
  local target=$1 seconds=$2 log=$scratch/$1.log
  local work=$work_dir/corpus/$target artifacts=$work_dir/artifacts/$target
  mkdir -p "$work" "$artifacts" "$crate/corpus/$target"
  local status=0
  "$bin/$target" -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$work" "$crate/corpus/$target" >"$log" 2>&1 || status=$?
  local runs
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  printf '%s %-18s %4ss %10s executions  %s\n' "$(date -u +%FT%TZ)" "$target" "$seconds" "${runs:-?}" \
    "$([ $status -eq 0 ] && echo ok || echo FAILED)" | tee -a "$work_dir/runs.log"
  if [ $status -ne 0 ]; then
    grep -E -A15 "panicked|ERROR: libFuzzer|SUMMARY" "$log" | head -40 >&2
    echo "fuzz target $target failed; its input is in $artifacts/ (replay: $bin/$target <input>)" >&2
    return 1
  fi
}

# replay TARGET: every committed input once (regressions stay fixed).
replay() {
  local target=$1 log=$scratch/$1.replay.log
  local count
  count=$(find "$crate/corpus/$target" -type f | wc -l)
  if ! "$bin/$target" -runs=0 -rss_limit_mb=1024 -timeout=10 "$crate/corpus/$target" >"$log" 2>&1; then
    grep -E -A15 "panicked|ERROR: libFuzzer|SUMMARY|Running" "$log" | head -40 >&2
    echo "fuzz target $target fails on its committed corpus (tests/fuzz/corpus/$target)" >&2
    return 1
  fi
  printf '%-18s %5s committed inputs replayed: ok\n' "$target" "$count"
}

command=${1:-run}
shift || true
case $command in
  run)
    seconds=${1:-60}
    shift || true
    targets=("${@:-${all_targets[@]}}")
    build
    for t in "${targets[@]}"; do fuzz "$t" "$seconds"; done
    ;;
  check)
    targets=("${@:-${all_targets[@]}}")
    build
    for t in "${targets[@]}"; do replay "$t"; done
    for t in "${targets[@]}"; do fuzz "$t" "${FUZZ_CHECK_SECONDS:-10}"; done
    ;;
  seeds)
    # Plain build (no instrumentation) of the seed writer.
    cargo build --quiet --release --manifest-path "$crate/Cargo.toml" --features seeds --bin make_seeds
    rm -rf "$scratch/seeds"
    "$CARGO_TARGET_DIR/release/make_seeds" "$scratch/seeds"
    for dir in "$scratch/seeds"/*; do
      t=$(basename "$dir")
      mkdir -p "$crate/corpus/$t"
      rm -f "$crate/corpus/$t"/seed-*
      for f in "$dir"/*; do cp "$f" "$crate/corpus/$t/seed-$(basename "$f")"; done
    done
    echo "seeds written to tests/fuzz/corpus/*/seed-*"
    ;;
  merge)
    targets=("${@:-${all_targets[@]}}")
    build
    for t in "${targets[@]}"; do
      # Adds to the committed corpus only the inputs that reach new coverage.
      "$bin/$t" -merge=1 -rss_limit_mb=1024 -timeout=10 "$crate/corpus/$t" "$work_dir/corpus/$t" \
        >"$scratch/$t.merge.log" 2>&1
      echo "$t: $(find "$crate/corpus/$t" -type f | wc -l) committed inputs"
    done
    ;;
  *)
    echo "usage: ci/fuzz.sh run [SECONDS] [TARGET...] | check [TARGET...] | seeds | merge [TARGET...]" >&2
    exit 2
    ;;
esac
