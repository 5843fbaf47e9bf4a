"""What a consumer reads, counted: expected, arrived, lost, duplicated, out
of order; when delivery was complete; slurmctld's error lines by cause.

TopicReader reads a topic from its beginning in a thread (ci/rig/consume.py's
Reader: every partition, partitions added later from their beginning) and
keeps every message with the time it arrived. count() judges them against the
jobs Slurm ran. Nothing here knows which plugin produced the records, except
that ours adds the jobcomp.record_id header (a copy carries its original's id)
and SchedMD's adds none (a copy is a second message with the same bytes).
"""

import argparse
import re
import sys
import threading
import time
from dataclasses import dataclass, field

import jk
from jk import RECORD_ID_HEADER, decode_record
from record_schema import contract_problems

sys.path.insert(0, str(jk.RIG))
import consume  # noqa: E402  ci/rig/consume.py


@dataclass
class Arrival:
    msg: jk.Message
    recv: float  # time.time() when the consumer got it


_said = {}


def _quiet_log(msg):
    """consume.py's progress lines, each kind at most once a minute (the
    brokers are down on purpose: "metadata: ... transport failure" would
    come every second)."""
    kind = re.sub(r"\d+", "N", msg)[:60]
    now = time.monotonic()
    if now - _said.get(kind, -1e9) >= 60:
        _said[kind] = now
        print(f"consume: {msg}", file=sys.stderr, flush=True)


consume.log = _quiet_log


class TopicReader:
    """Every message of `topic`, as it arrives, in a background thread."""

    def __init__(self, bootstrap, topic):
        self.topic = topic
        self.args = argparse.Namespace(bootstrap=bootstrap, topic=topic, from_beginning=True, ready_file=None)
        self.arrivals = []
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader-{topic}", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        # librdkafka's own log off: its connection errors are the faults.
        reader = consume.Reader(self.args, conf={"log_level": 0})
        try:
            while not self._stop.is_set():
                msg = reader.poll(0.2)
                if msg is None:
                    continue
                d = consume.message_to_dict(msg, False)
                m = jk.Message(msg.partition(), msg.offset(), msg.key(), msg.value(), d["timestamp_ms"],
                               d["headers"])
                with self._lock:
                    self.arrivals.append(Arrival(m, time.time()))
        except BaseException as exc:  # noqa: BLE001 - reported by the scenario
            self.errors.append(repr(exc))
        finally:
            reader.close()

    def snapshot(self):
        with self._lock:
            return list(self.arrivals)

    def count(self):
        with self._lock:
            return len(self.arrivals)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=30)


def record_kind(pairs):
    """'start' (25.05+ start record: state null, no @end) or 'finish'."""
    d = dict(pairs)
    return "start" if d.get("state") is None and "@end" not in d else "finish"


@dataclass
class Counts:
    expected: int = 0
    arrived: int = 0
    lost: int = 0
    duplicated: int = 0  # extra copies of a record (same bytes; ours: same record id too)
    reruns: int = 0  # another record of the same job and kind, with other bytes (Slurm ended it again)
    out_of_order: int = 0  # jobs whose finish is not after their start in one partition
    split: int = 0  # of those: start and finish in different partitions
    invalid: int = 0
    unexpected: int = 0  # records of jobs Slurm did not run
    complete_at: float | None = None  # when the last expected record first arrived
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def ok(self, slurm_crashed=False):
        """0 lost, 0 copies, 0 out of order, nothing invalid; records of jobs
        Slurm does not know only after a slurmctld crash (it forgot them)."""
        return not (self.lost or self.duplicated or self.out_of_order or self.invalid or self.problems
                    or (self.unexpected and not slurm_crashed))


