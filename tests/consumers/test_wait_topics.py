"""jobcomp-wait on several clusters' topics and on duplicated records, with
records produced straight to the broker (the plugin's key and header)."""

import time

from conftest import produce, record_2205


def _wait(procs, broker, tag, *args, timeout=60):
    p = procs("jobcomp-wait", ["-b", broker.bootstrap, "--since", "10m", "--timeout", str(timeout), "-v", *args], tag)
    rc = p.wait(timeout + 60)
    return rc, p.stdout_lines(), p


def test_several_clusters_same_job_id(broker, procs):
    """Job 42 on two clusters: CLUSTER:42 takes that cluster's record only,
    and the output names the cluster (from --cluster, or --topic T=C)."""
    produce(broker.bootstrap, "wA", [(1, record_2205(jobid=42, state="FAILED"))])
    produce(broker.bootstrap, "wB", [(1, record_2205(jobid=42, state="COMPLETED"))])
    rc, lines, p = _wait(procs, broker, "multi-a", "--cluster", "wA", "--topic", "wB=bee", "wA:42")
    assert rc == 10, p.stderr()
    assert [(ln["cluster"], ln["topic"], ln["record"]["state"]) for ln in lines] == [("wA", "wA", "FAILED")]
    rc, lines, p = _wait(procs, broker, "multi-b", "--cluster", "wA", "--topic", "wB=bee", "bee:42")
    assert rc == 0, p.stderr()
    assert [(ln["cluster"], ln["topic"]) for ln in lines] == [("bee", "wB")]
    rc, lines, p = _wait(procs, broker, "multi-c", "wA:42")  # the cluster names its topic
    assert rc == 10 and len(lines) == 1, p.stderr()


def test_duplicate_records_counted_once(broker, procs):
    """An array task's record sent twice (same jobcomp.record_id) is printed
    once, and does not stand in for the task still missing; a requeued run's
    record (state PENDING) does not end the wait either."""
    t = lambda i, state: record_2205(jobid=800 + i, array_job_id=800, array_task_id=i, state=state)  # noqa: E731
    produce(broker.bootstrap, "wdup", [(10, t(0, "COMPLETED")), (10, t(0, "COMPLETED")), (11, t(1, "PENDING"))])
    p = procs("jobcomp-wait", ["-b", broker.bootstrap, "--cluster", "wdup", "--since", "10m", "--timeout", "120",
                               "-v", "800_[0-1]"], "dup-wait")
    time.sleep(5)
    assert p.p.poll() is None, f"ended early: {p.stderr()}"
    produce(broker.bootstrap, "wdup", [(12, t(1, "COMPLETED"))])
    assert p.wait(180) == 0, p.stderr()
    assert sorted(ln["record_id"] for ln in p.stdout_lines()) == ["10", "12"]
    assert "1 duplicate(s)" in p.stderr()
