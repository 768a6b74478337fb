"""The data-scientist notebooks (notebooks/*.ipynb) run unchanged on the demo lake, show their plots, and what they
report matches the lake: sizes against the audiences stage, segments against the scores stage, the exported file
against the consented members. The notebooks only read the shared lake; a check says so.

All three run in one Jupyter kernel (one extra Spark JVM, local[1], 1g) against the session's `demo_lake`.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pandas as pd
import pytest
from deltalake import DeltaTable

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CONF = ROOT / "conf" / "cdp.yaml"
FIGURES = {
    "01_explore_profiles": {"identity_profile_sizes", "consent_and_sources", "events_timeline"},
    "02_customer_value": {"rfm_segments", "clv_distribution", "clv_holdout"},
    "03_audience_design": {"audience_overlap", "affinity_bands"},
}


def _table(root: Path, name: str) -> pd.DataFrame:
    """A lake table read with delta-rs, independently of Spark and of the notebooks."""
    layer, table = name.split(".")
    return DeltaTable(str(root / layer / table)).to_pandas()


def _lake_state(root: Path) -> dict[str, int]:
    """Every file under the lake root with its size (Delta logs, data, MLflow store): what a reader leaves alone."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def _values(identifiers: dict, kind: str) -> list:
    values = identifiers.get(kind)
    return [] if values is None else list(values)


def _matchable(identifiers: dict) -> bool:
    """A CRM file row needs an email address or a customer id (the destination's match keys; first value sorted)."""
    emails = sorted(v for v in _values(identifiers, "email") if v)
    customer_ids = [v for v in _values(identifiers, "customer_id") if v and v.strip()]
    return bool(customer_ids) or bool(emails and re.fullmatch(r"[^@\s]+@[^@\s]+", emails[0].strip()))


def test_committed_notebooks_are_stripped():
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert [p.stem for p in paths] == sorted(FIGURES)
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code, path.name
        for cell in code:
            assert cell.outputs == [], f"{path.name}: outputs not stripped"
            assert cell.execution_count is None, f"{path.name}: execution count not stripped"
        assert not [c for c in nb.cells if "execution" in c.metadata], f"{path.name}: execution timings kept"
        assert "widgets" not in nb.metadata, path.name


@pytest.fixture(scope="module")
def executed(demo_lake, tmp_path_factory):
    """The three notebooks executed in order in one kernel; their outputs, summaries and the lake before/after."""
    from jupyter_client import KernelManager
    from nbclient import NotebookClient

    out = tmp_path_factory.mktemp("notebook-output")
    before = _lake_state(demo_lake.root)
    with demo_lake.env():
        env = dict(os.environ)
    env.update({"CDP_CONF": str(CONF), "CDP_NOTEBOOK_OUT": str(out), "CDP_NOTEBOOK_CORES": "1",
                "CDP_NOTEBOOK_DRIVER_MEMORY": "1g", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
                "CDP_NOTEBOOK_SPARK_CONF": json.dumps({"spark.sql.adaptive.enabled": "false"})})
    env.pop("MPLBACKEND", None)  # the notebooks select the inline backend (Agg rendering to PNG outputs)
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(NOTEBOOKS), env=env)
    notebooks = {}
    try:
        for name in sorted(FIGURES):
            nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
            NotebookClient(nb, km=km, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
            notebooks[name] = nb
    finally:
        km.shutdown_kernel(now=True)
    summaries = {name: json.loads((out / name / "summary.json").read_text()) for name in notebooks}
    return SimpleNamespace(root=demo_lake.root, out=out, notebooks=notebooks, summaries=summaries,
                           before=before, after=_lake_state(demo_lake.root))


def test_notebooks_run_and_draw_every_plot(executed):
    for name, expected in FIGURES.items():
        nb = executed.notebooks[name]
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], name
        pngs = [o for o in outputs if o.output_type in ("display_data", "execute_result") and "image/png" in o.data]
        assert len(pngs) == len(expected), (name, len(pngs))
        saved = {p.stem for p in (executed.out / name / "figures").glob("*.png")}
        assert saved == expected, name
        assert all(c.execution_count for c in nb.cells if c.cell_type == "code"), name


def test_notebooks_leave_the_lake_unchanged(executed):
    assert executed.after == executed.before


def test_explore_profiles_reports_the_lake(executed):
    s = executed.summaries["01_explore_profiles"]
    profiles = _table(executed.root, "gold.profiles")
    graph = _table(executed.root, "gold.id_graph")
    assert s["profiles"] == len(profiles) == profiles["profile_id"].nunique() > 0
    assert s["identity_profiles"] == s["graph_profiles"] == graph["profile_id"].nunique()
    assert s["tables"]["gold.profiles"] == len(profiles)
    # The lookup finds the profile that owns the email in the identity graph.
    email = s["lookup"]["email"]
    owner = graph[(graph["id_type"] == "email") & (graph["value"] == email)]["profile_id"]
    assert list(owner) == [s["lookup"]["profile_id"]]
    assert s["lookup"]["events"] > 0
    # Consent counts per purpose add up to the profiles.
    for purpose, counts in s["consent"].items():
        assert sum(counts.values()) == len(profiles), purpose


