"""Our plugin's records against SchedMD's, job by job and key by key: the
comparison both differential tests use (tests/e2e/test_differential.py on
24.11.5, tests/e2e26/test_differential26.py on 26.05.5, finish and start
records). The suites differ only in how their mixes ran and in what they
pass here (the time tolerance, the records' kind).

Normalised before comparing (run-dependent, and nothing else):
  - jobid, array_job_id: the mix's label of the job (ids are allocated in a
    different order on the two clusters); job ids inside orig_dependency too;
  - sluid, original_sluid (26.05): "<sluid>" (form checked first; whether
    original_sluid equals sluid must agree);
  - @start, @end, @submit, @eligible: "<time>" (form checked first);
  - elapsed, @queue_wait: "<int>"; cpu_hours: "<float>" (types checked first);
  - the cluster's own directory inside strings (work_dir, std_out, std_err):
    "<dir>" (each cluster has its own).
Every difference is listed; those in KNOWN_DIFFERENCES are accepted (with the
reason given there), any other fails the test.
"""

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from jk import RECORD_ID_HEADER, SLUID_RE, TIME_RE, InvalidRecord, decode_record

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
        "sends no header (README, The record). The suites' own checks check ours."),
    "schedmd-invalid-utf8": (
        "SchedMD's plugin copies bytes >= 0x80 raw, so a job name or path that is not UTF-8 "
        "makes the record invalid JSON (record-format.md, Text form); ours writes U+FFFD for "
        "each invalid sequence (README, Differences). Compared after decoding SchedMD's bytes "
        "with the same replacement."),
}
# Accepted on every record: not worth a line each in the log.
ROUTINE_DIFFERENCES = ("message-key", "record-id-header")
# The mix's job whose name and directory are not UTF-8.
BAD_UTF8_LABEL = "bad_utf8"

TIME_KEYS = ("@start", "@end", "@submit", "@eligible")


def normalise_ids(text, mix):
    """Job ids inside a string (orig_dependency) -> <label>."""
    return re.sub(r"\b(\d+)\b", lambda m: f"<{mix.label_of(int(m.group(1))) or m.group(1)}>", text)


def normalise(pairs, mix, cluster_dir):
    """A record's pairs with what is run-dependent replaced (see above)."""
    sluid = dict(pairs).get("sluid")
    out = []
    for k, v in pairs:
        if k in ("jobid", "array_job_id") and type(v) is int:
            v = f"<{mix.label_of(v)}>"
        elif k in ("sluid", "original_sluid") and isinstance(v, str) and SLUID_RE.match(v):
            v = "<sluid>" if k == "sluid" or v == sluid else "<other sluid>"
        elif k in TIME_KEYS and isinstance(v, str) and TIME_RE.match(v):
            v = "<time>"
        elif k in ("elapsed", "@queue_wait") and type(v) is int:
            v = "<int>"
        elif k == "cpu_hours" and type(v) is float:
            v = "<float>"
        elif k == "orig_dependency" and isinstance(v, str):
            v = normalise_ids(v, mix)
        elif isinstance(v, str):
            v = "<dir>" if v == cluster_dir else v.replace(cluster_dir + "/", "<dir>/")
        out.append((k, v))
    return out


@dataclass
class Side:
    """One plugin's records: {identity: (pairs, normalised pairs)}."""
    records: dict = field(default_factory=dict)
    invalid: int = 0  # records that are not valid (accepted ones included)
    duplicates: int = 0


