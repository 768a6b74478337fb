"""User topic affinities and content recommendations on a tiny hand-made world, computed by hand."""
from __future__ import annotations

import datetime as dt

import pytest

from cdp_spark.content import affinity as ca
from cdp_spark.content.config import TopicAffinitySettings
from cdp_spark.content.tables import CONTENT
from cdp_spark.content.taxonomy import topic_taxonomy

AS_OF = dt.date(2026, 11, 1)
END = dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)   # the as-of's day ends here: ages are counted from it
S = "https://s.example"
CONTENT_TOPICS = {"A": [("running", 0.75), ("yoga", 0.25)], "B": [("cooking", 1.0)],
                  "C": [("running", 0.5), ("cycling", 0.5)], "D": [("yoga", 1.0)], "E": [("cycling", 1.0)]}
SETTINGS = TopicAffinitySettings(events=["page"], half_life_days=10, top_n=5)


def ts(days_before_end: float) -> dt.datetime:
    return END - dt.timedelta(days=days_before_end)


@pytest.fixture(scope="module")
def world(spark):
    content = spark.createDataFrame(
        [(f"{S}/{u}", u, "", t, "h", u, AS_OF, "2026-11") for u, t in CONTENT_TOPICS.items()], CONTENT.schema)
    events = spark.createDataFrame([
        ("p1", "page", ts(1), f"{S}/A/?utm_source=x"),
        ("p1", "page", ts(11), f"{S}/B"),
        ("p1", "Product Viewed", ts(2), f"{S}/D"),        # not a page view: no affinity, but D counts as seen
        ("p2", "page", ts(3), f"{S}/E"),
        ("p2", "page", ts(400), f"{S}/B"),                # beyond lookback_days (365)
        ("p3", "page", ts(1), f"{S}/unknown"),            # no content for the URL: no affinity
        (None, "page", ts(1), f"{S}/A"),                  # no profile
    ], "profile_id string, event_name string, event_time timestamp, page_url string")
    return content, events


def test_affinities_are_decayed_views_spread_over_topic_weights_and_banded(spark, world):
    content, events = world
    got = ca.topic_affinities(ca.page_views(events, SETTINGS.events), content, AS_OF, SETTINGS).toPandas()
    d = lambda age: 2 ** (-age / 10)   # noqa: E731
    raw = {"running": 0.75 * d(1), "yoga": 0.25 * d(1), "cooking": d(11)}
    top = max(raw.values())
    p1 = got[got.profile_id == "p1"].set_index("topic")
    assert p1.score.to_dict() == pytest.approx({t: v / top for t, v in raw.items()})
    assert p1["rank"].to_dict() == {"running": 1, "cooking": 2, "yoga": 3}
    assert p1.band.to_dict() == {"running": "High", "cooking": "High", "yoga": "Some"}   # 1, 2/3, 1/3
    p2 = got[got.profile_id == "p2"]
    assert p2[["topic", "score", "rank"]].values.tolist() == [["cycling", 1.0, 1]]
    assert set(got.profile_id) == {"p1", "p2"}


def test_recommendations_expand_affinities_through_the_taxonomy_and_leave_out_seen_urls(spark, world):
    content, events = world
    affinities = ca.topic_affinities(ca.page_views(events, SETTINGS.events), content, AS_OF, SETTINGS)
    taxonomy = topic_taxonomy(content)
    recs = ca.content_recommendations(affinities, taxonomy, content, ca.viewed_urls(events), top_n=10,
                                      taxonomy_weight=0.5).toPandas()
    aff = {(r.profile_id, r.topic): r.score for r in affinities.collect()}
    p = {t: aff.get(("p1", t), 0.0) for t in ("running", "yoga", "cooking", "cycling")}
    # Taxonomy of CONTENT_TOPICS: running<->yoga (A) and running<->cycling (C), each P = 1/2.
    interest = {"running": p["running"] + 0.5 * 0.5 * p["yoga"], "yoga": p["yoga"] + 0.5 * 0.5 * p["running"],
                "cycling": 0.5 * 0.5 * p["running"], "cooking": p["cooking"]}
    want = {f"{S}/C": 0.5 * interest["running"] + 0.5 * interest["cycling"], f"{S}/E": interest["cycling"]}
    p1 = recs[recs.profile_id == "p1"].sort_values("rank")
    assert dict(zip(p1.url, p1.score)) == pytest.approx(want)           # A, B (page views) and D (seen) left out
    assert p1.url.tolist() == [f"{S}/C", f"{S}/E"] and p1["rank"].tolist() == [1, 2]
    # p2 likes cycling: C (via its cycling half) first, then A through cycling -> running -> (A's running weight).
    p2 = recs[recs.profile_id == "p2"].sort_values("rank")
    assert f"{S}/E" not in set(p2.url) and p2.url.iloc[0] == f"{S}/C"
    top1 = ca.content_recommendations(affinities, taxonomy, content, ca.viewed_urls(events), top_n=1).toPandas()
    assert top1.groupby("profile_id").size().max() == 1 and set(top1.url) == {f"{S}/C"}


def test_page_views_keep_named_events_with_a_url_and_a_profile(spark, world):
    _, events = world
    views = ca.page_views(events, ["page"]).collect()
    assert len(views) == 5 and all(v.event_type == "view" and "?" not in v.url for v in views)
    seen = {(r.profile_id, r.url) for r in ca.viewed_urls(events).collect()}
    assert ("p1", f"{S}/D") in seen and ("p1", f"{S}/A") in seen and all(p is not None for p, _ in seen)
