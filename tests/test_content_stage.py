"""The content stage on both lake backends: enrichment within the monthly cap (reported, the rest enriched next
month), blocked paths, changed pages, the derived tables, and idempotent re-runs."""
from __future__ import annotations

import datetime as dt
import logging

import pytest
from pyspark.sql import functions as F

from cdp_spark.config import CdpConfig
from cdp_spark.content.stage import run
from cdp_spark.content.tables import CONTENT, CONTENT_RECOMMENDATIONS, TABLES, TOPIC_AFFINITIES, TOPIC_TAXONOMY
from cdp_spark.ml.synthetic import conform

S = "https://s.example"
NOV, NOV_LATER, DEC = dt.date(2026, 11, 1), dt.date(2026, 11, 28), dt.date(2026, 12, 1)


def html(path: str, tags: str, text: str) -> str:
    return (f'<html><head><title>{path}</title><meta property="og:url" content="{S}{path}">'
            f'<meta name="topics" content="{tags}"></head><body><p>{text}</p></body></html>')


PAGES = {
    "a.html": html("/journal/a", "running", "marathon training and yoga pose"),
    "b.html": html("/journal/b", "cooking", "a recipe"),
    "c.html": html("/journal/c", "running, cycling", "bike and marathon"),
    "help.html": html("/account/help", "running", "marathon"),          # blocked
}
CATALOGUE = (f'{{"url": "{S}/journal/d", "title": "D", "meta": {{"article:tag": ["yoga"]}}, "text": "pose"}}\n'
             f'{{"url": "{S}/journal/e", "title": "E", "text": "cycling bike saddle"}}\n'
             "not json\n")


def settings(folder: str, **kw) -> dict:  # type: ignore[no-untyped-def]
    return {"path": folder, "monthly_cap": 3, "blocked_paths": ["/account/*"],
            "topics": [{"name": "running", "keywords": ["marathon"]}, {"name": "yoga", "keywords": ["pose"]},
                       {"name": "cooking", "keywords": ["recipe"]},
                       {"name": "cycling", "keywords": ["bike", "saddle"]}],
            "affinity": {"events": ["page"], "half_life_days": 10}, "recommendations": {"top_n": 3}, **kw}


def events_lake(spark, lake) -> None:  # type: ignore[no-untyped-def]
    views = [("e1", "p1", "page", dt.datetime(2026, 10, 30, 12), f"{S}/journal/a"),
             ("e2", "p1", "page", dt.datetime(2026, 10, 31, 12), f"{S}/journal/b?utm=1"),
             ("e3", "p2", "page", dt.datetime(2026, 10, 31, 9), f"{S}/journal/c"),
             ("e4", "p2", "page", dt.datetime(2026, 11, 25, 9), f"{S}/journal/a")]   # after NOV: counts later
    df = spark.createDataFrame(views, "event_id string, pid string, event_name string, event_time timestamp, "
                                      "page_url string")
    customer = F.concat(F.lit("X"), F.col("pid"))
    events = df.select("event_id", F.lit("web").alias("source"), F.lit("web").alias("stream"), "event_name",
                       "event_time", F.to_date("event_time").alias("event_date"), "page_url",
                       F.create_map(F.lit("customer_id"), customer).alias("identifiers"))
    lake.overwrite("bronze.events", conform(events, lake.spec("bronze.events").schema))
    graph = df.select("pid").distinct().select(
        F.lit("customer_id").alias("id_type"), customer.alias("value"),
        F.xxhash64(F.lit("customer_id"), customer).alias("vertex_id"), F.col("pid").alias("profile_id"),
        F.lit(dt.date(2026, 10, 1)).alias("profile_created_at"))
    lake.overwrite("gold.id_graph", conform(graph, lake.spec("gold.id_graph").schema))


def snapshot(lake):  # type: ignore[no-untyped-def]
    return {t.name: (lake.version(t.name), sorted(map(str, lake.read(t.name).collect()))) for t in TABLES}


