"""The checks of this suite can fail: corruptions of the real records that a
broken plugin could produce, each of which some check must report."""

import copy
import dataclasses
from datetime import datetime, timedelta

from checks26 import check_run
from rig26 import decode_record, jsonc_dumps
from test_differential26 import _compare, _records


def _rewrite(msg, fn):
    pairs = fn(decode_record(msg.value))
    return dataclasses.replace(msg, value=jsonc_dumps(pairs).encode())


def _set(key, value):
    return lambda pairs: [(k, value if k == key else v) for k, v in pairs]


def _insert_after(after, key, value):
    def fn(pairs):
        out = []
        for k, v in pairs:
            out.append((k, v))
            if k == after:
                out.append((key, value))
        return out
    return fn


def _local_start(pairs):
    return [(k, (datetime.strptime(v, "%Y-%m-%dT%H:%M:%S") + timedelta(hours=5, minutes=30))
             .strftime("%Y-%m-%dT%H:%M:%S") if k == "@start" else v) for k, v in pairs]


def _with(run, start, msgs):
    r = copy.copy(run)
    consumed = dataclasses.replace(run.start if start else run.finish, messages=msgs)
    if start:
        r.start = consumed
    else:
        r.finish = consumed
    return r


def _problems(runs, start, msgs):
    """What the suite's checks say of these messages in place of ours."""
    ours = _with(runs["on"], start, msgs)
    _, problems = check_run(ours, start=start)
    diffs, accepted = [], []
    a = _records(ours, start, accepted, diffs)
    b = _records(runs["schedmd"], start, accepted, diffs)
    _compare(a, b, "start" if start else "finish", diffs)
    return problems + diffs


def test_checks_catch_corruption(runs, numbers):
    on = runs["on"].require()
    runs["schedmd"].require()
    fin, sta = list(on.finish.messages), list(on.start.messages)
    i = next(n for n, m in enumerate(fin) if dict(decode_record(m.value))["job_name"] == "exit3")
    j = next(n for n, m in enumerate(sta) if dict(decode_record(m.value))["job_name"] == "ok")

    def sub(ms, n, m):
        ms = list(ms)
        ms[n] = m
        return ms

    cases = {
        "finish: a record lost": (False, fin[:i] + fin[i + 1:]),
        "finish: a record twice": (False, fin + [fin[i]]),
        "finish: signal as exit status": (False, sub(fin, i, _rewrite(fin[i], _set("exit_code", "0:3")))),
        "finish: @start in local time": (False, sub(fin, i, _rewrite(fin[i], _local_start))),
        "finish: wrong priority": (False, sub(fin, i, _rewrite(fin[i], _set("priority", 7)))),
        "finish: bytes after the brace": (False, sub(fin, i, dataclasses.replace(fin[i], value=fin[i].value + b"\0"))),
        "finish: no message key": (False, sub(fin, i, dataclasses.replace(fin[i], key=None))),
        "start: a finish-only field": (True, sub(sta, j, _rewrite(sta[j], _insert_after("@start", "@end", "2026-01-01T00:00:00")))),
        "start: state not null": (True, sub(sta, j, _rewrite(sta[j], _set("state", "RUNNING")))),
        "start: record for a pending-cancelled job": (True, sta + [_rewrite(sta[j], _set("jobid", on.mix.jobs["cancel_pending"].jobid))]),
        "start: a record lost": (True, sta[:j] + sta[j + 1:]),
        "start: name differs": (True, sub(sta, j, _rewrite(sta[j], _set("job_name", "ok2")))),
    }
    # Caught: a problem that the real records do not have already.
    base = {False: set(_problems(runs, False, fin)), True: set(_problems(runs, True, sta))}
    missed = [name for name, (start, msgs) in cases.items()
              if not set(_problems(runs, start, msgs)) - base[start]]
    numbers(f"corruptions detected {len(cases) - len(missed)}/{len(cases)}")
    assert not missed, f"corruptions the checks did not catch: {missed}"
