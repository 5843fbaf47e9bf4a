"""Secured Kafka end to end: TLS, mutual TLS, SASL, Kerberos and OIDC with our
plugin in a real slurmctld (Slurm 22.05.8 on the host). Run by ci/e2e-secured.sh
(`make e2e-secured`):

  pytest tests/e2e_secured

Ports 127.0.0.1:20300-20399 only (secured.PORTS). Directories under
/tmp/jk-sec-<tag>/ (<tag> from JK_E2E_TAG, else the pid), removed after a
passing session, kept after a failure (or with JK_E2E_KEEP=1).
"""

import os
import shutil
import signal

import pytest

import secured
from secured import jk, log, run


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_addoption(parser):
    parser.addoption("--counts-file", help="write the outcome counts (JSON) here")


def pytest_configure(config):
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def release():
    rel = secured.host_release()
    assert rel.startswith("22.05"), f"the host's Slurm is {rel}; this suite runs 22.05 on the host"
    so = jk.REPO / "build" / f"slurm-{rel}" / "jobcomp_kafka.so"
    assert so.is_file(), f"{so} missing: make build"
    return rel


@pytest.fixture(scope="session")
def session_dir(request):
    tag = os.environ.get("JK_E2E_TAG") or str(os.getpid())
    d = jk.Path(f"/tmp/jk-sec-{tag}")
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    os.chmod(d, 0o755)
    yield d
    if jk.remove_dirs(request):
        shutil.rmtree(d, ignore_errors=True)
    else:
        log(f"kept {d} for inspection")


@pytest.fixture(scope="session")
def examples():
    return secured.readme_examples()


@pytest.fixture(scope="session")
def certs(session_dir, examples):
    """CA, server, client (key encrypted with docs/securing-kafka.md's mtls password) and
    the bad certificates, made by ci/rig/tls.sh."""
    d = session_dir / "certs"
    pw = secured.example_property(examples["mtls"], "ssl.key.password")
    run([jk.RIG / "tls.sh", "certs", d], env={"CLIENT_KEY_PASSWORD": pw})
    return d


@pytest.fixture
def stack(request, session_dir):
    """Brokers and clusters made by a test, stopped at its end."""
    made = []
    yield made
    for thing in reversed(made):
        try:
            thing.stop()
        except Exception as exc:  # noqa: BLE001
            log(f"stopping {thing}: {exc}")


@pytest.fixture
def numbers(request):
    def put(text):
        jk.note_number(f"{request.node.name}: {text}")
    return put


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    jk.terminal_summary(terminalreporter, exitstatus, config, "jobcomp/kafka secured e2e numbers")
