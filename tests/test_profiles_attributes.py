"""Calculated attributes (the shipped conf/attributes.yaml plus property/selector cases) against an independent
pandas computation, on demo-like events with the demo's event names, sources and adversarial ties."""
from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import functions as F

from cdp_spark.config import CdpConfig, load_config
from cdp_spark.profiles.attributes import event_pass, finish_attributes

REPO = Path(__file__).resolve().parents[1]
AS_OF = dt.date(2026, 11, 1)
NAMES = [("web", "page"), ("web", "identify"), ("web", "product viewed"), ("web", "product added"),
         ("web", "order completed"), ("web", "newsletter signed up"), ("app", "app_opened"), ("app", "login"),
         ("app", "product_viewed"), ("app", "add_to_cart"), ("app", "order_completed"), ("orders", "order_completed")]
EXTRA = {
    "platform_most_used": {"kind": "most_frequent", "field": "properties.platform"},
    "basket_total_7d": {"kind": "sum", "field": "properties.basket", "window_days": 7},
    "first_platform": {"kind": "first", "field": "properties.platform", "events": ["app_opened"]},
    "products_viewed_count": {"kind": "unique_count", "field": "product_id", "events": ["product viewed", "product_viewed"]},
    "cheapest_line": {"kind": "min", "field": "price", "where": "source = 'orders'"},
    "orders_with_items": {"kind": "count", "field": "order_id", "events": ["order_completed"]},
}


def demo_like_events(seed: int = 3, profiles: int = 25) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for p in range(profiles):
        for i in range(rng.randint(0, 40)):
            source, name = rng.choice(NAMES)
            # whole-second times on a few days around the window edges (ties in time and in value on purpose)
            day = AS_OF - dt.timedelta(days=rng.choice([0, 0, 1, 2, 3, 6, 7, 29, 30, 89, 90, 200]))
            t = dt.datetime.combine(day, dt.time(rng.choice([0, 9, 23]), rng.choice([0, 30])))
            product = rng.choice(["SKU-1", "SKU-2", "SKU-3"]) if "view" in name or "add" in name or "order" in name else None
            is_order = name == "order_completed"
            rows.append({
                "profile_id": f"p{p:02d}", "event_id": f"e{p}-{i}", "source": source, "event_name": name,
                "event_time": t, "event_date": day, "product_id": product,
                "category": {"SKU-1": "home", "SKU-2": "toys", "SKU-3": "home"}.get(product),
                "order_id": f"o{p}-{rng.randint(0, 3)}" if is_order else None,
                "price": rng.choice([5.0, 12.5, 80.0]) if is_order else None,
                "quantity": rng.randint(1, 3) if is_order else None,
                "revenue_reporting": rng.choice([10.0, 99.5, 250.0, None]) if is_order and source == "orders" else None,
                "properties": json.dumps({"platform": rng.choice(["ios", "android"]), "basket": rng.choice([1.5, 2])})
                if source == "app" else None,
                "consent": [],
            })
    return rows


def reference(ev: pd.DataFrame, name: str, a, profiles: list[str]) -> dict:
    """An independent, row-by-row pandas evaluation of one attribute definition."""
    sel = ev
    if a.events:
        sel = sel[sel.event_name.isin(a.events)]
    if a.where:
        assert a.where == "source = 'orders'"
        sel = sel[sel.source == "orders"]
    if a.window_days:
        sel = sel[sel.event_date >= AS_OF - dt.timedelta(days=a.window_days - 1)]
    field = a.field
    if field and field.startswith("properties."):
        key = field.split(".", 1)[1]
        sel = sel.assign(_v=sel.properties.map(lambda s: json.loads(s).get(key) if isinstance(s, str) else None))
    elif field:
        sel = sel.assign(_v=sel[field])
    out = {}
    for p in profiles:
        g = sel[sel.profile_id == p]
        vals = g["_v"].dropna() if field else None
        k = a.kind
        if k == "count":
            out[p] = int(len(g) if not field else len(vals))
        elif k == "sum":
            out[p] = float(vals.astype(float).sum())
        elif k in ("avg", "min", "max"):
            out[p] = None if vals.empty else float(getattr(vals.astype(float), {"avg": "mean"}.get(k, k))())
        elif k == "most_frequent":
            counts = vals.astype(str).value_counts()
            out[p] = None if counts.empty else sorted(v for v, n in counts.items() if n == counts.max())[0]
        elif k in ("first", "last"):
            g2 = g[g["_v"].notna()].sort_values(["event_time", "event_id"])
            out[p] = None if g2.empty else str(g2["_v"].iloc[0 if k == "first" else -1])
        elif k == "unique_list":
            out[p] = sorted(set(vals.astype(str)))[: a.max_items]
        elif k == "unique_count":
            out[p] = len(set(vals.astype(str)))
        elif k in ("days_since_first", "days_since_last"):
            out[p] = None if g.empty else (AS_OF - (g.event_date.min() if k.endswith("first") else g.event_date.max())).days
    return out


