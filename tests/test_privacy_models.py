"""Erasure reaches model artifacts: a registered ALS recommender loses the erased profile's id and factors (every
other profile scores as before, the champion alias still resolves), and verification checks the models."""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cdp_spark.api.sandbox import create_sandbox
from cdp_spark.config import load_config
from cdp_spark.identity.tables import ID_GRAPH
from cdp_spark.lake import default_registry
from cdp_spark.lake.embedded import EmbeddedLake
from cdp_spark.ml import tracking
from cdp_spark.privacy.erase import request, run_request, verify_request
from cdp_spark.privacy.matching import Identifier

CONF = Path(__file__).resolve().parents[1] / "conf" / "cdp.yaml"
GONE, KEPT = "pErased7f3a9c01", "pKept52d1e8b77"
MODEL = "cdp_recommendations_als"


def _register(config, users: list[str], seed: int = 1) -> str:
    """A fitted-like recommender over these users, registered as the scores stage does; its version."""
    import mlflow

    rng = np.random.default_rng(seed)
    model = tracking.ALSRecommender(users, rng.normal(size=(len(users), 4)), ["i1", "i2", "i3"],
                                    rng.normal(size=(3, 4)), k=2)
    with tracking.mlflow_store(config) as client, mlflow.start_run():
        info = tracking.log_pyfunc(model, pd.DataFrame({"profile_id": users[:1]}), name="als")
        return tracking.register_model(client, MODEL, info.model_uri, tracking.Holdout("precision_at_k", 0.5)).version


def _files_mentioning(root: Path, text: str) -> set[str]:
    """Files under root whose bytes (Parquet: decoded values) contain text: every version, log and artifact."""
    # NumPy stores strings as UTF-32 (a recommender's ids in its factors.npz), everything else here is UTF-8.
    needles = (text.encode(), text.encode("utf-32-le"))
    hits = set()
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = Path(dirpath, n)
            data = p.read_bytes()
            if data[:4] == b"PAR1":
                data = json.dumps(pq.read_table(p).to_pylist(), default=str).encode()
            if any(needle in data for needle in needles):
                hits.add(str(p.relative_to(root)))
    return hits


@pytest.fixture(scope="module")
def erased(spark, tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    config = load_config(create_sandbox(CONF, base / "conf", lake_root=str(base / "lake"))["conf"])
    lake = EmbeddedLake(spark, config.lake.root, default_registry())
    day = dt.date(2026, 11, 1)
    rows = [("email", "gone@x.com", 1, GONE, day, dt.datetime(2026, 11, 1), None),
            ("email", "kept@x.com", 2, KEPT, day, dt.datetime(2026, 11, 1), None)]
    lake.append(ID_GRAPH.name, spark.createDataFrame(rows, ID_GRAPH.schema))
    version = _register(config, [GONE, KEPT])
    with tracking.mlflow_store(config) as client:
        before = tracking.load_champion(client, MODEL)[0].recommend([KEPT])
    root = Path(config.lake.root)
    assert any("mlflow" in f for f in _files_mentioning(root, GONE)), "the model artifact holds the profile id"
    rid = request(config, lake, ["email:gone@x.com"])
    result = run_request(spark, config, lake, rid, now=True)
    return {"config": config, "lake": lake, "root": root, "version": version, "before": before, "result": result}


def test_the_registered_recommender_loses_the_erased_profile(erased):
    config, result = erased["config"], erased["result"]
    assert result["status"] == "verified" and result["occurrences"] == 0
    assert list(result["models_scrubbed"].values()) == [1]
    with tracking.mlflow_store(config) as client:
        model, version = tracking.load_champion(client, MODEL)
    assert version == erased["version"] and model.user_ids == [KEPT]       # same version, alias intact
    pd.testing.assert_frame_equal(model.recommend([KEPT]), erased["before"])  # the others score as before
    assert model.recommend([GONE]).empty
    # no byte of the profile id in the MLflow store (or anywhere) but the erasure's own audit record
    assert {f.split("/")[1] for f in _files_mentioning(erased["root"], GONE)} == {"erasure_requests"}


def test_verification_checks_model_artifacts(erased):
    """A model that (again) holds the erased profile keeps the request from verifying, and is named."""
    config, lake, result = erased["config"], erased["lake"], erased["result"]
    _register(config, [KEPT, GONE], seed=2)
    found = verify_request(config, lake, result["request_id"], [Identifier("email", "gone@x.com")])
    assert [(o.place, o.id_type, o.count) for o in found] == [("recommender user factors", "profile_id", 1)]
    assert found[0].path.startswith("models:/m-")
    tracking.scrub_recommenders(config, [GONE], reason="test")
    assert verify_request(config, lake, result["request_id"], [Identifier("email", "gone@x.com")]) == []