@pytest.fixture(scope="module")
def staged(make_lake, spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("content-lake")
    folder = root / "landing"
    folder.mkdir()
    for name, text in PAGES.items():
        (folder / name).write_text(text)
    (folder / "catalogue.jsonl").write_text(CATALOGUE)
    lake = make_lake(root / "lake")
    events_lake(spark, lake)
    config = CdpConfig.model_validate({"lake": {"root": str(root / "lake")}, "content": settings(str(folder))})
    return {"lake": lake, "config": config, "folder": folder}


@pytest.fixture(scope="module")
def november(staged, spark):
    records = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("cdp_spark.content.stage").addHandler(handler)
    try:
        first = run(spark, staged["config"], staged["lake"], NOV)
    finally:
        logging.getLogger("cdp_spark.content.stage").removeHandler(handler)
    return {"result": first, "logs": [r.getMessage() for r in records], "snapshot": snapshot(staged["lake"])}


def test_the_monthly_cap_is_reported_and_the_first_urls_are_enriched(staged, november):
    counts = november["result"].metrics["enrichment"]
    assert counts == {**counts, "pages": 6, "blocked": 1, "due": 5, "enriched": 3, "deferred": 2, "cap_reached": True,
                      "monthly_cap": 3, "enriched_this_month": 3, "month": "2026-11", "invalid": 1, "files": 5}
    content = staged["lake"].read(CONTENT.name).orderBy("url").collect()
    assert [r.url for r in content] == [f"{S}/journal/{x}" for x in "abc"]     # URL order, within the cap
    assert all(r.month == "2026-11" and r.enriched_at == NOV for r in content)
    warning = [m for m in november["logs"] if "monthly cap" in m]
    assert warning and "2 due URLs" in warning[0] and S not in " ".join(november["logs"])


def test_enriched_topics_and_weights(staged, november):
    rows = {r.url: dict((t.topic, t.weight) for t in r.topics) for r in staged["lake"].read(CONTENT.name).collect()}
    assert set(rows[f"{S}/journal/a"]) == {"running", "yoga"} and set(rows[f"{S}/journal/b"]) == {"cooking"}
    assert set(rows[f"{S}/journal/c"]) == {"running", "cycling"}
    assert rows[f"{S}/journal/a"]["running"] > rows[f"{S}/journal/a"]["yoga"]    # tagged and in the text
    assert all(sum(w.values()) == pytest.approx(1.0) for w in rows.values())


def test_derived_tables_after_the_first_run(staged, november):
    lake = staged["lake"]
    taxonomy = {(r.topic_a, r.topic_b): r.weight for r in lake.read(TOPIC_TAXONOMY.name).collect()}
    assert taxonomy[("cycling", "running")] == 1.0 and taxonomy[("running", "cycling")] == 0.5
    aff = {(r.profile_id, r.topic): r for r in lake.read(TOPIC_AFFINITIES.name).collect()}
    assert aff[("p1", "running")].as_of == NOV and {p for p, _ in aff} == {"p1", "p2"}
    recs = {(r.profile_id, r.url) for r in lake.read(CONTENT_RECOMMENDATIONS.name).collect()}
    assert ("p2", f"{S}/journal/a") in recs              # the view of a comes after NOV
    assert not {("p1", f"{S}/journal/a"), ("p1", f"{S}/journal/b"), ("p2", f"{S}/journal/c")} & recs


def test_rerunning_the_same_as_of_changes_nothing(staged, november, spark):
    again = run(spark, staged["config"], staged["lake"], NOV)
    assert again.metrics["enrichment"]["enriched"] == 0 and again.metrics["derived"] == "already committed"
    assert snapshot(staged["lake"]) == november["snapshot"]


def test_later_the_same_month_nothing_more_is_enriched_and_next_month_the_rest_is(staged, november, spark):
    lake = staged["lake"]
    later = run(spark, staged["config"], lake, NOV_LATER).metrics["enrichment"]
    assert (later["enriched"], later["deferred"], later["cap_reached"]) == (0, 2, True)
    assert lake.read(CONTENT.name).count() == 3
    recs = {(r.profile_id, r.url) for r in lake.read(CONTENT_RECOMMENDATIONS.name).collect()}
    assert ("p2", f"{S}/journal/a") not in recs and recs       # viewed on 25 November
    december = run(spark, staged["config"], lake, DEC).metrics["enrichment"]
    assert (december["enriched"], december["deferred"], december["cap_reached"]) == (2, 0, False)
    months = {r.url: r.month for r in lake.read(CONTENT.name).collect()}
    assert months == {**{f"{S}/journal/{x}": "2026-11" for x in "abc"}, **{f"{S}/journal/{x}": "2026-12" for x in "de"}}


def test_a_changed_page_is_enriched_again_and_a_disabled_stage_does_nothing(staged, november, spark):
    lake = staged["lake"]
    (staged["folder"] / "b.html").write_text(html("/journal/b", "cycling", "bike"))
    result = run(spark, staged["config"], lake, dt.date(2026, 12, 2)).metrics["enrichment"]
    assert (result["enriched"], result["unchanged"]) == (1, 4)
    b = lake.read(CONTENT.name).where(F.col("url") == f"{S}/journal/b").first()
    assert [t.topic for t in b.topics] == ["cycling"] and b.month == "2026-12"
    disabled = staged["config"].content.model_copy(update={"enabled": False})
    off = staged["config"].model_copy(update={"content": disabled})
    assert "skipped" in run(spark, off, lake, dt.date(2026, 12, 3)).metrics
