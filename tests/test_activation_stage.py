"""The activation stage on an embedded lake: file, webhook (local receiver) and Delta destinations, holdouts and
variants, consent counts in the ledger metrics and ops.deliveries, a re-run sending nothing, sandbox mode."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from cdp_spark.activation import stage
from cdp_spark.activation.receiver import WebhookReceiver, demo_receiver
from cdp_spark.activation.transports import verify_manifest
from cdp_spark.audiences import stage as audience_stage
from cdp_spark.audiences.tables import AUDIENCE_MEMBERS
from cdp_spark.config import CdpConfig
from cdp_spark.lake import default_registry
from cdp_spark.pipeline import STAGES

pytestmark = pytest.mark.slow  # the module's lake runs ingest to activation once per backend

AS_OF = dt.date(2026, 11, 1)
VIEW = ("profile_id string, identifiers map<string,array<string>>, traits struct<first_name:string,country:string>, "
        "consent map<string,string>")
AUDIENCES = [{"name": "buyers", "rule": {"identifier": "email"},
              "variants": [{"name": "a", "weight": 45}, {"name": "b", "weight": 45}, {"name": "hold", "weight": 10, "holdout": True}]}]


def config(root, url, sandbox=False):
    return CdpConfig.model_validate({
        "org": {"sandbox": sandbox}, "lake": {"root": str(root)}, "audiences": AUDIENCES,
        "destinations": [
            {"name": "files", "format": "csv", "audiences": ["buyers"], "identifiers": ["email", "country"],
             "consent": ["email_marketing"], "transport": {"type": "file"}},
            {"name": "hook", "format": "google_customer_match", "audiences": [{"name": "buyers", "variants": ["a"]}],
             "identifiers": ["email"], "transport": {"type": "webhook", "url": url, "batch_size": 2, "backoff_seconds": 0.01}},
            {"name": "table", "format": "meta_custom_audience", "audiences": ["buyers"], "identifiers": ["email"],
             "mode": "snapshot", "transport": {"type": "delta"}},
        ]})


PROFILES = [(f"p{i}", {"email": [f"P{i}@Example.com"]}, ("X", ["GB", "US", "FR"][i % 3]),
             {"email_marketing": "granted" if i % 4 else "denied", "ads_personalisation": "granted" if i % 2 else "unknown"})
            for i in range(12)]
MEMBERS = [("buyers", f"p{i}", ["a", "b", "hold"][i % 3], dt.datetime(2026, 11, 2)) for i in range(12)]


@pytest.fixture(scope="module")
def env(make_lake, spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("act") / "lake"
    lake = make_lake(str(root), default_registry())
    lake.append(AUDIENCE_MEMBERS.name, spark.createDataFrame(MEMBERS, AUDIENCE_MEMBERS.schema))
    with pytest.MonkeyPatch.context() as mp, WebhookReceiver(script=[503]) as receiver:
        mp.setattr(audience_stage, "profiles_frame", lambda spark, config, lake: spark.createDataFrame(PROFILES, VIEW))
        cfg = config(root, receiver.url)
        first = stage.run(spark, cfg, lake, AS_OF)
        # the same day again, now as a sandbox org: nothing new to send, and the webhook is not called at all
        again = stage.run(spark, config(root, receiver.url, sandbox=True), lake, AS_OF)
        deliveries = [r.asDict() for r in lake.read("ops.deliveries").collect()]
        records = lake.read("gold.activation_records").collect()
        state = lake.read("gold.activation_state").collect()
    yield {"first": first, "again": again, "receiver": receiver, "deliveries": deliveries,
           "records": records, "state": state, "root": Path(root)}


def test_registered():
    assert STAGES["activation"] == "cdp_spark.activation.stage:run"
    assert {"gold.activation_state", "ops.deliveries", "gold.activation_records"} <= set(default_registry().names())


def test_file_destination_counts_consent_and_skips_holdouts(env):
    m = env["first"].metrics["destinations"]["files"]
    # 8 of 12 are not in the holdout; of those, consent is denied for i % 4 == 0 (p4, p8)
    assert (m["profiles_considered"], m["skipped_consent"], m["records_sent"], m["status"]) == (8, 2, 6, "succeeded")
    folder = env["root"] / "exports" / "files" / m["delivery_id"]
    manifest = verify_manifest(folder)
    assert manifest["rows"] == 6 and manifest["columns"] == ["action", "audience", "profile_id", "variant", "email", "country"]
    text = (folder / "part-00000.csv").read_text()
    assert "p1@example.com" in text and "p4@example.com" not in text


def test_webhook_destination_variant_link_retry_and_dma(env):
    m = env["first"].metrics["destinations"]["hook"]
    sent = env["receiver"].records()
    # variant a only: p0, p3, p6, p9; p0/p6 have unknown ads consent: p6 is in FR (EEA) -> skipped; p0 is GB (EEA) -> skipped
    assert sorted(r["hashed_email"][:8] for r in sent) == sorted(
        __import__("hashlib").sha256(f"p{i}@example.com".encode()).hexdigest()[:8] for i in (3, 9))
    assert (m["profiles_considered"], m["skipped_consent"], m["retries"], m["batches"]) == (4, 2, 1, 1)
    assert {r["ad_user_data"] for r in sent} == {"GRANTED"}


def test_delta_destination_and_state(env):
    assert sorted(r.profile_id for r in env["records"]) == sorted(f"p{i}" for i in range(12) if i % 3 != 2)
    assert all(json.loads(r.payload)["EMAIL"] for r in env["records"])
    held = {(r.destination, r.profile_id) for r in env["state"]}
    assert {p for d, p in held if d == "files"} == {"p1", "p3", "p6", "p7", "p9", "p10"}


def test_rerun_sends_nothing_and_sandbox_never_calls_webhooks(env):
    again = env["again"].metrics
    assert {n: m["status"] for n, m in again["destinations"].items()} == {"files": "empty", "hook": "skipped", "table": "empty"}
    assert "sandbox" in again and "sandbox" not in env["first"].metrics
    assert len(env["receiver"].records()) == 2 and len(env["receiver"].requests) == 2  # the 503 and its retry
    statuses = sorted((d["destination"], d["status"]) for d in env["deliveries"])
    assert statuses == [("files", "empty"), ("files", "succeeded"), ("hook", "skipped"), ("hook", "succeeded"),
                        ("table", "empty"), ("table", "succeeded")]
    first = next(d for d in env["deliveries"] if d["destination"] == "files" and d["status"] == "succeeded")
    assert (first["profiles_considered"], first["skipped_consent"], first["records_sent"]) == (8, 2, 6)


def test_demo_receiver_redirects_loopback_webhooks(tmp_path):
    cfg = config(tmp_path, "http://127.0.0.1:8799/audiences")
    with demo_receiver(cfg) as served:
        url = next(d for d in served.destinations if d.name == "hook").transport.url.get_secret_value()
        assert url.startswith("http://127.0.0.1:") and not url.startswith("http://127.0.0.1:8799/")
    remote = config(tmp_path, "https://ads.example.com/hook")
    with demo_receiver(remote) as same:
        assert same is remote


def test_unknown_destination_or_audience_is_refused(tmp_path):
    cfg = config(tmp_path, "http://127.0.0.1:1/x")
    with pytest.raises(ValueError, match="unknown or disabled destination 'nope'"):
        stage.selected(cfg, "nope")
    bad = cfg.model_copy(update={"audiences": []})
    with pytest.raises(ValueError, match="unknown audience 'buyers'"):
        stage.selected(bad)
