"""`cdp audience export`: activation's rules (holdouts never, consent required), masked emails unless asked for,
and an audit row per export."""
from __future__ import annotations

import datetime as dt
import hashlib
import io

import pytest
import typer

from cdp_spark.audiences import stage
from cdp_spark.audiences.cli import export_members, export_purposes
from cdp_spark.config import CdpConfig
from cdp_spark.lake import default_registry
from cdp_spark.lake.embedded import EmbeddedLake
from tests.ingest_fixtures import CATALOGUE

VIEW = "profile_id string, identifiers map<string,array<string>>, traits struct<first_name:string>, consent map<string,string>"
ALL = {"email_marketing": "granted", "ads_personalisation": "granted", "analytics": "granted"}


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("export") / "lake"
    audiences = [{"name": "buyers", "rule": {"event": {"name": "order_completed"}},
                  "variants": [{"name": "a", "weight": 9}, {"name": "hold", "weight": 1, "holdout": True}]}]
    config = CdpConfig.model_validate({"lake": {"root": str(root)}, "catalogue": CATALOGUE, "audiences": audiences})
    lake = EmbeddedLake(spark, config.lake.root, default_registry())
    t = dt.datetime(2026, 11, 1, 23, 59)
    lake.append("gold.audience_members", spark.createDataFrame(
        [("buyers", p, v, t) for p, v in (("p1", "a"), ("p2", "a"), ("p3", "hold"), ("p4", "a"), ("p5", "a"))],
        "audience string, profile_id string, variant string, entered_at timestamp"))
    view = spark.createDataFrame([
        ("p1", {"email": ["ann@x.com"]}, ("Ann",), ALL),
        ("p2", {"email": ["bob@x.com"]}, ("Bob",), {**ALL, "email_marketing": "denied"}),   # opted out
        ("p3", {"email": ["cy@x.com"]}, ("Cy",), ALL),                                      # holdout
        ("p4", {"email": ["di@x.com"]}, ("Di",), {}),                                       # never asked
        ("p5", {"email": ["ed@x.com"]}, ("Ed",), {"email_marketing": "granted"}),           # email only
    ], VIEW)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stage, "profiles_frame", lambda spark, config, lake: view)
        yield config, lake


def _export(world, spark, **kwargs):
    config, lake = world
    buf = io.StringIO()
    record = export_members(spark, config, lake, "buyers", buf, **kwargs)
    return record, buf.getvalue()


def test_export_follows_activation_consent_and_holdouts_and_masks(world, spark):
    record, text = _export(world, spark, consent=["email_marketing"])
    assert text.splitlines() == ["profile_id,variant,entered_at,email",
                                 "p1,a,2026-11-01T23:59:00,a***@x.com", "p5,a,2026-11-01T23:59:00,e***@x.com"]
    assert (record["members"], record["holdouts_excluded"], record["skipped_consent"], record["rows"]) == (4, 1, 2, 2)
    assert record["sha256"] == hashlib.sha256(text.encode()).hexdigest() and record["include_pii"] is False

    # by default every purpose of the catalogue must be granted
    record, text = _export(world, spark)
    assert [line.split(",")[0] for line in text.splitlines()[1:]] == ["p1"]
    assert record["consent"] == ["email_marketing", "ads_personalisation", "analytics"]


def test_clear_emails_only_when_asked_for_and_every_export_is_audited(world, spark):
    config, lake = world
    before = lake.read("ops.audience_exports").count() if lake.exists("ops.audience_exports") else 0
    record, text = _export(world, spark, consent=["email_marketing"], include_pii=True, target="/tmp/x.csv")
    assert text.splitlines()[1:] == ["p1,a,2026-11-01T23:59:00,ann@x.com", "p5,a,2026-11-01T23:59:00,ed@x.com"]
    audit = {r.export_id: r for r in lake.read("ops.audience_exports").collect()}
    assert len(audit) == before + 1
    row = audit[record["export_id"]]
    assert (row.audience, row.include_pii, row.target, row.rows, row.consent) == (
        "buyers", True, "/tmp/x.csv", 2, ["email_marketing"])
    assert "ann@x.com" not in str(row.asDict())
    with pytest.raises(typer.BadParameter, match="unknown consent purpose"):
        export_purposes(config, ["newsletter"])
