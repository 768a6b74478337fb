"""MLflow store selection and the champion/challenger rule, on a real sqlite store in a temporary lake."""
from __future__ import annotations

import math
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from cdp_spark.config import CdpConfig
from cdp_spark.ml import tracking
from cdp_spark.ml.btyd import BGNBDParams, bgnbd_conditional_expected_purchases, bgnbd_probability_alive
from cdp_spark.ml.tracking import Holdout, decide

BG = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}   # FHL (2005), CDNOW, weeks


def test_decide_compares_in_the_metric_direction():
    assert decide(Holdout("auc", 0.7), None) == (True, "first version: no champion yet")
    assert decide(Holdout("auc", float("nan")), None)[0] is True          # nothing to defend yet
    assert decide(Holdout("auc", 0.72), Holdout("auc", 0.72))[0] is True  # ties promote
    promote, reason = decide(Holdout("auc", 0.70), Holdout("auc", 0.72))
    assert not promote and reason == "auc 0.7 is worse than the champion's 0.72"
    lower = dict(greater_is_better=False)
    assert decide(Holdout("mae", 0.3, **lower), Holdout("mae", 0.4, **lower))[0] is True
    assert decide(Holdout("mae", 0.5, **lower), Holdout("mae", 0.4, **lower))[0] is False
    assert decide(Holdout("mae", float("nan"), **lower), Holdout("mae", 0.4, **lower)) == (
        False, "mae could not be evaluated on the holdout")
    assert decide(Holdout("auc", 0.5), Holdout("brier", 0.1, False))[0] is True  # metric changed: no comparison


def test_tracking_uri_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = CdpConfig.model_validate({"lake": {"root": str(tmp_path)}})
    assert tracking.tracking_uri(config) == f"sqlite:///{tmp_path}/_system/mlflow/mlflow.db"
    assert tracking.artifact_root(config) == (tmp_path / "_system" / "mlflow" / "artifacts").as_uri()
    assert tracking.ui_command(config, port=5001)[:4] == ["mlflow", "ui", "--backend-store-uri",
                                                         tracking.tracking_uri(config)]
    remote = CdpConfig.model_validate({"lake": {"root": str(tmp_path)},
                                       "scores": {"mlflow": {"tracking_uri": "http://mlflow:5000"}}})
    assert tracking.tracking_uri(remote) == "http://mlflow:5000" and tracking.artifact_root(remote) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://other:5000")
    assert tracking.tracking_uri(remote) == "http://other:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(ValueError, match="remote"):
        tracking.tracking_uri(CdpConfig.model_validate({"lake": {"root": "s3://bucket/lake"}}))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-lake")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield CdpConfig.model_validate({"lake": {"root": str(root)}})


def _log_version(alpha: float, mae: float):
    model = tracking.BGNBDModel({**BG, "alpha": alpha}, horizon_periods=39.0, time_unit="W")
    example = pd.DataFrame({"frequency": [0.0, 2.0, 5.0], "recency": [0.0, 30.43, 20.0], "T": [38.86, 38.86, 30.0]})
    with mlflow.start_run() as run:
        info = tracking.log_pyfunc(model, example, name="bgnbd")
    return info, run.info.run_id, Holdout("holdout_mae", mae, greater_is_better=False)


def test_champion_challenger_sequence_and_scoring_from_the_champion(store):
    name = "cdp_test_bgnbd"
    with tracking.mlflow_store(store) as client:
        assert tracking.load_champion(client, name) is None
        first = tracking.register_model(client, name, *_first_args(_log_version(4.414, 0.40)))
        assert (first.version, first.role) == ("1", "champion")
        worse = tracking.register_model(client, name, *_first_args(_log_version(9.0, 0.55)))
        assert worse.role == "challenger" and worse.champion_version == "1" and worse.champion_value == 0.40
        mv = client.get_model_version(name, worse.version)
        assert mv.tags["role"] == "challenger" and "worse than the champion's 0.4" in mv.tags["reason"]
        assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
        assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"
        model, version = tracking.load_champion(client, name)
        assert version == "1" and model.params["alpha"] == 4.414
        better = tracking.register_model(client, name, *_first_args(_log_version(4.5, 0.40)))  # tie: promoted
        assert better.role == "champion" and better.version == "3"
        loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
        assert loaded.metadata.signature.inputs.input_names() == ["frequency", "recency", "T"]
        frame = pd.DataFrame({"frequency": [2.0], "recency": [30.43], "T": [38.86]})
        out = loaded.predict(frame)
    params = BGNBDParams(**{**BG, "alpha": 4.5})
    # The served model is the champion's math: FHL (2005) eq. 10 and P(alive) at its parameters.
    assert out["expected_purchases"].item() == pytest.approx(
        float(bgnbd_conditional_expected_purchases(39.0, 2, 30.43, 38.86, params)), rel=1e-12)
    assert out["p_alive"].item() == pytest.approx(float(bgnbd_probability_alive(2, 30.43, 38.86, params)))
    assert mlflow.get_tracking_uri() != tracking.tracking_uri(store)  # the global URI is restored


