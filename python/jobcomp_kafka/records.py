"""What every consumer of jobcomp/kafka's records needs, without Kafka: the
record id, which job a record belongs to, the exit status a job's state maps
to, duplicate suppression and the completion of a job that has several
records (array tasks, het-job components).

Record contract: schema/ in the repository (installed under
/usr/share/jobcomp-kafka/schema/), docs/consumers.md.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

# The plugin's only message header: a decimal id unique to the record and
# stable across crashes (a record produced twice carries the same id).
RECORD_ID_HEADER = "jobcomp.record_id"

# Exit status of jobcomp-wait per final job state (docs/consumers.md).
EXIT_COMPLETED = 0
EXIT_CODES = {
    "COMPLETED": 0,
    "FAILED": 10,
    "TIMEOUT": 11,
    "CANCELLED": 12,
    "OUT_OF_MEMORY": 13,
    "NODE_FAIL": 14,
    "PREEMPTED": 15,
    "BOOT_FAIL": 16,
    "DEADLINE": 17,
}
EXIT_OTHER_STATE = 19  # a final state not listed above
EXIT_USAGE = 2  # bad arguments (argparse's own code)
EXIT_KAFKA = 4  # a Kafka error that ends the wait (no such broker, authentication)
EXIT_TIMEOUT = 124  # --timeout passed before the job's records arrived (as timeout(1))

# States of a finish record after which the job runs again: a requeued job
# (PENDING, REQUEUED, REQUEUE_FED, REQUEUE_HOLD, SPECIAL_EXIT) or a resizing
# one (RESIZING, and the flag names Slurm prints for it). A waiter keeps
# waiting for the record of the job's real end.
NOT_FINAL_STATES = frozenset({
    "PENDING", "RUNNING", "SUSPENDED", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "SPECIAL_EXIT",
    "RESIZING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING", "STOPPED",
})


def exit_status(state):
    """The exit status for a final job state (EXIT_CODES, else EXIT_OTHER_STATE)."""
    return EXIT_CODES.get(state, EXIT_OTHER_STATE)


def is_final(record):
    """A finish record of the job's end: not a start record (state null, 25.05+)
    and not a requeue/resize record."""
    state = record.get("state")
    return isinstance(state, str) and state not in NOT_FINAL_STATES


def record_id(headers, value):
    """The record's id: its jobcomp.record_id header; for a message without
    one (SchedMD's plugin sends none) 'sha256:' + the digest of its bytes."""
    for name, v in headers or ():
        if name == RECORD_ID_HEADER and v is not None:
            return v.decode("ascii", "replace") if isinstance(v, bytes) else str(v)
    return "sha256:" + hashlib.sha256(value or b"").hexdigest()


def parse_record(value):
    """Message value -> dict; ValueError when it is not a JSON object. A
    trailing NUL (SchedMD's 23.02.0-23.11.6) is dropped."""
    if value is None:
        raise ValueError("empty message")
    text = value.decode("utf-8", "replace").rstrip("\0")
    rec = json.loads(text)
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    return rec


class Dedup:
    """Remembers (cluster, record id) pairs: seen() is True for a pair met before."""

    def __init__(self):
        self._seen = set()

    def seen(self, cluster, rid):
        key = (cluster, rid)
        if key in self._seen:
            return True
        self._seen.add(key)
        return False


# --- which job ---------------------------------------------------------------


def parse_index_list(text):
    """Slurm's index list: "0-9", "1,3,5-7", "0-15:4" (step), "%N" throttle
    ignored -> sorted list of ints."""
    text = text.split("%", 1)[0]
    out = set()
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        if not m:
            raise ValueError(f"bad index list element {part!r}")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        step = int(m.group(3)) if m.group(3) is not None else 1
        if b < a or step < 1:
            raise ValueError(f"bad range {part!r}")
        out.update(range(a, b + 1, step))
    return sorted(out)


@dataclass(frozen=True)
class JobSpec:
    """What to wait for, in Slurm's notation, optionally with the cluster:

      [CLUSTER:]JOBID           the record whose jobid is JOBID
      [CLUSTER:]JOBID_TASK      one array task (array_job_id, array_task_id)
      [CLUSTER:]JOBID_[LIST]    array tasks, e.g. 123_[0-9] or 123_[1,4-6]
      [CLUSTER:]JOBID+OFFSET    one het-job component (het_job_id, het_job_offset)
      [CLUSTER:]JOBID+[LIST]    het-job components, e.g. 123+[0-2]
    """

    cluster: str | None
    jobid: int
    kind: str  # "job" | "array" | "het"
    members: tuple = ()  # task ids / component offsets (kind array/het)

    @classmethod
    def parse(cls, text):
        cluster = None
        spec = text
        colon = text.find(":")
        if colon >= 0 and "[" not in text[:colon]:  # "a:1_[0-8:2]": the step's colon is not the cluster's
            cluster, spec = text[:colon], text[colon + 1:]
            if not cluster:
                raise ValueError(f"empty cluster name in {text!r}")
        m = re.fullmatch(r"(\d+)(?:([_+])(?:(\d+)|\[([0-9,\-:]+)\]))?(?:%\d+)?", spec)
        if not m:
            raise ValueError(f"not a job id: {text!r} (JOBID, JOBID_TASK, JOBID_[LIST], JOBID+OFFSET, "
                             f"JOBID+[LIST], optionally CLUSTER: before)")
        jobid = int(m.group(1))
        if not m.group(2):
            return cls(cluster, jobid, "job")
        members = (int(m.group(3)),) if m.group(3) is not None else tuple(parse_index_list(m.group(4)))
        return cls(cluster, jobid, "array" if m.group(2) == "_" else "het", members)

    def member_of(self, record):
        """The member key this record is for (None: not this job): the job id
        for a plain job, the task id / component offset otherwise."""
        if self.kind == "job":
            return record.get("jobid") if record.get("jobid") == self.jobid else None
        if self.kind == "array":
            if record.get("array_job_id") == self.jobid and record.get("array_task_id") in self.members:
                return record["array_task_id"]
            return None
        # het: components are jobs of their own; het_job_id is the leader's id
        # (0 for an ordinary job).
        if record.get("het_job_id") == self.jobid and record.get("het_job_offset") in self.members:
            return record["het_job_offset"]
        return None

    def expected(self):
        return (self.jobid,) if self.kind == "job" else self.members

    def __str__(self):
        base = str(self.jobid)
        if self.kind != "job":
            sep = "_" if self.kind == "array" else "+"
            base += sep + (str(self.members[0]) if len(self.members) == 1
                           else "[" + ",".join(map(str, self.members)) + "]")
        return f"{self.cluster}:{base}" if self.cluster else base


class Completion:
    """The final records of one JobSpec, member by member. add() returns True
    when the record was new news (a final record of a member not yet ended);
    done() once every member has one; status() is 0 when every member
    COMPLETED, else the exit status of the first member (in order) that did
    not."""

    def __init__(self, spec):
        self.spec = spec
        self.final = {}  # member -> record

    def add(self, record):
        m = self.spec.member_of(record)
        if m is None or not is_final(record) or m in self.final:
            return False
        self.final[m] = record
        return True

    def pending(self):
        return [m for m in self.spec.expected() if m not in self.final]

    def done(self):
        return not self.pending()

    def status(self):
        for m in self.spec.expected():
            rec = self.final.get(m)
            if rec is not None and rec.get("state") != "COMPLETED":
                return exit_status(rec.get("state"))
        return EXIT_COMPLETED


# --- times ---------------------------------------------------------------------


def parse_since(text, now=None):
    """--since: '@EPOCH', a relative age ('90s', '30m', '2h', '1d'), or an
    ISO 8601 time ('2026-12-07T12:00:00'; without a zone it is local time,
    like date(1)). -> aware datetime in UTC."""
    now = now or datetime.now(timezone.utc)
    text = text.strip()
    if text.startswith("@"):
        return datetime.fromtimestamp(float(text[1:]), timezone.utc)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return now - timedelta(seconds=float(m.group(1)) * unit)
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.astimezone()  # local time
    return t.astimezone(timezone.utc)


def record_time(text):
    """A record's time field (UTC, %Y-%m-%dT%H:%M:%S) -> aware datetime;
    None for a missing value or Slurm's placeholders ("Unknown", "None")."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def topic_map(clusters=(), topics=()):
    """{topic: cluster}: each --cluster NAME reads topic NAME (the plugin's
    default topic is the ClusterName); --topic TOPIC[=CLUSTER] names another
    topic (cluster name = topic name when not given)."""
    out = {}
    for c in clusters:
        out[c] = c
    for t in topics:
        topic, _, cluster = t.partition("=")
        if not topic:
            raise ValueError(f"empty topic in {t!r}")
        out[topic] = cluster or topic
    return out