def test_customer_value_matches_the_scores_stage(executed):
    from mlflow import MlflowClient

    s = executed.summaries["02_customer_value"]
    scores = _table(executed.root, "gold.profile_scores")
    scores = scores[scores["as_of"].astype(str) == s["as_of"]]
    stage = scores["rfm_segment"].dropna().value_counts().to_dict()
    assert s["rfm_segments"] == s["rfm_segments_stage"] == stage
    assert sum(stage.values()) == s["buyers"] > 0
    # Holdout diagnostics were computed on real customers and logged to the notebook's own MLflow store.
    h = s["holdout"]
    assert h["customers"] > 0 and h["actual_total"] >= 0 and math.isfinite(h["baseline_total"])
    run = s["notebook_run"]
    assert str(executed.out) in run["tracking_uri"]
    logged = MlflowClient(tracking_uri=run["tracking_uri"]).get_run(run["run_id"])
    assert logged.data.metrics["holdout_mae_baseline"] == pytest.approx(h["mae_baseline"])
    if h["bgnbd_usable"]:
        assert logged.data.metrics["holdout_mae_purchases"] == pytest.approx(h["mae_purchases"])
    assert logged.data.params["as_of"] == s["as_of"]
    clv = s["clv_scored"]
    assert clv["customers"] == s["clv_fit"]["customers"] == s["buyers"]
    assert math.isfinite(clv["mean"]) and clv["mean"] > 0


def test_audience_design_preview_overlap_and_export(executed, spark):
    from cdp_spark.audiences.config import Audience
    from cdp_spark.audiences.stage import current_members
    from cdp_spark.config import load_config
    from cdp_spark.lake import open_lake
    from cdp_spark.profiles.view import profile_view

    s = executed.summaries["03_audience_design"]
    as_of = dt.date.fromisoformat(s["as_of"])
    sizes = _table(executed.root, "gold.audience_sizes")
    sizes = sizes[sizes["as_of"].astype(str) == s["as_of"]].set_index("audience")["size"].to_dict()
    # The shipped audiences evaluated in the notebook (the overlap matrix's diagonal) have the sizes the audiences
    # stage recorded; the matrix is symmetric and no pair shares more than the smaller audience holds.
    overlap = s["overlap"]
    assert {name: overlap[name][name] for name in sizes} == sizes and sum(sizes.values()) > 0
    for a in overlap:
        for b in overlap:
            assert overlap[a][b] == overlap[b][a] <= min(overlap[a][a], overlap[b][b])

    # The Python-defined audience, evaluated by the audiences stage's own evaluation in the test's Spark.
    old = os.environ.get("CDP_LAKE_ROOT")
    os.environ["CDP_LAKE_ROOT"] = str(executed.root)
    try:
        config = load_config(CONF)
    finally:
        os.environ.pop("CDP_LAKE_ROOT") if old is None else os.environ.__setitem__("CDP_LAKE_ROOT", old)
    audience = Audience.model_validate(s["definition"])
    lake = open_lake(spark, config)
    members, _, _ = current_members(spark, config, lake, as_of, [*config.audiences, audience])
    ours = members.where(members.audience == audience.name).toPandas()
    assert s["preview"]["size"] == len(ours) == overlap[audience.name][audience.name] > 0

    # The export holds exactly the non-holdout members with email consent and an identifier to send.
    holdouts = {v.name for v in audience.variants if v.holdout}
    view = profile_view(spark, config, lake).select("profile_id", "identifiers", "consent").toPandas()
    view = view.set_index("profile_id").loc[ours["profile_id"]]
    sendable = ours.set_index("profile_id")["variant"].map(lambda v: v not in holdouts)
    consented = view["consent"].map(lambda c: dict(c or {}).get("email_marketing") == "granted")
    has_id = view["identifiers"].map(lambda i: _matchable(dict(i or {})))
    expected = set(view.index[sendable & consented & has_id])
    a = s["activation"]
    assert a["status"] == "succeeded" and a["considered"] == int(sendable.sum())
    assert a["skipped_consent"] == int((sendable & ~consented).sum())
    folder = Path(a["location"])
    assert folder.is_relative_to(executed.out)
    exported = pd.concat([pd.read_csv(p) for p in sorted(folder.glob("part-*.csv"))])
    assert set(exported["profile_id"]) == expected and len(exported) == len(expected) == a["rows"] > 0
    assert set(exported["action"]) == {"add"} and set(exported["audience"]) == {audience.name}


def test_notebooks_import_only_the_public_api():
    """A notebook reaches cdp-spark through `cdp_spark.open` (the `Cdp` API) only: no internal module is imported."""
    import ast

    import cdp_spark

    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = "\n".join(line for c in nb.cells if c.cell_type == "code" for line in c.source.splitlines()
                         if not line.lstrip().startswith(("%", "!")))  # IPython magics are not Python
        found = []
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                found += [(a.name, None) for a in node.names if a.name.split(".")[0] == "cdp_spark"]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "cdp_spark":
                found += [(node.module, a.name) for a in node.names]
        assert ("cdp_spark", None) in found, path.name
        internal = [f for f in found if f[0] != "cdp_spark" or (f[1] is not None and f[1] not in cdp_spark.__all__)]
        assert internal == [], (path.name, internal)
