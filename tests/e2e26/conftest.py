"""End-to-end tests of jobcomp_kafka.so on Slurm 26.05.5 (Debian forky, in a
chroot), with start events, next to SchedMD's own 26.05.5 plugin.

  pytest tests/e2e26 [--broker-port 61092] [--ctld-port 47817 --slurmd-port 47818]

(ci/e2e26.sh builds what is needed and runs this.) At the start of the
session one Apache Kafka node comes up (or --kafka-bootstrap names one; the
clusters reach it through a gate, jk.Broker), then the same job mix (mix26.py) runs on
three clusters one after the other, all on the same ports:

  on       our plugin, JobCompParams enable_job_start,send_script,send_comment
  schedmd  SchedMD's plugin (Debian's slurm-wlm-kafka-plugin), same params
  off      our plugin, no JobCompParams (start events off), no DebugFlags

and the records of each are read back (finish topic <ClusterName>, start
topic <ClusterName>-job-start, both defaults). The tests then check them.
Directories: /tmp/jk-26-e2e-<tag>/ (broker) and
<chroot>/rig/jk-26-e2e-<tag>-<run>/ (clusters); removed after a passing
session, kept after a failure (or with JK_E2E_KEEP=1).
"""

import traceback

import pytest

from mix26 import MIX_EXTRA_CONF, Mix
import jk
from session_fixtures import broker, kafka_node, tag  # noqa: E402,F401 (fixtures)
from contract_fixture import record_contract  # noqa: E402,F401 (autouse fixture)
from rig26 import CHROOT_ROOT, KAFKA_PROPS, RELEASE, RigError, log

# Every record consumed is checked against 26.05's schema (jk.check_contract).
jk.CONTRACT_RELEASE = RELEASE

# name -> (plugin, JobCompParams, DebugFlags ("": none))
RUNS = {
    "on": ("ours", "enable_job_start,send_script,send_comment,flush_timeout=1000", "JobComp"),
    "schedmd": ("schedmd", "enable_job_start,send_script,send_comment,flush_timeout=1000", "JobComp"),
    "off": ("ours", "", ""),
}


def pytest_addoption(parser):
    g = parser.getgroup("jobcomp-kafka e2e 26.05.5")
    g.addoption("--broker-port", type=int, default=61092)
    jk.add_kafka_options(g, 61090)
    g.addoption("--ctld-port", type=int, default=47817)
    g.addoption("--slurmd-port", type=int, default=47818)
    g.addoption("--counts-file", help="write the outcome counts (JSON) here")


@pytest.fixture(scope="session")
def session_dir(tag, request):
    yield from jk.session_dir_at(request, f"/tmp/jk-26-e2e-{tag}")


class Run:
    """One cluster's pass through the mix and what came out of it."""

    def __init__(self, name, cluster):
        self.name = name
        self.cluster = cluster
        self.mix = Mix(cluster)
        self.finish = None  # jk.Consumed
        self.start = None
        self.log = None  # slurmctld's log, None when unreadable (log_error says why)
        self.log_error = "no log read"
        self.topics = set()
        self.error = None

    def require(self):
        if self.error:
            pytest.fail(f"run {self.name!r} failed:\n{self.error}")
        return self


@pytest.fixture(scope="session")
def runs(pytestconfig, tag, broker, request):
    out = {}
    ports = (jk.port(pytestconfig.getoption("--ctld-port")), jk.port(pytestconfig.getoption("--slurmd-port")))
    for name, (plugin, params, debugflags) in RUNS.items():
        # No topic=: the plugin's defaults (finish: ClusterName, start:
        # <ClusterName>-job-start) are part of what is tested.
        c = jk.Cluster(release=RELEASE, name=f"jk26{name}", dir=CHROOT_ROOT / "rig" / f"jk-26-e2e-{tag}-{name}",
                       ctld_port=ports[0], slurmd_port=ports[1], plugin=plugin, bootstrap=broker.bootstrap,
                       params=params, kafka_props=KAFKA_PROPS, debugflags=debugflags, extra_conf=MIX_EXTRA_CONF)
        r = out[name] = Run(name, c)
        try:
            c.start()
            r.mix.drive()
            r.finish = broker.consume(c.finish_topic, expect=r.mix.expected_finish(), timeout=60, linger=2)
            if "enable_job_start" in params:
                r.start = broker.consume(c.start_topic, expect=r.mix.expected_start(), timeout=60, linger=2)
        except (RigError, OSError, AssertionError):
            r.error = traceback.format_exc()
            log(f"run {name} FAILED: {r.error.splitlines()[-1]}")
        finally:
            c.stop()
            try:
                r.log = c.log_text()
            except OSError as exc:  # the log checks fail on it, naming why
                r.log = None
                r.log_error = f"slurmctld's log {c.log_path} is unreadable: {exc}"
        try:
            r.topics = broker.topics()
        except Exception:  # noqa: BLE001 - reported by the test that needs it
            r.topics = None
    yield out
    for r in out.values():
        if jk.remove_dirs(request):
            r.cluster.remove()
        else:
            log(f"kept {r.cluster.dir} for inspection")


@pytest.fixture
def numbers(request):
    def put(text):
        jk.note_number(f"{request.node.name}: {text}")

    return put


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    jk.terminal_summary(terminalreporter, exitstatus, config, "jobcomp/kafka e2e 26.05.5 numbers")

