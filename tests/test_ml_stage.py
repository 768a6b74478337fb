"""The scores stage end to end on the demo retailer's behaviour model, run once per module and checked many ways.

The lake is built straight from the demo world (``cdp_spark.demo.model``): one bronze event per viewed product,
cart and order, keyed by a customer id that the identity graph maps to one profile per person. That skips the
ingest and identity stages (covered by their own tests and by ``tests/test_demo_end_to_end.py``) and keeps the
data small. The stage scores as of a week before the world ends, so the last week is a true out-of-time
check of the written propensity scores.
"""
from __future__ import annotations

import datetime as dt

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from pyspark.sql import functions as F
from sklearn.metrics import roc_auc_score

from cdp_spark.config import CdpConfig
from cdp_spark.ml import btyd, propensity, tracking
from cdp_spark.ml.config import ScoresConfig
from cdp_spark.ml.events import event_type_column, purchases
from cdp_spark.ml.stage import run
from cdp_spark.ml.synthetic import demo_events_lake
from cdp_spark.ml.tables import AFFINITIES, PROFILE_SCORES, RECOMMENDATIONS

END = dt.date(2026, 11, 1)
AS_OF = END - dt.timedelta(days=7)
SEED = 11


def scores_settings(**overrides) -> ScoresConfig:  # type: ignore[no-untyped-def]
    base = {
        "clv": {"time_unit": "D", "horizon_months": 1, "holdout_days": 7, "min_events": 100, "min_repeat_buyers": 10},
        "affinity": {"half_life_days": 14, "min_events": 100, "top_n": 3},
        "recommendations": {"min_events": 100, "rank": 8, "max_iter": 5, "top_k": 5, "eval_days": 7},
        "propensity": {"purchase_days": 7, "churn_days": 14, "min_events": 100, "min_positives": 10,
                       "max_iter": 60},
    }
    for key, value in overrides.items():
        base.setdefault(key, {}).update(value)
    return ScoresConfig.model_validate(base)