def _first_args(logged):
    info, run_id, holdout = logged
    return info.model_uri, holdout, run_id


def test_als_recommender_ranks_by_factor_dot_products():
    rng = np.random.default_rng(5)
    users, items = [f"prof-{i}" for i in range(6)], [f"SKU-{i:05d}" for i in range(9)]
    uf, itf = rng.normal(size=(6, 3)), rng.normal(size=(9, 3))
    itf[4] = itf[2]  # a tie: product id order decides, as documented
    model = tracking.ALSRecommender(users, uf, items, itf, k=4)
    got = model.recommend(["prof-3", "prof-0", "nobody", "prof-3"])
    assert list(got["profile_id"].unique()) == ["prof-3", "prof-0"]  # unknown dropped, duplicates once
    for pid, rows in got.groupby("profile_id", sort=False):
        u = users.index(pid)
        # Independent ranking: plain Python sort on (-score, product id) in float32 like Spark's factors.
        scores = {p: float(np.float32(uf[u]).astype(np.float32) @ np.float32(itf[j])) for j, p in enumerate(items)}
        expected = sorted(scores, key=lambda p: (-scores[p], p))[:4]
        assert rows["product_id"].tolist() == expected and rows["rank"].tolist() == [1, 2, 3, 4]
        np.testing.assert_allclose(rows["score"], [scores[p] for p in expected], rtol=1e-6)
    assert len(model.recommend(["prof-1"], k=50)) == 9
    with pytest.raises(ValueError, match="differ in number"):
        tracking.ALSRecommender(users[:2], uf, items, itf, k=3)


def test_als_pyfunc_round_trip_and_registration(store):
    rng = np.random.default_rng(6)
    users, items = ["a", "b", "c"], ["x", "y", "z", "w"]
    model = tracking.ALSRecommender(users, rng.normal(size=(3, 2)), items, rng.normal(size=(4, 2)), k=2)
    with tracking.mlflow_store(store) as client:
        with mlflow.start_run() as run:
            info = tracking.log_pyfunc(model, pd.DataFrame({"profile_id": users}), name="als")
        decision = tracking.register_model(client, "cdp_test_als", info.model_uri, Holdout("precision_at_k", 0.12),
                                           run.info.run_id)
        assert decision.role == "champion"
        loaded = mlflow.pyfunc.load_model("models:/cdp_test_als@champion")
        out = loaded.predict(pd.DataFrame({"profile_id": ["c", "a"]}))
    pd.testing.assert_frame_equal(out.reset_index(drop=True), model.recommend(["c", "a"]).reset_index(drop=True))
    assert loaded.metadata.signature.outputs.input_names() == ["profile_id", "product_id", "score", "rank"]


def test_models_are_logged_from_code_without_pickle_warnings_or_registry_prints(store, capfd):
    """A pickled `python_model` made MLflow warn that loading it may run code, and `mlflow.register_model` printed
    "Successfully registered model" to stderr: the models are logged from code (config + skops/NumPy artifacts) and
    registered through the client, and they still score the same after loading."""
    from cdp_spark.ml.propensity import make_estimator

    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"views": rng.poisson(3, 80).astype(float), "orders": rng.poisson(1, 80).astype(float)})
    label = (frame["views"] + rng.normal(0, 1, 80) > 3).astype(int)
    estimator = make_estimator("logistic").fit(frame, label)
    with tracking.mlflow_store(store) as client:
        with mlflow.start_run() as run:
            info = tracking.log_pyfunc(tracking.ClassifierModel(estimator, ["views", "orders"]), frame.head(5),
                                       name="propensity")
        tracking.register_model(client, "cdp_test_propensity", info.model_uri, Holdout("auc", 0.8), run.info.run_id)
        loaded, version = tracking.load_champion(client, "cdp_test_propensity")
        stored = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    printed = capfd.readouterr()
    assert "CloudPickle" not in printed.err + printed.out
    assert "Successfully registered" not in printed.err + printed.out
    assert version == "1" and not list(stored.rglob("*.pkl"))
    assert yaml.safe_load((stored / "MLmodel").read_text())["flavors"]["python_function"]["model_code_path"]
    np.testing.assert_allclose(loaded.predict_proba(frame), estimator.predict_proba(frame)[:, 1])


def test_a_classifier_file_holding_untrusted_types_is_refused(tmp_path):
    import json

    from sklearn.preprocessing import FunctionTransformer

    artifacts = tracking.ClassifierModel(FunctionTransformer(json.loads), ["a"]).save_artifacts(tmp_path)
    with pytest.raises(ValueError, match="untrusted types: json.loads"):
        tracking.ClassifierModel().restore({"features": ["a"]}, artifacts)
