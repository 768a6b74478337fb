"""The batch demo's tables are the same as those of the code before the stages declared what they read and write:
`tests/data/demo_fingerprint.json` was computed by `tests.lake_fingerprint` on the demo lake built by that code
(`cdp demo --people 120 --days 6`, embedded backend, the test session's Spark settings)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.lake_fingerprint import lake_fingerprint

EXPECTED = Path(__file__).resolve().parent / "data" / "demo_fingerprint.json"


@pytest.mark.slow
def test_the_demo_tables_match_the_committed_fingerprint(embedded_batch_demo):
    expected = json.loads(EXPECTED.read_text())
    # The ledger also records the serve stage, which the code before did not have; its other rows are compared.
    actual = lake_fingerprint(str(embedded_batch_demo.root), without={"ops.job_runs": ("step", "serve")})
    assert sorted(actual) == sorted(expected)
    differing = {name: (expected[name], actual[name]) for name in expected if actual[name] != expected[name]}
    assert differing == {}
