"""The record contract (schema/, JSON Schema draft 2020-12) as the tests use it.

Every end-to-end check of a record goes through contract_problems() (called by
jk.schema_problems), so each record every run produces is validated against
its Slurm series' finish or start schema. Needs jsonschema (pinned in
ci/lib/e2e.sh, installed into the rigs' venv).
"""

import functools
import json
from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schema"
# The series with a schema directory, oldest first.
SERIES = ("22.05", "23.02", "23.11", "24.05", "24.11", "25.05", "25.11", "26.05")
# Start records exist from 25.05 on.
FIRST_START_SERIES = "25.05"


def schema_series(release):
    """'24.11.5' -> '24.11'; ValueError for a series without a schema."""
    s = ".".join(release.split(".")[:2])
    if s not in SERIES:
        raise ValueError(f"no record schema for Slurm {release} (series {s}; have {', '.join(SERIES)})")
    return s


def schema_path(release, start=False):
    s = schema_series(release)
    if start and s < FIRST_START_SERIES:
        raise ValueError(f"Slurm {s} sends no start records (they begin with {FIRST_START_SERIES})")
    return SCHEMA_DIR / s / ("start.schema.json" if start else "finish.schema.json")


@functools.lru_cache(maxsize=None)
def _registry():
    from referencing import Registry, Resource
    resources = []
    for p in sorted(SCHEMA_DIR.rglob("*.schema.json")):
        doc = json.loads(p.read_text())
        resources.append((doc["$id"], Resource.from_contents(doc)))
    return Registry().with_resources(resources)


@functools.lru_cache(maxsize=None)
def validator(release, start=False):
    """A Draft202012Validator for the release's series and event, with every
    file of schema/ resolvable by its $id (the files refer to each other)."""
    from jsonschema import Draft202012Validator
    doc = json.loads(schema_path(release, start).read_text())
    Draft202012Validator.check_schema(doc)
    return Draft202012Validator(doc, registry=_registry())


def contract_problems(record, release, start=False):
    """Each way `record` (a dict) breaks its series' schema, as one line:
    the JSON pointer of the value and the schema's complaint."""
    out = []
    errors = sorted(validator(release, start).iter_errors(record), key=lambda e: [str(p) for p in e.absolute_path])
    # A failing subschema drops the annotations unevaluatedProperties relies
    # on, so next to another error it would list every key as unexpected:
    # it is reported only alone (then it names the keys the series lacks).
    if any(e.validator != "unevaluatedProperties" for e in errors):
        errors = [e for e in errors if e.validator != "unevaluatedProperties"]
    for err in errors:
        where = "/" + "/".join(str(p) for p in err.absolute_path)
        out.append(f"{schema_path(release, start).relative_to(SCHEMA_DIR.parent)} at {where}: {err.message}")
    return out
