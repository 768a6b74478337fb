"""Bad input at ingest: every record is accepted, quarantined with a reason or counted as a duplicate, and bronze
holds exactly what the counts and the file ledger say (records in = accepted + quarantined + duplicates)."""
from __future__ import annotations

import datetime as dt
import json

import yaml
from pyspark.sql import functions as F

from cdp_spark.ingest import stage
from cdp_spark.lake import default_registry
from cdp_spark.lake.embedded import EmbeddedLake
from tests.ingest_fixtures import CATALOGUE, ORDERS_SOURCE, REPO, make_config, write

AS_OF = dt.date(2026, 11, 1)


def web_source(landing, **overrides):
    src = yaml.safe_load((REPO / "conf" / "sources" / "web.yaml").read_text())
    return {**src, "path": str(landing), **overrides}


def lake_for(spark, config):
    return EmbeddedLake(spark, config.lake.root, default_registry())


def bronze_matches_ledger(lake, source):
    """The file ledger's counts are what bronze holds: events + profile-only records = accepted, quarantine rows
    = quarantined, and every file reconciles."""
    files = lake.read("bronze.ingested_files").where(F.col("source") == source).collect()
    for f in files:
        assert f.rows_read == f.rows_accepted + f.rows_quarantined + f.rows_duplicate, f.path
    quarantined = lake.read("bronze.quarantine").where(F.col("source") == source).count()
    assert quarantined == sum(f.rows_quarantined for f in files)
    return files


def test_role_both_record_that_is_neither_event_nor_profile_is_quarantined_not_lost(spark, tmp_path):
    landing = tmp_path / "web"
    config = make_config(tmp_path, [web_source(landing)])
    lake = lake_for(spark, config)
    track = {"type": "track", "event": "Product Viewed", "anonymousId": "a1"}
    lines = [
        {**track, "messageId": "m1", "timestamp": "not a time"},
        {**track, "messageId": "m2"},                                              # no time at all
        {**track, "messageId": "m3", "timestamp": "2026-13-45T99:99:99Z"},
        {**track, "messageId": "m4", "timestamp": "2026-10-30T10:00:00Z"},
        {**track, "messageId": "m5", "timestamp": "2026-10-30T11:00:00Z"},
        {"type": "identify", "messageId": "i1", "userId": "c1", "traits": {"first_name": "Ann"}},  # profile only
        {"type": "identify", "messageId": "i2", "userId": "c2"},                   # neither: no time, no traits
    ]
    write(landing / "day=2026-10-30" / "part-0.json", "\n".join(json.dumps(x) for x in lines) + "\n")

    s = stage.run(spark, config, lake, AS_OF).metrics["sources"]["web"]

    assert (s["read"], s["accepted"], s["quarantined"], s["duplicates"]) == (7, 3, 4, 0) and s["reconciled"]
    assert sorted(r.event_id for r in lake.read("bronze.events").collect()) == ["m4", "m5"]
    assert [r.traits for r in lake.read("bronze.profile_records").collect()] == [{"first_name": "Ann"}]
    reasons = {json.loads(r.raw_record)["messageId"]: list(r.reasons) for r in lake.read("bronze.quarantine").collect()}
    assert reasons == {"m1": ["missing_or_bad:event_time"], "m2": ["missing_or_bad:event_time"],
                       "m3": ["missing_or_bad:event_time"], "i2": ["missing_or_bad:event_time"]}
    [f] = bronze_matches_ledger(lake, "web")
    assert (f.rows_read, f.rows_accepted, f.rows_quarantined) == (7, 3, 4)