def count(arrivals, jobs, *, start_records=False, started=None, release=None):
    """arrivals: [Arrival]; jobs: the jobs Slurm ended, {job id: @submit
    (the record's UTC text) or None}, or just their ids (each must have one
    finish record); start_records: each job of `started` (default: all of
    `jobs`) must also have one start record, before its finish record in the
    same partition. release: every record is also checked against that
    release's record contract (schema/); a record that breaks it counts as
    invalid.

    A job is its id and, when given, its submit time: after a slurmctld
    crash Slurm may hand out again the ids of jobs it had not saved, and
    their records are other jobs' (reported as `unexpected`).

    A copy is a message whose (job, kind) was seen before with the same bytes
    (a copy under another jobcomp.record_id is a problem too: a consumer
    cannot drop it by the header); another message for the same (job, kind)
    with other bytes is Slurm ending the job again (a requeue, or its end
    not saved before a slurmctld crash): counted as `reruns`, apart."""
    c = Counts()
    if not isinstance(jobs, dict):
        jobs = {j: None for j in jobs}
    started = set(jobs if started is None else started)
    c.expected = len(jobs) + (len(started) if start_records else 0)
    c.arrived = len(arrivals)
    first = {}  # (jobid, kind) -> (Arrival, value, record id)
    for a in arrivals:
        m = a.msg
        try:
            pairs = decode_record(m.value)
            d = dict(pairs)
            jobid = d["jobid"]
        except (ValueError, KeyError) as exc:
            c.invalid += 1
            c.problems.append(f"{m.partition}/{m.offset}: not a valid record: {exc}")
            continue
        kind = record_kind(pairs)
        if release is not None:
            broken = contract_problems(d, release, kind == "start")
            if broken:
                c.invalid += 1
                c.problems.append(f"{m.partition}/{m.offset}: job {jobid}: breaks the record contract: {broken[0]}")
        if m.key is not None and m.key != str(jobid).encode():
            c.problems.append(f"{m.partition}/{m.offset}: key {m.key!r} is not job id {jobid}")
        if jobid in jobs and jobs[jobid] is not None and d.get("@submit") != jobs[jobid]:
            jobid = (jobid, d.get("@submit"))  # an earlier job of that id, forgotten by Slurm
        rid = (m.headers or {}).get(RECORD_ID_HEADER)
        k = (jobid, kind)
        if k not in first:
            first[k] = (a, m.value, rid)
            continue
        _, value0, rid0 = first[k]
        if m.value == value0:
            c.duplicated += 1
            if rid != rid0:
                c.problems.append(f"job {jobid}: a copy of its {kind} record with another {RECORD_ID_HEADER} "
                                  f"({rid0} then {rid}; a consumer cannot drop it by the header) "
                                  f"at {m.partition}/{m.offset}")
        else:
            c.reruns += 1
            c.notes.append(f"job {jobid}: another {kind} record (Slurm ended it again) at {m.partition}/{m.offset}")
    want = {(j, "finish") for j in jobs} | ({(j, "start") for j in started} if start_records else set())
    missing = want - set(first)
    c.lost = len(missing)
    if missing:
        c.problems.append(f"lost: {sorted(missing)[:20]}{' ...' if len(missing) > 20 else ''}")
    extra = {k for k in first if k not in want}
    c.unexpected = len(extra)
    if extra:
        c.notes.append(f"records of jobs Slurm does not know (any more): {sorted(map(str, extra))[:20]}")
    if not missing:
        c.complete_at = max(first[k][0].recv for k in want) if want else None
    if start_records:
        for j in started & set(jobs):
            s, f = first.get((j, "start")), first.get((j, "finish"))
            if s is None or f is None:
                continue
            sm, fm = s[0].msg, f[0].msg
            if sm.partition != fm.partition:
                c.out_of_order += 1
                c.split += 1
            elif fm.offset < sm.offset:
                c.out_of_order += 1
        if c.out_of_order:
            c.problems.append(f"{c.out_of_order} job(s) whose finish record is not after their start record "
                              f"in one partition ({c.split} in different partitions)")
    return c


# --- slurmctld's log --------------------------------------------------------

_LOG_PREFIX = re.compile(r"^\[[^\]]*\]\s*")
_PLUGIN_LINE = re.compile(r"jobcomp|kafka", re.I)


def error_lines(log_text):
    """slurmctld's error and warning lines about the plugin or Kafka:
    [(level, text without the time stamp)]."""
    out = []
    for line in log_text.splitlines():
        text = _LOG_PREFIX.sub("", line)
        m = re.match(r"(error|warning|fatal): ", text)
        if m and _PLUGIN_LINE.search(text):
            out.append((m.group(1), text))
    return out


def cause_of(text):
    """A line with what varies between repeats of one cause (job ids,
    counts, times, addresses, ports, thread names) masked."""
    t = re.sub(r"\[thrd:[^\]]*\]", "[thrd]", text)
    t = re.sub(r"\b\d+\.\d+\.\d+\.\d+(:\d+)?(/\d+)?", "ADDR", t)
    t = re.sub(r"\b\d+(\.\d+)?\b", "N", t)
    return t


def causes(lines):
    """{cause: number of lines} of error_lines() output."""
    out = {}
    for level, text in lines:
        k = cause_of(text)
        out[k] = out.get(k, 0) + 1
    return out
