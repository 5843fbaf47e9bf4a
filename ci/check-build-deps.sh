#!/usr/bin/env bash
# Stops before a build that would fail deep inside librdkafka's configure, or would
# silently leave a feature out of it: names the package to install for each missing
# build dependency. Usage: ci/check-build-deps.sh   (ci/install-deps.sh installs them)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
missing=()
need() { # what debian-package rhel-package
  missing+=("$1 -- Debian/Ubuntu: apt-get install $2; RHEL-family: dnf install $3")
}
command -v cc >/dev/null || need "a C compiler (cc)" gcc gcc
command -v make >/dev/null || need "make" make make
if ! command -v pkg-config >/dev/null; then
  need "pkg-config" pkg-config pkgconf-pkg-config
else
  while read -r module _macro debian rhel what; do
    case "$module" in ''|'#'*|-) continue ;; esac
    pkg-config --exists "$module" || need "$module development files, for $what" "$debian" "$rhel"
  done <"$here/build-deps.txt"
fi
# bindgen (build.rs) loads libclang at build time.
if ! ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so' &&
   ! compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' >/dev/null; then
  need "libclang, for bindgen" libclang-dev clang-devel
fi
if [ ${#missing[@]} -ne 0 ]; then
  echo "error: missing build dependencies (ci/install-deps.sh installs them on Debian):" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
