"""Route rules: order (priority, then newer rule) and the resulting stream per record."""
from __future__ import annotations

import datetime as dt

import pytest

from cdp_spark.ingest.routes import ordered, route_column
from cdp_spark.ingest.sources import RouteRule


def rule(name, priority, created, out, cond, active=True, inp="web"):
    return RouteRule(name=name, priority=priority, created=created, input_stream=inp, output_stream=out,
                     condition=cond, active=active)


def test_order_is_priority_then_newer_then_inactive_left_out():
    rules = [rule("old", 5, dt.date(2026, 1, 1), "a", "true"), rule("new", 5, dt.date(2026, 6, 1), "b", "true"),
             rule("top", 9, dt.date(2020, 1, 1), "c", "true"), rule("off", 99, dt.date(2026, 1, 1), "d", "true", active=False)]
    assert [r.name for r in ordered(rules)] == ["top", "new", "old"]


def test_route_column_moves_matching_records_once(spark):
    rules = [rule("divert", 10, dt.date(2026, 1, 1), "web_divert", "page_url LIKE '%localhost%'"),
             rule("tie_old", 1, dt.date(2026, 1, 1), "old_wins", "page_url LIKE '%shop%'"),
             rule("tie_new", 1, dt.date(2026, 2, 1), "new_wins", "page_url LIKE '%shop%'"),
             rule("chain", 50, dt.date(2026, 1, 1), "never", "true", inp="web_divert")]
    df = spark.createDataFrame([("web", "http://localhost/x"), ("web", "https://shop/x"), ("web", None),
                                ("app", "http://localhost/x")], "stream string, page_url string")
    got = [r.s for r in df.select(route_column(rules).alias("s")).collect()]
    assert got == ["web_divert", "new_wins", "web", "app"]


@pytest.mark.slow
def test_diverted_events_stay_in_bronze_but_identity_and_profiles_leave_them_out_unless_they_opt_in(spark, tmp_path):
    """A diverting rule (QA or localhost traffic) used to only label the `stream` column: identity linked the QA
    cookie and its email, and profiles counted its events. Now those records stay in bronze, are counted as
    diverted, and every downstream stage leaves them out unless the rule lists it in `include_in`."""
    import json

    import yaml
    from pyspark.sql import functions as F

    from cdp_spark.identity import stage as identity
    from cdp_spark.identity.lookup import profile_events
    from cdp_spark.ingest import stage
    from cdp_spark.ingest.sources import config_notes
    from cdp_spark.lake import default_registry
    from cdp_spark.lake.embedded import EmbeddedLake
    from tests.ingest_fixtures import REPO, make_config, write

    landing = tmp_path / "web"
    web = {**yaml.safe_load((REPO / "conf" / "sources" / "web.yaml").read_text()), "path": str(landing)}
    routes = yaml.safe_load((REPO / "conf" / "routes.yaml").read_text())
    config = make_config(tmp_path, [web], routes)
    lake = EmbeddedLake(spark, config.lake.root, default_registry())
    at = "2026-10-30T10:00:00Z"
    write(landing / "a.json", "\n".join(json.dumps(x) for x in [
        {"type": "page", "messageId": "real", "anonymousId": "shopper", "userId": "c1", "timestamp": at,
         "context": {"page": {"url": "https://shop.example/p"}}},
        {"type": "page", "messageId": "qa", "anonymousId": "tester", "userId": "c1", "timestamp": at,
         "context": {"page": {"url": "http://localhost:3000/p"}}},
    ]) + "\n")

    s = stage.run(spark, config, lake, dt.date(2026, 11, 1)).metrics["sources"]["web"]
    assert (s["accepted"], s["diverted"]) == (2, 1)
    assert {r.event_id: r.stream for r in lake.read("bronze.events").collect()} == {"real": "web", "qa": "web_divert"}
    assert any("divert_localhost" in n and "no stage" in n for n in config_notes(config))

    identity.run(spark, config, lake, dt.date(2026, 11, 1))
    graph = {(r.id_type, r.value) for r in lake.read("gold.id_graph").collect()}
    assert ("cookie_id", "shopper") in graph and ("cookie_id", "tester") not in graph
    assert [r.event_id for r in profile_events(spark, config, lake, dt.date(2026, 11, 1), stage="profiles").collect()] == ["real"]

    opted = config.model_copy(update={"routes": [r.model_copy(update={"include_in": ["identity", "profiles"]})
                                                 for r in config.routes]})
    identity.run(spark, opted, lake, dt.date(2026, 11, 1))
    graph = {(r.id_type, r.value) for r in lake.read("gold.id_graph").collect()}
    assert ("cookie_id", "tester") in graph
    events = profile_events(spark, opted, lake, dt.date(2026, 11, 1), stage="profiles")
    assert sorted(r.event_id for r in events.collect()) == ["qa", "real"]
    assert profile_events(spark, opted, lake, dt.date(2026, 11, 1), stage="audiences").where(
        F.col("event_id") == "qa").count() == 0
