"""The consumers' pure logic (python/jobcomp_kafka/records.py, the sink's row
mapping), without Kafka, Slurm or PostgreSQL."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from conftest import EXAMPLE
from jobcomp_kafka import records as R
from jobcomp_kafka.sink import row_of


def rec(**kw):
    return dict(EXAMPLE, **kw)


def test_state_to_exit_status_is_distinct_per_documented_state():
    """0 for COMPLETED; a different documented code per failure state; 19 for
    any other final state; none collides with usage (2), Kafka (4) or
    timeout (124)."""
    want = {"COMPLETED": 0, "FAILED": 10, "TIMEOUT": 11, "CANCELLED": 12, "OUT_OF_MEMORY": 13,
            "NODE_FAIL": 14, "PREEMPTED": 15, "BOOT_FAIL": 16, "DEADLINE": 17}
    for state, code in want.items():
        assert R.exit_status(state) == code, state
    assert R.exit_status("REVOKED") == 19
    codes = set(want.values()) | {19}
    assert len(codes) == len(want) + 1
    assert not codes & {R.EXIT_USAGE, R.EXIT_KAFKA, R.EXIT_TIMEOUT}


def test_requeue_start_and_resize_records_are_not_final():
    """A requeued job's record (PENDING), a start record (state null) and a
    resizing one do not end the wait."""
    assert R.is_final(rec(state="FAILED"))
    for state in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "RESIZING", None):
        assert not R.is_final(rec(state=state)), state
    c = R.Completion(R.JobSpec.parse("1234"))
    assert not c.add(rec(state="PENDING"))
    assert not c.done()
    assert c.add(rec(state="COMPLETED")) and c.done() and c.status() == 0


def test_dedup_on_record_id_header_per_cluster():
    """Same jobcomp.record_id in one cluster: a duplicate; in another cluster:
    not; no header: the bytes decide."""
    d = R.Dedup()
    h = [("jobcomp.record_id", b"77")]
    assert R.record_id(h, b"x") == "77"
    assert not d.seen("c1", R.record_id(h, b"x"))
    assert d.seen("c1", R.record_id(h, b"x"))
    assert not d.seen("c2", R.record_id(h, b"x"))
    a, b = R.record_id(None, b'{"jobid":1}'), R.record_id([], b'{"jobid":2}')
    assert a.startswith("sha256:") and a != b
    assert not d.seen("c1", a) and d.seen("c1", R.record_id(None, b'{"jobid":1}'))


def test_jobspec_parse():
    assert R.JobSpec.parse("42") == R.JobSpec(None, 42, "job")
    assert R.JobSpec.parse("hpc1:42_3") == R.JobSpec("hpc1", 42, "array", (3,))
    assert R.JobSpec.parse("42_[0-3,7,10-14:2]%2").members == (0, 1, 2, 3, 7, 10, 12, 14)
    assert R.JobSpec.parse("42+[0-1]") == R.JobSpec(None, 42, "het", (0, 1))
    for bad in ("x", "42_", "42_[3-1]", ":42", "42+[a]"):
        with pytest.raises(ValueError):
            R.JobSpec.parse(bad)


def test_array_completion_waits_for_every_task_and_reports_first_failure():
    """All tasks: done only when each listed task has a final record; status 0
    only if all COMPLETED, else the code of the lowest failing task; other
    arrays' and unlisted tasks' records are ignored; a task's second final
    record (a duplicate that got past dedup) does not count twice."""
    c = R.Completion(R.JobSpec.parse("100_[0-2]"))
    t = lambda i, state, arr=100: rec(jobid=arr + i, array_job_id=arr, array_task_id=i, state=state)  # noqa: E731
    assert c.add(t(2, "TIMEOUT"))
    assert not c.add(t(2, "COMPLETED"))
    assert not c.add(t(0, "FAILED", arr=200))
    assert not c.add(t(5, "FAILED"))
    assert not c.done() and c.pending() == [0, 1]
    assert c.add(t(0, "COMPLETED"))
    assert c.add(t(1, "OUT_OF_MEMORY"))
    assert c.done()
    assert c.status() == 13  # task 1 comes before task 2
    ok = R.Completion(R.JobSpec.parse("100_[0-1]"))
    ok.add(t(0, "COMPLETED"))
    ok.add(t(1, "COMPLETED"))
    assert ok.done() and ok.status() == 0
    one = R.Completion(R.JobSpec.parse("100_1"))
    one.add(t(0, "FAILED"))
    assert not one.done()


def test_het_job_components():
    """A het-job component is matched on het_job_id + het_job_offset; an
    ordinary job (het_job_id 0) never is."""
    c = R.Completion(R.JobSpec.parse("300+[0-1]"))
    assert not c.add(rec(jobid=300, het_job_id=0, het_job_offset=0, state="COMPLETED"))
    assert c.add(rec(jobid=300, het_job_id=300, het_job_offset=0, state="COMPLETED"))
    assert c.add(rec(jobid=301, het_job_id=300, het_job_offset=1, state="CANCELLED"))
    assert c.done() and c.status() == 12


def test_parse_since():
    now = datetime(2026, 12, 7, 12, 0, 0, tzinfo=timezone.utc)
    assert R.parse_since("2h", now) == now - timedelta(hours=2)
    assert R.parse_since("@1796644800") == datetime.fromtimestamp(1796644800, timezone.utc)
    assert R.parse_since("2026-12-07T10:00:00Z") == datetime(2026, 12, 7, 10, tzinfo=timezone.utc)
    assert R.parse_since("2026-12-07T10:00:00+01:00") == datetime(2026, 12, 7, 9, tzinfo=timezone.utc)
    with pytest.raises(ValueError):
        R.parse_since("yesterday")


def test_topic_map_keeps_cluster_names():
    assert R.topic_map(["a", "b"], ["jobs-c=c", "d"]) == {"a": "a", "b": "b", "jobs-c": "c", "d": "d"}


def test_sink_row_of_the_example_record():
    """Typed columns from record-format.md's example; times in UTC; the whole
    record kept; a start record (state null, no @end) is event 'start'."""
    value = json.dumps(EXAMPLE).encode()
    row = row_of("cluster1", "t", 3, 17, [("jobcomp.record_id", b"99")], value)
    assert row["record_id"] == "99" and row["event"] == "finish" and row["jobid"] == 1234
    assert row["end_time"] == datetime(2024, 5, 1, 11, 1, 1, tzinfo=timezone.utc)
    assert row["submit_time"] == datetime(2024, 5, 1, 9, 58, tzinfo=timezone.utc)
    assert row["cpu_hours"] == 4.0677776336669922 and row["account"] == "physics"
    assert row["array_job_id"] is None and row["record"] == EXAMPLE
    start = {k: v for k, v in EXAMPLE.items() if k not in ("@end", "elapsed", "cpu_hours")}
    start["state"] = None
    assert row_of("c", "t", 0, 0, None, json.dumps(start).encode())["event"] == "start"
    unk = row_of("c", "t", 0, 0, None, json.dumps(dict(EXAMPLE, **{"@start": "Unknown"})).encode())
    assert unk["start_time"] is None
    with pytest.raises(ValueError):
        row_of("c", "t", 0, 0, None, b"not json")


def test_docs_show_the_tested_query():
    """docs/consumers.md quotes the query test_sink.py runs, for the default table."""
    from conftest import REPO
    from jobcomp_kafka.sink import CPU_HOURS_LAST_WEEK_SQL
    assert CPU_HOURS_LAST_WEEK_SQL.format(table="jobcomp_event").strip() in (REPO / "docs/consumers.md").read_text()


def test_docs_show_the_table_the_sink_creates():
    """docs/consumers.md's CREATE TABLE block is the sink's own DDL for the
    default table (comments aside), so the columns a reader plans queries on
    are the ones --create-table makes."""
    import re
    from conftest import REPO
    from jobcomp_kafka.sink import DEFAULT_TABLE, TABLE_SQL
    doc = (REPO / "docs/consumers.md").read_text()
    block = re.search(r"```sql\n(CREATE TABLE IF NOT EXISTS jobcomp_event .*?)```", doc, re.S).group(1)
    def normal(sql):
        return [re.sub(r"\s+", " ", line.split("--")[0]).strip() for line in sql.strip().splitlines()]
    ddl = TABLE_SQL.format(table=DEFAULT_TABLE, index_prefix=DEFAULT_TABLE)
    assert normal(block) == normal(ddl)
