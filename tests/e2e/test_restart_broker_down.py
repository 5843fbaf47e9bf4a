"""Records survive a slurmctld restart while the broker is down (22.05.8).

How the broker is "down": this test has a broker of its own on a port where
nothing listens while the jobs run and slurmctld shuts down (connection
refused, as for a broker host that is down); the broker is then "started" on
that same port (jk.Broker: the port opens as a gate to the run's Apache Kafka
node) before slurmctld comes back. JobCompLoc (read at init only) stays as it
is, as in production. The session's broker is not touched (the job mix
publishes to it at the same time).
"""

import pytest

from jk import (KAFKA_PROPS, OUTAGE_BROKER_PORT, Broker, RigError, check_script, compare_with_scontrol,
                decode_record, log, port_open, read_state_file, record_id_problems, series,
                wait_for, wrap_script)

N_JOBS = 10


def _leftovers(cluster):
    return sorted(p.name for p in cluster.state_dir.glob("jobcomp_kafka_state*")
                  if not p.name.endswith(".old"))


@pytest.mark.releases("22.05.8")
def test_restart_with_broker_down(release, session_dir, make_cluster, numbers):
    port = OUTAGE_BROKER_PORT[series(release)]
    broker = Broker(session_dir / "kafka-outage", port)
    assert not port_open(port), f"port {port} is in use: the broker must be down"
    topic = "jk-restart"
    c = make_cluster("jkrestart", "restart", plugin="ours", bootstrap=broker.bootstrap, topic=topic,
                     params="flush_timeout=500", kafka_props=KAFKA_PROPS)
    try:
        ids = c.run_jobs(N_JOBS, timeout=90, prefix="restart-")
        snaps = c.show_jobs()
        assert all(snaps[i].state == "COMPLETED" for i in ids)
        assert not (c.state_dir / "jobcomp_kafka_state").exists()

        c.shutdown_ctld()
        state = c.state_dir / "jobcomp_kafka_state"
        assert state.is_file(), f"no state file after shutdown; {sorted(p.name for p in c.state_dir.iterdir())}"
        version, saved = read_state_file(state)
        saved_ids = [jid for jid, _ in saved]
        numbers(f"state file: protocol version 0x{version:04x}, {len(saved)} record(s) saved "
                f"(expected {N_JOBS}), jobs {saved_ids}")
        assert sorted(saved_ids) == sorted(ids), f"saved {saved_ids}, jobs {ids}"
        payload = {}
        for jid, body in saved:
            rec = dict(decode_record(body))
            assert rec["jobid"] == jid
            assert rec["state"] == "COMPLETED" and rec["job_name"] == snaps[jid]["JobName"]
            payload[jid] = body

        broker.start()
        try:
            c.start_ctld()
            got = broker.consume(topic, expect=N_JOBS, timeout=60, linger=3)
            by_id = {}
            invalid = 0
            for m in got.messages:
                try:
                    rec = dict(decode_record(m.value))
                except ValueError:
                    invalid += 1
                    continue
                by_id.setdefault(rec["jobid"], []).append(m)
            dups = sum(len(v) - 1 for v in by_id.values())
            numbers(f"after restart: records expected={N_JOBS} received={len(got.messages)} "
                    f"duplicates={dups} invalid={invalid}")
            assert got.rc == 0, "consumer: " + ("too few" if got.rc == 3 else "too many")
            assert not record_id_problems(got.messages), record_id_problems(got.messages)
            assert sorted(by_id) == sorted(ids) and dups == 0 and invalid == 0
            for jid, (m,) in by_id.items():
                assert m.value == payload[jid], f"job {jid}: delivered bytes differ from the saved ones"
                assert m.key == str(jid).encode()
                rec = dict(decode_record(m.value))
                bad = compare_with_scontrol(rec, snaps[jid], release=release)
                bad += check_script(rec, wrap_script(f"echo {rec.get('job_name')}"), "script")
                assert not bad, f"job {jid}: {bad}"
                assert rec["state"] == "COMPLETED" and rec["job_name"].startswith("restart-")

            wait_for(lambda: not _leftovers(c), 20, "the state file and its .replaying claim to go")
            assert not _leftovers(c)

            # Delivered once means never again: one more job, another clean
            # restart (broker up): the topic holds exactly 11.
            extra = c.run_jobs(1, timeout=60, prefix="after-")
            c.shutdown_ctld()
            # All delivered: nothing to save (an empty file at most).
            if (c.state_dir / "jobcomp_kafka_state").exists():
                _, recs = read_state_file(c.state_dir / "jobcomp_kafka_state")
                assert not recs, f"{len(recs)} record(s) saved although all were delivered"
            assert not (c.state_dir / "jobcomp_kafka_state.replaying").exists()
            c.start_ctld()
            again = broker.consume(topic, expect=N_JOBS + 1, timeout=60, linger=4)
            ids_again = sorted(dict(decode_record(m.value))["jobid"] for m in again.messages)
            numbers(f"after a second restart: records expected={N_JOBS + 1} received={len(again.messages)}")
            assert again.rc == 0 and ids_again == sorted(ids + extra), ids_again
            assert not record_id_problems(again.messages), record_id_problems(again.messages)
            assert not _leftovers(c)
        finally:
            try:
                c.stop()
            finally:
                broker.stop()
    except RigError:
        log(c.log_text()[-4000:])
        raise
