"""Differential test on Slurm 24.11.5: the whole job mix (test_job_mix's) runs
at the same time on two clusters in the trixie chroot, one with SchedMD's
jobcomp/kafka (Debian's slurm-wlm-kafka-plugin) and one with ours, each
publishing to its own topic of the session's broker. The records are then
compared job by job, key by key (differential.py: same keys, same order,
same JSON types, same values after normalising what is run-dependent; the
two records' times must lie within TIME_TOLERANCE_S of each other).
Records are matched by (label), (array, array_task_id) or (requeue, run 1 /
run 2: the PENDING record is the first run's).
"""

import pytest

from differential import assert_only_known_differences, compare_sides, count_accepted, side_records

# The two mixes run side by side; the time-limit job may end up to ~35 s
# apart on the two clusters (limits are enforced every 30 s).
TIME_TOLERANCE_S = 180


def _identity(rec, mix):
    label = mix.label_of(rec.get("jobid"))
    if label == "array":
        return ("array", rec.get("array_task_id"))
    if label == "requeue":
        return ("requeue", "run 1" if rec.get("state") == "PENDING" else "run 2")
    return (label,)


@pytest.mark.releases("24.11.5")
@pytest.mark.mixcheck
def test_differential_against_schedmd(mixes, broker, numbers):
    ours, theirs = mixes["ours"], mixes["schedmd"]
    ours.join(timeout=400)
    theirs.join(timeout=400)
    got = {}
    for name, mix in (("ours", ours), ("schedmd", theirs)):
        got[name] = broker.consume(mix.cluster.topic, expect=mix.expected_total(), timeout=90, linger=3)

    diffs = []  # unaccepted
    accepted = []  # (allow-list name, detail)
    sides = {name: side_records(got[name].messages, side=name, ours=name == "ours", mix=mix,
                                ident=lambda rec, mix=mix: _identity(rec, mix), cluster_dir=mix.cluster.indir,
                                accepted=accepted, diffs=diffs)
             for name, mix in (("ours", ours), ("schedmd", theirs))}
    compared = compare_sides(sides["ours"].records, sides["schedmd"].records, diffs,
                             time_tolerance_s=TIME_TOLERANCE_S)

    n_acc = count_accepted(accepted)
    numbers(f"ours: records expected={ours.expected_total()} received={len(got['ours'].messages)} "
            f"invalid={sides['ours'].invalid}; schedmd: expected={theirs.expected_total()} "
            f"received={len(got['schedmd'].messages)} invalid={sides['schedmd'].invalid} "
            f"(of which accepted {n_acc.get('schedmd-invalid-utf8', 0)}); "
            f"duplicates={sides['ours'].duplicates + sides['schedmd'].duplicates}; "
            f"compared={compared} differences={len(diffs)} accepted={n_acc}")
    assert got["ours"].rc == 0 and got["schedmd"].rc == 0, \
        f"consumer rc ours={got['ours'].rc} schedmd={got['schedmd'].rc}"
    assert_only_known_differences(numbers, accepted, diffs, compared, ours.expected_total())