def side_records(messages, *, side, ours, mix, ident, cluster_dir, accepted, diffs, kind=""):
    """Decode one plugin's messages; check the message key and headers (ours:
    the job id and exactly the record id header; SchedMD's: neither). `side`
    names it in diffs, `ident(rec)` gives a record's job (the same on both
    clusters), `kind` ("finish"/"start" or "") prefixes the details."""
    out = Side()
    pre = f"{side} {kind}".rstrip()
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        try:
            try:
                pairs = decode_record(m.value)
            except InvalidRecord as exc:
                if ours or "not UTF-8" not in str(exc):
                    raise
                # The job id is ASCII even when the rest is not.
                label = mix.label_of(json.loads(m.value.decode("utf-8", "replace")).get("jobid"))
                if label != BAD_UTF8_LABEL:
                    raise
                accepted.append(("schedmd-invalid-utf8", f"{kind} {label}: {exc}".lstrip()))
                out.invalid += 1
                pairs = decode_record(m.value, replace_invalid_utf8=True)
        except (InvalidRecord, ValueError) as exc:
            out.invalid += 1
            diffs.append(f"{pre}: invalid record at {m.partition}/{m.offset}: {exc}")
            continue
        rec = dict(pairs)
        job = f"job {rec.get('jobid')}"
        if (m.key == str(rec.get("jobid")).encode()) if ours else (m.key is None):
            accepted.append(("message-key", f"{pre}: {job} key {m.key!r}"))
        else:
            diffs.append(f"{pre}: {job}: unexpected message key {m.key!r}")
        if ours and set(m.headers or {}) == {RECORD_ID_HEADER}:
            accepted.append(("record-id-header", f"{pre}: {job}: {m.headers!r}"))
        elif ours or m.headers:
            diffs.append(f"{pre}: {job}: headers {m.headers!r}")
        key = ident(rec)
        if key in out.records:
            out.duplicates += 1
            diffs.append(f"{pre}: two records for {key}")
        out.records[key] = (pairs, normalise(pairs, mix, cluster_dir))
    return out


def _short(v, n=160):
    r = repr(v)
    return r if len(r) <= n else r[:n] + "..."


def _secs(t):
    return datetime.strptime(t, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


def compare_sides(a, b, diffs, *, kind="", time_tolerance_s=None):
    """Ours (a) against SchedMD's (b), {identity: (pairs, normalised)} each:
    same records, keys, key order, JSON types, normalised values; with
    time_tolerance_s (mixes run side by side), times at most that far apart.
    Returns how many record pairs were compared."""
    compared = 0
    pre = f"{kind} " if kind else ""
    for ident in sorted(set(a) | set(b), key=str):
        if ident not in a or ident not in b:
            diffs.append(f"{pre}{ident}: record only from {'ours' if ident in a else 'SchedMD'}")
            continue
        compared += 1
        (ra, na), (rb, nb) = a[ident], b[ident]
        ka, kb = [k for k, _ in ra], [k for k, _ in rb]
        if ka != kb:
            only_a = [k for k in ka if k not in kb]
            only_b = [k for k in kb if k not in ka]
            diffs.append(f"{pre}{ident}: keys differ: only ours {only_a}, only SchedMD {only_b}"
                         + ("" if only_a or only_b else f"; order ours {ka} SchedMD {kb}"))
        da, db, nda, ndb = dict(ra), dict(rb), dict(na), dict(nb)
        for k in ka:
            if k not in db:
                continue
            if type(da[k]) is not type(db[k]):
                diffs.append(f"{pre}{ident}: {k}: type ours {type(da[k]).__name__} {_short(da[k])} "
                             f"vs SchedMD {type(db[k]).__name__} {_short(db[k])}")
            elif nda[k] != ndb[k]:
                diffs.append(f"{pre}{ident}: {k}: ours {_short(nda[k])} vs SchedMD {_short(ndb[k])}")
            elif (time_tolerance_s is not None and k in TIME_KEYS
                  and abs(_secs(da[k]) - _secs(db[k])) > time_tolerance_s):
                # Both mixes run at the same time: a zone or clock error shows.
                diffs.append(f"{pre}{ident}: {k}: ours {da[k]} vs SchedMD {db[k]}: more than "
                             f"{time_tolerance_s} s apart")
    return compared


def count_accepted(accepted):
    """{allow-list name: how many times}."""
    n = {}
    for name, _ in accepted:
        n[name] = n.get(name, 0) + 1
    return n


def assert_only_known_differences(numbers, accepted, diffs, compared, expected):
    """Log the accepted differences (but the routine ones) and every other one,
    then fail on any difference outside KNOWN_DIFFERENCES, on a record pair
    fewer or more than expected, and on any difference not accepted."""
    for name, detail in accepted:
        if name not in ROUTINE_DIFFERENCES:
            numbers(f"accepted difference [{name}] {detail}")
    for d in diffs:
        numbers(f"DIFFERENCE {d}")
    assert set(count_accepted(accepted)) <= set(KNOWN_DIFFERENCES)
    assert compared == expected, f"compared {compared} record pairs, expected {expected}"
    assert not diffs, f"{len(diffs)} difference(s) from SchedMD's plugin:\n" + "\n".join(diffs[:80])
