"""The counting of tests/e2e_cluster catches what it is there to catch: a lost
record, a copy, a re-run, a finish record before its start record or in
another partition, and groups repeated log lines by cause. Synthetic
messages, no broker:

  /var/tmp/jobcomp-kafka/venv/bin/python -m pytest tests/e2e_cluster/test_counting.py
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "e2e"), str(HERE)]

import jk  # noqa: E402
from counting import Arrival, causes, count, error_lines  # noqa: E402


def rec(jobid, kind="finish", extra=""):
    pairs = [("jobid", jobid), ("username", "root"), ("state", None if kind == "start" else "COMPLETED")]
    if kind == "finish":
        pairs += [("@end", "2026-12-07T12:00:00"), ("job_name", f"j{extra}")]
    return jk.jsonc_dumps(pairs).encode()


class Topic:
    def __init__(self):
        self.arrivals = []
        self.offsets = {}
        self.rid = 0

    def put(self, jobid, kind="finish", partition=None, *, rid=None, extra=""):
        p = jobid % 3 if partition is None else partition
        off = self.offsets.get(p, 0)
        self.offsets[p] = off + 1
        if rid is None:
            self.rid += 1
            rid = self.rid
        m = jk.Message(p, off, str(jobid).encode(), rec(jobid, kind, extra), None,
                       {jk.RECORD_ID_HEADER: str(rid)})
        self.arrivals.append(Arrival(m, 1000.0 + len(self.arrivals)))
        return rid


def test_clean_topic_counts_nothing_wrong():
    t = Topic()
    for j in range(1, 11):
        t.put(j, "start")
    for j in range(1, 11):
        t.put(j)
    c = count(t.arrivals, range(1, 11), start_records=True)
    assert (c.expected, c.arrived, c.lost, c.duplicated, c.out_of_order, c.reruns) == (20, 20, 0, 0, 0, 0)
    assert c.ok() and c.complete_at == 1019.0


def test_lost_copy_and_rerun_are_counted_apart():
    t = Topic()
    rid = t.put(1)
    t.put(1, rid=rid)  # the same record again: a copy
    t.put(2)
    t.put(2, extra="x")  # another record of job 2: a re-run, not a copy
    c = count(t.arrivals, [1, 2, 3])
    assert (c.lost, c.duplicated, c.reruns) == (1, 1, 1)
    assert c.complete_at is None and not c.ok()


def test_copy_under_another_record_id_is_a_copy_and_a_problem():
    t = Topic()
    t.put(4)
    t.put(4)  # same bytes, a new record id
    c = count(t.arrivals, [4])
    assert (c.duplicated, c.reruns) == (1, 0)
    assert any("another jobcomp.record_id" in p for p in c.problems)


def test_copy_without_record_id_is_counted_by_bytes():
    """SchedMD's plugin sends no header: the same bytes twice are a copy."""
    t = Topic()
    t.put(5)
    t.arrivals[0].msg.headers = {}
    t.put(5)
    t.arrivals[1].msg.headers = {}
    c = count(t.arrivals, [5])
    assert (c.duplicated, c.reruns, c.lost) == (1, 0, 0)


def test_finish_before_start_and_split_partitions_are_out_of_order():
    t = Topic()
    t.put(1, partition=0)  # finish first
    t.put(1, "start", partition=0)
    t.put(2, "start", partition=0)
    t.put(2, partition=1)  # in another partition: no order a consumer can rely on
    t.put(3, "start", partition=2)
    t.put(3, partition=2)
    c = count(t.arrivals, [1, 2, 3], start_records=True)
    assert (c.out_of_order, c.split, c.lost) == (2, 1, 0)


def test_missing_start_record_is_lost():
    t = Topic()
    t.put(1)
    c = count(t.arrivals, [1], start_records=True)
    assert c.lost == 1 and c.expected == 2


def test_records_of_unknown_jobs_and_invalid_values_fail():
    t = Topic()
    t.put(1)
    t.put(99)
    t.arrivals.append(Arrival(jk.Message(0, 9, b"1", b"{not json", None, {}), 2000.0))
    c = count(t.arrivals, [1])
    assert (c.unexpected, c.invalid) == (1, 1) and not c.ok()


def test_job_id_reused_after_a_crash_is_another_job():
    """Slurm forgot job 1 (submitted at 12:00, not saved before a crash) and
    gave its id to a job submitted at 12:05: both records are kept apart."""
    t = Topic()
    t.put(1)
    old = t.arrivals[0].msg
    old.value = old.value.replace(b'"@end"', b'"@submit":"2026-12-07T12:00:00","@end"')
    t.put(1, extra="new")
    new = t.arrivals[1].msg
    new.value = new.value.replace(b'"@end"', b'"@submit":"2026-12-07T12:05:00","@end"')
    c = count(t.arrivals, {1: "2026-12-07T12:05:00"})
    assert (c.lost, c.reruns, c.unexpected, c.duplicated) == (0, 0, 1, 0)
    assert c.ok(slurm_crashed=True) and not c.ok()
    # Without the submit time the second record would be taken for a re-run.
    assert count(t.arrivals, [1]).reruns == 1


def test_error_lines_grouped_by_cause():
    log = "\n".join([
        "[2026-12-07T12:00:00.001] error: jobcomp/kafka: librdkafka: FAIL [thrd:10.213.23.11:21201/1]: "
        "10.213.23.11:21201/1: Connect to ipv4#10.213.23.11:21201 failed: Connection refused",
        "[2026-12-07T12:00:01.001] error: jobcomp/kafka: librdkafka: FAIL [thrd:10.213.23.12:21201/2]: "
        "10.213.23.12:21201/2: Connect to ipv4#10.213.23.12:21201 failed: Connection refused",
        "[2026-12-07T12:00:02.001] warning: jobcomp/kafka: job 17: record not delivered (Local: Message timed out)",
        "[2026-12-07T12:00:03.001] error: _slurm_rpc_submit_batch_job: something else entirely",
        "[2026-12-07T12:00:04.001] verbose: jobcomp/kafka: started",
    ])
    lines = error_lines(log)
    assert len(lines) == 3
    c = causes(lines)
    assert len(c) == 2 and sorted(c.values()) == [1, 2]


def test_a_record_breaking_the_contract_counts_as_invalid():
    """With the release given, each record is checked against schema/: the
    24.11 example passes, the same record with jobid as a string is invalid
    and the run is not ok."""
    import json
    example = json.loads((jk.REPO / "tests/data/records/example-24.11-finish.json").read_text())
    good = jk.Message(0, 0, str(example["jobid"]).encode(), jk.jsonc_dumps(list(example.items())).encode(), None,
                      {jk.RECORD_ID_HEADER: "1"})
    c = count([Arrival(good, 1000.0)], [example["jobid"]], release="24.11.5")
    assert (c.invalid, c.lost) == (0, 0) and c.ok(), c.problems
    broken = dict(example, job_name=42)
    bad = jk.Message(0, 0, str(example["jobid"]).encode(), jk.jsonc_dumps(list(broken.items())).encode(), None,
                     {jk.RECORD_ID_HEADER: "1"})
    c = count([Arrival(bad, 1000.0)], [example["jobid"]], release="24.11.5")
    assert c.invalid == 1 and not c.ok(), c.problems
