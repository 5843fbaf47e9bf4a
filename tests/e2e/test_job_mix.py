"""The job mix on our plugin, on Slurm 22.05.8 (host) and 24.11.5 (chroot):
every job end of the mix (success, exit 3, kill -9, a 100-task array, cancel
while pending and while running, time limit, requeue, tricky names and
paths, invalid UTF-8, a job with many options in a reservation with a
dependency) gives exactly the records Slurm defines, each valid JSON in
json-c's form, keyed by the job id, with the values scontrol reported.

Slurm's definitions the checks rely on (measured on both releases):
  - requeue: one record when the running job is requeued (state PENDING,
    @end = the requeue time) and one for the final run; the requeued job
    waits 120 s (BeginTime), which the mix brings forward with
    `scontrol update StartTime=now`;
  - a job ended by its time limit or scancel while running: the record is
    written when slurmctld marks it TIMEOUT/CANCELLED, before the batch
    script's exit status (0:15) arrives: exit_code "0:0";
  - a job cancelled while pending never got nodes: total_cpus/total_nodes 0,
    nodes null (scontrol prints the requested counts);
  - no -n: ntasks 0 (scontrol prints a derived NumTasks);
  - no slurmdbd in the rigs: no association, so no cluster, qos or
    parent_accounts; the account is the one given with -A.
"""

import dataclasses

import pytest

from jk import decode_record, jsonc_dumps


@pytest.mark.mixcheck
def test_job_mix_records(release, mixes, broker, numbers):
    from mix import check_mix_records

    mix = mixes["ours"]
    mix.join(timeout=400)
    expected = mix.expected_total()
    got = broker.consume(mix.cluster.topic, expect=expected, timeout=90, linger=3)
    mix.consumed = got.messages
    chk = check_mix_records(mix, got.messages, release)
    numbers(chk.numbers())
    assert got.rc == 0, f"consumer: {'too few' if got.rc == 3 else 'too many'} records ({chk.numbers()})"
    assert chk.received == expected
    assert not chk.problems, f"{len(chk.problems)} problem(s):\n" + "\n".join(chk.problems[:60])


def _rewrite(msg, fn):
    pairs = decode_record(msg.value)
    pairs = fn(pairs)
    return dataclasses.replace(msg, value=jsonc_dumps(pairs).encode())


def _set(key, value):
    return lambda pairs: [(k, value if k == key else v) for k, v in pairs]


@pytest.mark.mixcheck
def test_mix_checks_catch_corruption(release, mixes, numbers):
    """The checks above can fail: each corruption of the real records that a
    broken plugin could produce is reported."""
    from mix import check_mix_records

    mix = mixes["ours"]
    msgs = getattr(mix, "consumed", None)
    if not msgs:
        pytest.fail("test_job_mix_records did not consume the records")
    by_label = {}
    for i, m in enumerate(msgs):
        rec = dict(decode_record(m.value))
        by_label.setdefault(mix.label_of(rec["jobid"]), []).append(i)

    def local_time(pairs):  # @start in the controller's local time (UTC+5:30)
        from datetime import datetime, timedelta
        out = []
        for k, v in pairs:
            if k == "@start":
                v = (datetime.strptime(v, "%Y-%m-%dT%H:%M:%S") + timedelta(hours=5, minutes=30)) \
                    .strftime("%Y-%m-%dT%H:%M:%S")
            out.append((k, v))
        return out

    def swap_first_keys(pairs):
        return [pairs[1], pairs[0]] + pairs[2:]

    i_sig, i_ok, i_w = by_label["signal9"][0], by_label["ok"][0], by_label["weird"][0]
    i_a, i_b = by_label["array"][:2]
    a_task = dict(decode_record(msgs[i_a].value))["array_task_id"]
    corruptions = {
        "a record lost": lambda ms: ms[:i_ok] + ms[i_ok + 1:],
        "a record twice": lambda ms: ms + [ms[i_ok]],
        "@start in local time": lambda ms: _sub(ms, i_sig, _rewrite(ms[i_sig], local_time)),
        "signal as exit status": lambda ms: _sub(ms, i_sig, _rewrite(ms[i_sig], _set("exit_code", "9:0"))),
        "bytes after the closing brace": lambda ms: _sub(ms, i_ok, dataclasses.replace(ms[i_ok], value=ms[i_ok].value + b"\x00x")),
        "slash not escaped": lambda ms: _sub(ms, i_ok, dataclasses.replace(ms[i_ok], value=ms[i_ok].value.replace(b"\\/", b"/"))),
        "invalid UTF-8 copied raw": lambda ms: _sub(ms, i_w, dataclasses.replace(ms[i_w], value=ms[i_w].value.replace("é".encode(), b"\xe9", 1))),
        "no message key": lambda ms: _sub(ms, i_ok, dataclasses.replace(ms[i_ok], key=None)),
        "keys out of order": lambda ms: _sub(ms, i_ok, _rewrite(ms[i_ok], swap_first_keys)),
        "array task id wrong": lambda ms: _sub(ms, i_b, _rewrite(ms[i_b], _set("array_task_id", a_task))),
        "no record id header": lambda ms: _sub(ms, i_ok, dataclasses.replace(ms[i_ok], headers={})),
        "record id used twice": lambda ms: _sub(ms, i_ok, dataclasses.replace(ms[i_ok], headers=ms[i_sig].headers)),
        "name not as submitted": lambda ms: _sub(ms, i_w, _rewrite(ms[i_w], _set("job_name", "we\"ird"))),
        "UTC ok but elapsed wrong": lambda ms: _sub(ms, i_sig, _rewrite(ms[i_sig], _set("elapsed", 7))),
    }
    # Baseline: the real records as consumed pass the same checks (else a
    # corruption "caught" could be a problem the real records already have);
    # a corruption counts as caught only by a problem the baseline lacks.
    base = check_mix_records(mix, list(msgs), release).problems
    assert not base, f"the unmodified records already fail the checks: {base}"
    missed = []
    for name, corrupt in corruptions.items():
        chk = check_mix_records(mix, corrupt(list(msgs)), release)
        if not set(map(str, chk.problems)) - set(map(str, base)):
            missed.append(name)
    numbers(f"corruptions detected {len(corruptions) - len(missed)}/{len(corruptions)}")
    assert not missed, f"corruptions the checks did not catch: {missed}"


def _sub(ms, i, m):
    ms = list(ms)
    ms[i] = m
    return ms
