#!/usr/bin/env bash
# Installs the Debian tools the package builds and tests use (idempotent, quick
# when present): dpkg-buildpackage + debhelper + lintian for `make deb`, Debian's
# rpm (rpmbuild, rpmspec) for `make rpm`, fakeroot for both.
set -euo pipefail
packages=(dpkg-dev debhelper lintian fakeroot rpm rpm2cpio cpio file man-db)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt=(apt-get -q -o DPkg::Lock::Timeout=600)
"${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
  "${apt[@]}" update >/dev/null
  # dpkg sometimes loses an archive in /tmp/apt-dpkg-install-* here: a second run completes it.
  "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null ||
    "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
}
