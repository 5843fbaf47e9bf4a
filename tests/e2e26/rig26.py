"""Helpers of the 26.05.5 end-to-end tests: tests/e2e/jk.py for Slurm 26.05.5
in the Debian forky chroot.

The rigs (broker, consumer, clusters), the record's text form, the schema and
scontrol parsing live in jk.py and serve both suites; what is particular to
26.05 is a parameter there (Cluster(release=RELEASE) runs in the forky chroot,
schema_problems(pairs, RELEASE, start=...) knows sluid and start records).
This module names those for this suite.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
import jk  # noqa: E402
from jk import (  # noqa: E402,F401 - re-exported for this suite's modules
    KAFKA_PROPS, SLUID_RE, TIME_RE, Broker, InvalidRecord, RigError, decode_record, expand_io_pattern,
    jsonc_dumps, log, name_id, record_id_problems, scontrol_null, scontrol_seconds, scontrol_time_utc,
    wait_for, wrap_script,
)

RELEASE = "26.05.5"
CHROOT_ROOT = jk.chroot_root(jk.CHROOT_SUITES[jk.series(RELEASE)])
jk.LOG_NAME = "e2e26"


def schema_problems(pairs, start):
    """Keys, order and types of a 26.05 finish (start=False) or start record."""
    return jk.schema_problems(pairs, RELEASE, start=start)
