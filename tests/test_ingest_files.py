"""The file ledger and re-delivery: files identified by content (renames, copies and moved lakes re-ingest nothing),
events deduplicated by id across files and runs, and a file that cannot be read isolated from the others."""
from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import shutil

import pytest
import yaml
from pyspark.sql import functions as F

from cdp_spark.ingest import stage
from cdp_spark.lake import default_registry
from cdp_spark.lake.embedded import EmbeddedLake
from tests.ingest_fixtures import CATALOGUE, ORDERS_SOURCE, REPO, make_config, write

AS_OF = dt.date(2026, 11, 1)
HEADER = "order_id,order_time,email,phone,quantity,unit_price,currency\n"


def web_source(landing, **overrides):
    src = yaml.safe_load((REPO / "conf" / "sources" / "web.yaml").read_text())
    return {**src, "path": str(landing), **overrides}


def track(mid, t="2026-10-30T10:00:00Z", **extra):
    return {"type": "track", "event": "Viewed", "messageId": mid, "anonymousId": "a1", "timestamp": t, **extra}


def ndjson(*records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def ledger(lake, source):
    return {r.path: r for r in lake.read("bronze.ingested_files").where(F.col("source") == source).collect()}


@pytest.fixture
def web(spark, tmp_path):
    landing = tmp_path / "landing" / "web"
    config = make_config(tmp_path, [web_source(landing)])
    return config, EmbeddedLake(spark, config.lake.root, default_registry()), landing


def test_renamed_or_touched_files_are_recognised_by_content(spark, web):
    config, lake, landing = web
    first = write(landing / "day=2026-10-30" / "a.json", ndjson(track("m1"), track("m2")))
    s = stage.run(spark, config, lake, AS_OF).metrics["sources"]["web"]
    assert s["files_ingested"] == 1 and s["accepted"] == 2
    assert set(ledger(lake, "web")) == {"day=2026-10-30/a.json"}          # relative to the source folder

    first.rename(landing / "day=2026-10-30" / "renamed.json")
    s = stage.run(spark, config, lake, AS_OF).metrics["sources"]["web"]
    assert (s["files_duplicate"], s["files_ingested"], s["read"]) == (1, 0, 0)
    assert ledger(lake, "web")["day=2026-10-30/renamed.json"].status == "duplicate_file"

    renamed = landing / "day=2026-10-30" / "renamed.json"
    os.utime(renamed, (renamed.stat().st_atime, renamed.stat().st_mtime + 60))   # same bytes, new time
    s = stage.run(spark, config, lake, AS_OF).metrics["sources"]["web"]
    assert (s["files_unchanged"], s["files_ingested"]) == (1, 0)
    s = stage.run(spark, config, lake, AS_OF).metrics["sources"]["web"]
    assert (s["files_skipped"], s["files_unchanged"]) == (1, 0)   # the recorded time now matches: not even read
    assert lake.read("bronze.events").count() == 2


@pytest.mark.slow
def test_events_repeated_within_a_batch_and_across_runs_are_counted_as_duplicates(spark, web):
    config, lake, landing = web
    write(landing / "a.json", ndjson(track("m1"), track("m2"), track("m1")))           # m1 twice in one file
    write(landing / "b.json", ndjson(track("m2"), track("m3")))                        # m2 again in another file
    s = stage.run(spark, config, lake, AS_OF).metrics["sources"]["web"]
    assert (s["read"], s["accepted"], s["quarantined"], s["duplicates"]) == (5, 3, 0, 2) and s["reconciled"]
    files = ledger(lake, "web")
    assert (files["a.json"].rows_accepted, files["a.json"].rows_duplicate) == (2, 1)   # the first m1 is kept
    assert (files["b.json"].rows_accepted, files["b.json"].rows_duplicate) == (1, 1)   # m2 came first in a.json

    # A later run: m3 again (same event date), m4 new, and m1 again a week later (outside the 1-day horizon: a
    # different event as far as ingestion can tell).
    write(landing / "c.json", ndjson(track("m3"), track("m4"), track("m1", t="2026-10-23T10:00:00Z")))
    s = stage.run(spark, config, lake, AS_OF).metrics["sources"]["web"]
    assert (s["read"], s["accepted"], s["duplicates"]) == (3, 2, 1) and s["reconciled"]
    events = lake.read("bronze.events").groupBy("event_id").count().collect()
    assert sorted((r["event_id"], r["count"]) for r in events) == [("m1", 2), ("m2", 1), ("m3", 1), ("m4", 1)]
    assert ledger(lake, "web")["c.json"].rows_duplicate == 1


def test_orders_without_an_event_id_get_ids_from_their_content(spark, tmp_path):
    landing = tmp_path / "orders"
    config = make_config(tmp_path, [{**ORDERS_SOURCE, "path": str(landing)}])
    lake = EmbeddedLake(spark, config.lake.root, default_registry())
    line = "O1,2026-10-30T10:00:00Z,a@example.com,,1,5,EUR\n"
    write(landing / "day1" / "orders.csv", HEADER + line)
    stage.run(spark, config, lake, AS_OF)
    [first] = lake.read("bronze.events").select("event_id").collect()

    # The same order line again, in a new file elsewhere, next to a new order: the same event, a duplicate.
    write(landing / "day2" / "export.csv", HEADER + "O2,2026-10-30T11:00:00Z,b@example.com,,1,5,EUR\n" + line)
    s = stage.run(spark, config, lake, AS_OF).metrics["sources"]["orders"]
    assert (s["accepted"], s["duplicates"]) == (1, 1)
    ids = [r.event_id for r in lake.read("bronze.events").collect()]
    assert len(ids) == 2 and first.event_id in ids


@pytest.mark.slow
def test_a_moved_or_copied_lake_reingests_nothing(spark, tmp_path):
    """The demo world, ingested; then the whole lake (with its landing zone) copied elsewhere with new file times
    and moved: a rerun on either finds every file in the ledger by relative path and content."""
    from cdp_spark.config import CdpConfig
    from cdp_spark.demo import generate

    def config_at(root):
        sources = [yaml.safe_load((REPO / "conf" / "sources" / f"{n}.yaml").read_text()) for n in ("web", "orders", "crm")]
        raw = {"lake": {"root": str(root)}, "catalogue": CATALOGUE, "sources": sources,
               "routes": yaml.safe_load((REPO / "conf" / "routes.yaml").read_text())}
        config = CdpConfig.model_validate(raw)
        return config, EmbeddedLake(spark, str(root), default_registry())

    root = tmp_path / "lake"
    generate(spark, str(root / "demo"), people=40, days=3, seed=7, end_date=AS_OF)
    config, lake = config_at(root)
    first = stage.run(spark, config, lake, AS_OF).metrics["sources"]
    landed = sum(s["files_ingested"] for s in first.values())
    assert landed > 3 and all(s["reconciled"] for s in first.values())
    events = lake.read("bronze.events").count()

    copied = tmp_path / "copy"
    shutil.copytree(root, copied, copy_function=shutil.copy)        # new modification times everywhere
    moved = tmp_path / "moved"
    shutil.move(str(root), str(moved))
    for place in (copied, moved):
        config, lake = config_at(place)
        again = stage.run(spark, config, lake, AS_OF).metrics["sources"]
        assert sum(s["files_ingested"] for s in again.values()) == 0, place
        assert sum(s["read"] for s in again.values()) == 0
        assert sum(s["files_unchanged"] + s["files_skipped"] for s in again.values()) == landed
        assert lake.read("bronze.events").count() == events


@pytest.mark.slow
def test_a_file_that_cannot_be_read_is_isolated_recorded_and_retried_three_times(spark, web):
    config, lake, landing = web
    write(landing / "a.json", ndjson(track("m1")))
    write(landing / "b.json.gz", gzip.compress(ndjson(track("m2")).encode())[:-12])     # cut off: reading fails
    write(landing / "c.json", ndjson(track("m3")))

    s = stage.run(spark, config, lake, AS_OF).metrics["sources"]["web"]

    assert (s["files_ingested"], s["files_failed"], s["accepted"]) == (2, 1, 2)
    failed = ledger(lake, "web")["b.json.gz"]
    assert failed.status == "failed" and failed.error and "m2" not in failed.error
    assert [p["path"] for p in s["problem_files"]] == ["b.json.gz"]
    assert sorted(r.event_id for r in lake.read("bronze.events").collect()) == ["m1", "m3"]
    attempts = [stage.run(spark, config, lake, AS_OF).metrics["sources"]["web"]["files_failed"] for _ in range(3)]
    assert attempts == [1, 1, 0]        # tried in three runs in all, then left as failed
    rows = lake.read("bronze.ingested_files").where(F.col("status") == "failed").count()
    assert rows == 3
