"""The Python API (`cdp_spark.open`) on the session's demo lake: tables, the profile view, a look-up by an
identifier written differently, an audience preview equal to the audiences stage's size, and a stage run."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from deltalake import DeltaTable

import cdp_spark

CONF = Path(__file__).resolve().parents[1] / "conf" / "cdp.yaml"


@pytest.fixture(scope="module")
def cdp(demo_lake):
    with demo_lake.env():
        yield cdp_spark.open(CONF)


def _rows(root: Path, name: str):
    return DeltaTable(str(root.joinpath(*name.split(".")))).to_pandas()


def test_tables_and_profiles(cdp, demo_lake):
    tables = {t.name: t for t in cdp.tables()}
    profiles = _rows(demo_lake.root, "gold.profiles")
    assert tables["gold.profiles"].rows == len(profiles) > 0
    view = cdp.profiles()
    assert view.count() == len(profiles) and {"identifiers", "traits", "attributes", "consent", "scores"} <= set(view.columns)


def test_profile_by_an_identifier_as_a_person_types_it(cdp, demo_lake):
    graph = _rows(demo_lake.root, "gold.id_graph")
    email = graph[graph.id_type == "email"].sort_values("value").iloc[0]
    found = cdp.profile("email", f"  {email.value.upper()} ")
    assert found is not None and found["profile_id"] == email.profile_id
    assert email.value in found["identifiers"]["email"]
    assert cdp.profile("email", "nobody@nowhere.invalid") is None


def test_audience_preview_matches_the_recorded_size(cdp, demo_lake):
    as_of = dt.date.fromisoformat(demo_lake.report["run"]["as_of"])
    sizes = _rows(demo_lake.root, "gold.audience_sizes")
    recorded = sizes[sizes.as_of.astype(str) == as_of.isoformat()].set_index("audience")["size"]
    name = recorded.idxmax()
    preview = cdp.audience(name).preview(as_of)
    assert preview["size"] == recorded[name] and sum(preview["variants"].values()) == preview["size"]
    with pytest.raises(KeyError, match="no audience 'nope'; configured: "):
        cdp.audience("nope")


def test_run_records_a_stage_in_the_ledger(cdp, demo_lake):
    as_of = dt.date.fromisoformat(demo_lake.report["run"]["as_of"])
    report = cdp.run("serve", as_of)
    assert report.status == "succeeded" and report.stages == {"serve": "succeeded"}
    runs = _rows(demo_lake.root, "ops.job_runs")
    assert (runs.run_id == report.run_id).any()
