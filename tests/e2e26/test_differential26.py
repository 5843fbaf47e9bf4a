"""Our plugin against SchedMD's own 26.05.5 plugin (Debian forky's
slurm-wlm-kafka-plugin), finish and start records.

The same job mix ran on two clusters with the same JobCompParams
(enable_job_start,send_script,send_comment), one with SchedMD's jobcomp/kafka
and one with ours. The records are compared job by job and key by key
(tests/e2e/differential.py: same keys, same order, same JSON types, same
values after normalising what is run-dependent and nothing else). The two
mixes ran one after the other, so their times are not compared with each
other (their form is; checks26 compares them with scontrol).
"""

import pytest

import rig26  # noqa: F401 - puts tests/e2e (differential.py) on sys.path
from differential import assert_only_known_differences, compare_sides, count_accepted, side_records


def _records(run, start, accepted, diffs):
    """{ident: (pairs, normalised pairs)} of one run's start or finish records."""
    consumed = run.start if start else run.finish
    return side_records(consumed.messages, side=run.name, ours=run.cluster.plugin == "ours", mix=run.mix,
                        ident=run.mix.ident, cluster_dir=run.cluster.indir, accepted=accepted, diffs=diffs,
                        kind="start" if start else "finish").records


def _compare(a, b, kind, diffs):
    return compare_sides(a, b, diffs, kind=kind)


@pytest.mark.parametrize("kind", ["finish", "start"])
def test_differential_against_schedmd(runs, kind, numbers):
    ours, theirs = runs["on"].require(), runs["schedmd"].require()
    start = kind == "start"
    diffs, accepted = [], []
    a = _records(ours, start, accepted, diffs)
    b = _records(theirs, start, accepted, diffs)
    compared = _compare(a, b, kind, diffs)
    expected = ours.mix.expected_start() if start else ours.mix.expected_finish()
    numbers(f"{kind}: ours {len((ours.start if start else ours.finish).messages)} records, SchedMD "
            f"{len((theirs.start if start else theirs.finish).messages)}, expected {expected}; "
            f"compared={compared} differences={len(diffs)} accepted={count_accepted(accepted)}")
    assert_only_known_differences(numbers, accepted, diffs, compared, expected)
