"""A mistake in JobCompLoc loses nothing (issue 15), in a real slurmctld 22.05.8.

SchedMD's plugin (and ours before issue 15) fails init on a property
librdkafka rejects; slurmctld 22.05 then runs without any jobcomp plugin and
every record is lost. Here JobCompLoc holds a misspelt property
(`mesage.timeout.ms`): slurmctld starts, the plugin logs the file, line and
property with the remedy, repeated with the number of records waiting
(JOBCOMP_KAFKA_TEST_REMINDER_MS, test-only, shortens the 10-minute period);
10 jobs finish; the file is fixed and slurmctld restarted: the 10 records
arrive once, with the bytes fini saved, matching scontrol's view of each job.
A second test fixes the file and runs `scontrol reconfigure` instead (22.05
calls set_location in the running process, which reads JobCompLoc again while
Kafka is not set up). On 24.11.5 (trixie chroot) `scontrol reconfigure`
re-executes slurmctld without fini: the records waiting come back from the
spool in the new process, which has the fixed file.

The start-up and reconfigure lines are compared with hand-written lines: the
topic resolved from ClusterName, requeue shown as always.

Ports (issue 15's range, so that this file runs next to the other suites,
and its two sessions next to each other): 22.05.8 broker 127.0.0.1:20500,
clusters 20501/20502 and 20503/20504; 24.11.5 broker 20505, cluster
20506/20507. Run by both sessions of ci/e2e.sh (it runs pytest over
tests/e2e), or alone:

  /var/tmp/jobcomp-kafka/venv/bin/python -m pytest tests/e2e/test_bad_jobcomploc.py \
      -p no:cacheprovider -v --release 22.05.8   # or --release 24.11.5
"""

import re

import pytest

import jk
from jk import (KAFKA_PROPS, Broker, Cluster, RigError, check_script, compare_with_scontrol, decode_record, log,
                messages_by_job, read_state_file, record_id_problems, run, wait_for, wrap_script)

BROKER_PORT = {"22.05": jk.port(20500), "24.11": jk.port(20505)}
N_JOBS = 10
REMINDER_MS = "2000"
MISSPELT = dict(KAFKA_PROPS, **{"mesage.timeout.ms": "120000"})
# write_kafka_conf: line 1 a comment, 2 bootstrap.servers, then KAFKA_PROPS in order.
MISSPELT_LINE = 2 + len(KAFKA_PROPS) + 1


def startup_line(cluster, **changed):
    """The settings line our plugin must log on 22.05 with JobCompParams
    flush_timeout=500 and no topic= (the topic is ClusterName)."""
    values = {"topic": cluster, "send_script": "always", "flush_timeout": "500 ms", "poll_interval": "2 s",
              "requeue_on_msg_timeout": "always", "purge_in_flight": "no", "purge_non_blocking": "no",
              "requeue_purge_in_flight": "always", "spool_sync_interval": "1 s", "spool_max_mb": "4096",
              "tick_ms": "10", "metrics_file": "off"}
    values.update(changed)
    return ", ".join(f"{k}={v}" for k, v in values.items())


class ReminderCluster(Cluster):
    """A host cluster whose slurmctld has the test-only reminder period."""

    def rig(self, *args, **kw):
        env = {"JOBCOMP_KAFKA_TEST_REMINDER_MS": REMINDER_MS}
        if self.suite:
            env.update(SUITE=self.suite, JK_CHROOT_SUITE=self.suite)
        return run([self.rig_script, *args], env=env, **kw)


@pytest.fixture(scope="module")
def own_broker(release, session_dir):
    b = Broker(session_dir / "kafka-badloc", BROKER_PORT[jk.series(release)])
    b.start()
    yield b
    b.stop()


@pytest.fixture
def bad_cluster(release, tag, session_dir, own_broker, request):
    clusters = jk.StartedClusters(request)

    def make(name, ctld_port):
        return clusters.start(ReminderCluster(release=release, name=name,
                                              dir=jk.cluster_dir(release, tag, session_dir, name), ctld_port=ctld_port,
                                              slurmd_port=ctld_port + 1, plugin="ours", bootstrap=own_broker.bootstrap,
                                              params="flush_timeout=500", kafka_props=MISSPELT))

    yield make
    clusters.stop_all()


