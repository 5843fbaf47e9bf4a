#!/usr/bin/env bash
# Installs what building and testing need (Debian packages), quickly when they are
# already there. Usage: ci/install-deps.sh
#   - build: clang/libclang (bindgen), pkg-config, and the -dev packages of the system
#     libraries librdkafka links (ci/build-deps.txt: libssl, libsasl2, libcurl, zlib)
#   - host rig: Slurm 22.05 daemons and headers (bookworm), debootstrap for the chroots
# The Debian build dependencies of docs/installing.md ("Building by hand") are
# these; `make unit` then runs that page's `make build` (the installed release)
# and the suite's other targets `make build SLURM_VERSION=...`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
packages=(clang libclang-dev pkg-config make
          slurmctld slurmd slurm-client munge libslurm-dev debootstrap dpkg-dev)
while read -r module _macro debian _rest; do
  case "$module" in ''|'#'*) continue ;; esac
  [ "$debian" = - ] || packages+=("$debian")
done <"$here/build-deps.txt"
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Other installs may run at the same time: wait for dpkg's lock instead of failing.
apt=(apt-get -o DPkg::Lock::Timeout=600)
"${apt[@]}" update -q >/dev/null
# dpkg sometimes loses an archive in /tmp/apt-dpkg-install-* here: a second run completes it.
"${apt[@]}" install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
  "${apt[@]}" install -y -q --no-install-recommends "${missing[@]}" >/dev/null
