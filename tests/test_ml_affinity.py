"""Affinity decay math on hand-built events, deterministic ALS ids and the ranking metric against plain Python."""
from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest
from pyspark.sql import functions as F

from cdp_spark.ml.affinity import (
    affinities,
    band,
    decay_factor,
    decayed_engagement,
    fill_from_products,
    index_ids,
    ranking_metrics,
)

AS_OF = dt.date(2026, 11, 1)
END = dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)  # end of the as-of day: age 0
SCHEMA = "profile_id string, event_type string, event_time timestamp, category string, properties string"


def ev(profile, kind, age_days, category, properties=None):
    return (profile, kind, END - dt.timedelta(days=age_days), category, properties)


@pytest.fixture(scope="module")
def events(spark):
    rows = [
        ev("a", "view", 0.5, "books"),
        ev("a", "purchase", 30.0, "toys"),
        ev("a", "cart", 60.0, "home"),
        ev("a", "view", 0.0 - 1.0, "books"),     # tomorrow: after as_of, ignored
        ev("a", "login", 1.0, "books"),          # unweighted event type, ignored
        ev("a", "view", 2.0, None),              # no value, ignored
        ev("a", "view", 2.0, "  "),              # blank value, ignored
        ev("b", "view", 10.0, "garden", '{"brand": "Acme"}'),
        ev("b", "view", 10.0, "garden", '{"brand": "Zeta"}'),
        ev("b", "cart", 3.0, "sports", '{"brand": "Acme"}'),
    ]
    return spark.createDataFrame(rows, SCHEMA)


def expected_raw(profile_rows, half_life):
    weights = {"view": 1.0, "cart": 3.0, "purchase": 5.0}
    out: dict[str, float] = {}
    for kind, age, value in profile_rows:
        out[value] = out.get(value, 0.0) + weights[kind] * math.pow(0.5, age / half_life)
    return out


def test_decay_factor_and_bands_by_hand():
    assert decay_factor(0, 30) == 1.0 and decay_factor(30, 30) == 0.5 and decay_factor(90, 30) == 0.125
    assert [band(s) for s in (0.0, 0.2999, 0.3, 0.45, 0.6, 0.6001, 1.0)] == \
        ["Low", "Low", "Some", "Some", "Some", "High", "High"]


def test_decayed_engagement_matches_hand_computation(events):
    got = {(r.profile_id, r.value): r.engagement
           for r in decayed_engagement(events, AS_OF, "category", half_life_days=30).collect()}
    exp_a = expected_raw([("view", 0.5, "books"), ("purchase", 30.0, "toys"), ("cart", 60.0, "home")], 30)
    exp_b = expected_raw([("view", 10.0, "garden"), ("view", 10.0, "garden"), ("cart", 3.0, "sports")], 30)
    expected = {**{("a", k): v for k, v in exp_a.items()}, **{("b", k): v for k, v in exp_b.items()}}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
    # The purchase 30 days ago counts half its weight; the cart 60 days ago a quarter.
    assert got[("a", "toys")] == pytest.approx(2.5) and got[("a", "home")] == pytest.approx(0.75)


def test_max_normalisation_ranks_bands_and_top_n(events):
    rows = affinities(events, AS_OF, ["category"], half_life_days=30, top_n=2).toPandas()
    a = rows[rows.profile_id == "a"].sort_values("rank")
    assert list(a["value"]) == ["toys", "books"]          # home (0.3 of toys) is cut by top_n=2
    assert a["score"].tolist() == pytest.approx([1.0, math.pow(0.5, 0.5 / 30) / 2.5])
    assert list(a["band"]) == ["High", "Some"] and list(a["rank"]) == [1, 2]
    b = rows[rows.profile_id == "b"].sort_values("rank")
    garden, sports = 2 * math.pow(0.5, 10 / 30), 3 * math.pow(0.5, 3 / 30)
    assert list(b["value"]) == ["sports", "garden"]
    assert b["score"].tolist() == pytest.approx([1.0, garden / sports])


