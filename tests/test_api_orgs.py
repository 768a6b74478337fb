"""Child organisations and sandboxes: one lake per org; the same email in two orgs gives two unrelated
profiles, and one org's API key cannot read the other org."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cdp_spark.api.app import create_app
from cdp_spark.api.audit import AuditLog
from cdp_spark.api.keys import store_for as keys_for
from cdp_spark.api.sandbox import create_sandbox
from cdp_spark.api.store import refresh_serving_store
from cdp_spark.config import load_config
from cdp_spark.config.models import LakeConfig, OrgConfig
from cdp_spark.identity import stage as identity
from cdp_spark.ingest.tables import EVENTS
from cdp_spark.lake import default_registry
from cdp_spark.lake.embedded import EmbeddedLake
from cdp_spark.runtime import metadata_lake

CONF = Path(__file__).resolve().parents[1] / "conf" / "cdp.yaml"
T = dt.datetime(2026, 10, 31, 9)


def _org(spark, tmp_path, org: str):
    config = load_config(CONF).model_copy(update={"lake": LakeConfig(root=str(tmp_path / org)),
                                                  "org": OrgConfig(id=org)})
    lake = EmbeddedLake(spark, config.lake.root, default_registry())
    ev = EVENTS.schema
    rows = [tuple({"event_id": f"{org}-e{i}", "source": "web", "event_name": "page", "event_time": T,
                   "event_date": T.date(), "identifiers": ids, "run_id": "r"}.get(f.name) for f in ev.fields)
            for i, ids in enumerate([{"email": "same@example.com", "cookie_id": f"k-{org}"}, {"cookie_id": "k-shared"}])]
    lake.append(EVENTS.name, spark.createDataFrame(rows, ev))
    identity.run(spark, config, lake, dt.date(2026, 11, 1))
    from pyspark.sql import functions as F

    from cdp_spark.profiles.view import view_schema

    schema = view_schema(config, with_scores=False)
    ids = (lake.read("gold.id_graph").groupBy("profile_id", "id_type").agg(F.collect_list("value").alias("v"))
           .groupBy("profile_id").agg(F.map_from_entries(F.collect_list(F.struct("id_type", "v"))).alias("identifiers")))
    view = ids.select(*[F.col(f.name) if f.name in ids.columns else F.lit(None).cast(f.dataType).alias(f.name)
                        for f in schema.fields])
    refresh_serving_store(spark, config, lake, view=view)
    secret, _ = keys_for(config).create("reader", ["read", "pii"])
    meta = metadata_lake(config)
    client = TestClient(create_app(config, lake=meta, audit=AuditLog(meta, background=False)))
    return config, secret, client


@pytest.mark.slow
def test_same_email_in_two_orgs_gives_unrelated_profiles_and_keys_do_not_cross(spark, tmp_path):
    _, key_a, api_a = _org(spark, tmp_path, "acme")
    _, key_b, api_b = _org(spark, tmp_path, "globex")
    a = api_a.get("/v1/profiles/email/same@example.com", headers={"X-API-Key": key_a}).json()
    b = api_b.get("/v1/profiles/email/same@example.com", headers={"X-API-Key": key_b}).json()
    assert a["profile_id"] != b["profile_id"]
    assert a["identifiers"]["cookie_id"] == ["k-acme"] and b["identifiers"]["cookie_id"] == ["k-globex"]
    # even an identical identifier set gets a different id per org
    shared_a = api_a.get("/v1/profiles/cookie_id/k-shared", headers={"X-API-Key": key_a}).json()["profile_id"]
    shared_b = api_b.get("/v1/profiles/cookie_id/k-shared", headers={"X-API-Key": key_b}).json()["profile_id"]
    assert shared_a != shared_b
    crossed = api_b.get(f"/v1/profiles/{a['profile_id']}", headers={"X-API-Key": key_a})
    assert crossed.status_code == 401 and crossed.json()["code"] == "invalid_key"
    assert api_a.get(f"/v1/profiles/{b['profile_id']}", headers={"X-API-Key": key_a}).status_code == 404


def test_sandbox_copies_the_config_with_its_own_lake(tmp_path):
    result = create_sandbox(CONF, tmp_path / "sandbox")
    sandbox = load_config(result["conf"])
    production = load_config(CONF)
    assert sandbox.org.sandbox is True and production.org.sandbox is False
    assert sandbox.lake.root == str(tmp_path / "sandbox" / "lake") != production.lake.root
    assert [s.name for s in sandbox.sources] == [s.name for s in production.sources]
    assert sandbox.api.keys_file(sandbox.lake.root).startswith(str(tmp_path / "sandbox" / "lake"))
    import pytest

    from cdp_spark.api.sandbox import SandboxError

    with pytest.raises(SandboxError):
        create_sandbox(CONF, tmp_path / "sandbox")  # not empty
