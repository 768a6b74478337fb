"""Connections end to end: events sent to the collector reach a webhook output filtered, sampled and consent-gated
(checked against an independent computation of who should get what), a Delta output receives everything with
personal data, a replayed micro-batch and a re-sent webhook batch are recognised by their keys, the batch stage
forwards file-ingested events and retries what the stream could not deliver, and sampling is stable with its share
within tolerance."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from pyspark.sql import functions as F

from cdp_spark.activation.receiver import WebhookReceiver
from cdp_spark.collect.app import create_app
from cdp_spark.collect.stream import run_stream
from cdp_spark.config import CdpConfig
from cdp_spark.config.loader import ConfigError, load_config
from cdp_spark.connections import stage
from cdp_spark.connections.config import Connection, Output, Sampling
from cdp_spark.connections.forwarding import bucket_of, payload, pii_fields, rendered, sampled
from cdp_spark.identity.tables import ID_GRAPH
from cdp_spark.lake import Txn, default_registry
from cdp_spark.lake.embedded import EmbeddedLake
from cdp_spark.pipeline import STAGES
from cdp_spark.profiles.tables import PROFILES
from tests.ingest_fixtures import CATALOGUE, REPO

pytestmark = pytest.mark.slow  # forwarding runs through the stream, the stage and a Kafka topic

KEY = "test-web-write-key"
USERS = 40
T0 = dt.datetime(2026, 11, 1, 9, 0)
EXPLICIT_DENIAL = {"u1", "u5", "u9"}     # the CRM recorded an opt-out of analytics
DEFAULT_DENIAL = {"u6"}                  # a source's default said denied; the event's own default is later
SALT = "web_events.tool"


def _config(root, url, concurrency=4, **connection):
    web = yaml.safe_load((REPO / "conf" / "sources" / "web.yaml").read_text())
    crm = yaml.safe_load((REPO / "conf" / "sources" / "crm.yaml").read_text())
    tool = {"name": "tool", "transport": {"type": "webhook", "url": url, "batch_size": 4, "max_retries": 1,
                                          "backoff_seconds": 0.01, "concurrency": concurrency},
            "filter": {"events": ["Product Viewed", "Order Completed"], "drop_properties": ["coupon"]},
            "sampling": {"percent": 50, "by": ["customer_id"]},
            "consent": ["analytics"],
            "transform": [{"rename": {"properties.product_id": "properties.sku"}},
                          {"set": "properties.price_cents", "expr": "round(try_cast(properties.price as double) * 100)", "type": "long"},
                          {"drop": ["stream"]}]}
    raw = {"lake": {"root": str(root)}, "catalogue": CATALOGUE, "sources": [web, crm],
           "routes": yaml.safe_load((REPO / "conf" / "routes.yaml").read_text()),
           "collector": {"sources": {"web": {"keys": [{"key": KEY}]}}, "spool": {"rotate_seconds": 3600}},
           "connections": [{"name": "web_events", "input": {"collector": True}, "retry_after_minutes": 0,
                            "outputs": [tool, {"name": "lake", "transport": {"type": "delta"}, "pii": True}],
                            **connection}]}
    return CdpConfig.model_validate(raw)


def _messages(start: int, n: int) -> list[dict]:
    names = ["Product Viewed", "Order Completed", "Newsletter Signed Up"]
    out = []
    for i in range(start, start + n):
        out.append({"type": "track", "messageId": f"m{i}", "event": names[i % 3], "userId": f"u{i % USERS}",
                    "anonymousId": f"a{i % USERS}", "timestamp": (T0 + dt.timedelta(seconds=i)).isoformat() + "Z",
                    "properties": {"product_id": f"P{i}", "coupon": "SAVE10", "price": 1.25 + i, "colour": "red"},
                    "context": {"page": {"url": f"https://shop.example/p/P{i}"}}})
    return out


def _post(config, messages):
    with TestClient(create_app(config.collector, config.collector.landing(config.lake.root))) as client:
        for i in range(0, len(messages), 50):
            r = client.post("/v1/batch", json={"batch": messages[i:i + 50]}, auth=(KEY, ""))
            assert r.status_code == 200, r.text


def _seed_profiles(spark, lake):
    """Identity and profiles as the daily run would have left them: customer u<k> is profile p<k>."""
    graph = [("customer_id", f"u{k}", 0, f"p{k}", dt.date(2026, 10, 1), dt.datetime(2026, 10, 1), None)
             for k in range(USERS)]
    lake.append(ID_GRAPH.name, spark.createDataFrame(graph, ID_GRAPH.schema))
    rows = []
    for k in range(USERS):
        u = f"u{k}"
        if u in EXPLICIT_DENIAL:
            consent, at, src = {"analytics": "denied"}, {"analytics": dt.datetime(2026, 10, 2)}, {"analytics": "crm"}
        elif u in DEFAULT_DENIAL:
            consent, at, src = {"analytics": "denied"}, {}, {"analytics": "web"}
        else:
            consent, at, src = {"analytics": "granted"}, {}, {"analytics": "web"}
        rows.append((f"p{k}", {"customer_id": [u]}, {"first_name": f"Name{k}", "country": "GB"}, {}, consent, at, src,
                     T0, T0, ["web"], 1, "h", T0))
    lake.append(PROFILES.name, spark.createDataFrame(rows, PROFILES.schema))


def _expected(messages) -> set[str]:
    """Who should get what, computed here from the rules (the bucket by Spark's xxhash64, one key at a time)."""
    buckets = {f"u{k}": bucket_of(SALT, f"u{k}") for k in range(USERS)}
    return {m["messageId"] for m in messages
            if m["event"] in ("Product Viewed", "Order Completed") and buckets[m["userId"]] < 5000
            and m["userId"] not in EXPLICIT_DENIAL}


@pytest.fixture(scope="module")
def forwarded(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("connections") / "lake"
    with WebhookReceiver(path="/events") as receiver:
        config = _config(root, receiver.url)
        lake = EmbeddedLake(spark, config.lake.root, default_registry())
        _seed_profiles(spark, lake)
        first = _messages(0, 120)
        _post(config, first)
        metrics = run_stream(spark, config, lake, available_now=True)["sources"]["web"]
        requests_after_stream = len(receiver.requests)
        yield {"config": config, "lake": lake, "receiver": receiver, "first": first, "metrics": metrics,
               "requests_after_stream": requests_after_stream}


def test_registered():
    assert STAGES["connections"] == "cdp_spark.connections.stage:run"
    assert "gold.forwarded_events" in default_registry().names()


def test_events_from_the_collector_reach_the_webhook_filtered_sampled_and_consent_gated(forwarded):
    receiver, first = forwarded["receiver"], forwarded["first"]
    got = {r["event_id"]: r for r in receiver.records()}
    want = _expected(first)
    assert 15 < len(want) < 60           # the rules really left some out and let some through
    assert set(got) == want
    sent = {m["messageId"]: m for m in first}
    for event_id, r in got.items():
        m = sent[event_id]
        assert r["event"] == m["event"].lower() and r["profile_id"] == f"p{m['userId'][1:]}"
        assert r["identifiers"] == {}                     # every identifier type is PII in the catalogue
        assert "page_url" not in r["properties"]          # so is the page URL
        assert "coupon" not in r["properties"]            # dropped by the data filter
        assert r["properties"]["sku"] == m["properties"]["product_id"] and "product_id" not in r["properties"]
        assert r["properties"]["price_cents"] == round(m["properties"]["price"] * 100)
        assert r["properties"]["colour"] == "red" and "stream" not in r
        assert r["traits"] == {"country": "GB"}           # first_name is PII
    # both kinds of denial are users in the sample: the profile's default denial lost to the event's later
    # default grant, while explicit opt-outs always win
    assert all(bucket_of(SALT, u) < 5000 for u in DEFAULT_DENIAL) and bucket_of(SALT, "u1") < 5000
    assert any(sent[e]["userId"] in DEFAULT_DENIAL for e in got)
    assert not any(sent[e]["userId"] in EXPLICIT_DENIAL for e in got)
    # batches of 4, each with its own content-derived key
    assert len({r["key"] for r in receiver.requests}) == len(receiver.requests) == -(-len(want) // 4)


def test_ledger_and_counts(forwarded):
    lake = forwarded["lake"]
    rows = {r.destination: r for r in lake.read("ops.deliveries").collect()}
    tool, delta = rows["web_events.tool"], rows["web_events.lake"]
    assert (tool.format, tool.mode, tool.status, tool.transport) == ("events", "stream", "succeeded", "webhook")
    assert tool.profiles_considered == 120 and tool.records_sent == len(_expected(forwarded["first"]))
    names_pass = sum(m["event"] != "Newsletter Signed Up" for m in forwarded["first"])
    consent = sum(1 for m in forwarded["first"] if m["event"] != "Newsletter Signed Up"
                  and bucket_of(SALT, m["userId"]) < 5000 and m["userId"] in EXPLICIT_DENIAL)
    assert tool.skipped_consent == consent > 0
    # each event counted once, under its own reason: the filter's and the sample's are not "no identifier"
    assert (tool.skipped_filtered, tool.skipped_no_identifier) == (120 - names_pass, 0)
    assert tool.skipped_sampled == names_pass - consent - tool.records_sent > 0
    assert tool.profiles_considered == (tool.skipped_filtered + tool.skipped_sampled + tool.skipped_consent
                                        + tool.adds) and tool.adds == tool.records_sent
    assert (delta.status, delta.records_sent) == ("succeeded", 120)
    summary = forwarded["metrics"]
    assert summary["accepted"] == 120


def test_delta_output_keeps_everything_with_personal_data(forwarded):
    rows = forwarded["lake"].read("gold.forwarded_events").collect()
    assert len(rows) == 120 and {r.output for r in rows} == {"lake"}
    one = json.loads(next(r.payload for r in rows if r.event_id == "m7"))
    assert one["identifiers"] == {"customer_id": "u7", "cookie_id": "a7"}
    assert one["properties"]["page_url"] == "https://shop.example/p/P7" and one["properties"]["coupon"] == "SAVE10"
    assert one["traits"] == {"first_name": "Name7", "country": "GB"}


def test_a_replayed_micro_batch_is_recognised_and_not_sent_again(forwarded, spark):
    config, lake, receiver = forwarded["config"], forwarded["lake"], forwarded["receiver"]
    done = lake.read("ops.deliveries").where(F.col("destination") == "web_events.tool").first()
    run_id = done.run_id
    qid = run_id.split("-")[2]
    batch = int(run_id.rsplit("-", 1)[1])
    # Spark replays an unfinished micro-batch with its id after a crash: the ledger token says it was delivered.
    app = next(a for a in _txn_apps(lake) if a.startswith("forward.web_events.tool.collect.web."))
    assert qid in app
    out = stage.forward_micro_batch(spark, config, lake, "web", run_id, Txn(app.split("forward.web_events.tool.", 1)[1],
                                                                          batch))
    assert out == {} and len(receiver.requests) == forwarded["requests_after_stream"]
    # and the stage, which forwards what the stream did not, finds nothing to do either
    result = stage.run(spark, config, lake, dt.date(2026, 11, 1))
    assert result.metrics["input_batches"] == {"web_events": 0}
    assert len(receiver.requests) == forwarded["requests_after_stream"]


def _txn_apps(lake):
    """The idempotency tokens (app ids) in a table's Delta log."""
    apps = []
    for f in sorted((Path(lake.path("ops.deliveries")) / "_delta_log").glob("*.json")):
        apps += [a["txn"]["appId"] for a in map(json.loads, f.read_text().splitlines()) if "txn" in a]
    return apps


def test_a_failed_delivery_is_retried_by_the_stage_and_the_resent_batch_is_recognised_by_its_key(spark, tmp_path):
    # The webhook accepts the first batch, then fails for good: the stream logs a failed delivery and goes on.
    with WebhookReceiver(script=[200, 500, 500], path="/events") as receiver:
        config = _config(tmp_path / "lake", receiver.url, concurrency=1)   # the script answers batches in order
        lake = EmbeddedLake(spark, config.lake.root, default_registry())
        _seed_profiles(spark, lake)
        messages = _messages(1000, 60)
        _post(config, messages)
        m = run_stream(spark, config, lake, available_now=True)["sources"]["web"]
        assert m["accepted"] == 60
        ledger = lake.read("ops.deliveries").where(F.col("destination") == "web_events.tool").collect()
        assert [(r.status, r.records_sent) for r in ledger] == [("failed", 4)]
        assert "HTTP 500" in ledger[0].error
        # The stage retries the micro-batch: the first batch goes again with the same Idempotency-Key.
        result = stage.run(spark, config, lake, dt.date(2026, 11, 1))
        assert result.metrics["outputs"]["web_events.tool"]["deliveries"] == {"succeeded": 1}
        assert receiver.duplicates == 1
        assert {r["event_id"] for r in receiver.records()} == _expected(messages)
        keys = [r["key"] for r in receiver.requests]
        assert keys[0] == keys[3]         # 200, 500, 500 (gave up), then the retry: the first batch's key again
        statuses = sorted(r.status for r in lake.read("ops.deliveries").where(
            F.col("destination") == "web_events.tool").collect())
        assert statuses == ["failed", "succeeded"]
        # a second stage run has nothing left to send
        again = stage.run(spark, config, lake, dt.date(2026, 11, 1))
        assert again.metrics["outputs"] == {} and receiver.duplicates == 1


def test_the_stage_forwards_file_ingested_events(spark, tmp_path):
    with WebhookReceiver(path="/events") as receiver:
        config = _config(tmp_path / "lake", receiver.url, input={"source": "web"})
        messages = _messages(2000, 30)
        config, lake = _ingest_file(spark, config, tmp_path, messages)
        result = stage.run(spark, config, lake, dt.date(2026, 11, 1))
        assert result.metrics["input_batches"] == {"web_events": 1}
        # No profiles yet: the event's own consent (the web source's default grant) decides.
        buckets = {f"u{k}": bucket_of(SALT, f"u{k}") for k in range(USERS)}
        want = {m["messageId"] for m in messages if m["event"] in ("Product Viewed", "Order Completed")
                and buckets[m["userId"]] < 5000}
        assert {r["event_id"] for r in receiver.records()} == want
        assert all(r["profile_id"] is None and r["traits"] == {} for r in receiver.records())
        rows = lake.read("ops.deliveries").collect()
        assert {(r.destination, r.mode, r.status) for r in rows} == {("web_events.tool", "batch", "succeeded"),
                                                                     ("web_events.lake", "batch", "succeeded")}
        assert stage.run(spark, config, lake, dt.date(2026, 11, 1)).metrics["input_batches"] == {"web_events": 0}


def test_sampling_is_stable_and_its_share_lies_within_tolerance(spark):
    n = 20_000
    keys = spark.range(n).select(F.concat(F.lit("p_"), F.col("id").cast("string")).alias("profile_id"),
                                 F.create_map().cast("map<string,string>").alias("identifiers"))
    for percent in (10, 25, 50):
        flag = sampled(Sampling(percent=percent), SALT, ["profile_id"])
        share = keys.where(flag).count() / n
        sd = (percent / 100 * (1 - percent / 100) / n) ** 0.5
        assert abs(share - percent / 100) < 4 * sd, (percent, share)
    # stable: the same users whatever the order and partitioning, and raising the share only adds users
    one = {r[0] for r in keys.where(sampled(Sampling(percent=25), SALT, ["profile_id"])).collect()}
    shuffled = keys.repartition(7).orderBy(F.rand(3))
    two = {r[0] for r in shuffled.where(sampled(Sampling(percent=25), SALT, ["profile_id"])).collect()}
    more = {r[0] for r in keys.where(sampled(Sampling(percent=40), SALT, ["profile_id"])).collect()}
    assert one == two and one < more
    # another salt samples other users; no key at all is never sampled below 100 %
    other = {r[0] for r in keys.where(sampled(Sampling(percent=25), "other.salt", ["profile_id"])).collect()}
    assert 0.15 < len(one & other) / len(one) < 0.35
    nokey = keys.withColumn("profile_id", F.lit(None).cast("string"))
    assert nokey.where(sampled(Sampling(percent=99), SALT, ["profile_id"])).count() == 0
    assert nokey.where(sampled(Sampling(percent=100), SALT, ["profile_id"])).count() == n


def test_a_micro_batch_read_through_arrow_gives_the_same_parts_as_the_streamed_read(spark):
    """The stream fetches a small batch as one Arrow table, the stage streams Rows: a delivery retried by the stage
    must be built from the same values (its idempotency keys follow the content)."""
    rows = [(f"e{i}", "Order Completed", "web", "web", dt.datetime(2026, 11, 1, 9, 0, i, 123456),
             "p1" if i % 2 else None, {"email": "a@b.c", "cookie_id": f"c{i}"}, '{"colour": "red"}',
             '{"country": "GB"}', "https://x/1", "P1", "shoes", "o1", 12.5, 2, "GBP", 25.0, 25.0,
             i % 3 != 0, i % 4 != 0, True) for i in range(9)]
    schema = ("event_id string, event_name string, stream string, source string, event_time timestamp, "
              "profile_id string, identifiers map<string,string>, properties string, p_traits string, "
              "page_url string, product_id string, category string, order_id string, price double, quantity int, "
              "currency string, revenue double, revenue_reporting double, _passes boolean, _sampled boolean, "
              "_consented boolean")
    df = spark.createDataFrame(rows, schema).withColumn("_send", F.col("_passes") & F.col("_sampled")).repartition(2)
    out = Output.model_validate({"name": "o", "transport": {"type": "file"}})
    streamed = list(stage.parts(df, out, frozenset({"email"}), 4))
    arrow = list(stage.parts(df, out, frozenset({"email"}), 4, small=True))
    assert [len(p) for p in streamed] == [4, 4, 1]
    assert [p.columns["event_id"] for p in streamed] == [[f"e{i}" for i in range(k, min(k + 4, 9))] for k in (0, 4, 8)]
    as_rows = [[(i.event_id, i.profile_id, i.record_hash, i.text, stage._naive_utc(i.event_time)) for i in p.items("l")]
               for p in (*streamed, *arrow)]
    assert as_rows[:3] == as_rows[3:]
    sent = [i for p in streamed for i in p.items("l")]
    assert [i.event_id for i in sent] == [f"e{i}" for i in range(9) if i % 3 and i % 4]
    assert all(i.record_hash == hashlib.sha256(i.text.encode()).hexdigest() for i in sent)
    assert json.loads(sent[0].text)["identifiers"] == {"cookie_id": "c1"}


def test_spark_renders_each_event_as_the_plain_python_rules_do(spark):
    """`rendered` (Spark, used for delivery) against `payload` (the rules in plain Python), through every kind of
    step: renames within and across maps, drops, typed sets at both levels, PII and the data filter's drops."""
    from cdp_spark.ingest.sources import Catalogue

    pii = pii_fields(Catalogue.model_validate(CATALOGUE))
    schema = ("event_id string, event_name string, stream string, source string, event_time timestamp, "
              "profile_id string, identifiers map<string,string>, properties string, p_traits string, "
              "page_url string, product_id string, category string, order_id string, price double, quantity bigint, "
              "currency string, revenue double, revenue_reporting double, _set_0 long, _set_1 timestamp, "
              "_set_2 string")
    rows = [("e1", "Order Completed", "web", "web", dt.datetime(2026, 11, 1, 9, 0, 0, 123456), "p1",
             {"email": "a@b.c", "cookie_id": "c1"},
             '{"colour": "red", "n": 3, "x": null, "nest": {"a": [1, "b"]}, "price": 99, "coupon": "S"}',
             '{"country": "GB", "city": null, "age": 3.5, "first_name": "Ann"}', "https://x/1", "P1", "shoes", "o1",
             12.5, 2, "GBP", 25.0, 25.0, 7, dt.datetime(2026, 1, 2, 3, 4, 5), "s"),
            ("e2", "Product Viewed", "web", "web", dt.datetime(2026, 11, 1, 8, 0), None, None, None, None, None,
             None, None, None, None, None, None, None, None, None, None, None)]
    df = spark.createDataFrame(rows, schema)
    outputs = [
        {},
        {"pii": True, "filter": {"drop_traits": ["city"], "drop_properties": ["coupon"]},
         "transform": [{"drop": ["properties.coupon", "traits"]}, {"rename": {"identifiers": "ids", "event": "name"}}]},
        {"transform": [{"rename": {"properties.product_id": "properties.sku"}},
                       {"set": "properties.price_cents", "expr": "1", "type": "long"},
                       {"set": "properties.when", "expr": "1", "type": "timestamp"}, {"drop": ["stream"]},
                       {"rename": {"properties.colour": "traits.colour", "properties.n": "properties.colour"}},
                       {"set": "traits", "expr": "1", "type": "string"}]},
        {"transform": [{"rename": {"properties.colour": "properties.nest", "profile_id": "event"}},
                       {"drop": ["traits"]}, {"set": "traits.k", "expr": "1", "type": "long"}]},
    ]
    for spec in outputs:
        out = Output.model_validate({"name": "o", "transport": {"type": "file"}, **spec})
        got = [r[0] for r in df.select(rendered(out, pii)).collect()]
        for row, text in zip(df.collect(), got):
            want = payload(row.asDict(), out, pii)
            assert json.loads(text) == json.loads(json.dumps(want)), spec
            assert list(json.loads(text)) == list(want)          # the same fields in the same order


def test_payload_rules_without_spark():
    from cdp_spark.ingest.sources import Catalogue

    pii = pii_fields(Catalogue.model_validate(CATALOGUE))
    row = {"event_id": "m1", "event_name": "order completed", "stream": "web", "source": "web",
           "event_time": dt.datetime(2026, 11, 1, 10), "profile_id": "p1",
           "identifiers": {"email": "ann@example.com", "cookie_id": "c1"}, "page_url": "https://x/p", "price": 2.5,
           "properties": json.dumps({"coupon": "X", "colour": "red"}), "p_traits": json.dumps({"city": "Leeds",
                                                                                              "country": "GB"})}
    plain = Output.model_validate({"name": "o", "transport": {"type": "file"}})
    out = payload(row, plain, pii)
    assert out == {"event_id": "m1", "event": "order completed", "stream": "web", "source": "web",
                   "timestamp": "2026-11-01T10:00:00.000000Z", "profile_id": "p1", "identifiers": {},
                   "properties": {"price": 2.5, "coupon": "X", "colour": "red"}, "traits": {"country": "GB"}}
    marked = Output.model_validate({"name": "o", "transport": {"type": "file"}, "pii": True,
                                    "filter": {"drop_traits": ["city"]},
                                    "transform": [{"drop": ["properties.coupon", "traits"]},
                                                  {"rename": {"identifiers": "ids", "event": "name"}}]})
    out = payload(row, marked, pii)
    assert list(out)[:2] == ["event_id", "name"] and "traits" not in out
    assert out["ids"] == {"cookie_id": "c1", "email": "ann@example.com"}
    assert out["properties"] == {"page_url": "https://x/p", "price": 2.5, "colour": "red"}


def test_bad_connection_configs_name_the_file_and_key(tmp_path):
    conf = tmp_path / "conf"
    (conf / "connections").mkdir(parents=True)
    (conf / "sources").mkdir()
    (conf / "sources" / "web.yaml").write_text((REPO / "conf" / "sources" / "web.yaml").read_text())
    (conf / "catalogue.yaml").write_text((REPO / "conf" / "catalogue.yaml").read_text())
    (conf / "cdp.yaml").write_text(yaml.safe_dump({"lake": {"root": str(tmp_path / "lake")}, "files": {
        "catalogue": "catalogue.yaml", "sources": "sources", "connections": "connections"}}))
    cases = [
        ({"input": {"source": "nope"}}, "input.source: got 'nope', expected a source of conf/sources/ (web)"),
        ({"outputs": [{"name": "o", "transport": {"type": "file"}, "consent": ["ads"]}]},
         "outputs.0.consent.0: got 'ads', expected a consent purpose of the catalogue"),
        ({"outputs": [{"name": "o", "transport": {"type": "file"}, "sampling": {"percent": 120}}]},
         "outputs.0.sampling.percent: got 120, expected a value less than or equal to 100"),
        ({"outputs": [{"name": "o", "transport": {"type": "file"},
                       "transform": [{"set": "properties.x", "expr": "secret_column + 1"}]}]},
         "unknown column secret_column in the expression"),
        ({"outputs": [{"name": "o", "transport": {"type": "file"}, "transform": [{"drop": ["nested.x"]}]}]},
         "unknown field 'nested.x'"),
    ]
    for change, message in cases:
        doc = {"name": "c", "input": {"source": "web"}, "outputs": [{"name": "o", "transport": {"type": "file"}}],
               **change}
        (conf / "connections" / "c.yaml").write_text(yaml.safe_dump(doc))
        with pytest.raises(ConfigError) as err:
            load_config(conf / "cdp.yaml")
        assert str(conf / "connections" / "c.yaml") in str(err.value) and message in str(err.value), str(err.value)


def test_a_connection_label_and_defaults():
    c = Connection.model_validate({"name": "c", "input": {"collector": True},
                                   "outputs": [{"name": "o", "transport": {"type": "delta"}}]})
    assert c.label(c.outputs[0]) == "c.o" and c.delivery_size == 50_000 and c.outputs[0].sampling.percent == 100


def _ingest_file(spark, config, tmp_path, messages):
    from cdp_spark.ingest import stage as ingest

    landing = tmp_path / "landing" / "web"
    landing.mkdir(parents=True)
    (landing / "events.json").write_text("".join(json.dumps(m) + "\n" for m in messages))
    web = config.sources[0].model_copy(update={"path": str(landing)})
    config = config.model_copy(update={"sources": [web, config.sources[1]]})
    lake = EmbeddedLake(spark, config.lake.root, default_registry())
    ingest.ingest_source(spark, config, lake, web, dt.date(2026, 11, 1))
    return config, lake


def test_a_kafka_output_produces_every_forwarded_event_to_its_topic(spark, tmp_path):
    from cdp_spark import jars
    from tests.conftest import unavailable
    from tests.kafka_broker import KafkaBroker

    if jars.cached_bundle("kafka-broker") is None:
        unavailable("the Kafka broker's jars are not cached: run `cdp jars fetch kafka-broker`")
    from confluent_kafka import Consumer

    with KafkaBroker(tmp_path / "kafka") as broker:
        topic = {"name": "topic", "transport": {"type": "kafka", "bootstrap_servers": broker.bootstrap,
                                                "topic": "cdp.forwarded.{source}"},
                 "filter": {"exclude_events": ["Newsletter Signed Up"]}}
        config = _config(tmp_path / "lake", "http://127.0.0.1:9/unused", input={"source": "web"}, outputs=[topic])
        messages = _messages(3000, 30)
        config, lake = _ingest_file(spark, config, tmp_path, messages)
        result = stage.run(spark, config, lake, dt.date(2026, 11, 1))
        assert result.metrics["outputs"]["web_events.topic"]["sent"] == 20
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "t", "auto.offset.reset": "earliest"})
        consumer.subscribe(["cdp.forwarded.web"])
        got = []
        deadline = dt.datetime.now() + dt.timedelta(seconds=60)
        while len(got) < 20 and dt.datetime.now() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                got.append(json.loads(msg.value()))
        consumer.close()
    assert sorted(r["event_id"] for r in got) == sorted(m["messageId"] for m in messages
                                                        if m["event"] != "Newsletter Signed Up")
    assert all(r["identifiers"] == {} and "page_url" not in r["properties"] for r in got)
    row = lake.read("ops.deliveries").first()
    assert (row.transport, row.status, row.location) == ("kafka", "succeeded", "cdp.forwarded.web")
