"""End-to-end tests of jobcomp_kafka.so in a real slurmctld with a real broker.

One pytest session per Slurm release (ci/e2e.sh runs the two in parallel):

  pytest tests/e2e --release 22.05.8 --broker-port 29092
  pytest tests/e2e --release 24.11.5 --broker-port 29093

Per session: a broker (a gate to the run's Apache Kafka node, see jk.Broker;
ci/e2e.sh starts one node for both sessions); the job mix on a cluster with our plugin (and,
for 24.11.5, the same mix on a second cluster with SchedMD's plugin), run in
background threads from the start of the session because the time-limit job
needs 60-90 s; the other tests (restart, reconfigure) run on clusters of their
own meanwhile; the checks of the mix come last. Tests marked
`releases(...)` run only in those sessions (the others are deselected).

Ports: brokers (gates) 29092 (22.05) / 29093 (24.11) / 29094 (the restart
test's own broker); Kafka 29090-29091 when the session starts its own node; host clusters 61817/61818 (mix), 61827/61828 (restart), 61837/61838
(reconfigure); chroot clusters 62817/62818 (mix, ours), 62827/62828 (mix,
SchedMD's), 62837/62838 (reconfigure), 62857/62858 (reconfigure, re-exec); all
in jk.PORTS, outside the ephemeral range 32768-60999 (see there). Directories:
/tmp/jk-e2e-<tag>-<series>/ and <chroot>/rig/jk-e2e-<tag>-<series>-*/ (<tag>
from JK_E2E_TAG, set by ci/e2e.sh, else the pid); removed after a passing
session, kept after a failure (or with JK_E2E_KEEP=1).
"""

import os
import signal

import pytest

import jk
from session_fixtures import broker, kafka_node, tag  # noqa: E402,F401 (fixtures)
from contract_fixture import record_contract  # noqa: E402,F401 (autouse fixture)
from jk import KAFKA_PROPS, PORTS, Cluster, log, series
from mix import MIX_EXTRA_CONF, MixRun

def pytest_addoption(parser):
    g = parser.getgroup("jobcomp-kafka e2e")
    g.addoption("--release", required=True, help="Slurm release of this session: 22.05.8 or 24.11.5")
    g.addoption("--broker-port", type=int, default=29092, help="port of this session's broker (a gate to Kafka)")
    jk.add_kafka_options(g, 29090)
    g.addoption("--cluster-port-offset", type=int, default=0,
                help="added to every jk.PORTS port (a second session of one release next to the suite)")
    g.addoption("--counts-file", help="write the outcome counts (JSON) here")
    g.addoption("--rules-kafka", action="append", default=[], metavar="[NAME=]HOST:PORT",
                help="an Apache Kafka node with auto.create.topics.enable=false (ci/e2e-kafka.sh: 4.4.0 and "
                "3.9.2), NAME its label in the test ids; repeatable: the kafka_rules tests run on each; "
                "without it they are deselected")
    g.addoption("--rules-port-base", type=int, default=20810,
                help="first of the kafka_rules tests' slurmctld/slurmd ports (8 per --rules-kafka node)")
    g.addoption("--create-topics", action="store_true",
                help="the job mix creates its topic first (a node with auto.create.topics.enable=false)")


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    # SIGTERM (ci/e2e.sh stopping us) and SIGINT (even when ignored on entry,
    # as in a background job) interrupt like Ctrl-C: pytest then tears the
    # fixtures down, which stops every cluster and broker by PID.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line("markers", "releases(*r): run only in the sessions of these releases")
    config.addinivalue_line("markers", "mixcheck: checks of the background job mix (run last)")
    config.addinivalue_line("markers", "kafka_rules: needs --rules-kafka (tests/e2e/test_kafka_rules.py)")
    # Every record consumed is checked against this release's schema (jk.check_contract).
    jk.CONTRACT_RELEASE = config.getoption("--release")


# How many tests a whole session of each release runs (the directory, no -k or
# -m: ci/e2e.sh). A `releases(...)` marker that no longer names the session's
# release (the host's Slurm changed) would deselect its tests without a word:
# a whole session selects exactly this many and runs every one of them.
SESSION_TESTS = {"22.05.8": 8, "24.11.5": 7}


def _whole_session(config):
    return not config.option.keyword and not config.option.markexpr and all(
        os.path.isdir(a) for a in config.args)