def _log_lines(c, pattern, offset=0):
    text = c.log_path.read_bytes()[offset:].decode("utf-8", "replace")
    return re.findall(pattern, text, re.M)


def _not_set_up(c, waiting):
    loc = c.inpath(c.dir / "kafka.conf")
    return _log_lines(c, rf"error: jobcomp/kafka: {re.escape(str(loc))}:{MISSPELT_LINE}: librdkafka rejected "
                         rf"property mesage\.timeout\.ms: .*Kafka is not set up: fix JobCompLoc, then restart "
                         rf"slurmctld or run scontrol reconfigure; {waiting} record\(s\) wait in the spool.*$")


@pytest.mark.releases("22.05.8")
def test_misspelt_property_then_fixed_and_restarted(bad_cluster, own_broker, release, numbers):
    c = bad_cluster("jkbadloc", jk.port(20501))
    try:
        # slurmctld runs with the plugin: the problem named, the settings as used.
        started = _log_lines(c, r"jobcomp/kafka: started: (.*)$")
        assert started == [startup_line("jkbadloc")], started
        wait_for(lambda: _not_set_up(c, 0), 30, "the error line naming file, line and property")

        ids = c.run_jobs(N_JOBS, timeout=90, prefix="badloc-")
        snaps = c.show_jobs()
        assert all(snaps[i].state == "COMPLETED" for i in ids)
        lines = wait_for(lambda: _not_set_up(c, N_JOBS), 30, f"the line repeated with {N_JOBS} records waiting")
        numbers(f"while Kafka was not set up: {len(lines)} reminder line(s) with {N_JOBS} waiting")
        assert "jkbadloc" not in own_broker.topics(), "nothing produced while Kafka is not set up"

        # Shutdown: the records go to the state file, as after an outage.
        c.shutdown_ctld()
        version, saved = read_state_file(c.state_dir / "jobcomp_kafka_state")
        payload = dict(saved)
        assert sorted(payload) == sorted(ids), f"saved {sorted(payload)}, jobs {ids}"

        # The file fixed, slurmctld started again: each record once, byte-exact.
        c.write_kafka_conf(KAFKA_PROPS)
        offset = c.log_path.stat().st_size
        c.start_ctld()
        got = own_broker.consume("jkbadloc", expect=N_JOBS, timeout=60, linger=3)
        by_id, invalid = messages_by_job(got.messages)
        dups = sum(len(v) - 1 for v in by_id.values())
        numbers(f"after the fix and a restart: expected={N_JOBS} received={len(got.messages)} "
                f"duplicates={dups} invalid={invalid}")
        assert got.rc == 0, "consumer: " + ("too few" if got.rc == 3 else "too many")
        assert sorted(by_id) == sorted(ids) and dups == 0 and invalid == 0
        assert not record_id_problems(got.messages), record_id_problems(got.messages)
        for jid, (m,) in by_id.items():
            assert m.value == payload[jid], f"job {jid}: delivered bytes differ from the saved ones"
            rec = dict(decode_record(m.value))
            bad = compare_with_scontrol(rec, snaps[jid], release=release)
            bad += check_script(rec, wrap_script(f"echo {rec.get('job_name')}"), "script")
            assert not bad, f"job {jid}: {bad}"
        assert _log_lines(c, r"jobcomp/kafka: started: (.*)$", offset) == [startup_line("jkbadloc")]
        assert not _log_lines(c, r"Kafka is not set up.*$", offset), "no error line once the file is right"

        # Once means once: another restart produces nothing again. Not only
        # no copy within the consumer's wait: that start took nothing over
        # (its start-up line, no "producing N ... again" line), and its
        # shutdown leaves no state file.
        offset = c.log_path.stat().st_size
        c.rig("restart-ctld", c.dir, timeout=90)
        c.check_plugin_loaded()
        again = own_broker.consume("jkbadloc", expect=N_JOBS, timeout=30, linger=4)
        numbers(f"after a second restart: {len(again.messages)} record(s) in the topic")
        assert again.rc == 0 and len(again.messages) == N_JOBS
        assert _log_lines(c, r"jobcomp/kafka: started: (.*)$", offset) == [startup_line("jkbadloc")]
        assert _log_lines(c, r"producing \d+ .*again from .*$", offset) == []
        c.shutdown_ctld()
        assert not (c.state_dir / "jobcomp_kafka_state").exists(), "the last shutdown saved records"
    except RigError:
        log(c.log_text()[-4000:])
        raise


