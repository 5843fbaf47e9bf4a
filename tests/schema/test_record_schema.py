"""The record schemas (schema/) catch what they must, pass the documented
example, and express the differences between Slurm series. Fast: no rig.

    /var/tmp/jobcomp-kafka/venv/bin/python -m pytest tests/schema
"""

import copy
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from record_schema import SERIES, contract_problems, validator  # noqa: E402

EXAMPLE = json.loads((REPO / "tests/data/records/example-24.11-finish.json").read_text())


def test_every_schema_file_is_a_valid_draft_2020_12_schema():
    """check_schema on every series' finish and (25.05+) start schema, all
    $refs resolvable (a validation run walks them)."""
    for s in SERIES:
        for start in ((False, True) if s >= "25.05" else (False,)):
            v = validator(s + ".0", start)
            list(v.iter_errors({}))


def test_example_24_11_finish_record_passes():
    """tests/data/records/example-24.11-finish.json (record-format.md's example)."""
    assert contract_problems(EXAMPLE, "24.11.5") == []


def test_wrong_type_is_caught():
    """jobid as a string, cpu_hours as a string, total_cpus as a float."""
    for key, bad in (("jobid", "1234"), ("cpu_hours", "4.07"), ("total_cpus", 4.5), ("nodes", 3)):
        rec = dict(EXAMPLE, **{key: bad})
        probs = contract_problems(rec, "24.11.5")
        assert probs and any(f"at /{key}:" in p for p in probs), (key, probs)


def test_missing_required_field_is_caught():
    """A key present in every finish record (null or not) left out."""
    for key in ("jobid", "state", "exit_code", "failed_node", "nodes"):
        rec = {k: v for k, v in EXAMPLE.items() if k != key}
        probs = contract_problems(rec, "24.11.5")
        assert any(f"'{key}' is a required property" in p for p in probs), (key, probs)


def test_unknown_key_and_bad_text_forms_are_caught():
    """A key no series has, a time with a zone suffix, an exit code without
    its signal, a state Slurm never writes."""
    cases = [("bogus", 1), ("@end", "2024-05-01T11:01:01Z"), ("exit_code", "0"), ("state", "DONE")]
    for key, bad in cases:
        probs = contract_problems(dict(EXAMPLE, **{key: bad}), "24.11.5")
        assert probs, (key, bad)


def test_series_differences():
    """What one series allows and the next does not, in the schemas."""
    rec = copy.deepcopy(EXAMPLE)
    # priority is 24.05+, the tres_*_raw pair 23.11+.
    assert any("priority" in p for p in contract_problems(rec, "23.11.10"))
    no_prio = {k: v for k, v in rec.items() if k != "priority"}
    assert contract_problems(no_prio, "23.11.10") == []
    no_raw = {k: v for k, v in no_prio.items() if not k.endswith("_raw")}
    assert contract_problems(no_raw, "23.02.7") == []
    assert any("tres_req_raw" in p for p in contract_problems(no_prio, "23.02.7"))
    # 22.05: failed_node is always null.
    assert contract_problems(no_raw, "22.05.8") == []
    assert contract_problems(dict(no_raw, failed_node="n1"), "22.05.8")
    assert contract_problems(dict(no_raw, failed_node="n1"), "23.02.7") == []
    # Placeholder times and negative elapsed: allowed before 24.11 / 24.05.
    unk = dict(no_raw, **{"@start": "Unknown", "elapsed": -100})
    assert contract_problems(unk, "22.05.8") == []
    assert contract_problems(dict(rec, **{"@start": "Unknown"}), "24.11.5")
    assert contract_problems(dict(rec, elapsed=-1), "24.05.4")
    # 26.05: sluid required.
    assert any("'sluid' is a required property" in p for p in contract_problems(rec, "26.05.5"))
    with_sluid = dict(rec, sluid="s0123456789ABC")
    assert contract_problems(with_sluid, "26.05.5") == []
    assert contract_problems(dict(rec, sluid="s0123456789ABU"), "26.05.5")  # U is not Crockford
    assert any("sluid" in p for p in contract_problems(with_sluid, "25.11.1"))


def test_start_record_rules():
    """25.05+ start records: finish-only keys refused, state null; series
    before 25.05 have no start schema."""
    start = {k: v for k, v in EXAMPLE.items()
             if k not in ("@end", "elapsed", "derived_ec", "exit_code", "failed_node", "cpu_hours",
                          "pack_job_id", "pack_job_offset", "script")}
    start["state"] = None
    assert contract_problems(start, "25.05.3", start=True) == []
    assert contract_problems(dict(start, exit_code="0:0"), "25.05.3", start=True)
    assert contract_problems(dict(start, state="RUNNING"), "25.05.3", start=True)
    # the same record is not a finish record
    assert contract_problems(start, "25.05.3")
    with pytest.raises(ValueError):
        validator("24.11.5", True)


def test_e2e_hook_reports_consumed_records_that_break_the_schema():
    """jk.check_contract (called by jk.Broker.consume in the e2e suites):
    a record with a wrong type is reported, a good one is not; from 25.05 a
    record with state null is checked as a start record; nothing is checked
    while no suite set CONTRACT_RELEASE."""
    import jk
    from jk import Message
    good = json.dumps(EXAMPLE).encode()
    bad = json.dumps(dict(EXAMPLE, total_cpus="4")).encode()
    start = {k: v for k, v in EXAMPLE.items()
             if k not in ("@end", "elapsed", "derived_ec", "exit_code", "failed_node", "cpu_hours",
                          "pack_job_id", "pack_job_offset")}
    start.update(state=None, sluid="s0123456789ABC")
    try:
        jk.CONTRACT_RELEASE = None
        jk.check_contract("t", [Message(0, 0, b"1234", bad, 0)])
        assert jk.take_contract_violations() == []
        jk.CONTRACT_RELEASE = "24.11.5"
        jk.check_contract("t", [Message(0, 0, b"1234", good, 0), Message(0, 1, b"1234", bad, 0)])
        v = jk.take_contract_violations()
        assert len(v) == 1 and "0/1" in v[0] and "/total_cpus" in v[0], v
        jk.CONTRACT_RELEASE = "26.05.5"
        jk.check_contract("t", [Message(0, 2, b"1234", json.dumps(start).encode(), 0)])
        assert jk.take_contract_violations() == []
        jk.check_contract("t", [Message(0, 3, b"1234", json.dumps(dict(start, exit_code="0:0")).encode(), 0)])
        assert any("start.schema.json" in x for x in jk.take_contract_violations())
    finally:
        jk.CONTRACT_RELEASE = None
        jk.take_contract_violations()


def test_docs_validation_example_runs_against_the_repository_schemas():
    """docs/consumers.md's Python block that validates a record with the
    installed schemas, run as written (the directory pointed at schema/ of the
    repository): it accepts the 24.11 example and rejects it with jobid
    turned into a string."""
    import re
    import jsonschema
    doc = (REPO / "docs/consumers.md").read_text()
    code = re.search(r"```python\n(import json, pathlib\n.*?)```", doc, re.S).group(1)
    code = code.replace('"/usr/share/jobcomp-kafka/schema"', repr(str(REPO / "schema")))
    exec(compile(code, "docs/consumers.md", "exec"), {"record": EXAMPLE})
    with pytest.raises(jsonschema.ValidationError):
        exec(compile(code, "docs/consumers.md", "exec"), {"record": dict(EXAMPLE, jobid="1234")})
