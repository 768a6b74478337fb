"""The ingest stage end to end on messy files: quarantine reasons, reconciliation, idempotency, file ledger."""
from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from cdp_spark.ingest import stage
from cdp_spark.lake import default_registry
from tests.ingest_fixtures import ORDERS_SOURCE, make_config, write

AS_OF = dt.date(2026, 11, 1)
HEADER = "order_id,order_time,email,phone,quantity,unit_price,currency\n"
MESSY = (
    "\ufeff" + HEADER                                                    # UTF-8 BOM before the header
    + "O1,2026-10-30T10:00:00Z, Ann@Example.COM ,020 7946 0018,2,10.5,eur\n"   # good; normalised
    + "O2,2026-10-30T11:00:00Z,not-an-email,12,1,5,EUR\n"               # invalid email + phone -> nulls with reasons
    + "O3,yesterday-ish,b@example.com,,1,5,EUR\n"                        # unparseable timestamp -> quarantine
    + "O4,2026-10-30T12:00:00Z,c@example.com,,1,5,ABC\n"                 # unknown currency -> quarantine
    + "O5,2026-10-30T12:00:00Z,d@example.com,,two,5,EUR\n"               # wrong type -> quarantine
    + "O6,2026-10-30T12:00:00Z,e@example.com,,1,5\n"                     # too few fields -> malformed_csv
    + 'O7,2026-10-30T12:00:00Z,"f@example.com,,1,5,EUR\n'                # unbalanced quote -> malformed_csv
    + "O8,2026-10-30T12:00:00Z," + "x" * 100 + "@example.com,,1,5,EUR\n"  # oversize field
    + "\n"                                                               # blank line: not a record
)


@pytest.fixture
def setup(make_lake, spark, tmp_path):
    landing = tmp_path / "landing"
    src = {**ORDERS_SOURCE, "path": str(landing)}
    config = make_config(tmp_path, [src])
    lake = make_lake(config.lake.root, default_registry())
    return config, lake, landing


def quarantine_reasons(lake):
    rows = lake.read("bronze.quarantine").collect()
    return {r.raw_record.split(",")[0]: set(r.reasons) for r in rows}


def test_messy_csv_reconciles_and_every_bad_line_has_a_reason(spark, setup):
    config, lake, landing = setup
    write(landing / "day=2026-10-30" / "a.csv", MESSY)
    write(landing / "day=2026-10-30" / "latin1.csv", (HEADER + "O9,2026-10-30T12:00:00Z,café@example.com,,1,5,EUR\n").encode("latin-1"))
    write(landing / "day=2026-10-30" / "empty.csv", b"")
    write(landing / "day=2026-10-30" / "header_only.csv", HEADER)
    result = stage.run(spark, config, lake, AS_OF)
    s = result.metrics["sources"]["orders"]
    assert (s["read"], s["accepted"], s["quarantined"]) == (9, 2, 7)
    assert s["reconciled"] and result.rows_in["source.orders"] == 9
    assert s["files_ingested"] == 4 and s["empty_files"] == 2
    reasons = quarantine_reasons(lake)
    assert reasons["O3"] == {"missing_or_bad:event_time"}
    assert reasons["O4"] == {"currency_known"}
    assert "quantity_is_number" in reasons["O5"]
    assert reasons["O6"] == {"malformed_csv"} and reasons["O7"] == {"malformed_csv"}
    assert "oversize:email" in reasons["O8"]
    assert reasons["O9"] == {"invalid_encoding"}
    events = {r.order_id: r for r in lake.read("bronze.events").collect()}
    assert set(events) == {"O1", "O2"}
    o1, o2 = events["O1"], events["O2"]
    assert o1.identifiers == {"email": "ann@example.com", "phone": "+442079460018"}
    assert o1.currency == "EUR" and o1.revenue == 21.0 and o1.event_time == dt.datetime(2026, 10, 30, 10, 0)
    assert o1.event_date == dt.date(2026, 10, 30) and o1.ingest_line == 2
    assert o2.identifiers == {} and set(o2.quality_issues) == {"invalid:email", "invalid:phone"}
    assert s["warned"] == {"email_valid": 1}
    # every consent purpose is granted: the source maps no consent field (documented default)
    assert {c.status for c in o1.consent} == {"granted"}