def pytest_collection_modifyitems(config, items):
    rel = config.getoption("--release")
    keep, drop = [], []
    for it in items:
        m = it.get_closest_marker("releases")
        wanted = m is None or rel in m.args
        if it.get_closest_marker("kafka_rules") and not config.getoption("--rules-kafka"):
            wanted = False
        (keep if wanted else drop).append(it)
    if drop:
        config.hook.pytest_deselected(items=drop)
    # The checks of the mix wait for it: everything else first.
    keep.sort(key=lambda it: 1 if it.get_closest_marker("mixcheck") else 0)
    items[:] = keep
    if _whole_session(config):
        if rel not in SESSION_TESTS:
            raise pytest.UsageError(f"--release {rel}: the e2e sessions are {sorted(SESSION_TESTS)} "
                                    "(tests/e2e/conftest.py SESSION_TESTS)")
        if len(keep) != SESSION_TESTS[rel]:
            raise pytest.UsageError(
                f"{len(keep)} test(s) selected for Slurm {rel}, SESSION_TESTS says {SESSION_TESTS[rel]}: a "
                f"releases(...) marker or SESSION_TESTS is out of date; selected: {[it.name for it in keep]}")


_RAN = []


def pytest_runtest_logreport(report):
    if report.when == "call":
        _RAN.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    rel = config.getoption("--release")
    expected = SESSION_TESTS.get(rel)
    if exitstatus == 0 and _whole_session(config) and not config.option.collectonly and len(_RAN) != expected:
        log(f"ERROR: {len(_RAN)} test(s) ran in the Slurm {rel} session, {expected} expected")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def release(pytestconfig):
    return pytestconfig.getoption("--release")


@pytest.fixture(scope="session")
def session_dir(release, tag, request):
    yield from jk.session_dir_at(request, f"/tmp/jk-e2e-{tag}-{series(release).replace('.', '')}")


@pytest.fixture(scope="session")
def make_cluster(release, tag, session_dir, request, pytestconfig):
    """Factory: a started cluster of this session's release, stopped at the
    end of the session (and its directory removed when nothing failed)."""
    clusters = jk.StartedClusters(request)
    offset = pytestconfig.getoption("--cluster-port-offset")

    def make(name, role, **kw):
        ports = [p + offset for p in PORTS[series(release)][role]]
        return clusters.start(Cluster(release=release, name=name, dir=jk.cluster_dir(release, tag, session_dir, name),
                                      ctld_port=ports[0], slurmd_port=ports[1], **kw))

    yield make
    clusters.stop_all()


@pytest.fixture(scope="session")
def mixes(release, broker, make_cluster, kafka_node, pytestconfig):
    """The job mix, started in the background at the beginning of the session:
    {"ours": MixRun} and, on 24.11, also {"schedmd": MixRun}."""
    runs = {}
    plugins = ["ours"] + (["schedmd"] if PORTS[series(release)]["schedmd"] else [])
    for plugin in plugins:
        role = "mix" if plugin == "ours" else "schedmd"
        topic = f"jk-mix-{plugin}-{series(release)}"
        if pytestconfig.getoption("--create-topics"):
            kafka_node.create_topic(topic)
        c = make_cluster(f"jkmix{plugin}", role, plugin=plugin, bootstrap=broker.bootstrap,
                         topic=topic, params="flush_timeout=1000",
                         kafka_props=KAFKA_PROPS, extra_conf=MIX_EXTRA_CONF)
        runs[plugin] = MixRun(c)
    for r in runs.values():
        r.start()
    yield runs
    for r in runs.values():
        if r.thread is not None:
            r.thread.join(timeout=5)


@pytest.fixture(scope="session", autouse=True)
def _start_mix_first(request):
    """Starts the mix before the first test when this session has mix checks."""
    if any(it.get_closest_marker("mixcheck") for it in request.session.items):
        try:
            request.getfixturevalue("mixes")
        except Exception as exc:  # noqa: BLE001
            # Only the mix checks fail then (pytest re-raises the cached
            # error when they request the fixture); the other tests run.
            log(f"starting the job mix failed: {exc}")


@pytest.fixture
def numbers(release, request):
    """numbers(text): a line for the CI log (printed now and in the summary)."""

    def put(text):
        jk.note_number(f"[{release}] {request.node.name}: {text}")

    return put


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    jk.terminal_summary(terminalreporter, exitstatus, config, "jobcomp/kafka e2e numbers")

