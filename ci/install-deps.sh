#!/usr/bin/env bash
# Installs what building and testing need (Debian packages), quickly when they are
# already there. Usage: ci/install-deps.sh
#   - build: clang/libclang (bindgen), libssl-dev + pkg-config (librdkafka with SSL)
#   - host rig: Slurm 22.05 daemons and headers (bookworm), debootstrap for the chroots
set -euo pipefail
packages=(clang libclang-dev libssl-dev pkg-config make
          slurmctld slurmd slurm-client munge libslurm-dev debootstrap dpkg-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# dpkg sometimes loses an archive in /tmp/apt-dpkg-install-* here: a second run completes it.
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
