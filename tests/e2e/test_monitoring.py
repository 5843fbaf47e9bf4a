"""What an administrator sees (issue 12), on the real rig (docs/operating.md's
`jobcomp-kafka` commands, resend included): slurmctld 22.05.8 on
the host, a tansu broker, the plugin's metrics file and the jobcomp-kafka tool.

Ports: 127.0.0.1:20600 (this test's own broker, down at first), 20601/20602
(slurmctld/slurmd): the range 20600-20699 is this file's alone.

- broker down, jobs finish: `status` and the metrics file show the same
  waiting count and oldest age; promtool accepts the file;
- `verify` on a copy of that live spool finds an injected bit flip (the live
  spool is never touched), and none in the original;
- broker up: the counters move and the backlog reaches zero;
- a record larger than the producer accepts (message.max.bytes in JobCompLoc)
  is refused and set aside; `resend` with a JobCompLoc of a higher limit
  delivers it and removes its file;
- the tool run as `nobody`, who cannot read StateSaveLocation: a clear error.
"""

import os
import re
import shutil
import subprocess

import pytest

from jk import REPO, Broker, Cluster, RigError, log, pid_alive, port_open, run, wait_for

BROKER_PORT = 20600
CTLD_PORT, SLURMD_PORT = 20601, 20602
PROPS = {"message.timeout.ms": "3000", "reconnect.backoff.max.ms": "500",
         "socket.connection.setup.timeout.ms": "3000"}


def tool_path(release):
    return REPO / "build" / f"slurm-{release}" / "jobcomp-kafka"


def tool(release, *args, check=True, user=None):
    argv = [str(tool_path(release)), *map(str, args)]
    if user:
        argv = ["setpriv", f"--reuid={user}", "--regid=65534", "--clear-groups", *argv]
    p = subprocess.run(argv, capture_output=True, timeout=120)
    if check and p.returncode != 0:
        raise RigError(f"{argv} exited {p.returncode}: {p.stdout.decode()} {p.stderr.decode()}")
    return p


def metric(text, series):
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def status_value(text, key):
    m = re.search(rf"^{key}: (\d+)", text, re.M)
    return int(m.group(1)) if m else None


