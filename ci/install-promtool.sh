#!/usr/bin/env bash
# promtool (Debian's prometheus package), used by the monitoring tests to check
# the plugin's metrics file. Idempotent; quick when already installed.
set -euo pipefail
command -v promtool >/dev/null && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends prometheus >/dev/null || {
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends prometheus >/dev/null
}
command -v promtool >/dev/null
