"""jobcomp-sink against a real broker and a real PostgreSQL server: one row
per job event, duplicates change nothing, a sink killed inside a batch loses
and doubles nothing, several clusters in one table, and the documented
"CPU hours per account last week" query."""

import os
import signal
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from conftest import produce, record_2205
from jk import wait_for
from jobcomp_kafka.sink import CPU_HOURS_LAST_WEEK_SQL


def _rows(dsn, table, what="count(*)", order=""):
    with psycopg.connect(dsn) as c:
        return c.execute(f"SELECT {what} FROM {table} {order}").fetchall()


def _count(dsn, table):
    with psycopg.connect(dsn) as c:
        if c.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
            return 0
        return c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _sink(procs, broker, dsn, table, tag, *args, env=None):
    argv = ["-b", broker.bootstrap, "--dsn", dsn, "--table", table, "--group", f"g-{table}",
            "--create-table", "-v", *args]
    if env:
        os.environ.update(env)
        try:
            return procs("jobcomp-sink", argv, tag)
        finally:
            for k in env:
                del os.environ[k]
    return procs("jobcomp-sink", argv, tag)


def _snapshot(dsn, table):
    """Every row's identity and physical version (xmin changes on any update)."""
    return _rows(dsn, table, "cluster, record_id, xmin::text, ingested_at, record::text", "ORDER BY 1, 2")


def test_duplicates_change_nothing(broker, postgres, procs):
    """The same records produced again (same jobcomp.record_id: the plugin's
    re-send after a crash) and read again by a second sink run leave the
    table as it was: same rows, same row versions."""
    topic, table = "dup1", "ev_dup"
    recs = [(1000 + i, record_2205(jobid=500 + i)) for i in range(20)]
    produce(broker.bootstrap, topic, recs)
    s = _sink(procs, broker, postgres, table, "dup-1", "--cluster", topic, "--exit-when-idle", "5")
    wait_for(lambda: _count(postgres, table) == 20, 120, "20 rows")
    assert s.wait(120) == 0
    before = _snapshot(postgres, table)
    assert len(before) == 20
    produce(broker.bootstrap, topic, recs[:10])  # re-sent copies
    # A different group reads the whole topic again: every record a duplicate.
    s2 = _sink(procs, broker, postgres, table, "dup-2", "--cluster", topic, "--exit-when-idle", "5",
               "--group", "another-group")
    assert s2.wait(180) == 0
    assert "0 row(s) inserted, 30 already there" in s2.stderr(), s2.stderr()[-1000:]
    s3 = _sink(procs, broker, postgres, table, "dup-3", "--cluster", topic, "--exit-when-idle", "5")
    assert s3.wait(180) == 0
    assert "0 row(s) inserted, 10 already there" in s3.stderr(), s3.stderr()[-1000:]
    assert _snapshot(postgres, table) == before


def test_sink_killed_mid_batch_loses_and_doubles_nothing(broker, postgres, procs, session_dir):
    """SIGKILL while batch 2's rows are inserted but not committed; the
    restarted sink ends with every record exactly once, batch 1's rows
    untouched (offsets were committed after batch 1's COMMIT, none after
    batch 2's rows)."""
    topic, table, n, batch = "kill1", "ev_kill", 300, 100
    produce(broker.bootstrap, topic, [(5000 + i, record_2205(jobid=7000 + i)) for i in range(n)], partition=0)
    stall = session_dir / "sink-stall"
    s = _sink(procs, broker, postgres, table, "kill-1", "--cluster", topic, "--batch", str(batch),
              env={"JK_SINK_TEST_STALL_BATCH": "2", "JK_SINK_TEST_STALL_FILE": str(stall)})
    wait_for(lambda: stall.exists(), 180, "the sink to stall inside batch 2")
    first = _snapshot(postgres, table)  # batch 1 (up to --batch messages); batch 2 not committed
    assert 0 < len(first) <= batch
    s.kill(signal.SIGKILL)
    s2 = _sink(procs, broker, postgres, table, "kill-2", "--cluster", topic, "--batch", str(batch),
               "--exit-when-idle", "8")
    assert s2.wait(240) == 0, s2.stderr()[-2000:]
    rows = _rows(postgres, table, "count(*), count(DISTINCT record_id), min(jobid), max(jobid)")[0]
    assert rows == (n, n, 7000, 7000 + n - 1)
    assert f"{n - len(first)} row(s) inserted, 0 already there" in s2.stderr(), s2.stderr()[-1000:]
    after = {r[:2]: r for r in _snapshot(postgres, table)}
    assert all(after[r[:2]] == r for r in first), "batch 1's rows were written again"