def test_sum_normalisation_gives_shares(events):
    rows = affinities(events, AS_OF, ["category"], half_life_days=30, normalise="sum", top_n=10).toPandas()
    shares = rows.groupby("profile_id")["score"].sum()
    assert shares.tolist() == pytest.approx([1.0, 1.0])
    a = rows[rows.profile_id == "a"].set_index("value")["score"]
    raw = expected_raw([("view", 0.5, "books"), ("purchase", 30.0, "toys"), ("cart", 60.0, "home")], 30)
    assert a["home"] == pytest.approx(raw["home"] / sum(raw.values()))
    assert rows.loc[rows.value == "home", "band"].item() == "Low"


def test_property_dimension_and_shorter_half_life(events):
    rows = affinities(events, AS_OF, ["properties.brand"], half_life_days=5).toPandas()
    b = rows.set_index("value")["score"]
    acme = math.pow(0.5, 10 / 5) + 3 * math.pow(0.5, 3 / 5)
    zeta = math.pow(0.5, 10 / 5)
    assert b["Acme"] == pytest.approx(1.0) and b["Zeta"] == pytest.approx(zeta / acme)
    assert set(rows["dimension"]) == {"properties.brand"}


def test_equal_scores_rank_by_value_name(spark):
    rows = [ev("c", "view", 1.0, "zebra"), ev("c", "view", 1.0, "apple")]
    out = affinities(spark.createDataFrame(rows, SCHEMA), AS_OF, ["category"]).toPandas().sort_values("rank")
    assert list(out["value"]) == ["apple", "zebra"] and out["score"].tolist() == [1.0, 1.0]


def test_missing_categories_are_filled_from_the_product(spark):
    df = spark.createDataFrame([("p1", "books"), ("p1", "books"), ("p1", "toys"), ("p1", None), ("p2", None),
                                (None, None)], "product_id string, category string")
    got = sorted(fill_from_products(df).collect(), key=lambda r: (r.product_id or "", r.category or ""))
    assert [(r.product_id, r.category) for r in got] == [
        (None, None), ("p1", "books"), ("p1", "books"), ("p1", "books"), ("p1", "toys"), ("p2", None)]


def test_index_ids_are_dense_sorted_and_independent_of_partitioning(spark):
    # Enough ids for several sorted ranges, with duplicates and nulls, in a shuffled order.
    ids = [f"u{(i * 7919) % 2500:04d}" for i in range(4000)] + [None]
    df = spark.createDataFrame([(i,) for i in ids], "profile_id string")
    spark.conf.set("spark.sql.shuffle.partitions", "5")  # several sorted ranges (the autouse fixture restores it)
    ranged = index_ids(df.repartition(7), "profile_id", "user")
    assert ranged.rdd.getNumPartitions() > 1
    many = {r.profile_id: r.user for r in ranged.collect()}
    one = {r.profile_id: r.user for r in index_ids(df.coalesce(1), "profile_id", "user").collect()}
    assert one == many == {v: i for i, v in enumerate(sorted({i for i in ids if i is not None}))}


def test_ranking_metrics_match_plain_python(spark):
    recs = {"a": ["p1", "p2", "p3"], "b": ["p4", "p5", "p6"], "c": ["p1", "p9", "p8"]}
    truth = {"a": {"p2", "p7"}, "b": {"p6"}, "d": {"p1"}}     # d has no recommendation: scores 0
    k = 3

    def ndcg(items, relevant):
        dcg = sum(1 / math.log2(i + 2) for i, p in enumerate(items[:k]) if p in relevant)
        idcg = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
        return dcg / idcg

    users = list(truth)
    exp_p = sum(len(set(recs.get(u, [])[:k]) & truth[u]) / k for u in users) / len(users)
    exp_n = sum(ndcg(recs.get(u, []), truth[u]) for u in users) / len(users)
    rec_df = spark.createDataFrame([(u, p, i + 1) for u, ps in recs.items() for i, p in enumerate(ps)],
                                   "profile_id string, product_id string, rank int")
    truth_df = spark.createDataFrame([(u, p) for u, ps in truth.items() for p in ps], "profile_id string, product_id string")
    got = ranking_metrics(rec_df, truth_df, k)
    assert got["users"] == len(users)
    assert got["precision_at_k"] == pytest.approx(exp_p) and got["ndcg_at_k"] == pytest.approx(exp_n)