@pytest.mark.releases("22.05.8")
def test_metrics_and_tool_through_an_outage(release, session_dir, numbers):
    assert tool_path(release).is_file(), "make build builds jobcomp-kafka"
    assert shutil.which("promtool"), "promtool: ci/install-promtool.sh"
    broker = Broker(session_dir / "kafka-monitoring", BROKER_PORT)
    assert not port_open(BROKER_PORT), f"port {BROKER_PORT} in use"
    dir = session_dir / "jkmon"
    prom = session_dir / "jkmon-metrics" / "jobcomp_kafka.prom"
    prom.parent.mkdir(parents=True, exist_ok=True)
    topic = "jk-monitoring"
    c = Cluster(release=release, name="jkmon", dir=dir, ctld_port=CTLD_PORT, slurmd_port=SLURMD_PORT,
                plugin="ours", bootstrap=broker.bootstrap, topic=topic,
                params=f"metrics_file={prom},metrics_interval=1", kafka_props=PROPS)
    c.start()
    state = c.state_dir
    waiting = f'slurm_jobcomp_kafka_records_waiting{{topic="{topic}",event="finish"}}'
    delivered = f'slurm_jobcomp_kafka_records_delivered_total{{topic="{topic}",event="finish"}}'
    try:
        # --- broker down: records wait -------------------------------------
        ids = c.run_jobs(3, timeout=90, prefix="mon-")
        wait_for(lambda: metric(prom.read_text() if prom.exists() else "", waiting) == 3, 30,
                 "the metrics file to show 3 waiting records")
        # Timeouts (message.timeout.ms=3000) are counted while the broker is down.
        wait_for(lambda: (metric(prom.read_text(), 'slurm_jobcomp_kafka_delivery_failures_total{kind="timed_out"}')
                          or 0) >= 3, 30, "timeouts counted")
        text = prom.read_text()
        st = tool(release, "-d", state, "status").stdout.decode()
        text_after = prom.read_text()
        log(f"status while the broker is down:\n{st}")
        assert status_value(st, "waiting") == 3, st
        age_metric = metric(text, "slurm_jobcomp_kafka_oldest_waiting_record_age_seconds")
        age_status = status_value(st, "oldest age")
        age_metric_after = metric(text_after, "slurm_jobcomp_kafka_oldest_waiting_record_age_seconds")
        numbers(f"oldest age: metrics {age_metric} s / {age_metric_after} s around status {age_status} s")
        # The same record's age, read a moment apart (metrics_interval=1).
        assert age_metric - 2 <= age_status <= age_metric_after + 2, (age_metric, age_status, age_metric_after)
        assert f"locked by pid {c.ctld_pid()} (slurmctld)" in st, st
        assert metric(text, delivered) == 0
        assert metric(text, 'slurm_jobcomp_kafka_records_taken_total{event="finish"}') == 3
        assert metric(text, "slurm_jobcomp_kafka_log_record_duration_seconds_count") == 3
        p = subprocess.run(["promtool", "check", "metrics"], stdin=open(prom, "rb"), capture_output=True)
        assert p.returncode == 0, p.stdout.decode() + p.stderr.decode() + text
        # Exit 2 for a monitoring check once the oldest waits longer than allowed.
        wait_for(lambda: tool(release, "-d", state, "status", "--max-age", "1", check=False).returncode == 2,
                 20, "status --max-age 1 to exit 2")
        dump = tool(release, "-d", state, "dump", "--waiting").stdout.decode().splitlines()
        assert sorted(__import__("json").loads(l)["job_id"] for l in dump) == sorted(ids), dump

        # --- verify on a copy of the live spool: an injected bit flip ---------
        copy = session_dir / "jkmon-copy"
        shutil.copytree(state, copy)
        assert tool(release, "-d", copy, "verify").returncode == 0
        dlv = sorted((copy / "jobcomp_kafka_spool").glob("seg-*.dlv"))[0]
        data = bytearray(dlv.read_bytes())
        flip = data.index(b'"jobid"') + 3
        data[flip] ^= 0x04
        dlv.write_bytes(bytes(data))
        v = tool(release, "-d", copy, "verify", check=False)
        out = v.stdout.decode()
        log(f"verify after a bit flip:\n{out}")
        assert v.returncode == 1, out
        m = re.search(rf"^DAMAGE {re.escape(str(dlv))}: byte (\d+):", out, re.M)
        assert m and int(m.group(1)) <= flip < int(m.group(1)) + 4096, (flip, out)

        # --- nobody cannot read StateSaveLocation ------------------------------
        run(["chmod", "0700", state])
        p = tool(release, "-d", state, "status", check=False, user="nobody")
        err = p.stderr.decode()
        assert p.returncode == 3 and "permission denied" in err and "SlurmUser" in err, (p.returncode, err)

        # --- broker up: the backlog drains --------------------------------------
        broker.start()
        wait_for(lambda: metric(prom.read_text(), waiting) == 0, 90, "the backlog to reach zero")
        text = prom.read_text()
        assert metric(text, delivered) == 3, text
        assert metric(text, "slurm_jobcomp_kafka_last_delivery_timestamp_seconds") > 1.7e9
        assert metric(text, "slurm_jobcomp_kafka_oldest_waiting_record_age_seconds") == 0
        st = tool(release, "-d", state, "status").stdout.decode()
        assert status_value(st, "waiting") == 0, st
        got = broker.consume(topic, expect=3, timeout=60, linger=1)
        assert got.rc == 0 and len(got.messages) == 3

        # --- a record the producer refuses; resend after the limit is raised ---
        c.scontrol("shutdown", "slurmctld")
        pid = c.ctld_pid()
        wait_for(lambda: not pid_alive(pid), 30, "slurmctld to stop")
        c.write_kafka_conf(dict(PROPS, **{"message.max.bytes": "1000"}))
        c.start_ctld()
        # A job name of 800 characters (Slurm takes up to 1024): its record is over the 1000 bytes allowed.
        big = c.sbatch("-J", "mon-refused-" + "x" * 800, "--wrap", "true")
        c.wait_done([big], 90)
        refused_dir = state / "jobcomp_kafka_refused"
        wait_for(lambda: list(refused_dir.glob(f"{big}.*.json")), 30, "the record to be set aside")
        wait_for(lambda: metric(prom.read_text(), "slurm_jobcomp_kafka_refused_files") == 1, 15, "refused_files 1")
        assert metric(prom.read_text(), f'slurm_jobcomp_kafka_records_refused_total{{topic="{topic}",event="finish"}}') == 1
        st = tool(release, "-d", state, "status").stdout.decode()
        assert status_value(st, "refused") == 1, st
        raised = session_dir / "jkmon-resend.conf"
        raised.write_text(f"bootstrap.servers={broker.bootstrap}\nmessage.timeout.ms=30000\n")
        # Still too small: refused again, the file stays.
        small = session_dir / "jkmon-small.conf"
        small.write_text(f"bootstrap.servers={broker.bootstrap}\nmessage.max.bytes=1000\n")
        r = tool(release, "-d", state, "resend", "--loc", small, "--topic", topic, check=False)
        assert r.returncode == 1 and list(refused_dir.glob("*.json")), r.stdout.decode()
        r = tool(release, "-d", state, "resend", "--loc", raised, "--topic", topic, check=False)
        log(f"resend: {r.stdout.decode()}")
        assert r.returncode == 0 and "1 sent, 0 left" in r.stdout.decode(), r.stdout.decode() + r.stderr.decode()
        assert not list(refused_dir.glob("*.json"))
        got = broker.consume(topic, expect=4, timeout=60, linger=1)
        assert got.rc == 0, got.stderr
        jobids = [__import__("json").loads(m.value)["jobid"] for m in got.messages]
        assert sorted(jobids) == sorted(ids + [big]), jobids
        numbers(f"delivered after the outage: 3, refused then resent: 1 (job {big})")
    finally:
        c.stop()
        broker.stop()
