#!/usr/bin/env bash
# Prints the project's version: the [package] version in Cargo.toml, the one
# place it is set (the tarball, the .deb and the .rpm names and the plugin's
# init line all take it from there).
set -euo pipefail
manifest=${1:-$(dirname "${BASH_SOURCE[0]}")/../../Cargo.toml}
awk '/^\[/ { in_package = ($0 == "[package]") }
     in_package && /^version *=/ { gsub(/^version *= *"|".*$/, ""); print; found = 1; exit }
     END { exit !found }' "$manifest"
