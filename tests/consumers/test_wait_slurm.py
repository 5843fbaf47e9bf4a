"""jobcomp-wait end to end: jobs submitted with sbatch to a real slurmctld
(Slurm 22.05.8 on the host) with our plugin publishing to a real broker; the
waiter, started before the job can run (sbatch --hold, then scontrol
release) or after it ended, returns the exit status of the job's state.

Het jobs are not here: in the rig's one-node cluster a het job of two
one-task components stays pending (Reason=Resources, seen on 22.05.8); how
the waiter matches their records is unit-tested (test_logic.py).

The tests run in file order; the time-limit job (60-90 s until Slurm ends
it) is submitted when the cluster starts and checked last. At the end every
record of the topic is checked against 22.05's schema and sunk into
PostgreSQL by jobcomp-sink, one row per record."""

import time

import psycopg
import pytest

from conftest import HOST_RELEASE, KAFKA_PROPS, Cluster, log, wait_for

CLUSTER = "jkwait"
WAIT_TIMEOUT = 240
# Records the jobs of this module produce (one per job / array task).
EXPECTED = {"records": 0}


@pytest.fixture(scope="module")
def cluster(pytestconfig, broker, session_dir):
    c = Cluster(release=HOST_RELEASE, name=CLUSTER, dir=session_dir / CLUSTER,
                ctld_port=pytestconfig.getoption("--ctld-port"),
                slurmd_port=pytestconfig.getoption("--slurmd-port"), plugin="ours",
                bootstrap=broker.bootstrap, kafka_props=KAFKA_PROPS)
    c.start()
    yield c
    c.stop()


def waiter(procs, cluster, spec, since, tag, *extra, timeout=WAIT_TIMEOUT):
    return procs("jobcomp-wait", ["-b", cluster.bootstrap, "--cluster", cluster.name, "--since", f"@{since:.3f}",
                                  "--timeout", str(timeout), "-v", *extra, spec], tag)


def held(cluster, *args, records=1):
    EXPECTED["records"] += records
    return cluster.sbatch("--hold", *args)


def release(cluster, jobid):
    cluster.scontrol("release", str(jobid))


def finished(w, timeout=WAIT_TIMEOUT + 60):
    rc = w.wait(timeout)
    return rc, w.stdout_lines()


@pytest.fixture(scope="module")
def timeout_job(cluster, procs):
    """The time-limit job and its waiter, started first (Slurm ends it 60-90 s later)."""
    t0 = time.time() - 1
    jid = held(cluster, "-J", "tlimit", "-t", "1", "--wrap", "sleep 600")
    w = waiter(procs, cluster, str(jid), t0, "timeout", timeout=400)
    release(cluster, jid)
    return jid, w


@pytest.mark.parametrize("label,wrap,code", [("completed", "true", 0), ("failed", "exit 3", 10)])
def test_single_job(cluster, procs, timeout_job, label, wrap, code):
    """COMPLETED -> 0, FAILED -> 10; the record printed, with the cluster name."""
    t0 = time.time() - 1
    jid = held(cluster, "-J", label, "--wrap", wrap)
    w = waiter(procs, cluster, str(jid), t0, label)
    release(cluster, jid)
    rc, lines = finished(w)
    assert rc == code, w.stderr()[-2000:]
    assert [(ln["cluster"], ln["record"]["jobid"], ln["exit_status"]) for ln in lines] == [(CLUSTER, jid, code)]


def test_cancelled(cluster, procs, timeout_job):
    """A running job cancelled with scancel -> 12."""
    t0 = time.time() - 1
    jid = held(cluster, "-J", "cancelme", "--wrap", "sleep 300")
    w = waiter(procs, cluster, str(jid), t0, "cancelled")
    release(cluster, jid)
    cluster.wait_state(jid, {"RUNNING"}, timeout=120)
    cluster.cmd("scancel", str(jid))
    rc, lines = finished(w)
    assert rc == 12, w.stderr()[-2000:]
    assert [ln["record"]["state"] for ln in lines] == ["CANCELLED"]


