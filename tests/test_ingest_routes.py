"""Route rules: order (priority, then newer rule) and the resulting stream per record."""
from __future__ import annotations

import datetime as dt

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
