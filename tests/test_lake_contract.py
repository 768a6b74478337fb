"""The lake port's contract, run on both backends: the embedded one (Spark writes Parquet, delta-rs commits) and
delta-spark (Delta's JVM writer). Every write is also read back through delta-rs' own reader, independently of Spark."""
from __future__ import annotations

import datetime as dt
import json
import os
import time

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from cdp_spark.lake import LakeError, SchemaMismatchError, Txn, UnknownTableError
from tests.lake_fixtures import PROFILES, REGISTRY, event_rows, events_df

D1, D2, D3 = dt.date(2026, 10, 1), dt.date(2026, 10, 2), dt.date(2026, 10, 3)


@pytest.fixture
def lake(make_lake, tmp_path):
    return make_lake(tmp_path / "lake", REGISTRY)


def independent_rows(lake, name, **kwargs) -> list[dict]:
    """Rows as delta-rs (not Spark) reads the table: the interchangeability check."""
    table = DeltaTable(lake.path(name), **kwargs).to_pyarrow_table()
    return sorted(pa.table(table).to_pylist(), key=lambda r: tuple(str(v) for v in r.values()))


def spark_rows(df) -> list[dict]:
    return sorted((r.asDict() for r in df.collect()), key=lambda r: tuple(str(v) for v in r.values()))

def test_create_if_missing_records_schema_partitioning_and_pii(lake):
    assert lake.create_if_missing("test.events") is True
    assert lake.create_if_missing("test.events") is False
    table = DeltaTable(lake.path("test.events"))
    assert table.metadata().partition_columns == ["event_date"]
    assert table.metadata().configuration["delta.enableChangeDataFeed"] == "true"
    fields = {f["name"]: f for f in json.loads(table.schema().to_json())["fields"]}
    assert fields["email"]["metadata"]["pii"] == "pii"
    assert "pii" not in fields["amount"]["metadata"]
    assert lake.read("test.events").count() == 0


def test_unknown_table_names_the_registered_ones(lake):
    with pytest.raises(UnknownTableError, match="test.events"):
        lake.path("bronze.nope")


def test_append_roundtrip_matches_spark_input_and_independent_reader(spark, lake):
    df = events_df(spark, 50, D1).unionByName(events_df(spark, 30, D2, "f"))
    result = lake.append("test.events", df)
    assert result.rows == 80 and not result.skipped
    assertDataFrameEqual(lake.read("test.events"), df)
    expected = sorted((dict(zip(df.columns, r)) for r in event_rows(50, D1) + event_rows(30, D2, "f")),
                      key=lambda r: tuple(str(v) for v in r.values()))
    assert independent_rows(lake, "test.events") == expected
    # Files sit in Hive-style partition folders, and no staging folders are left behind.
    entries = sorted(e for e in os.listdir(lake.path("test.events")))
    assert entries == ["_delta_log", "event_date=2026-10-01", "event_date=2026-10-02"]
    assert lake.info("test.events").rows == 80


def test_partition_filter_prunes_on_read(spark, lake):
    lake.append("test.events", events_df(spark, 10, D1).unionByName(events_df(spark, 5, D2, "f")))
    filtered = lake.read("test.events").where(F.col("event_date") == D2)
    assert filtered.count() == 5
    plan = filtered._jdf.queryExecution().executedPlan().toString()
    assert "PartitionFilters: [isnotnull(event_date" in plan


def test_idempotent_append_with_same_txn_is_a_noop(spark, lake):
    df = events_df(spark, 10, D1)
    first = lake.append("test.events", df, txn=Txn("ingest-web", 7))
    again = lake.append("test.events", df, txn=Txn("ingest-web", 7))
    older = lake.append("test.events", df, txn=Txn("ingest-web", 6))
    assert not first.skipped and again.skipped and older.skipped
    assert lake.read("test.events").count() == 10
    assert DeltaTable(lake.path("test.events")).transaction_version("ingest-web") == 7
    newer = lake.append("test.events", events_df(spark, 3, D1, "n"), txn=Txn("ingest-web", 8))
    assert not newer.skipped and lake.read("test.events").count() == 13


def test_append_rows_commits_once_per_txn_and_reads_back_like_a_spark_append(spark, lake, make_lake):
    rows = event_rows(4, D1)
    lake.append_rows("test.events", rows, txn=Txn("ledger", 1))
    lake.append_rows("test.events", rows, txn=Txn("ledger", 1))  # a replay: already there
    assert lake.committed("test.events", Txn("ledger", 1)) and lake.read("test.events").count() == 4
    via_spark = make_lake(lake.root + "-spark", REGISTRY)
    via_spark.append("test.events", events_df(spark, 4, D1))
    assert independent_rows(lake, "test.events") == independent_rows(via_spark, "test.events")


