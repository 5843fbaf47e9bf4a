"""Tests of the consumers (python/jobcomp_kafka: jobcomp-wait, jobcomp-sink).

    ci/consumers.sh                       everything (installs what it needs)
    pytest tests/consumers/test_logic.py  the pure logic only: no rig

The rig tests take a broker (Apache Kafka 4 through ci/rig/kafka.sh, or tansu
with --broker tansu), a private PostgreSQL (ci/rig/postgres.sh) and Slurm
22.05.8 on the host with our plugin (ci/rig/slurm-host.sh through
tests/e2e/jk.py). Ports (defaults in 21600-21699): broker 21692 (and 21693
for Kafka's controller), PostgreSQL 21632, slurmctld/slurmd 21617/21618.
Directory: JK_CONSUMERS_DIR, else /tmp/jk-consumers-<pid>; removed after a
passing session, kept after a failure (or with JK_E2E_KEEP=1).

The commands run as installed by ci/consumers.sh (`pip install ./python`
into JK_CONSUMERS_SITE, console scripts in JK_CONSUMERS_SITE/bin); without it,
from the source tree (python -m jobcomp_kafka.wait).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SITE = os.environ.get("JK_CONSUMERS_SITE")
sys.path.insert(0, SITE or str(REPO / "python"))
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import jk  # noqa: E402
from contract_fixture import record_contract  # noqa: E402,F401 (autouse fixture)
from jk import KAFKA_PROPS, Broker, Cluster, RigError, log, run, wait_for  # noqa: E402,F401

EXAMPLE = json.loads((REPO / "tests/data/records/example-24.11-finish.json").read_text())
HOST_RELEASE = "22.05.8"


def pytest_addoption(parser):
    g = parser.getgroup("jobcomp-kafka consumers")
    g.addoption("--broker", choices=("kafka", "tansu"), default="kafka",
                help="Apache Kafka 4 (ci/rig/kafka.sh) or tansu (ci/rig/tansu.sh)")
    g.addoption("--broker-port", type=int, default=21692)
    g.addoption("--pg-port", type=int, default=21632)
    g.addoption("--ctld-port", type=int, default=21617)
    g.addoption("--slurmd-port", type=int, default=21618)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    signal.signal(signal.SIGTERM, _interrupt)
    jk.LOG_NAME = "consumers"
    # Every record the tests consume through jk is checked against 22.05's schema.
    jk.CONTRACT_RELEASE = HOST_RELEASE



@pytest.fixture(scope="session")
def session_dir(request):
    # Emptied first: a fresh broker and database, the tests count rows.
    yield from jk.session_dir_at(request, os.environ.get("JK_CONSUMERS_DIR") or f"/tmp/jk-consumers-{os.getpid()}")


@pytest.fixture(scope="session")
def broker(pytestconfig, session_dir):
    port = pytestconfig.getoption("--broker-port")
    if pytestconfig.getoption("--broker") == "kafka":
        from kafka_rig import ApacheKafka
        b = ApacheKafka(session_dir / "kafka", port, version="4")
    else:
        b = Broker(session_dir / "tansu", port)
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def postgres(pytestconfig, session_dir):
    d = session_dir / "postgres"
    run([REPO / "ci/rig/postgres.sh", "start", d, pytestconfig.getoption("--pg-port")], timeout=300)
    yield (d / "dsn").read_text().strip()
    run([REPO / "ci/rig/postgres.sh", "stop", d], check=False, timeout=120)


def command(name):
    """argv of jobcomp-wait / jobcomp-sink: the installed console script, or
    the module from the source tree."""
    if SITE:
        return [os.path.join(SITE, "bin", name)]
    return [sys.executable, "-m", {"jobcomp-wait": "jobcomp_kafka.wait", "jobcomp-sink": "jobcomp_kafka.sink"}[name]]


def command_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = SITE or str(REPO / "python")
    return env


class Proc:
    """A consumer command started in the background (own process group)."""

    def __init__(self, name, args, out_dir, tag):
        self.argv = command(name) + [str(a) for a in args]
        self.out = Path(out_dir) / f"{tag}.out"
        self.err = Path(out_dir) / f"{tag}.err"
        self.p = subprocess.Popen(self.argv, stdout=open(self.out, "wb"), stderr=open(self.err, "wb"),
                                  env=command_env(), start_new_session=True)

    def wait(self, timeout):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RigError(f"{self.argv} still running after {timeout}s; stderr: {self.stderr()[-2000:]}")

    def kill(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            os.killpg(self.p.pid, sig)
            self.p.wait(30)

    def stdout_lines(self):
        return [json.loads(ln) for ln in self.out.read_text().splitlines() if ln.strip()]

    def stderr(self):
        return self.err.read_text(errors="replace")


@pytest.fixture(scope="session")
def procs(session_dir):
    """Factory of Procs; each is killed at the end of the session if still running."""
    made = []
    out = session_dir / "out"
    out.mkdir(exist_ok=True)

    def start(name, args, tag):
        p = Proc(name, args, out, tag)
        made.append(p)
        return p

    yield start
    for p in made:
        p.kill()


def produce(bootstrap, topic, items, partition=None, timestamp_ms=None):
    """Produce [(record_id or None, record dict or raw bytes)] with the
    plugin's key (the job id) and header; waits for every delivery."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False, "linger.ms": 5})
    errors = []

    def cb(err, msg):
        if err is not None:
            errors.append(str(err))

    for rid, rec in items:
        value = rec if isinstance(rec, bytes) else json.dumps(rec, separators=(",", ":")).encode()
        key = str(rec["jobid"]).encode() if isinstance(rec, dict) else None
        kw = {"headers": [("jobcomp.record_id", str(rid).encode())]} if rid is not None else {}
        if partition is not None:
            kw["partition"] = partition
        if timestamp_ms is not None:
            kw["timestamp"] = timestamp_ms
        p.produce(topic, value=value, key=key, on_delivery=cb, **kw)
    left = p.flush(60)
    assert left == 0 and not errors, f"produce to {topic}: {left} undelivered, errors {errors[:3]}"


def record_2205(**kw):
    """A finish record valid for 22.05's schema (the example without the
    fields 22.05 lacks)."""
    r = {k: v for k, v in EXAMPLE.items() if k not in ("priority", "tres_req_raw", "tres_alloc_raw")}
    r.update(kw)
    return r