@pytest.mark.releases("22.05.8")
def test_misspelt_property_then_fixed_and_reconfigured(bad_cluster, own_broker, release, numbers):
    """22.05: `scontrol reconfigure` calls set_location in the running
    slurmctld; while Kafka is not set up the plugin reads JobCompLoc again.
    JobCompParams changes in the same reconfigure: the line after it shows the
    new values."""
    c = bad_cluster("jkbadreconf", jk.port(20503))
    try:
        wait_for(lambda: _not_set_up(c, 0), 30, "the error line naming file, line and property")
        ids = c.run_jobs(3, timeout=90, prefix="badreconf-")
        wait_for(lambda: _not_set_up(c, 3), 30, "the line repeated with 3 records waiting")

        c.write_kafka_conf(KAFKA_PROPS)
        conf = c.dir / "slurm.conf"
        text, n = re.subn(r"(?m)^JobCompParams=.*$", "JobCompParams=flush_timeout=700,tick_ms=20",
                          conf.read_text())
        assert n == 1
        conf.write_text(text)
        offset = c.log_path.stat().st_size
        c.scontrol("reconfigure")
        wait_for(lambda: _log_lines(c, r"jobcomp/kafka: Kafka is set up from .*$", offset), 30,
                 "the plugin to set Kafka up after the reconfigure")
        reconfigured = wait_for(lambda: _log_lines(c, r"jobcomp/kafka: reconfigured: (.*)$", offset), 30,
                                "the reconfigure line")
        assert reconfigured == [startup_line("jkbadreconf", flush_timeout="700 ms", tick_ms="20")], reconfigured
        got = own_broker.consume("jkbadreconf", expect=3, timeout=60, linger=3)
        by_id, invalid = messages_by_job(got.messages)
        numbers(f"after the fix and a reconfigure: expected=3 received={len(got.messages)} invalid={invalid}")
        assert got.rc == 0 and sorted(by_id) == sorted(ids) and invalid == 0
        assert not record_id_problems(got.messages), record_id_problems(got.messages)
    except RigError:
        log(c.log_text()[-4000:])
        raise


@pytest.mark.releases("24.11.5")
def test_misspelt_property_then_fixed_and_reconfigured_reexec(bad_cluster, own_broker, release, numbers):
    """23.11+: `scontrol reconfigure` re-executes slurmctld without fini; the
    new process reads the fixed file, and the records that waited come back
    from the spool: each once, byte-exact, equal to scontrol's view."""
    c = bad_cluster("jkbadreexec", jk.port(20506))
    try:
        assert _log_lines(c, r"jobcomp/kafka: started: (.*)$") == [startup_line("jkbadreexec")]
        wait_for(lambda: _not_set_up(c, 0), 30, "the error line naming file, line and property")
        ids = c.run_jobs(5, timeout=90, prefix="badreexec-")
        snaps = c.show_jobs()
        wait_for(lambda: _not_set_up(c, 5), 30, "the line repeated with 5 records waiting")

        c.write_kafka_conf(KAFKA_PROPS)
        offset = c.log_path.stat().st_size
        c.scontrol("reconfigure")
        wait_for(c.ping_ok, 60, "slurmctld to answer after reconfigure", interval=0.2)
        wait_for(lambda: _log_lines(c, r"producing 5 record\(s\) again from the spool.*$", offset), 30,
                 "the re-executed slurmctld to take the waiting records from the spool")
        assert _log_lines(c, r"jobcomp/kafka: started: (.*)$", offset) == [startup_line("jkbadreexec")]
        got = own_broker.consume("jkbadreexec", expect=5, timeout=60, linger=3)
        by_id, invalid = messages_by_job(got.messages)
        numbers(f"after the fix and a reconfigure (re-exec): expected=5 received={len(got.messages)} "
                f"invalid={invalid}")
        assert got.rc == 0 and sorted(by_id) == sorted(ids) and invalid == 0
        assert all(len(v) == 1 for v in by_id.values())
        assert not record_id_problems(got.messages), record_id_problems(got.messages)
        for jid, (m,) in by_id.items():
            bad = compare_with_scontrol(dict(decode_record(m.value)), snaps[jid], release=release)
            assert not bad, f"job {jid}: {bad}"
    except RigError:
        log(c.log_text()[-4000:])
        raise
