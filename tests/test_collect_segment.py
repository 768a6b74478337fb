"""Segment calls through the collector and the stream into bronze and identity: alias links previousId to userId in
silver.identifiers / gold.id_graph; group records account membership (account_id); batches that lack some mapped
key, and a message nested 900 levels deep, neither stall nor lose anything."""
from __future__ import annotations

import datetime as dt
import json

import pytest
import yaml
from fastapi.testclient import TestClient
from pyspark.sql import functions as F

from cdp_spark.collect.app import create_app
from cdp_spark.collect.stream import run_stream
from cdp_spark.config import CdpConfig
from cdp_spark.lake import default_registry
from cdp_spark.lake.embedded import EmbeddedLake
from tests.ingest_fixtures import CATALOGUE, REPO

pytestmark = pytest.mark.slow  # streams collected Segment calls into bronze

KEY = "test-web-write-key"
AS_OF = dt.date(2026, 11, 1)
T = "2026-11-01T10:00:00Z"


@pytest.fixture
def env(spark, tmp_path):
    web = yaml.safe_load((REPO / "conf" / "sources" / "web.yaml").read_text())
    identity = yaml.safe_load((REPO / "conf" / "identity.yaml").read_text())
    raw = {"lake": {"root": str(tmp_path / "lake")}, "catalogue": CATALOGUE, "sources": [web], "identity": identity,
           "collector": {"sources": {"web": {"keys": [{"key": KEY}]}}, "spool": {"rotate_seconds": 3600}}}
    config = CdpConfig.model_validate(raw)
    return config, EmbeddedLake(spark, config.lake.root, default_registry())


def post(config, *batches):
    with TestClient(create_app(config.collector, config.collector.landing(config.lake.root))) as client:
        for batch in batches:
            r = client.post("/v1/batch", json={"batch": batch}, auth=(KEY, ""))  # no sentAt: times as sent
            assert r.status_code == 200, r.text


def test_a_batch_of_calls_without_event_names_streams(spark, env):
    """Landed files hold only the keys their messages used: a micro-batch of page and identify calls has no `event`
    column, and the mapping must not need one."""
    config, lake = env
    post(config, [{"type": "page", "messageId": "p1", "anonymousId": "a1", "timestamp": T},
                  {"type": "identify", "messageId": "i1", "userId": "u1", "traits": {"email": "u1@example.com"},
                   "timestamp": T}])
    m = run_stream(spark, config, lake, available_now=True)["sources"]["web"]
    assert (m["read_lines"], m["accepted"], m["quarantined"]) == (2, 2, 0) and m["reconciled"]
    names = {r.event_id: r.event_name for r in lake.read("bronze.events").collect()}
    assert names == {"p1": "page", "i1": "identify"}


def test_alias_links_previous_id_to_user_id_and_group_records_the_account(spark, env):
    from cdp_spark.identity import stage as identity_stage

    config, lake = env
    post(config, [
        {"type": "page", "messageId": "p1", "anonymousId": "anon-1", "timestamp": T},
        {"type": "track", "messageId": "t1", "event": "Product Viewed", "anonymousId": "anon-1", "timestamp": T},
        {"type": "identify", "messageId": "i1", "userId": "u1", "traits": {"email": "U1@Example.com", "first_name": "Ann"},
         "timestamp": T},
        # a server-side alias: the visitor's anonymous id, now known as u1 (no anonymousId on the call itself)
        {"type": "alias", "messageId": "al1", "previousId": "anon-1", "userId": "u1", "timestamp": T},
        # the group's traits describe the account, not the person: its e-mail must not become the user's
        {"type": "group", "messageId": "g1", "userId": "u1", "groupId": "acme-1", "timestamp": T,
         "traits": {"name": "Acme Ltd", "email": "billing@acme.example", "first_name": "Acme"}},
    ])
    m = run_stream(spark, config, lake, available_now=True)["sources"]["web"]
    assert (m["read_lines"], m["accepted"], m["quarantined"]) == (5, 5, 0) and m["reconciled"]

    ev = {r.event_id: r for r in lake.read("bronze.events").collect()}
    assert ev["al1"].event_name == "alias" and ev["al1"].identifiers == {"customer_id": "u1", "cookie_id": "anon-1"}
    assert ev["g1"].event_name == "group" and ev["g1"].identifiers == {"customer_id": "u1"}
    traits = sorted(sorted(dict(r.traits).items()) for r in lake.read("bronze.profile_records").collect())
    assert traits == [[("account_id", "acme-1")], [("first_name", "Ann")]]

    identity_stage.run(spark, config, lake, AS_OF)
    graph = {(r.id_type, r.value): r.profile_id for r in lake.read("gold.id_graph").collect()}
    assert graph[("cookie_id", "anon-1")] == graph[("customer_id", "u1")] == graph[("email", "u1@example.com")]
    assert ("email", "billing@acme.example") not in graph
    seen = {(r.id_type, r.value) for r in lake.read("silver.identifiers").collect()}
    assert {("cookie_id", "anon-1"), ("customer_id", "u1")} <= seen


def test_a_deeply_nested_message_is_quarantined_and_the_stream_goes_on(spark, env):
    """The collector used to ack an event nested 900 levels deep, and the stream then hung on it for good."""
    config, lake = env
    deep = b'{"type": "track", "messageId": "deep", "event": "x", "userId": "u1", "properties": ' + \
        b'{"a": ' * 898 + b"{}" + b"}" * 898 + b"}"
    body = b'{"batch": [' + json.dumps(TRACK_OK).encode() + b", " + deep + b"]}"
    with TestClient(create_app(config.collector, config.collector.landing(config.lake.root))) as client:
        assert client.post("/v1/batch", content=body, auth=(KEY, "")).status_code == 200
    m = run_stream(spark, config, lake, available_now=True)["sources"]["web"]
    assert (m["read_lines"], m["accepted"], m["quarantined"]) == (2, 1, 1) and m["reconciled"]
    assert [r.event_id for r in lake.read("bronze.events").collect()] == ["ok1"]
    [q] = lake.read("bronze.quarantine").collect()
    assert list(q.reasons) == ["collector:too_deep"]
    assert json.loads(q.raw_record)["_cdp_raw"].startswith('{"type": "track", "messageId": "deep"')   # its text, cut


TRACK_OK = {"type": "track", "messageId": "ok1", "event": "Product Viewed", "userId": "u1", "timestamp": T}
