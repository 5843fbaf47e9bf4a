"""Restart with the broker down, and kill -9 with the broker down, on Slurm
26.05.5 (record_job_start/end; the state file carries an event per record).

The same two situations tests/e2e covers on 22.05.8 and 24.11.5
(test_restart_broker_down.py, test_crash_spool.py), here with start events on
(enable_job_start): every job has a start and a finish record, and both must
survive. Each test has a broker of its own on a port where nothing listens
while the jobs run (connection refused, a broker host that is down); it is
started on that port before slurmctld comes back. Nothing can be in flight
while the broker is down: no record may come twice.

Ports (issue 14's range): brokers 20001 (restart) and 20002 (kill -9),
clusters 20011/20012 and 20021/20022.
"""

import contextlib
import os
import signal
import time

import jk
from jk import (KAFKA_PROPS, Broker, decode_record, extra_copies, pid_alive, port_open,
                read_state_file_events, record_id_problems, wait_for)
from rig26 import CHROOT_ROOT, RELEASE, schema_problems

PARAMS = "enable_job_start,flush_timeout=500"
EVENT_FINISH, EVENT_START = 1, 2


@contextlib.contextmanager
def _down_broker_cluster(request, name, broker_port, ports):
    """A started cluster of ours whose broker (its own, on broker_port) is down
    until the test starts it; both stopped at the end, the cluster's directory
    removed when nothing failed."""
    tag = os.environ.get("JK_E2E_TAG") or str(os.getpid())
    broker = Broker(f"/tmp/jk-26-e2e-{tag}/kafka-{name}", broker_port)
    assert not port_open(broker_port), f"port {broker_port} is in use: the broker must be down"
    c = jk.Cluster(release=RELEASE, name=name, dir=CHROOT_ROOT / "rig" / f"jk-26-e2e-{tag}-{name}",
                   ctld_port=ports[0], slurmd_port=ports[1], plugin="ours", bootstrap=broker.bootstrap,
                   params=PARAMS, kafka_props=KAFKA_PROPS)
    try:
        c.start()
        yield c, broker
    finally:
        try:
            c.stop()
        finally:
            broker.stop()
    if jk.remove_dirs(request):
        c.remove()


def _consume_both(c, broker, n, timeout):
    """Finish and start topics read back, n records expected in each: no
    extra message (nothing was in flight: no copy either), every record id
    sound. Returns (finish, start, summary)."""
    got_f = broker.consume(c.finish_topic, expect=n, timeout=timeout, linger=4)
    got_s = broker.consume(c.start_topic, expect=n, timeout=timeout, linger=4)
    copies_f, bad_f = extra_copies(got_f.messages)
    copies_s, bad_s = extra_copies(got_s.messages)
    summary = (f"finish records {len(got_f.messages)} (copies {copies_f}), start records "
               f"{len(got_s.messages)} (copies {copies_s}), expected {n} each")
    assert not bad_f and not bad_s, bad_f + bad_s
    assert got_f.rc == 0 and got_s.rc == 0, \
        f"consumer: finish rc {got_f.rc}, start rc {got_s.rc} (3 too few, 5 too many): {summary}"
    problems = record_id_problems(got_f.messages + got_s.messages)
    assert not problems, problems
    return got_f, got_s, summary


def _by_job(messages, what):
    """{jobid: message}; every record valid, of the right kind, keyed by its
    job id, once."""
    out = {}
    for m in messages:
        pairs = decode_record(m.value)
        rec = dict(pairs)
        assert m.key == str(rec["jobid"]).encode(), f"{what}: key {m.key!r} for job {rec['jobid']}"
        bad = schema_problems(pairs, start=(what == "start"))
        assert not bad, f"{what} record of job {rec['jobid']}: {bad}"
        assert rec["jobid"] not in out, f"{what}: job {rec['jobid']} twice"
        out[rec["jobid"]] = m
    return out


def test_restart_with_broker_down_26(request, numbers):
    with _down_broker_cluster(request, "jk26restart", jk.port(20001), (jk.port(20011), jk.port(20012))) as (c, broker):
        ids = c.run_jobs(6, timeout=120, prefix="restart-")
        snaps = c.show_jobs()
        assert all(snaps[i].state == "COMPLETED" for i in ids)
        pid = c.ctld_pid()
        c.scontrol("shutdown", "slurmctld")
        wait_for(lambda: not pid_alive(pid), 30, f"slurmctld {pid} to exit after scontrol shutdown")
        state = c.state_dir / "jobcomp_kafka_state"
        assert state.is_file(), f"no state file after shutdown: {sorted(p.name for p in c.state_dir.iterdir())}"
        version, saved = read_state_file_events(state)
        finish = {jid: body for ev, jid, body in saved if ev == EVENT_FINISH}
        start = {jid: body for ev, jid, body in saved if ev == EVENT_START}
        numbers(f"state file: version 0x{version:04x}, {len(saved)} records: {len(finish)} finish, "
                f"{len(start)} start (jobs {ids})")
        assert version == 0x2D00, f"26.05's protocol version, not 0x{version:04x}"
        assert len(saved) == 2 * len(ids), f"{len(saved)} records saved, expected a start and a finish of {ids}"
        assert sorted(finish) == sorted(ids) and sorted(start) == sorted(ids), (sorted(finish), sorted(start))

        broker.start()
        c.start_ctld()
        got_f, got_s, summary = _consume_both(c, broker, len(ids), 90)
        numbers(f"after restart: {summary}")
        for what, got, want in (("finish", got_f, finish), ("start", got_s, start)):
            delivered = _by_job(got.messages, what)
            assert sorted(delivered) == sorted(ids), f"{what}: jobs {sorted(delivered)}, expected {ids}"
            for jid, m in delivered.items():
                assert m.value == want[jid], f"{what} record of job {jid}: delivered bytes differ from the saved ones"
        wait_for(lambda: not list(c.state_dir.glob("jobcomp_kafka_state*")), 30,
                 "the state file and its .replaying claim to go")


def test_kill9_with_broker_down_26(request, numbers):
    with _down_broker_cluster(request, "jk26crash", jk.port(20002), (jk.port(20021), jk.port(20022))) as (c, broker):
        array = c.sbatch("--array=0-39", "-J", "crash", "--wrap", "true")
        c.wait_done([array], timeout=240)
        time.sleep(5)  # let slurmctld save its own job state: no re-run after the restart
        spool = c.state_dir / "jobcomp_kafka_spool"
        spooled = sum(p.stat().st_size for p in spool.glob("seg-*"))
        assert spooled > 0, "the broker is down: the records are in the spool"
        pid = c.ctld_pid()
        assert pid and pid_alive(pid), "slurmctld not running"
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), 30, f"slurmctld {pid} to die")
        assert not (c.state_dir / "jobcomp_kafka_state").exists(), "kill -9: no fini, no state file"
        broker.start()
        c.start_ctld()
        got_f, got_s, summary = _consume_both(c, broker, 40, 120)
        numbers(f"kill -9 with the broker down: 40 array tasks, spool before the kill {spooled} bytes; {summary}")
        for what, got in (("finish", got_f), ("start", got_s)):
            tasks = sorted((rec["array_job_id"], rec["array_task_id"])
                           for rec in (dict(decode_record(m.value)) for m in got.messages))
            assert tasks == [(array, t) for t in range(40)], f"{what}: every task's record arrives once: {tasks}"
            _by_job(got.messages, what)
