#!/usr/bin/env bash
# Run ci/rig/consume.py with the rig venv's python (creating the venv first
# when needed). Arguments are passed through; see consume.py --help.
#   consume.sh --bootstrap 127.0.0.1:19092 --topic T --from-beginning --expect 3
set -euo pipefail
RIG_NAME=consume
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
ensure_venv
exec "$RIG_VENV/bin/python" "$RIG_DIR/consume.py" "$@"
