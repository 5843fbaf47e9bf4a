"""The session fixtures tests/e2e and tests/e2e26 share (imported by their
conftest.py, like contract_fixture): the run's tag, the session's Apache Kafka
node, and the Broker that leads to it. Each conftest provides `session_dir`
and the `--broker-port` option."""

import os

import pytest

import jk


@pytest.fixture(scope="session")
def tag():
    """The run's tag in directory names (JK_E2E_TAG, set by the suite's
    script, else this process's id)."""
    return os.environ.get("JK_E2E_TAG") or str(os.getpid())


@pytest.fixture(scope="session", autouse=True)
def kafka_node(pytestconfig, session_dir):
    """The Apache Kafka node every Broker of the session leads to."""
    node = jk.session_kafka(pytestconfig, session_dir / "kafka-node")
    yield node
    node.stop()


@pytest.fixture(scope="session")
def broker(pytestconfig, session_dir, kafka_node):
    b = jk.Broker(session_dir / "kafka", jk.port(pytestconfig.getoption("--broker-port")))
    b.start()
    yield b
    b.stop()
