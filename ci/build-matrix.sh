#!/usr/bin/env bash
# Builds the plugin for a representative release of every struct layout and
# checks what each .so exports: exactly the symbols of its Slurm API, and a
# plugin_version equal to that release's SLURM_VERSION_NUMBER.
# Usage: ci/build-matrix.sh [release ...]     (default: one release per layout,
#        and 26.05.4, whose layout is not known, must be refused)
# Uses its own target directory unless CARGO_TARGET_DIR_MATRIX names another
# (make test: the shared target/, whose dependencies are built already); each
# build and its copy hold that directory's build lock, as ci/build-plugin.sh
# does, so that a suite building next to it never copies a matrix build.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib/common.sh
releases=("$@")
[ ${#releases[@]} -gt 0 ] || releases=(22.05.8 23.02.2 23.02.7 23.11.10 24.05.8 24.11.0 24.11.3 24.11.7 25.05.8 25.11.7 26.05.3 26.05.5)
# Releases whose layout is not known: the build must refuse them, not guess.
refused=(26.05.4)
# A release newer than the newest measured in its series: built with the last
# known layout, and a warning that says so (the run-time layout guard checks it).
assumed=(26.05.6)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR_MATRIX:-target/matrix}
out=build/matrix
mkdir -p "$out"
failures=0
lock=$(build_lock "$CARGO_TARGET_DIR/release")

build_lib() { # RELEASE [CARGO ARGS...]
  SLURM_VERSION=$1 cargo build --release --lib "${@:2}"
}
build_and_copy() { # RELEASE SO
  build_lib "$1" --quiet
  cp "$CARGO_TARGET_DIR/release/libjobcomp_kafka.so" "$2"
}
rebuild_with_warnings() { # RELEASE: cargo prints a build script's warnings only when it runs
  touch build.rs
  build_lib "$1"
}

expected_symbols() {   # the exports of the API of release $1
  local major=${1%%.*} rest=${1#*.}; local minor=${rest%%.*}
  local n=$((10#$major * 100 + 10#$minor))
  local ops
  if [ $n -ge 2505 ]; then ops="jobcomp_p_record_job_end jobcomp_p_record_job_start"
  else ops="jobcomp_p_log_record"; fi
  printf '%s\n' fini init jobcomp_p_get_jobs jobcomp_p_set_location plugin_name plugin_type plugin_version $ops | sort
}

for release in "${releases[@]}"; do
  so="$out/jobcomp_kafka-$release.so"
  with_lock "$lock" build_and_copy "$release" "$so"
  exported=$(nm -D --defined-only "$so" | awk '{print $3}' | sort)
  if [ "$exported" != "$(expected_symbols "$release")" ]; then
    echo "FAIL $release: exports differ from its API:"; diff <(expected_symbols "$release") <(echo "$exported") || true
    failures=$((failures + 1)); continue
  fi
  IFS=. read -r a b c <<<"$release"
  want=$(( (10#$a << 16) | (10#$b << 8) | 10#$c ))
  got=$(python3 -c 'import ctypes,sys; print(ctypes.c_uint32.in_dll(ctypes.CDLL(sys.argv[1]), "plugin_version").value)' "$so")
  type=$(python3 -c 'import ctypes,sys; print(ctypes.c_char_p(ctypes.addressof(ctypes.c_char.in_dll(ctypes.CDLL(sys.argv[1]), "plugin_type"))).value.decode())' "$so")
  if [ "$got" != "$want" ] || [ "$type" != "jobcomp/kafka" ]; then
    printf 'FAIL %s: plugin_version 0x%x (want 0x%x), plugin_type %s\n' "$release" "$got" "$want" "$type"
    failures=$((failures + 1)); continue
  fi
  printf 'ok   %-9s plugin_version 0x%06x, %d exports\n' "$release" "$got" "$(echo "$exported" | wc -l)"
done
if [ $# -eq 0 ]; then
  for release in "${refused[@]}"; do
    if text=$(with_lock "$lock" build_lib "$release" --quiet 2>&1); then
      echo "FAIL $release: built, but its struct layout is not known"; failures=$((failures + 1))
    elif ! grep -q "layout of Slurm $release is not known" <<<"$text"; then
      echo "FAIL $release: refused without saying why:"; tail -n 5 <<<"$text"; failures=$((failures + 1))
    else
      printf 'ok   %-9s refused (struct layout not known)\n' "$release"
    fi
  done
  for release in "${assumed[@]}"; do
    if ! text=$(with_lock "$lock" rebuild_with_warnings "$release" 2>&1); then
      echo "FAIL $release: not built:"; tail -n 5 <<<"$text"; failures=$((failures + 1))
    elif ! grep -q "warning: .*Slurm $release is newer than .*layout guard checks it" <<<"$text"; then
      echo "FAIL $release: built without the assumed-layout warning"; failures=$((failures + 1))
    else
      printf 'ok   %-9s built with a warning (layout assumed, checked at run time)\n' "$release"
    fi
  done
  releases+=("${refused[@]}" "${assumed[@]}")
fi
echo "build matrix: $(( ${#releases[@]} - failures )) passed, $failures failed"
[ $failures -eq 0 ]
