"""Differential test on Slurm 24.11.5: the whole job mix (test_job_mix's) runs
at the same time on two clusters in the trixie chroot, one with SchedMD's
jobcomp/kafka (Debian's slurm-wlm-kafka-plugin) and one with ours, each
publishing to its own topic of the session's broker. The records are then
compared job by job, key by key: same keys, same order, same JSON types,
same values.

Normalised before comparing (run-dependent, and nothing else):
  - jobid, array_job_id: the mix's label of the job (ids are allocated in a
    different order on the two clusters); job ids inside orig_dependency too;
  - @start, @end, @submit, @eligible: "<time>" (their form is checked first,
    and the two records' times must lie within TIME_TOLERANCE_S of each other);
  - elapsed, @queue_wait: "<int>"; cpu_hours: "<float>" (types checked first);
  - the cluster's own directory inside strings (work_dir, std_out, std_err):
    "<dir>" (each cluster has its own).
Records are matched by (label), (array, array_task_id) or (requeue, run 1 /
run 2: the PENDING record is the first run's).

Every difference is printed; those in KNOWN_DIFFERENCES are accepted (with
the reason below), any other fails the test.
"""

import json
from datetime import datetime, timezone

import pytest

from jk import InvalidRecord, TIME_RE, decode_record, jsonc_dumps
from mix import normalise_ids

# The single allow-list of accepted differences between SchedMD's plugin and
# ours, each with its reason.
KNOWN_DIFFERENCES = {
    "message-key": (
        "SchedMD's plugin sends no message key; ours sends the job id in decimal so that all "
        "records of a job land on one partition in order and consumers can deduplicate "
        "(README, Differences)."),
    "record-id-header": (
        "Ours adds the message header jobcomp.record_id (a number unique to the record, kept "
        "across crashes, so that a consumer can drop a record produced twice); SchedMD's plugin "
        "sends no header (README, The record). test_job_mix checks ours."),
    "schedmd-invalid-utf8": (
        "SchedMD's plugin copies bytes >= 0x80 raw, so a job name or path that is not UTF-8 "
        "makes the record invalid JSON (record-format.md, Text form); ours writes U+FFFD for "
        "each invalid sequence (README, Differences). Compared after decoding SchedMD's bytes "
        "with the same replacement."),
}

TIME_KEYS = ("@start", "@end", "@submit", "@eligible")
# The two mixes run side by side; the time-limit job may end up to ~35 s
# apart on the two clusters (limits are enforced every 30 s).
TIME_TOLERANCE_S = 180


