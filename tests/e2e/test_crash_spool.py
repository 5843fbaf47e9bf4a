"""Issue 4 on real slurmctld: records survive slurmctld dying without fini.

SchedMD's plugin keeps undelivered records only in librdkafka's memory, so a
kill -9 (or an OOM kill, or the re-exec of `scontrol reconfigure` on 23.11+)
loses them. Ours spools every record before log_record returns. Here the
broker is down (nothing listens on the test's own port) while the jobs end;
then slurmctld dies without fini; then the broker comes up and slurmctld
starts again: every record must arrive, valid and byte-identical, and a
record may arrive twice only as a recognisable duplicate (same bytes, same
jobcomp.record_id).

A job whose end slurmctld had not yet saved in its own state before the kill
is run again by Slurm after the restart, and then rightly has a second record
(another run: other times, another record id). The tests wait a few seconds
after the last job before killing, so that Slurm has saved its state, and
count such re-runs separately if they happen anyway.
"""

import os
import signal
import time

import pytest

from jk import (CRASH_BROKER_PORT, KAFKA_PROPS, Broker, decode_record, pid_alive, port_open,
                record_id_problems, series, wait_for)


def _tally(messages):
    """(records by array task or job, recognisable duplicates, re-runs, invalid)."""
    by_task = {}
    invalid = 0
    for m in messages:
        try:
            rec = dict(decode_record(m.value))
        except ValueError:
            invalid += 1
            continue
        task = (rec.get("array_job_id"), rec.get("array_task_id"), rec["jobid"])
        by_task.setdefault(task[:2] if task[1] is not None else task[2], []).append((m, rec))
    duplicates = reruns = 0
    for copies in by_task.values():
        first, _ = copies[0]
        for m, _ in copies[1:]:
            if m.value == first.value and m.headers.get("jobcomp.record_id") == first.headers.get("jobcomp.record_id"):
                duplicates += 1
            else:
                reruns += 1
    return by_task, duplicates, reruns, invalid


def _kill9(cluster):
    pid = cluster.ctld_pid()
    assert pid and pid_alive(pid), "slurmctld not running"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), 30, f"slurmctld {pid} to die")


@pytest.mark.releases("22.05.8")
def test_kill9_with_broker_down_loses_nothing(release, session_dir, make_cluster, numbers):
    port = CRASH_BROKER_PORT[series(release)]
    broker = Broker(session_dir / "kafka-crash", port)
    assert not port_open(port), f"port {port} is in use: the broker must be down"
    topic = "jk-crash"
    c = make_cluster("jkcrash", "crash", plugin="ours", bootstrap=broker.bootstrap, topic=topic,
                     params="", kafka_props=KAFKA_PROPS)
    try:
        array = c.sbatch("--array=0-199", "-J", "crash", "--wrap", "true")
        c.wait_done([array], timeout=240)
        time.sleep(5)  # let slurmctld save its own job state
        spool = c.state_dir / "jobcomp_kafka_spool"
        spooled = sum(p.stat().st_size for p in spool.glob("seg-*"))
        _kill9(c)
        assert not (c.state_dir / "jobcomp_kafka_state").exists(), "kill -9: no fini, no state file"
        broker.start()
        c.start_ctld()
        got = broker.consume(topic, expect=200, timeout=120, linger=4)
        by_task, duplicates, reruns, invalid = _tally(got.messages)
        numbers(f"kill -9 with the broker down: jobs 200, spool before the kill {spooled} bytes, "
                f"records received={len(got.messages)} distinct tasks={len(by_task)} "
                f"duplicates={duplicates} re-runs by Slurm={reruns} invalid={invalid}")
        assert invalid == 0
        assert duplicates == 0, "the broker was down: nothing was in flight, so nothing may come twice"
        assert sorted(by_task) == [(array, t) for t in range(200)], "every task's record arrives"
        assert not record_id_problems(got.messages), record_id_problems(got.messages)
    finally:
        try:
            c.stop()
        finally:
            broker.stop()


@pytest.mark.releases("24.11.5")
def test_reconfigure_with_broker_down_loses_nothing(release, session_dir, make_cluster, numbers):
    """23.11+: `scontrol reconfigure` re-execs slurmctld without calling fini."""
    port = CRASH_BROKER_PORT[series(release)]
    broker = Broker(session_dir / "kafka-crash", port)
    assert not port_open(port), f"port {port} is in use: the broker must be down"
    topic = "jk-reconf-down"
    c = make_cluster("jkreconfdown", "crash", plugin="ours", bootstrap=broker.bootstrap, topic=topic,
                     params="", kafka_props=KAFKA_PROPS)
    try:
        before = c.run_jobs(20, timeout=120, prefix="before-")
        time.sleep(3)
        c.scontrol("reconfigure")
        wait_for(c.ping_ok, 60, "slurmctld to answer after reconfigure", interval=0.2)
        after = c.run_jobs(5, timeout=120, prefix="after-")
        broker.start()
        got = broker.consume(topic, expect=25, timeout=120, linger=4)
        by_job, duplicates, reruns, invalid = _tally(got.messages)
        numbers(f"reconfigure (re-exec) with the broker down: jobs 25, records received={len(got.messages)} "
                f"distinct jobs={len(by_job)} duplicates={duplicates} re-runs by Slurm={reruns} invalid={invalid}")
        assert invalid == 0
        assert duplicates == 0, "the broker was down: nothing was in flight, so nothing may come twice"
        assert sorted(by_job) == sorted(before + after), "every job's record arrives"
        assert not record_id_problems(got.messages), record_id_problems(got.messages)
    finally:
        try:
            c.stop()
        finally:
            broker.stop()
