"""`scontrol reconfigure` re-reads JobCompParams; SIGUSR2 changes nothing
(22.05.8 and 24.11.5).

JobCompParams goes from topic=A,flush_timeout=500 to topic=B,flush_timeout=1500
in slurm.conf, then `scontrol reconfigure`: records of jobs that ended before
stay in A (including three that ended right before the reconfigure: on 23.11+
slurmctld re-execs itself then, and a record still queued in memory would be
lost), later ones go to B. Then SIGUSR2 to slurmctld (it re-reads its log
settings): records keep flowing to B. Each topic holds exactly its jobs' records.
"""

import os
import re
import signal

import pytest

from jk import KAFKA_PROPS, decode_record, messages_by_job, pid_alive, record_id_problems, series, wait_for


def _log_since(c, offset):
    return c.log_path.read_bytes()[offset:].decode("utf-8", "replace")


def _records(got):
    by_job, invalid = messages_by_job(got.messages)
    return {jid: [dict(decode_record(m.value)) for m in ms] for jid, ms in by_job.items()}, invalid


def test_reconfigure_topic_and_sigusr2(release, broker, make_cluster, numbers):
    s = series(release)
    topic_a, topic_b = f"jk-reconf-a-{s}", f"jk-reconf-b-{s}"
    c = make_cluster("jkreconf", "reconf", plugin="ours", bootstrap=broker.bootstrap, topic=topic_a,
                     params="flush_timeout=500", kafka_props=KAFKA_PROPS)
    before = c.run_jobs(3, prefix="a-")
    # End right before the reconfigure.
    last = [c.sbatch("-J", f"last-{i}", "--wrap", "true") for i in range(3)]
    c.wait_done(last, 60)

    conf = c.dir / "slurm.conf"
    text = conf.read_text()
    new, n = re.subn(r"(?m)^JobCompParams=.*$", f"JobCompParams=topic={topic_b},flush_timeout=1500", text)
    assert n == 1
    conf.write_text(new)
    offset = c.log_path.stat().st_size
    c.scontrol("reconfigure")
    wait_for(c.ping_ok, 60, "slurmctld to answer after reconfigure", interval=0.2)
    c.check_plugin_loaded()
    # The plugin took the new settings (its start-up line names them).
    wait_for(lambda: re.search(r"jobcomp/kafka:.*flush_timeout\D{0,3}1500", _log_since(c, offset)), 20,
             "the plugin to log flush_timeout=1500 after the reconfigure")
    after = c.run_jobs(3, prefix="b-")

    pid = c.ctld_pid()
    offset = c.log_path.stat().st_size
    os.kill(pid, signal.SIGUSR2)
    wait_for(lambda: "SIGUSR2" in _log_since(c, offset), 20, "slurmctld to handle SIGUSR2")
    after_usr2 = c.run_jobs(3, prefix="usr2-")
    assert pid_alive(pid) and c.ctld_pid() == pid, "slurmctld restarted on SIGUSR2"

    want_a = sorted(before + last)
    want_b = sorted(after + after_usr2)
    ga = broker.consume(topic_a, expect=len(want_a), timeout=60, linger=3)
    gb = broker.consume(topic_b, expect=len(want_b), timeout=60, linger=3)
    # At-least-once (README): a record in flight when slurmctld re-execs
    # itself (23.11+) may come again, byte-identical with the same
    # jobcomp.record_id, to the topic it was produced to. Such copies are
    # counted (only allowed for the jobs that ended right before, and never
    # on 22.05, which reconfigures in place); anywhere else they fail.
    seen, copies = set(), []
    for m in ga.messages:
        k = (m.headers.get("jobcomp.record_id"), m.value)
        if k in seen:
            copies.append(m)
        seen.add(k)
    ga.messages = [m for m in ga.messages if m not in copies]
    ra, inv_a = _records(ga)
    rb, inv_b = _records(gb)
    dups = sum(len(v) - 1 for v in ra.values()) + sum(len(v) - 1 for v in rb.values())
    numbers(f"topic A: records expected={len(want_a)} received={len(ga.messages) + len(copies)} "
            f"(identical copies after the re-exec: {len(copies)}); topic B: expected={len(want_b)} "
            f"received={len(gb.messages)}; duplicates={dups} invalid={inv_a + inv_b}")
    assert inv_a == 0 and inv_b == 0
    assert not record_id_problems(ga.messages + gb.messages), record_id_problems(ga.messages + gb.messages)
    assert sorted(ra) == want_a, f"topic {topic_a} holds jobs {sorted(ra)}, expected {want_a}"
    assert sorted(rb) == want_b, f"topic {topic_b} holds jobs {sorted(rb)}, expected {want_b}"
    assert dups == 0
    if release.startswith("22.05"):
        assert not copies, f"{len(copies)} record(s) produced twice without any restart"
    else:
        assert all(dict(decode_record(m.value))["jobid"] in last for m in copies), "copies of other records"
    assert ga.rc == (5 if copies else 0)  # 5: more records than expected (the copies)
    assert gb.rc == 0
    for recs in list(ra.values()) + list(rb.values()):
        assert recs[0]["state"] == "COMPLETED"


@pytest.mark.releases("24.11.5")
def test_reconfigure_reexec_no_replay_into_new_topic(release, broker, make_cluster, numbers):
    """A record delivered before `scontrol reconfigure` (a re-exec on 23.11+)
    is neither produced again nor moved to the topic configured by it.

    Regression test of a bug fixed in 57e8e41: acknowledgements waited for
    the delivery thread's next wake-up (up to poll_interval or
    spool_sync_interval), and records recovered from the spool after the
    re-exec went to the current topic; a record delivered to A just before
    the reconfigure came again in B (seen in one of four runs with the
    default intervals). poll_interval/spool_sync_interval=30 here make that
    window 30 s wide, so the outcome does not depend on timing."""
    s = series(release)
    topic_a, topic_b = f"jk-reexec-a-{s}", f"jk-reexec-b-{s}"
    slow = "poll_interval=30,spool_sync_interval=30"
    c = make_cluster("jkreexec", "reexec", plugin="ours", bootstrap=broker.bootstrap, topic=topic_a,
                     params=slow, kafka_props=KAFKA_PROPS)
    first = c.run_jobs(1, prefix="before-")
    ga = broker.consume(topic_a, expect=1, timeout=30, linger=0.5)
    assert ga.rc == 0, "the record of the first job did not arrive"
    conf = c.dir / "slurm.conf"
    conf.write_text(re.sub(r"(?m)^JobCompParams=.*$", f"JobCompParams=topic={topic_b},{slow}", conf.read_text()))
    c.scontrol("reconfigure")
    wait_for(c.ping_ok, 60, "slurmctld to answer after reconfigure", interval=0.2)
    later = c.run_jobs(1, prefix="after-")
    ga = broker.consume(topic_a, expect=1, timeout=30, linger=2)
    gb = broker.consume(topic_b, expect=1, timeout=60, linger=4)
    ra, _ = _records(ga)
    rb, _ = _records(gb)
    numbers(f"topic A: jobs {sorted(ra)} (expected {first}); topic B: jobs {sorted(rb)} "
            f"(expected {later}), records {len(gb.messages)}")
    assert sorted(ra) == first and all(len(v) == 1 for v in ra.values())
    assert sorted(rb) == later, f"topic {topic_b} holds jobs {sorted(rb)}, expected only {later}"
    assert len(gb.messages) == 1
