#!/usr/bin/env bash
# What `make fuzz`, `make fuzz-check` and `make memcheck` need beyond
# ci/install-deps.sh, installed only when missing:
#   - valgrind (memcheck of the plugin in the C host and of the spool tests);
#   - a C++ compiler for libfuzzer-sys, which builds libFuzzer from the source
#     it ships (clang++ from ci/install-deps.sh's clang does).
# No fuzz tool is installed: the fuzz crate (tests/fuzz) links libFuzzer
# through the libfuzzer-sys crate and is built by stable cargo (ci/fuzz.sh).
set -euo pipefail
missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v clang++ >/dev/null || command -v c++ >/dev/null || missing+=(clang)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >/dev/null
