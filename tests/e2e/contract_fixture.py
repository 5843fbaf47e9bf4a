"""The record-contract fixture every end-to-end pytest suite uses: imported
by tests/e2e, tests/e2e26 and tests/consumers conftest.py (an imported fixture
is registered like one defined there), so the check is written once."""

import pytest

import jk


@pytest.fixture(autouse=True)
def record_contract():
    """Every record a test consumed (jk.Broker.consume) is valid against its
    series' schema in schema/ (jk.check_contract)."""
    yield
    bad = jk.take_contract_violations()
    assert not bad, f"{len(bad)} record(s) break the schema: " + "; ".join(bad[:10])