def test_several_clusters_one_table(broker, postgres, procs):
    """Three clusters' topics, the same job ids and record ids in each: one
    row per (cluster, record), the cluster name from --cluster / --topic."""
    table = "ev_multi"
    for t in ("hpcA", "hpcB", "jobs-gpu"):
        produce(broker.bootstrap, t, [(1, record_2205(jobid=42, state="COMPLETED")),
                                      (2, record_2205(jobid=43, state="FAILED"))])
    s = _sink(procs, broker, postgres, table, "multi", "--cluster", "hpcA", "--cluster", "hpcB",
              "--topic", "jobs-gpu=gpu", "--exit-when-idle", "5")
    assert s.wait(180) == 0
    got = _rows(postgres, table, "cluster, jobid, state, topic", "ORDER BY 1, 2")
    assert got == [("gpu", 42, "COMPLETED", "jobs-gpu"), ("gpu", 43, "FAILED", "jobs-gpu"),
                   ("hpcA", 42, "COMPLETED", "hpcA"), ("hpcA", 43, "FAILED", "hpcA"),
                   ("hpcB", 42, "COMPLETED", "hpcB"), ("hpcB", 43, "FAILED", "hpcB")]


def _t(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S")


def test_cpu_hours_per_account_last_week(broker, postgres, procs):
    """docs/consumers.md's query on known records: finish records that ended
    last week count, this week's and the week before's do not, nor start
    records; a duplicate counts once."""
    topic, table = "week1", "ev_week"
    now = datetime.now(timezone.utc)
    monday = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    last_week = monday - timedelta(days=4)  # a Thursday of last week
    jobs = [  # (record id, account, end, elapsed s, cpus) -> cpu_hours elapsed*cpus/3600
        (1, "physics", last_week, 3600, 4),  # 4.0
        (2, "physics", monday - timedelta(seconds=1), 1800, 5),  # 2.5, last second of last week
        (3, "chem", last_week - timedelta(days=2), 900, 4),  # 1.0
        (4, "chem", monday, 3600, 8),  # this week: not counted
        (5, "physics", monday - timedelta(days=7, seconds=1), 3600, 16),  # the week before: not counted
    ]
    items = []
    for rid, acct, end, el, cpus in jobs:
        items.append((rid, record_2205(jobid=9000 + rid, account=acct, elapsed=el, total_cpus=cpus,
                                       cpu_hours=el * cpus / 3600, **{"@end": _t(end),
                                                                       "@start": _t(end - timedelta(seconds=el))})))
    items.append((1, items[0][1]))  # duplicate of record 1
    start = {k: v for k, v in record_2205(jobid=9100, account="physics").items()
             if k not in ("@end", "elapsed", "derived_ec", "exit_code", "failed_node", "cpu_hours",
                          "pack_job_id", "pack_job_offset")}
    start.update(state=None, **{"@start": _t(last_week)})
    items.append((99, start))
    produce(broker.bootstrap, topic, items)
    s = _sink(procs, broker, postgres, table, "week", "--cluster", topic, "--exit-when-idle", "5")
    assert s.wait(180) == 0
    with psycopg.connect(postgres) as c:
        c.execute("SET TimeZone = 'UTC'")
        got = c.execute(CPU_HOURS_LAST_WEEK_SQL.format(table=table)).fetchall()
    assert got == [("physics", 6.5, 2), ("chem", 1.0, 1)]
