"""Secured Kafka end to end: TLS, mutual TLS, SASL, Kerberos and OIDC with our
plugin in a real slurmctld (Slurm 22.05.8 on the host). Run by ci/e2e-secured.sh
(`make e2e-secured`):

  pytest tests/e2e_secured

Ports 127.0.0.1:21100-21199 only (secured.LISTENERS, PORTS). One Apache
Kafka 4.x node, one MIT KDC and one OpenID provider serve the whole session
(fixture `kafka`); each test makes its own slurmctld, topic and ACLs. Directories under
/tmp/jk-sec-<tag>/ (<tag> from JK_E2E_TAG, else the pid), removed after a
passing session, kept after a failure (or with JK_E2E_KEEP=1).
"""

import os
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
    # Every record secured.check_delivered sees is checked against this
    # release's schema (jk.check_contract).
    jk.CONTRACT_RELEASE = rel
    return rel


@pytest.fixture(scope="session")
def session_dir(request):
    yield from jk.session_dir_at(request, f"/tmp/jk-sec-{os.environ.get('JK_E2E_TAG') or os.getpid()}")


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


@pytest.fixture(scope="session")
def kdc(session_dir):
    """MIT's KDC (ci/rig/kdc.sh) for the session: the broker logs in to it
    at start-up."""
    k = secured.RigProcess("kdc.sh", session_dir / "kdc", secured.KDC_PORT, secured.REALM)
    k.start()
    yield k
    k.stop()


@pytest.fixture(scope="session")
def provider(session_dir, certs, examples):
    """The OpenID provider (ci/rig/oidc.sh) with docs/securing-kafka.md's OIDC client,
    for the session, its tokens living secured.TOKEN_TTL seconds: the broker reads its JWKS. Tests read its log from
    their own offset (provider_events)."""
    text = examples["oidc"]
    p = secured.RigProcess("oidc.sh", session_dir / "oidc", secured.PROVIDER_PORT, certs / "server.pem",
                           certs / "server.key", secured.example_property(text, "sasl.oauthbearer.client.id"),
                           secured.example_property(text, "sasl.oauthbearer.client.secret"),
                           secured.example_property(text, "sasl.oauthbearer.scope"),
                           env={"OIDC_TOKEN_TTL": str(secured.TOKEN_TTL)})
    p.start()
    yield p
    p.stop()


@pytest.fixture(scope="session")
def kafka(session_dir, certs, kdc, provider, examples):
    """Apache Kafka 4.x, one node for the session, a listener per case
    (secured.SecuredKafka); docs/securing-kafka.md's SCRAM user made at format time."""
    secured.broker_certs(certs)
    text = examples["scram"]
    k = secured.SecuredKafka(session_dir / "kafka", certs, kdc.dir, scram_users={
        secured.example_property(text, "sasl.username"): secured.example_property(text, "sasl.password")})
    try:
        k.start()
        yield k
    finally:
        k.stop()


@pytest.fixture
def stack(request, session_dir):
    """slurmctld clusters made by a test, stopped at its end."""
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