@pytest.fixture(scope="module")
def scored(make_lake, spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("scores-lake")
    config = CdpConfig.model_validate({"lake": {"root": str(root)}, "scores": scores_settings().model_dump()})
    lake = make_lake(root)
    truth = demo_events_lake(spark, lake, people=500, days=42, seed=SEED, end_date=END)
    result = run(spark, config, lake, AS_OF)
    tables = {t.name: lake.read(t.name).toPandas() for t in (PROFILE_SCORES, AFFINITIES, RECOMMENDATIONS)}
    versions = {t.name: lake.version(t.name) for t in (PROFILE_SCORES, AFFINITIES, RECOMMENDATIONS)}
    return {"config": config, "lake": lake, "truth": truth, "result": result, "tables": tables, "versions": versions}


def test_every_model_ran_and_is_reported_in_the_ledger_metrics(scored):
    models = scored["result"].metrics["models"]
    assert {k: v["status"] for k, v in models.items()} == {
        "rfm": "scored", "clv": "scored", "propensity_purchase": "scored", "propensity_churn": "scored",
        "affinity": "scored", "als": "scored"}
    assert scored["result"].rows_out[PROFILE_SCORES.name] == 500  # every profile of the graph, scored or not


def test_profile_scores_have_the_contract_schema_and_sane_values(scored):
    assert scored["lake"].table_schema(PROFILE_SCORES.name).fieldNames() == [c.name for c in PROFILE_SCORES.columns]
    df = scored["tables"][PROFILE_SCORES.name]
    assert df["profile_id"].is_unique and (df["as_of"] == AS_OF).all()
    buyers = df[df["rfm_frequency"] > 0]
    assert len(buyers) > 50
    assert buyers[["rfm_r", "rfm_f", "rfm_m"]].isin(range(1, 6)).all().all()
    assert buyers["rfm_segment"].notna().all()
    assert df.loc[df["rfm_frequency"] == 0, ["rfm_r", "rfm_segment", "clv"]].isna().all().all()
    assert buyers["p_alive"].between(0, 1).all() and (buyers["clv"] >= 0).all()
    assert buyers["clv_percentile"].between(0, 100).all()
    # The percentile orders customers like their CLV does.
    ordered = buyers.sort_values("clv")
    assert ordered["clv_percentile"].is_monotonic_increasing
    scored_rows = df["propensity_purchase"].notna()
    assert scored_rows.sum() == scored["result"].metrics["event_counts"]["profiles_with_events"]
    assert df.loc[scored_rows, "propensity_purchase"].between(0, 1).all()
    assert (df["propensity_churn"].notna() == (df["rfm_frequency"] > 0)).all()
    assert set(df["model_versions"].iloc[0]) == {"cdp_clv_bgnbd", "cdp_clv_gamma_gamma", "cdp_propensity_purchase",
                                                 "cdp_propensity_churn"}


def test_propensity_predicts_the_unseen_last_week(scored):
    """Out of time: scores as of a week before the end, checked against who actually bought in that week."""
    truth = scored["truth"]
    future = (truth.where((F.col("event_name") == "order_completed") & (F.col("event_date") > F.lit(AS_OF)))
              .select("profile_id").distinct().toPandas())
    df = scored["tables"][PROFILE_SCORES.name].dropna(subset=["propensity_purchase"])
    y = df["profile_id"].isin(set(future["profile_id"])).astype(int)
    assert 10 < y.sum() < len(y) - 10
    # The demo's shoppers research (visits, abandoned carts) in the days before they buy, next to a
    # heterogeneous purchase rate; past order count alone reaches about 0.6 on a 7-day window.
    auc = roc_auc_score(y, df["propensity_purchase"])
    assert auc > 0.6
    past_orders_only = roc_auc_score(y, df["rfm_frequency"])
    assert auc > past_orders_only + 0.05
    model = scored["result"].metrics["models"]["propensity_purchase"]
    assert model["auc"] > 0.6  # the logged holdout (profiles kept out of training, all snapshots)
    assert len(model["cutoffs"]) == 4 and model["rows_train"] > 2 * len(y)  # four weekly snapshots


def test_distributed_propensity_equals_pandas_scoring_of_the_champion(scored, spark):
    config, lake = scored["config"], scored["lake"]
    from cdp_spark.identity.lookup import profile_events

    typed = profile_events(spark, config, lake, AS_OF).withColumn(
        "event_type", event_type_column(config.scores.events))
    cutoff, _ = propensity.as_of_cutoff(AS_OF)
    features = propensity.features_at(typed, cutoff).toPandas()
    with tracking.mlflow_store(config):
        model = mlflow.pyfunc.load_model("models:/cdp_propensity_purchase@champion")
        cols = model.unwrap_python_model().features
        expected = model.predict(features[cols].astype(float))["probability"].to_numpy()
    got = (scored["tables"][PROFILE_SCORES.name].set_index("profile_id")
           .loc[features["profile_id"], "propensity_purchase"].to_numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_distributed_clv_equals_pandas_scoring_of_the_champions(scored, spark):
    config, lake = scored["config"], scored["lake"]
    from cdp_spark.identity.lookup import profile_events
    from cdp_spark.ml import clv

    typed = profile_events(spark, config, lake, AS_OF).withColumn(
        "event_type", event_type_column(config.scores.events))
    summary = clv.clv_summary(purchases(typed), AS_OF, time_unit="D").toPandas()
    with tracking.mlflow_store(config) as client:
        bg = tracking.load_champion(client, "cdp_clv_bgnbd")[0].bgnbd()
        gg = tracking.load_champion(client, "cdp_clv_gamma_gamma")[0].gamma_gamma()
    expected = btyd.score_summary(summary, bg, gg, horizon=1, discount_rate=0.01, time_unit="D").set_index("profile_id")
    got = scored["tables"][PROFILE_SCORES.name].set_index("profile_id").loc[expected.index]
    for col in ("expected_purchases", "p_alive", "clv"):
        np.testing.assert_allclose(got[col].to_numpy(), expected[col].to_numpy(), rtol=1e-9, err_msg=col)


def test_models_are_registered_with_champion_alias_and_evaluation_artifacts(scored):
    config = scored["config"]
    with tracking.mlflow_store(config) as client:
        for name in ("cdp_clv_bgnbd", "cdp_clv_gamma_gamma", "cdp_propensity_purchase", "cdp_propensity_churn",
                     "cdp_recommendations_als"):
            mv = client.get_model_version_by_alias(name, "champion")
            assert mv.tags["role"] == "champion" and mv.tags["holdout_metric"]
        mv = client.get_model_version_by_alias("cdp_propensity_purchase", "champion")
        run = client.get_run(mv.run_id)
        assert 0.0 <= run.data.metrics["auc"] <= 1.0 and "brier" in run.data.metrics
        artifacts = {a.path for a in client.list_artifacts(mv.run_id)}
        assert {"calibration_curve.png", "dataset_summary.json"} <= artifacts
        model = mlflow.pyfunc.load_model("models:/cdp_propensity_purchase@champion")
        assert model.metadata.signature is not None
        assert set(model.metadata.signature.inputs.input_names()) >= {"rfm_frequency", "views_30d"}
        als_runs = client.search_runs([client.get_experiment_by_name("cdp-scores").experiment_id],
                                      "tags.mlflow.runName LIKE 'als-%'")
        assert als_runs and "precision_at_k" in als_runs[0].data.metrics
        als = client.get_model_version_by_alias("cdp_recommendations_als", "champion")
        assert als.run_id == als_runs[0].info.run_id and als.tags["holdout_metric"] == "precision_at_k"
        assert float(als.tags["holdout_value"]) == als_runs[0].data.metrics["precision_at_k"]
        assert {"rank", "reg_param", "alpha", "max_iter", "top_k"} <= set(als_runs[0].data.params)
    assert str(config.lake.root) in tracking.tracking_uri(config)


def test_registered_als_champion_reproduces_the_written_recommendations(scored):
    """The JVM-free pyfunc (factors + id maps) gives the Spark ALS model's top-K: same products, same scores."""
    recs = scored["tables"][RECOMMENDATIONS.name]
    with tracking.mlflow_store(scored["config"]):
        model = mlflow.pyfunc.load_model("models:/cdp_recommendations_als@champion")
        assert model.metadata.signature.inputs.input_names() == ["profile_id"]
        profiles = sorted(recs["profile_id"].unique())
        got = model.predict(pd.DataFrame({"profile_id": [*profiles, "prof-unknown"]}))
    assert "prof-unknown" not in set(got["profile_id"])  # cold start: dropped, as in Spark
    both = recs.merge(got, on=["profile_id", "rank"], suffixes=("_spark", "_pyfunc"), validate="one_to_one")
    assert len(both) == len(recs) == len(got)
    np.testing.assert_allclose(both["score_pyfunc"], both["score_spark"], rtol=1e-4, atol=1e-5)
    # Products agree at every rank, except where two products tie on score (float32 rounding decides).
    differ = both[both["product_id_spark"] != both["product_id_pyfunc"]]
    assert len(differ) <= 0.02 * len(both)
    for row in differ.itertuples():
        neighbours = recs[(recs["profile_id"] == row.profile_id) & ((recs["rank"] - row.rank).abs() == 1)]
        assert (neighbours["score"] - row.score_spark).abs().min() < 1e-5


def test_cli_lists_the_registered_models_with_als(scored, monkeypatch):
    import contextlib
    import io
    import json

    import cdp_spark.cli as cli

    monkeypatch.setattr("cdp_spark.ml.cli.read_config", lambda conf: scored["config"])
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert cli.main(["mlflow", "models", "--json"]) == 0
    rows = json.loads(buffer.getvalue())
    champions = {r["name"]: r for r in rows if r["alias"] == "champion"}
    assert set(champions) == {"cdp_clv_bgnbd", "cdp_clv_gamma_gamma", "cdp_propensity_purchase",
                              "cdp_propensity_churn", "cdp_recommendations_als"}
    assert champions["cdp_recommendations_als"]["metric"] == "precision_at_k"


def test_affinities_follow_the_demo_preferences(scored):
    aff = scored["tables"][AFFINITIES.name]
    assert scored["lake"].table_schema(AFFINITIES.name).fieldNames() == [c.name for c in AFFINITIES.columns]
    assert aff["score"].between(0, 1).all() and (aff["rank"] <= 3).all()
    top = aff[aff["rank"] == 1]
    assert np.allclose(top["score"], 1.0) and (top["band"] == "High").all()
    expected_band = np.where(aff["score"] < 0.3, "Low", np.where(aff["score"] <= 0.6, "Some", "High"))
    assert (aff["band"] == expected_band).all()
    # Purchases from the orders source carry no category: it is filled in from the product's other events.
    assert aff["value"].notna().all() and aff["value"].nunique() == 8


def test_recommendations_are_top_k_known_products_with_a_logged_ranking_metric(scored):
    recs = scored["tables"][RECOMMENDATIONS.name]
    assert recs.groupby("profile_id")["rank"].apply(lambda r: sorted(r) == list(range(1, 6))).all()
    ordered = recs.sort_values(["profile_id", "rank"])
    assert (ordered.groupby("profile_id")["score"].diff().dropna() <= 1e-12).all()
    assert recs["product_id"].str.match(r"^SKU-\d{5}$").all()
    als = scored["result"].metrics["models"]["als"]
    assert als["eval_users"] > 0 and 0 <= als["precision_at_k"] <= 1 and 0 <= als["ndcg_at_k"] <= 1


def test_rerun_for_the_same_as_of_changes_nothing(scored, spark):
    again = run(spark, scored["config"], scored["lake"], AS_OF)
    assert again.metrics.get("skipped") == "already committed"
    assert {n: scored["lake"].version(n) for n in scored["versions"]} == scored["versions"]


def test_models_below_the_minimum_are_skipped_with_nulls_never_garbage(scored, spark):
    """Runs last: it overwrites the tables (the module fixture holds the first run's copies)."""
    cfg = scores_settings(clv={"min_events": 10**6}, propensity={"min_events": 10**6},
                          recommendations={"min_events": 10**6})
    config = scored["config"].model_copy(update={"scores": cfg})
    result = run(spark, config, scored["lake"], AS_OF)
    models = result.metrics["models"]
    for key in ("clv", "propensity_purchase", "propensity_churn", "als"):
        assert models[key]["status"] == "skipped" and "min_events=1000000" in models[key]["reason"]
    df = scored["lake"].read(PROFILE_SCORES.name).toPandas()
    assert df[["expected_purchases", "p_alive", "clv", "clv_percentile", "propensity_purchase",
               "propensity_churn", "clv_horizon_days"]].isna().all().all()
    assert df["rfm_r"].notna().any() and all(len(v) == 0 for v in df["model_versions"])
    assert scored["lake"].read(RECOMMENDATIONS.name).count() == 0
