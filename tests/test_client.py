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


def test_open_changes_settings_of_sections_and_resolves_a_relative_root(tmp_path):
    from cdp_spark.client import with_settings
    from cdp_spark.config import ConfigError, load_config

    base = load_config(CONF)
    base = with_settings(base, engine={"spark_conf": {"spark.ui.enabled": "false"}})
    changed = with_settings(base, tmp_path, engine={"cores": 1, "spark_conf": {"spark.driver.memory": "1g"}},
                            lake={"root": "lake", "vacuum_retention_hours": 48})
    assert changed.engine.cores == 1
    assert changed.engine.spark_conf == {"spark.ui.enabled": "false", "spark.driver.memory": "1g"}  # merged
    assert changed.lake.root == str(tmp_path / "lake") and changed.lake.vacuum_retention_hours == 48
    assert changed.lake.checkpoint_dir == f"{tmp_path / 'lake'}/_system/checkpoints"  # derived from the new root
    assert base.engine.cores != 1 or base.engine.cores is None  # the loaded config is left alone
    with pytest.raises(ValueError, match="cores"):
        with_settings(base, engine={"cores": 0})
    with pytest.raises(ConfigError):
        cdp_spark.open(tmp_path / "missing.yaml")


def test_events_purchases_and_identity_run_agree_with_the_lake(cdp, demo_lake):
    as_of = dt.date.fromisoformat(demo_lake.report["run"]["as_of"])
    graph = _rows(demo_lake.root, "gold.id_graph")
    assert cdp.identity_run()["stats"]["profiles"] == graph["profile_id"].nunique()
    assert cdp.exists("gold.id_graph") and cdp.read("gold.id_graph").count() == len(graph)
    events = cdp.events(as_of)
    assert events.where("profile_id is null").count() == 0 and events.count() > 0
    scores = _rows(demo_lake.root, "gold.profile_scores")
    scores = scores[scores.as_of.astype(str) == as_of.isoformat()]
    buyers = cdp.purchases(as_of).select("profile_id").distinct().count()
    assert buyers == scores["rfm_segment"].notna().sum() > 0  # the scores stage segments exactly the buyers
    assert cdp.models.rfm.__name__ == "cdp_spark.ml.rfm" and hasattr(cdp.models.clv, "fit_bgnbd")
    assert cdp.mlflow_uri.startswith("sqlite:///")


def test_an_audience_defined_in_python_is_checked_previewed_evaluated_and_exported(cdp, demo_lake, tmp_path):
    from cdp_spark.config import ConfigError

    as_of = dt.date.fromisoformat(demo_lake.report["run"]["as_of"])
    with pytest.raises(ConfigError, match=r"rule.audience: got 'ghost', expected the name of an audience"):
        cdp.with_audience({"name": "x", "rule": {"audience": "ghost"}})
    design = cdp.with_audience({"name": "emailable", "rule": {"identifier": "email"},
                                "variants": [{"name": "a", "weight": 1}, {"name": "hold", "weight": 1,
                                                                          "holdout": True}]})
    assert "emailable" not in [a.name for a in cdp.config.audiences]  # the original is unchanged
    evaluated = design.audience_members(as_of)
    assert "emailable" in evaluated.audiences
    ours = evaluated.members.where("audience = 'emailable'").toPandas()
    graph = _rows(demo_lake.root, "gold.id_graph")
    assert set(ours.profile_id) == set(graph[graph.id_type == "email"].profile_id)
    preview = design.audience("emailable").preview(as_of)
    assert preview["size"] == len(ours) and preview["variants"] == ours.variant.value_counts().to_dict()
    report = design.audience("emailable").export(
        {"name": "drop", "format": "csv", "identifiers": ["email"], "mode": "snapshot",
         "transport": {"type": "file", "path": str(tmp_path / "drop")}}, to=tmp_path, as_of=as_of)
    sendable = (ours.variant != "hold").sum()
    assert report.status == "succeeded" and report.profiles_considered == sendable
    manifest = cdp.verify_export(report.location)
    assert sum(f["rows"] for f in manifest["files"]) == report.records_sent > 0
    assert Path(report.location).is_relative_to(tmp_path)
    assert cdp.mask("jane.doe@example.com") == "j***@example.com"
