"""Our plugin against SchedMD's own 26.05.5 plugin (Debian forky's
slurm-wlm-kafka-plugin), finish and start records.

The same job mix ran on two clusters with the same JobCompParams
(enable_job_start,send_script,send_comment), one with SchedMD's jobcomp/kafka
and one with ours. The records are compared job by job and key by key: same
keys, same order, same JSON types, same values after normalising what is
run-dependent and nothing else:
  - jobid, array_job_id: the mix's label of the job (and job ids inside
    orig_dependency);
  - sluid, original_sluid: "<sluid>" (their form is checked first, and whether
    original_sluid equals sluid must agree);
  - @start, @end, @submit, @eligible: "<time>" (form checked first); elapsed,
    @queue_wait: "<int>"; cpu_hours: "<float>" (types checked first);
  - each cluster's own directory inside strings: "<dir>".
Every difference is printed; those in KNOWN_DIFFERENCES are accepted with the
reason given there, any other fails the test.
"""

import json

import pytest

from rig26 import SLUID_RE, TIME_RE, InvalidRecord, decode_record
from mix26 import normalise_ids

KNOWN_DIFFERENCES = {
    "message-key": (
        "SchedMD's plugin sends no message key; ours sends the job id in decimal, so that the "
        "records of a job stay on one partition in order (README, Differences)."),
    "record-id-header": (
        "Ours adds the header jobcomp.record_id (unique per record, for deduplication after a "
        "replay); SchedMD's plugin sends no header (README, The record)."),
    "schedmd-invalid-utf8": (
        "SchedMD's plugin copies bytes >= 0x80 raw, so a job name or path that is not UTF-8 makes "
        "its record invalid JSON (record-format.md, Text form); ours writes U+FFFD for each "
        "invalid sequence (README, Differences). Compared after decoding SchedMD's bytes with the "
        "same replacement."),
}

TIME_KEYS = ("@start", "@end", "@submit", "@eligible")


def _records(run, start, accepted, diffs):
    """{ident: (pairs, normalised pairs)} of one run's start or finish records."""
    consumed = run.start if start else run.finish
    mix, ours = run.mix, run.cluster.plugin == "ours"
    kind = "start" if start else "finish"
    out = {}
    for m in consumed.messages:
        try:
            pairs = decode_record(m.value)
        except InvalidRecord as exc:
            label = None
            if not ours and "not UTF-8" in str(exc):
                label = mix.label_of(json.loads(m.value.decode("utf-8", "replace")).get("jobid"))
            if label != "bad_utf8":
                diffs.append(f"{run.name} {kind}: invalid record at {m.partition}/{m.offset}: {exc}")
                continue
            accepted.append(("schedmd-invalid-utf8", f"{kind} {label}: {exc}"))
            pairs = decode_record(m.value, replace_invalid_utf8=True)
        rec = dict(pairs)
        if ours and m.key == str(rec.get("jobid")).encode():
            accepted.append(("message-key", f"{kind} job {rec.get('jobid')}"))
        elif not ours and m.key is None:
            accepted.append(("message-key", f"{kind} job {rec.get('jobid')}"))
        else:
            diffs.append(f"{run.name} {kind}: job {rec.get('jobid')}: message key {m.key!r}")
        if ours and set(m.headers or {}) == {"jobcomp.record_id"}:
            accepted.append(("record-id-header", f"{kind} job {rec.get('jobid')}"))
        elif m.headers:
            diffs.append(f"{run.name} {kind}: job {rec.get('jobid')}: headers {m.headers!r}")
        ident = mix.ident(rec)
        if ident in out:
            diffs.append(f"{run.name} {kind}: two records for {ident}")
        out[ident] = (pairs, _normalise(pairs, run, diffs))
    return out


def _normalise(pairs, run, diffs):
    mix, d = run.mix, run.cluster.indir
    rec = dict(pairs)
    out = []
    for k, v in pairs:
        if k in ("jobid", "array_job_id") and type(v) is int:
            v = f"<{mix.label_of(v)}>"
        elif k in ("sluid", "original_sluid") and isinstance(v, str) and SLUID_RE.match(v):
            v = "<sluid>" if k == "sluid" or v == rec.get("sluid") else "<other sluid>"
        elif k in TIME_KEYS and isinstance(v, str) and TIME_RE.match(v):
            v = "<time>"
        elif k in ("elapsed", "@queue_wait") and type(v) is int:
            v = "<int>"
        elif k == "cpu_hours" and type(v) is float:
            v = "<float>"
        elif k == "orig_dependency" and isinstance(v, str):
            v = normalise_ids(v, mix)
        elif isinstance(v, str):
            v = "<dir>" if v == d else v.replace(d + "/", "<dir>/")
        out.append((k, v))
    return out


def _short(v, n=160):
    r = repr(v)
    return r if len(r) <= n else r[:n] + "..."


def _compare(a, b, kind, diffs):
    compared = 0
    for ident in sorted(set(a) | set(b), key=str):
        if ident not in a or ident not in b:
            diffs.append(f"{kind} {ident}: record only from {'ours' if ident in a else 'SchedMD'}")
            continue
        compared += 1
        (ra, na), (rb, nb) = a[ident], b[ident]
        ka, kb = [k for k, _ in ra], [k for k, _ in rb]
        if ka != kb:
            only_a = [k for k in ka if k not in kb]
            only_b = [k for k in kb if k not in ka]
            diffs.append(f"{kind} {ident}: keys differ: only ours {only_a}, only SchedMD {only_b}"
                         + ("" if only_a or only_b else f"; order ours {ka} SchedMD {kb}"))
        da, db, nda, ndb = dict(ra), dict(rb), dict(na), dict(nb)
        for k in ka:
            if k not in db:
                continue
            if type(da[k]) is not type(db[k]):
                diffs.append(f"{kind} {ident}: {k}: type ours {type(da[k]).__name__} {_short(da[k])} "
                             f"vs SchedMD {type(db[k]).__name__} {_short(db[k])}")
            elif nda[k] != ndb[k]:
                diffs.append(f"{kind} {ident}: {k}: ours {_short(nda[k])} vs SchedMD {_short(ndb[k])}")
    return compared


@pytest.mark.parametrize("kind", ["finish", "start"])
def test_differential_against_schedmd(runs, kind, numbers):
    ours, theirs = runs["on"].require(), runs["schedmd"].require()
    start = kind == "start"
    diffs, accepted = [], []
    a = _records(ours, start, accepted, diffs)
    b = _records(theirs, start, accepted, diffs)
    compared = _compare(a, b, kind, diffs)
    expected = ours.mix.expected_start() if start else ours.mix.expected_finish()
    n_acc = {}
    for name, _ in accepted:
        n_acc[name] = n_acc.get(name, 0) + 1
    numbers(f"{kind}: ours {len((ours.start if start else ours.finish).messages)} records, SchedMD "
            f"{len((theirs.start if start else theirs.finish).messages)}, expected {expected}; "
            f"compared={compared} differences={len(diffs)} accepted={n_acc}")
    for name, detail in accepted:
        if name not in ("message-key", "record-id-header"):
            numbers(f"accepted difference [{name}] {detail}")
    for d in diffs:
        numbers(f"DIFFERENCE {d}")
    assert set(n_acc) <= set(KNOWN_DIFFERENCES)
    assert compared == expected, f"compared {compared} record pairs, expected {expected}"
    assert not diffs, f"{len(diffs)} difference(s) from SchedMD's plugin:\n" + "\n".join(diffs[:80])