def test_array_all_tasks(cluster, procs, timeout_job):
    """All tasks of an array: 0 once every task COMPLETED, each task's record
    printed once; with task 1 failing, 10; one task alone: its record only."""
    t0 = time.time() - 1
    ok = held(cluster, "-J", "arr-ok", "--array=0-2", "--wrap", "true", records=3)
    bad = held(cluster, "-J", "arr-bad", "--array=0-2", "--wrap", "exit $((SLURM_ARRAY_TASK_ID == 1))", records=3)
    w_ok = waiter(procs, cluster, f"{ok}_[0-2]", t0, "array-ok")
    w_bad = waiter(procs, cluster, f"{bad}_[0-2]", t0, "array-bad")
    w_one = waiter(procs, cluster, f"{CLUSTER}:{bad}_2", t0, "array-one")
    release(cluster, ok)
    release(cluster, bad)
    rc, lines = finished(w_ok)
    assert rc == 0, w_ok.stderr()[-2000:]
    assert sorted(ln["record"]["array_task_id"] for ln in lines) == [0, 1, 2]
    assert {ln["record"]["array_job_id"] for ln in lines} == {ok}
    rc, lines = finished(w_bad)
    assert rc == 10, w_bad.stderr()[-2000:]
    assert sorted((ln["record"]["array_task_id"], ln["record"]["state"]) for ln in lines) == \
        [(0, "COMPLETED"), (1, "FAILED"), (2, "COMPLETED")]
    rc, lines = finished(w_one)
    assert rc == 0 and [ln["record"]["array_task_id"] for ln in lines] == [2], w_one.stderr()[-2000:]


def _record_timestamp_ms(broker, jobid):
    """The Kafka timestamp of the job's record in the cluster's topic, once it is there."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "probe", "enable.auto.commit": False})
    try:
        # The job's record may be the topic's first: wait for the topic.
        parts = wait_for(lambda: c.list_topics(timeout=10).topics.get(CLUSTER, None) and
                         list(c.list_topics(timeout=10).topics[CLUSTER].partitions), 60, f"topic {CLUSTER}")
        c.assign([TopicPartition(CLUSTER, p, 0) for p in parts])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error() and m.key() == str(jobid).encode():
                return m.timestamp()[1]
        raise AssertionError(f"no record of job {jobid} in {CLUSTER} within 60 s")
    finally:
        c.close()


def test_job_that_ended_before_the_waiter_started(cluster, procs, broker, timeout_job):
    """A job whose record is already in the topic: found by time (--since
    before its submission) -> 0 at once; with --since after its record, not
    taken (the waiter times out: 124), though it is still in the topic."""
    t0 = time.time() - 1
    EXPECTED["records"] += 1
    jid = cluster.sbatch("-J", "early", "--wrap", "true")
    cluster.wait_done([jid], 120)
    ts = _record_timestamp_ms(broker, jid)
    w = waiter(procs, cluster, str(jid), t0, "before")
    rc, lines = finished(w)
    assert rc == 0 and [ln["record"]["jobid"] for ln in lines] == [jid], w.stderr()[-2000:]
    late = waiter(procs, cluster, str(jid), ts / 1000 + 1, "after", timeout=15)
    rc, lines = finished(late)
    assert rc == 124 and lines == [], late.stderr()[-2000:]


def test_timeout(cluster, timeout_job):
    """A job killed at its time limit -> 11."""
    jid, w = timeout_job
    rc, lines = finished(w, 460)
    assert rc == 11, w.stderr()[-2000:]
    assert [(ln["record"]["jobid"], ln["record"]["state"]) for ln in lines] == [(jid, "TIMEOUT")]


def test_real_records_valid_and_sunk(cluster, broker, postgres, procs):
    """Every record of the topic (each job above) is valid for 22.05's schema
    (jk.check_contract, through Broker.consume), and jobcomp-sink stores one
    row per record with the record's state and the cluster's name."""
    n = EXPECTED["records"]
    got = broker.consume(CLUSTER, expect=n, timeout=60)
    assert got.rc == 0, f"{len(got.messages)} records in {CLUSTER}, expected {n}"
    s = procs("jobcomp-sink", ["-b", broker.bootstrap, "--cluster", CLUSTER, "--dsn", postgres, "--table",
                               "ev_slurm", "--create-table", "--exit-when-idle", "5"], "sink-slurm")
    assert s.wait(180) == 0, s.stderr()[-2000:]
    import json
    want = sorted((json.loads(m.value)["jobid"], json.loads(m.value)["state"]) for m in got.messages)
    with psycopg.connect(postgres) as c:
        rows = c.execute("SELECT jobid, state FROM ev_slurm WHERE cluster = %s ORDER BY 1, 2", (CLUSTER,)).fetchall()
    assert sorted(rows) == want
    log(f"{n} records of {CLUSTER} valid and in PostgreSQL")
