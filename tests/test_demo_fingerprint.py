"""The batch demo's tables are those of `tests/data/demo_fingerprint.json`, computed by `tests.lake_fingerprint` on
the demo lake (`cdp demo --people 120 --days 6`, embedded backend, the test session's Spark settings). A refactoring
leaves it as it is (the stages' declarations of what they read and write were checked against the code before
them this way). A change meant to change the demo's tables updates it deliberately, in the same commit:

    CDP_UPDATE_FINGERPRINT=1 python -m pytest -n 0 tests/test_demo_fingerprint.py
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.lake_fingerprint import lake_fingerprint

EXPECTED = Path(__file__).resolve().parent / "data" / "demo_fingerprint.json"


@pytest.mark.slow
def test_the_demo_tables_match_the_committed_fingerprint(embedded_batch_demo):
    expected = json.loads(EXPECTED.read_text())
    # The ledger also records the serve stage, which the code before did not have; its other rows are compared.
    actual = lake_fingerprint(str(embedded_batch_demo.root), without={"ops.job_runs": ("step", "serve")})
    if os.environ.get("CDP_UPDATE_FINGERPRINT") == "1":
        EXPECTED.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
        expected = actual
    assert sorted(actual) == sorted(expected)
    differing = {name: (expected[name], actual[name]) for name in expected if actual[name] != expected[name]}
    assert differing == {}