def test_empty_append_still_records_the_transaction(spark, lake):
    result = lake.append("test.events", events_df(spark, 0, D1), txn=Txn("stream", 0))
    assert not result.skipped and result.rows == 0
    assert lake.committed("test.events", Txn("stream", 0))


def test_overwrite_whole_table(spark, lake):
    lake.append("test.events", events_df(spark, 10, D1))
    lake.overwrite("test.events", events_df(spark, 4, D2, "x"))
    assertDataFrameEqual(lake.read("test.events"), events_df(spark, 4, D2, "x"))


def test_overwrite_by_partition_predicate_replaces_only_that_partition(spark, lake):
    lake.append("test.events", events_df(spark, 10, D1).unionByName(events_df(spark, 10, D2, "f")))
    lake.overwrite("test.events", events_df(spark, 3, D2, "new"), where="event_date = DATE'2026-10-02'")
    assertDataFrameEqual(
        lake.read("test.events"), events_df(spark, 10, D1).unionByName(events_df(spark, 3, D2, "new"))
    )
    before = lake.version("test.events")
    with pytest.raises(LakeError, match="outside that predicate"):
        lake.overwrite("test.events", events_df(spark, 3, D3, "bad"), where="event_date = DATE'2026-10-02'")
    assert lake.version("test.events") == before
    assert lake.read("test.events").count() == 13


def test_merge_upserts_and_deletes_unmatched(spark, lake):
    rows = [("p1", "Ann", 1), ("p2", "Bob", 2), ("p3", "Cy", 3)]
    lake.append("test.profiles", spark.createDataFrame(rows, PROFILES.schema))
    changes = spark.createDataFrame([("p2", "Bob", 20), ("p4", "Di", 4)], PROFILES.schema)
    result = lake.merge("test.profiles", changes)
    assert result.metrics["num_target_rows_updated"] == 1 and result.metrics["num_target_rows_inserted"] == 1
    expected = [("p1", "Ann", 1), ("p2", "Bob", 20), ("p3", "Cy", 3), ("p4", "Di", 4)]
    assertDataFrameEqual(lake.read("test.profiles"), spark.createDataFrame(expected, PROFILES.schema))
    # Unchanged rows are not rewritten: a merge that changes nothing commits nothing.
    before = lake.version("test.profiles")
    noop = lake.merge("test.profiles", spark.createDataFrame([("p1", "Ann", 1)], PROFILES.schema))
    assert noop.version is None and noop.metrics["num_target_rows_updated"] == 0
    assert lake.version("test.profiles") == before
    lake.merge("test.profiles", spark.createDataFrame(expected[:2], PROFILES.schema), delete_unmatched=True)
    assert sorted(r.profile_id for r in lake.read("test.profiles").collect()) == ["p1", "p2"]


def test_merge_deletes_unmatched_rows_only_where_told(spark, lake):
    rows = [("p1", "Ann", 1), ("p2", "Bob", 2), ("x1", "Xi", 3), ("x2", "Xu", 4)]
    lake.append("test.profiles", spark.createDataFrame(rows, PROFILES.schema))
    source = spark.createDataFrame([("p1", "Ann", 10), ("x1", "Xi", 3)], PROFILES.schema)
    result = lake.merge("test.profiles", source, delete_unmatched=True, delete_where="t.profile_id LIKE 'p%'")
    assert (result.metrics["num_target_rows_updated"], result.metrics["num_target_rows_deleted"]) == (1, 1)
    assert sorted(tuple(r) for r in lake.read("test.profiles").collect()) == [
        ("p1", "Ann", 10), ("x1", "Xi", 3), ("x2", "Xu", 4)]


def test_merge_is_idempotent_with_txn(spark, lake):
    source = spark.createDataFrame([("p1", "Ann", 1)], PROFILES.schema)
    assert not lake.merge("test.profiles", source, txn=Txn("profiles", 1)).skipped
    assert lake.merge("test.profiles", source, txn=Txn("profiles", 1)).skipped
    assert len([h for h in lake.history("test.profiles") if h["operation"] == "MERGE"]) == 1


def test_delete_by_predicate(spark, lake):
    lake.append("test.events", events_df(spark, 20, D1))
    result = lake.delete("test.events", "amount >= 15")
    assert result.rows == 10
    assert lake.read("test.events").where("amount >= 15").count() == 0
    assert len(independent_rows(lake, "test.events")) == 10


def test_time_travel_by_version_and_timestamp(spark, lake):
    lake.append("test.events", events_df(spark, 5, D1))
    v1 = lake.version("test.events")
    time.sleep(0.05)
    as_of = dt.datetime.now(dt.timezone.utc)
    time.sleep(0.05)
    lake.append("test.events", events_df(spark, 7, D2, "f"))
    assert lake.read("test.events", version=v1).count() == 5
    assert lake.read("test.events", timestamp=as_of).count() == 5
    assert lake.read("test.events").count() == 12


