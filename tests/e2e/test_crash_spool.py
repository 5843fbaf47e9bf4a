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
could be run again by Slurm after the restart; the tests wait a few seconds
after the last job before killing, so that Slurm has saved its state, and then
no record may come twice: the broker was down, nothing was in flight. Any
extra message fails, whether an identical copy (same bytes and record id) or
another record of the same job (other bytes or another record id), and so does
the consumer's "more records than expected" result.
"""

import os
import signal
import time

import pytest

from jk import (CRASH_BROKER_PORT, KAFKA_PROPS, Broker, compare_with_scontrol, decode_record, pid_alive,
                port_open, record_id_problems, series, wait_for)


def _against_scontrol(messages, snaps, release):
    """Each record field by field against scontrol's view of its job, taken
    before the crash (the record a job got before the crash is the one that
    must arrive after it)."""
    bad = []
    for m in messages:
        rec = dict(decode_record(m.value))
        snap = snaps.get(rec["jobid"])
        if snap is None:
            bad.append(f"job {rec['jobid']}: no scontrol view")
            continue
        bad += [f"job {rec['jobid']}: {p}" for p in compare_with_scontrol(rec, snap, release=release)]
    return bad


def _tally(messages):
    """(records by array task or job, identical copies, other extra records,
    invalid). An identical copy repeats the first message's bytes and record
    id; any other second message of a task or job is an "other" extra."""
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
    copies = others = 0
    for records in by_task.values():
        first, _ = records[0]
        for m, _ in records[1:]:
            if m.value == first.value and m.headers.get("jobcomp.record_id") == first.headers.get("jobcomp.record_id"):
                copies += 1
            else:
                others += 1
    return by_task, copies, others, invalid


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
        snaps = c.show_jobs()
        spool = c.state_dir / "jobcomp_kafka_spool"
        spooled = sum(p.stat().st_size for p in spool.glob("seg-*"))
        _kill9(c)
        assert not (c.state_dir / "jobcomp_kafka_state").exists(), "kill -9: no fini, no state file"
        broker.start()
        c.start_ctld()
        got = broker.consume(topic, expect=200, timeout=120, linger=4)
        assert spooled > 0, "the broker was down: the records are in the spool before the kill"
        by_task, copies, others, invalid = _tally(got.messages)
        numbers(f"kill -9 with the broker down: jobs 200, spool before the kill {spooled} bytes, "
                f"records received={len(got.messages)} distinct tasks={len(by_task)} "
                f"identical copies={copies} other extra records={others} invalid={invalid}")
        assert invalid == 0
        assert copies == 0, "the broker was down: nothing was in flight, so nothing may come twice"
        assert others == 0, "another record of a task (other bytes or record id): produced again, or re-run"
        assert got.rc == 0, "consumer: " + ("too few" if got.rc == 3 else "more records than expected")
        assert sorted(by_task) == [(array, t) for t in range(200)], "every task's record arrives"
        assert not record_id_problems(got.messages), record_id_problems(got.messages)
        bad = _against_scontrol(got.messages, snaps, release)
        assert not bad, bad[:20]
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
        snaps = c.show_jobs()
        broker.start()
        got = broker.consume(topic, expect=25, timeout=120, linger=4)
        by_job, copies, others, invalid = _tally(got.messages)
        numbers(f"reconfigure (re-exec) with the broker down: jobs 25, records received={len(got.messages)} "
                f"distinct jobs={len(by_job)} identical copies={copies} other extra records={others} "
                f"invalid={invalid}")
        assert invalid == 0
        assert copies == 0, "the broker was down: nothing was in flight, so nothing may come twice"
        # Slurm re-runs no job at a reconfigure: another record of a job can
        # only be the plugin producing a spooled record again under a new id.
        assert others == 0, "a job's record produced again (other bytes or another record id)"
        assert got.rc == 0, "consumer: " + ("too few" if got.rc == 3 else "more records than expected")
        assert sorted(by_job) == sorted(before + after), "every job's record arrives"
        assert not record_id_problems(got.messages), record_id_problems(got.messages)
        bad = _against_scontrol(got.messages, snaps, release)
        assert not bad, bad[:20]
    finally:
        try:
            c.stop()
        finally:
            broker.stop()