def test_implausible_event_times_are_quarantined_and_epoch_times_are_read(spark, tmp_path):
    landing = tmp_path / "web"
    config = make_config(tmp_path, [web_source(landing)])
    lake = lake_for(spark, config)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    recent, two_days = now - dt.timedelta(hours=6), now - dt.timedelta(days=2)
    track = {"type": "track", "event": "Product Viewed", "anonymousId": "a1"}
    lines = [
        {**track, "messageId": "ok", "timestamp": recent.isoformat()},
        {**track, "messageId": "year1", "timestamp": "0001-01-01T00:00:00Z"},
        {**track, "messageId": "future", "timestamp": (now + dt.timedelta(days=3)).isoformat()},
        {**track, "messageId": "epoch_s", "timestamp": int(two_days.timestamp())},           # a JSON number
        {**track, "messageId": "epoch_ms", "timestamp": str(int(two_days.timestamp()) * 1000)},
    ]
    write(landing / "a.json", "\n".join(json.dumps(x) for x in lines) + "\n")

    s = stage.run(spark, config, lake, AS_OF).metrics["sources"]["web"]

    assert (s["read"], s["accepted"], s["quarantined"]) == (5, 3, 2) and s["reconciled"]
    events = {r.event_id: r for r in lake.read("bronze.events").collect()}
    assert events["epoch_s"].event_time == events["epoch_ms"].event_time == two_days.replace(tzinfo=None)
    assert {r.event_date for r in events.values()} == {recent.date(), two_days.date()}
    reasons = {json.loads(r.raw_record)["messageId"]: list(r.reasons) for r in lake.read("bronze.quarantine").collect()}
    assert reasons == {"year1": ["implausible:event_time"], "future": ["implausible:event_time"]}

    # The window is the source's to set: with one day into the past, the two-day-old events are implausible.
    narrow = make_config(tmp_path / "narrow", [web_source(landing, event_time_window={"max_past_days": 1})])
    s = stage.run(spark, narrow, lake_for(spark, narrow), AS_OF).metrics["sources"]["web"]
    assert (s["accepted"], s["quarantined"]) == (1, 4)


def test_nul_bytes_in_values_are_refused_with_the_field_named(spark, tmp_path):
    orders, web = tmp_path / "orders", tmp_path / "web"
    config = make_config(tmp_path, [{**ORDERS_SOURCE, "path": str(orders)}, web_source(web)])
    lake = lake_for(spark, config)
    header = "order_id,order_time,email,phone,quantity,unit_price,currency\n"
    write(orders / "a.csv", header + "O1,2026-10-30T10:00:00Z,a\x00b@example.com,,1,5,EUR\n"
          "O2,2026-10-30T10:00:00Z,ok@example.com,,1,5,EUR\n")
    track = {"type": "track", "anonymousId": "a1", "timestamp": "2026-10-30T10:00:00Z"}
    write(web / "a.json", "\n".join([
        json.dumps({**track, "messageId": "w1", "event": "Viewed\u0000"}),                  # escaped in the JSON text
        json.dumps({**track, "messageId": "w2", "event": "Viewed", "properties": {"note": "x\u0000y"}}),
        json.dumps({**track, "messageId": "w3", "event": "Viewed"}),
    ]) + "\n")

    sources = stage.run(spark, config, lake, AS_OF).metrics["sources"]

    assert (sources["orders"]["accepted"], sources["orders"]["quarantined"]) == (1, 1)
    assert (sources["web"]["accepted"], sources["web"]["quarantined"]) == (1, 2)
    reasons = {r.source + ":" + str(r.ingest_line): list(r.reasons) for r in lake.read("bronze.quarantine").collect()}
    assert reasons == {"orders:2": ["nul_byte:email"], "web:1": ["nul_byte:event_name"], "web:2": ["nul_byte:properties"]}
    assert not any("\x00" in (r.properties or "") + (r.event_name or "") for r in lake.read("bronze.events").collect())


def test_catalogue_event_field_without_a_column_lands_in_properties(spark, tmp_path):
    from cdp_spark.ingest.sources import config_notes
    from cdp_spark.config import CdpConfig

    landing = tmp_path / "web"
    catalogue = {**CATALOGUE, "fields": {**CATALOGUE["fields"], "campaign": {"group": "event", "normaliser": "lower"}}}
    src = web_source(landing)
    src["mapping"] = {**src["mapping"], "campaign": "context.campaign.name"}
    raw = {"lake": {"root": str(tmp_path / "lake")}, "catalogue": catalogue, "sources": [src]}
    config = CdpConfig.model_validate(raw)
    lake = lake_for(spark, config)
    write(landing / "a.json", json.dumps({"type": "track", "event": "Viewed", "messageId": "m1", "anonymousId": "a",
                                          "timestamp": "2026-10-30T10:00:00Z", "properties": {"colour": "red"},
                                          "context": {"campaign": {"name": "Winter SALE"}}}) + "\n")

    stage.run(spark, config, lake, AS_OF)

    [event] = lake.read("bronze.events").collect()
    assert json.loads(event.properties) == {"colour": "red", "campaign": "winter sale"}
    assert any("campaign" in note and "properties" in note for note in config_notes(config))
