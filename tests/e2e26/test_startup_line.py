"""The start-up line tells the truth on 26.05.5 (issue 15): the start topic it
names is the real one (`<ClusterName>-job-start`, not a description of the
default), requeue is shown as always, every 26.05 token is there; and a job's
start record does arrive on the topic the line names. `scontrol reconfigure`
(a re-exec of slurmctld on 26.05: init again) with a changed JobCompParams
gives a line with the new values.

Own ports (issue 15's range, so that it can run next to the other suites):
broker 127.0.0.1:20510, cluster 20511/20512. Run by ci/e2e26.sh with the rest
of tests/e2e26, or alone (after `make build SLURM_VERSION=26.05.5`):

  /var/tmp/jobcomp-kafka/venv/bin/python -m pytest tests/e2e26/test_startup_line.py -p no:cacheprovider -v
"""

import os
import re
import shutil

import pytest

import jk
from rig26 import CHROOT_ROOT, KAFKA_PROPS, RELEASE, Broker, RigError, decode_record, log, wait_for

BROKER_PORT = 20510
CTLD_PORT = 20511
NAME = "jk26startline"


def expected_line(**changed):
    values = {"topic": NAME, "enable_job_start": "yes", "topic_job_start": f"{NAME}-job-start",
              "send_script": "no", "send_comment": "no", "flush_timeout": "500 ms", "poll_interval": "2 s",
              "requeue_on_msg_timeout": "always", "purge_in_flight": "no", "purge_non_blocking": "no",
              "requeue_purge_in_flight": "always", "spool_sync_interval": "1 s", "spool_max_mb": "4096",
              "tick_ms": "10", "metrics_file": "off"}
    values.update(changed)
    return ", ".join(f"{k}={v}" for k, v in values.items())


@pytest.fixture(scope="module")
def setup(tag, request):
    d = f"/tmp/jk-26-startline-{tag}"
    shutil.rmtree(d, ignore_errors=True)
    broker = Broker(os.path.join(d, "kafka"), BROKER_PORT)
    broker.start()
    c = jk.Cluster(release=RELEASE, name=NAME, dir=CHROOT_ROOT / "rig" / f"jk-26-startline-{tag}",
                   ctld_port=CTLD_PORT, slurmd_port=CTLD_PORT + 1, plugin="ours", bootstrap=broker.bootstrap,
                   params="enable_job_start", kafka_props=KAFKA_PROPS)
    try:
        c.start()
        yield broker, c
    finally:
        c.stop()
        broker.stop()
        if jk.remove_dirs(request):
            c.remove()
            shutil.rmtree(d, ignore_errors=True)


def _started(c, offset=0):
    text = c.log_path.read_bytes()[offset:].decode("utf-8", "replace")
    return re.findall(r"jobcomp/kafka: started: (.*)$", text, re.M)


def test_startup_line_names_the_real_start_topic(setup, numbers):
    broker, c = setup
    try:
        lines = _started(c)
        numbers(f"start-up line: {lines}")
        assert lines == [expected_line()], lines
        # The topic it names is where a start record goes.
        jid = c.sbatch("-J", "startline", "--wrap", "true")
        c.wait_done([jid], 60)
        got = broker.consume(f"{NAME}-job-start", expect=1, timeout=60, linger=2)
        assert got.rc == 0 and [dict(decode_record(m.value))["jobid"] for m in got.messages] == [jid]
    except RigError:
        log(c.log_text()[-4000:])
        raise


def test_line_after_reconfigure_shows_the_new_values(setup):
    broker, c = setup
    try:
        conf = c.dir / "slurm.conf"
        text, n = re.subn(r"(?m)^JobCompParams=.*$",
                          "JobCompParams=enable_job_start,topic_job_start=jk26-starts,flush_timeout=-1,"
                          "requeue_purge_in_flight,tick_ms=25", conf.read_text())
        assert n == 1
        conf.write_text(text)
        offset = c.log_path.stat().st_size
        c.scontrol("reconfigure")
        wait_for(c.ping_ok, 60, "slurmctld to answer after reconfigure", interval=0.2)
        lines = wait_for(lambda: _started(c, offset), 30, "the start-up line of the re-executed slurmctld")
        assert lines == [expected_line(topic_job_start="jk26-starts", flush_timeout="-1 (wait forever)",
                                       purge_in_flight="yes", tick_ms="25")], lines
    except RigError:
        log(c.log_text()[-4000:])
        raise
