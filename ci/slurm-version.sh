#!/usr/bin/env bash
# Prints the release of the installed Slurm headers (e.g. 22.05.8), from
# SLURM_VERSION_NUMBER in slurm/slurm_version.h; nothing when none is installed.
set -euo pipefail
header="${SLURM_INCLUDE_DIR:-/usr/include}/slurm/slurm_version.h"
[ -r "$header" ] || exit 0
number=$(sed -n 's/^#define SLURM_VERSION_NUMBER[[:space:]]*0x\([0-9a-fA-F]*\).*/\1/p' "$header")
[ -n "$number" ] || exit 0
value=$((16#$number))
printf '%d.%02d.%d\n' $((value >> 16)) $(((value >> 8) & 255)) $((value & 255))