def _secs(t):
    return datetime.strptime(t, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


def _decode_theirs(value, label, accepted):
    """SchedMD's record -> pairs; invalid UTF-8 only accepted for the job
    whose name and directory are not UTF-8."""
    try:
        return decode_record(value)
    except InvalidRecord as exc:
        if "not UTF-8" in str(exc) and label == "bad_utf8":
            accepted.append(("schedmd-invalid-utf8", f"{label}: {exc}"))
            text = value.decode("utf-8", "replace")
            pairs = json.loads(text, object_pairs_hook=lambda p: p)
            if jsonc_dumps(pairs) != text:
                raise InvalidRecord("not json-c's form even after U+FFFD replacement")
            return pairs
        raise


def _identity(rec, mix):
    label = mix.label_of(rec.get("jobid"))
    if label == "array":
        return ("array", rec.get("array_task_id"))
    if label == "requeue":
        return ("requeue", "run 1" if rec.get("state") == "PENDING" else "run 2")
    return (label,)


def _normalise(pairs, mix):
    d = mix.cluster.indir
    out = []
    for k, v in pairs:
        if k in ("jobid", "array_job_id") and isinstance(v, int):
            v = f"<{mix.label_of(v)}>"
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
    sides = {}
    invalid = {"ours": 0, "schedmd": 0}
    duplicates = 0
    for name, mix in (("ours", ours), ("schedmd", theirs)):
        recs = {}
        for m in got[name].messages:
            raw_id = None
            try:
                if name == "ours":
                    pairs = decode_record(m.value)
                else:
                    # Find the label first (the job id is ASCII even when the rest is not).
                    probe = json.loads(m.value.decode("utf-8", "replace"))
                    raw_id = probe.get("jobid")
                    n_before = len(accepted)
                    pairs = _decode_theirs(m.value, theirs.label_of(raw_id), accepted)
                    invalid[name] += len(accepted) - n_before
            except (InvalidRecord, ValueError) as exc:
                invalid[name] += 1
                diffs.append(f"{name}: invalid record at {m.partition}/{m.offset} (job {raw_id}): {exc}")
                continue
            rec = dict(pairs)
            if name == "schedmd" and m.key is None:
                accepted.append(("message-key", f"job {rec.get('jobid')}: schedmd key None"))
            elif name == "ours" and m.key == str(rec.get("jobid")).encode():
                accepted.append(("message-key", f"job {rec.get('jobid')}: ours key {m.key!r}"))
            else:
                diffs.append(f"{name}: job {rec.get('jobid')}: unexpected message key {m.key!r}")
            if name == "schedmd" and m.headers:
                diffs.append(f"schedmd: job {rec.get('jobid')}: headers {m.headers!r}")
            elif name == "ours" and set(m.headers or {}) == {"jobcomp.record_id"}:
                accepted.append(("record-id-header", f"job {rec.get('jobid')}: {m.headers!r}"))
            elif name == "ours":
                diffs.append(f"ours: job {rec.get('jobid')}: headers {m.headers!r}")
            ident = _identity(rec, mix)
            if ident in recs:
                duplicates += 1
                diffs.append(f"{name}: two records for {ident}")
            recs[ident] = (pairs, _normalise(pairs, mix))
        sides[name] = recs

    a, b = sides["ours"], sides["schedmd"]
    compared = 0
    for ident in sorted(set(a) | set(b), key=str):
        if ident not in a or ident not in b:
            diffs.append(f"{ident}: record only from {'ours' if ident in a else 'schedmd'}")
            continue
        compared += 1
        (ra, na), (rb, nb) = a[ident], b[ident]
        ka, kb = [k for k, _ in ra], [k for k, _ in rb]
        if ka != kb:
            only_a = [k for k in ka if k not in kb]
            only_b = [k for k in kb if k not in ka]
            diffs.append(f"{ident}: keys differ: only ours {only_a}, only schedmd {only_b}"
                         + ("" if only_a or only_b else f"; order ours {ka} schedmd {kb}"))
        da, db = dict(ra), dict(rb)
        nda, ndb = dict(na), dict(nb)
        for k in ka:
            if k not in db:
                continue
            if type(da[k]) is not type(db[k]):
                diffs.append(f"{ident}: {k}: type ours {type(da[k]).__name__} {_short(da[k])} "
                             f"vs schedmd {type(db[k]).__name__} {_short(db[k])}")
            elif nda[k] != ndb[k]:
                diffs.append(f"{ident}: {k}: ours {_short(nda[k])} vs schedmd {_short(ndb[k])}")
            elif k in TIME_KEYS and abs(_secs(da[k]) - _secs(db[k])) > TIME_TOLERANCE_S:
                # Both mixes run at the same time: a zone or clock error shows.
                diffs.append(f"{ident}: {k}: ours {da[k]} vs schedmd {db[k]}: more than "
                             f"{TIME_TOLERANCE_S} s apart")

    n_acc = {}
    for name, _ in accepted:
        n_acc[name] = n_acc.get(name, 0) + 1
    numbers(f"ours: records expected={ours.expected_total()} received={len(got['ours'].messages)} "
            f"invalid={invalid['ours']}; schedmd: expected={theirs.expected_total()} "
            f"received={len(got['schedmd'].messages)} invalid={invalid['schedmd']} "
            f"(of which accepted {n_acc.get('schedmd-invalid-utf8', 0)}); duplicates={duplicates}; "
            f"compared={compared} differences={len(diffs)} accepted={n_acc}")
    for name, detail in accepted:
        if name not in ("message-key", "record-id-header"):
            numbers(f"accepted difference [{name}] {detail}")
    for d in diffs:
        numbers(f"DIFFERENCE {d}")
    assert set(n_acc) <= set(KNOWN_DIFFERENCES)
    assert got["ours"].rc == 0 and got["schedmd"].rc == 0, \
        f"consumer rc ours={got['ours'].rc} schedmd={got['schedmd'].rc}"
    assert compared == ours.expected_total()
    assert not diffs, f"{len(diffs)} difference(s) from SchedMD's plugin:\n" + "\n".join(diffs[:80])