@pytest.fixture(scope="module")
def computed(spark):
    config = load_config(REPO / "conf" / "cdp.yaml")
    attrs = CdpConfig.model_validate({"catalogue": config.catalogue.model_dump(), "attributes": {
        "properties": {"platform": "string", "basket": "double"},
        "attributes": {**config.attributes.model_dump()["attributes"], **EXTRA}}}).attributes
    rows = demo_like_events()
    ev = pd.DataFrame(rows)
    schema = ("profile_id string, event_id string, source string, event_name string, event_time timestamp, "
              "event_date date, product_id string, category string, order_id string, price double, quantity bigint, "
              "revenue_reporting double, properties string, "
              "consent array<struct<purpose:string,channel:string,status:string,timestamp:timestamp>>")
    events = spark.createDataFrame([tuple(r.values()) for r in rows], schema)
    profiles = sorted(ev.profile_id.unique()) + ["p_no_events"]
    traits = spark.createDataFrame([(p, "2024-01-01" if p < "p10" else None) for p in profiles],
                                   "profile_id string, signup_date string").withColumn("signup_date",
                                                                                       F.col("signup_date").cast("date"))
    agg = event_pass(events, [], attrs, AS_OF)
    got = {r.profile_id: r.asDict() for r in finish_attributes(traits, agg, attrs, AS_OF).collect()}
    return attrs, ev, profiles, got


def test_every_event_attribute_matches_pandas(computed):
    attrs, ev, profiles, got = computed
    checked = 0
    for name, a in attrs.attributes.items():
        if a.kind == "formula":
            continue
        expected = reference(ev, name, a, profiles)
        for p in profiles:
            value = got[p][name]
            if isinstance(expected[p], float):
                assert value == pytest.approx(expected[p]), (name, p)
            else:
                assert value == expected[p], (name, p)
            checked += 1
    assert checked >= 25 * 20


def test_no_events_gives_zero_counts_and_null_selectors(computed):
    _, _, _, got = computed
    row = got["p_no_events"]
    assert row["orders_lifetime"] == 0 and row["revenue_lifetime"] == 0.0 and row["logins_last_7_days"] == 0
    assert row["favourite_category"] is None and row["days_since_last_seen"] is None
    assert row["categories_viewed"] == []
    assert row["value_tier"] == "none" and row["lead_score"] == 0


def test_formulas_read_attributes_and_traits(computed):
    _, _, profiles, got = computed
    for p in profiles:
        r = got[p]
        score = min(100, 10 * r["logins_last_7_days"] + 2 * r["product_views_last_7_days"]
                    + 5 * r["add_to_cart_last_30_days"] + 20 * r["orders_last_30_days"] + (10 if p < "p10" else 0))
        assert r["lead_score"] == score
        rev = r["revenue_lifetime"]
        tier = "high" if rev >= 500 else "medium" if rev >= 100 else "low" if r["orders_lifetime"] > 0 else "none"
        assert r["value_tier"] == tier


def test_one_groupby_over_events(spark, computed):
    attrs, *_ = computed
    events = spark.createDataFrame([], "profile_id string, event_id string, source string, event_name string, "
                                       "event_time timestamp, event_date date, product_id string, category string, "
                                       "order_id string, price double, quantity bigint, revenue_reporting double, "
                                       "properties string, consent array<struct<purpose:string,channel:string,"
                                       "status:string,timestamp:timestamp>>")
    plan = event_pass(events, ["analytics"], attrs, AS_OF)._jdf.queryExecution().optimizedPlan().toString()
    assert plan.count("Aggregate [") == 1   # every attribute, event fact and consent from one aggregation