def test_history_and_change_data_feed(spark, lake):
    lake.append("test.profiles", spark.createDataFrame([("p1", "Ann", 1), ("p2", "Bob", 2)], PROFILES.schema))
    start = lake.version("test.profiles")
    lake.merge("test.profiles", spark.createDataFrame([("p1", "Ann", 10)], PROFILES.schema))
    lake.delete("test.profiles", "profile_id = 'p2'")
    ops = [h["cdp.operation"] for h in lake.history("test.profiles") if "cdp.operation" in h]
    assert ops[:3] == ["delete", "merge", "append"]
    feed = {(r.profile_id, r._change_type, r.score) for r in lake.changes("test.profiles", start + 1).collect()}
    assert feed == {
        ("p1", "update_preimage", 1),
        ("p1", "update_postimage", 10),
        ("p2", "delete", 2),
    }


def test_optimize_compacts_and_vacuum_removes_unreferenced_files(spark, lake):
    for i in range(4):
        lake.append("test.events", events_df(spark, 5, D1, f"b{i}"))
    data_before = spark_rows(lake.read("test.events"))
    files_before = lake.info("test.events").files
    metrics = lake.optimize("test.events")
    assert metrics["numFilesRemoved"] >= 2 and lake.info("test.events").files < files_before
    # An orphan from a killed write (a staging folder never committed) is cleaned too.
    orphan = os.path.join(lake.path("test.events"), "stage-deadbeef")
    os.makedirs(orphan)
    open(os.path.join(orphan, "part-0.parquet"), "wb").write(b"x")
    removed = lake.vacuum("test.events", retention_hours=0)
    assert any("stage-deadbeef" in f for f in removed) and len(removed) >= files_before
    assert spark_rows(lake.read("test.events")) == data_before
    lake.checkpoint("test.events")
    assert any(n.endswith(".checkpoint.parquet") for n in os.listdir(os.path.join(lake.path("test.events"), "_delta_log")))


def test_schema_mismatch_lists_the_differing_columns(spark, lake):
    lake.create_if_missing("test.events")
    bad = events_df(spark, 2, D1).drop("amount").withColumn("event_id", F.lit(1)).withColumn("extra", F.lit("x"))
    with pytest.raises(SchemaMismatchError) as err:
        lake.append("test.events", bad)
    message = str(err.value)
    assert "missing columns: amount (double)" in message
    assert "unexpected columns: extra (string)" in message
    assert "event_id (table string, data int)" in message


def test_schema_evolution_is_opt_in_and_only_adds_nullable_columns(spark, lake):
    lake.append("test.events", events_df(spark, 2, D1))
    wider = events_df(spark, 2, D2, "w").withColumn("channel", F.lit("web"))
    with pytest.raises(SchemaMismatchError, match="evolution is off"):
        lake.append("test.events", wider)
    lake.append("test.events", wider, evolve=True)
    table = lake.read("test.events")
    assert table.columns[-1] == "channel"
    assert {(r.event_date, r.channel) for r in table.select("event_date", "channel").distinct().collect()} == {
        (D1, None),
        (D2, "web"),
    }


def test_partition_values_with_special_characters_roundtrip(spark, tmp_path, make_lake):
    from pyspark.sql import types as T

    from cdp_spark.lake import Column, TableRegistry, TableSpec

    spec = TableSpec("test.tagged", "string partitions", [Column("id", T.LongType(), "key"),
                                                           Column("tag", T.StringType(), "partition")],
                     keys=("id",), partition_by=("tag",))
    lake = make_lake(tmp_path / "lake", TableRegistry([spec]))
    rows = [(1, "a b"), (2, "x:y"), (3, "100%"), (4, None), (5, "é/ü"), (6, "__HIVE")]
    lake.append("test.tagged", spark.createDataFrame(rows, spec.schema))
    assert sorted(tuple(r) for r in lake.read("test.tagged").collect()) == sorted(rows, key=lambda r: r[0])
    assert sorted((r["id"], r["tag"]) for r in independent_rows(lake, "test.tagged")) == sorted(rows)
    lake.delete("test.tagged", "id = 2")
    assert sorted(r.id for r in lake.read("test.tagged").where("tag IS NULL OR tag = '100%'").collect()) == [3, 4]


def test_table_properties_are_set_in_one_commit(spark, lake):
    lake.append("test.events", events_df(spark, 2, D1))
    lake.set_table_properties("test.events", {"delta.logRetentionDuration": "interval 3 days"})
    assert DeltaTable(lake.path("test.events")).metadata().configuration["delta.logRetentionDuration"] == \
        "interval 3 days"
