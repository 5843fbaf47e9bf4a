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

from jk import KAFKA_PROPS, decode_record, pid_alive, record_id_problems, series, wait_for


def _log_since(c, offset):
    return c.log_path.read_bytes()[offset:].decode("utf-8", "replace")


def _records(got):
    out = {}
    invalid = 0
    for m in got.messages:
        try:
            rec = dict(decode_record(m.value))
        except ValueError:
            invalid += 1
            continue
        if m.key != str(rec["jobid"]).encode():
            invalid += 1
        out.setdefault(rec["jobid"], []).append(rec)
    return out, invalid


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
    ra, inv_a = _records(ga)
    rb, inv_b = _records(gb)
    dups = sum(len(v) - 1 for v in ra.values()) + sum(len(v) - 1 for v in rb.values())
    numbers(f"topic A: records expected={len(want_a)} received={len(ga.messages)}; topic B: "
            f"expected={len(want_b)} received={len(gb.messages)}; duplicates={dups} invalid={inv_a + inv_b}")
    assert inv_a == 0 and inv_b == 0
    assert not record_id_problems(ga.messages + gb.messages), record_id_problems(ga.messages + gb.messages)
    assert sorted(ra) == want_a, f"topic {topic_a} holds jobs {sorted(ra)}, expected {want_a}"
    assert sorted(rb) == want_b, f"topic {topic_b} holds jobs {sorted(rb)}, expected {want_b}"
    assert dups == 0
    assert ga.rc == 0 and gb.rc == 0
    for recs in list(ra.values()) + list(rb.values()):
        assert recs[0]["state"] == "COMPLETED"