def test_rerun_ingests_nothing_and_changed_redelivery_is_rejected_or_versioned(spark, setup, tmp_path):
    config, lake, landing = setup
    f = write(landing / "a.csv", HEADER + "O1,2026-10-30T10:00:00Z,a@example.com,,1,5,EUR\n")
    stage.run(spark, config, lake, AS_OF)
    again = stage.run(spark, config, lake, AS_OF).metrics["sources"]["orders"]
    assert again["read"] == 0 and again["files_skipped"] == 1
    assert lake.read("bronze.events").count() == 1
    write(f, HEADER + "O1,2026-10-30T10:00:00Z,a@example.com,,1,5,EUR\nO2,2026-10-30T10:00:00Z,b@example.com,,1,5,EUR\n")
    rejected = stage.run(spark, config, lake, AS_OF).metrics["sources"]["orders"]
    assert rejected["files_rejected"] == 1 and rejected["read"] == 0
    assert lake.read("bronze.events").count() == 1
    statuses = sorted((r.version, r.status) for r in lake.read("bronze.ingested_files").collect())
    assert statuses == [(1, "ingested"), (2, "rejected_changed")]

    versioned = config.model_copy(update={"sources": [config.sources[0].model_copy(update={"on_changed_file": "new_version"})]})
    write(f, HEADER + "O3,2026-10-30T10:00:00Z,c@example.com,,1,5,EUR\n")
    out = stage.run(spark, versioned, lake, AS_OF).metrics["sources"]["orders"]
    assert out["files_ingested"] == 1 and out["accepted"] == 1
    assert sorted(r.order_id for r in lake.read("bronze.events").collect()) == ["O1", "O3"]


def test_file_that_disappears_mid_run_is_not_recorded_and_retried(spark, setup, monkeypatch):
    config, lake, landing = setup
    keep = write(landing / "keep.csv", HEADER + "O1,2026-10-30T10:00:00Z,a@example.com,,1,5,EUR\n")
    gone = write(landing / "gone.csv", HEADER + "O2,2026-10-30T10:00:00Z,b@example.com,,1,5,EUR\n")
    real = stage.discover

    def listing_then_delete(*args, **kwargs):
        files = real(*args, **kwargs)
        gone.unlink()  # deleted after listing, before reading
        return files

    monkeypatch.setattr(stage, "discover", listing_then_delete)
    s = stage.run(spark, config, lake, AS_OF).metrics["sources"]["orders"]
    assert s["files_missing"] == 1 and s["files_ingested"] == 1 and s["reconciled"]
    assert [r.path.endswith("keep.csv") for r in lake.read("bronze.ingested_files").collect()] == [True]
    assert keep.exists()


def test_fail_expectation_stops_before_writing(spark, setup):
    config, lake, landing = setup
    src = config.sources[0].model_copy(update={"expectations": [
        *config.sources[0].expectations,
        type(config.sources[0].expectations[0])(name="no_big_orders", check="sql", expr="quantity < 100", action="fail")]})
    config = config.model_copy(update={"sources": [src]})
    write(landing / "a.csv", HEADER + "O1,2026-10-30T10:00:00Z,a@example.com,,500,5,EUR\n")
    with pytest.raises(stage.ExpectationFailed, match="no_big_orders: 1 record"):
        stage.run(spark, config, lake, AS_OF)
    assert not lake.exists("bronze.events")


def test_stage_caches_a_batch_once_deserialized(spark, setup, monkeypatch):
    # PySpark's StorageLevel.MEMORY_AND_DISK is the serialized level: every cached batch is serialized when the
    # cache is built and deserialized on each scan of it (measured alone: a cache build 7.5 -> 5.1 s of CPU).
    # Only the checked rows are cached (they carry the raw key columns for the key stats), and released after.
    config, lake, landing = setup
    write(landing / "a.csv", HEADER + "O1,2026-10-30T10:00:00Z,a@example.com,,1,5,EUR\n")
    levels = []
    frames = type(spark.range(1))  # the session's DataFrame class (PySpark 4's classic one overrides persist)
    real = frames.persist

    def spy(df, level=None, *args, **kwargs):
        levels.append(level)
        return real(df, level, *args, **kwargs)

    monkeypatch.setattr(frames, "persist", spy)

    def persisted():  # ids, not a count: Spark's cleaner may release earlier tests' checkpoints meanwhile
        return set(spark.sparkContext._jsc.getPersistentRDDs().keySet())

    before = persisted()
    s = stage.run(spark, config, lake, AS_OF).metrics["sources"]["orders"]
    assert s["accepted"] == 1 and s["reconciled"]
    assert len(levels) == 1 and levels[0] is not None and levels[0].deserialized, levels
    assert persisted() <= before  # nothing the run cached is left cached
