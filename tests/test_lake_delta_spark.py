"""The delta-spark backend gives the same tables as the embedded one (runs where Delta's JVM classes exist)."""
from __future__ import annotations

import datetime as dt

import pytest
from pyspark.testing import assertDataFrameEqual

from cdp_spark.lake import SchemaMismatchError, Txn
from cdp_spark.lake.delta_spark import DeltaSparkLake
from cdp_spark.lake.embedded import EmbeddedLake
from tests.lake_fixtures import PROFILES, REGISTRY, events_df

pytestmark = [pytest.mark.delta_spark, pytest.mark.usefixtures("requires_delta_jvm")]
D1, D2 = dt.date(2026, 10, 1), dt.date(2026, 10, 2)


def apply_same_operations(spark, lake):
    lake.append("test.events", events_df(spark, 10, D1).unionByName(events_df(spark, 6, D2, "f")), txn=Txn("t", 1))
    lake.append("test.events", events_df(spark, 10, D1), txn=Txn("t", 1))  # duplicate token: no-op
    lake.overwrite("test.events", events_df(spark, 3, D2, "g"), where="event_date = DATE'2026-10-02'")
    lake.delete("test.events", "amount > 10")
    lake.append("test.profiles", spark.createDataFrame([("p1", "Ann", 1), ("p2", "Bob", 2)], PROFILES.schema))
    lake.merge("test.profiles", spark.createDataFrame([("p2", "Bob", 20), ("p3", "Cy", 3)], PROFILES.schema))


def test_both_backends_produce_the_same_tables(spark, tmp_path):
    embedded = EmbeddedLake(spark, str(tmp_path / "a"), REGISTRY)
    delta = DeltaSparkLake(spark, str(tmp_path / "b"), REGISTRY)
    for lake in (embedded, delta):
        apply_same_operations(spark, lake)
    for name in ("test.events", "test.profiles"):
        assertDataFrameEqual(embedded.read(name), delta.read(name))
        # Cross-read: delta-spark reads what delta-rs committed, and the reverse.
        assertDataFrameEqual(spark.read.format("delta").load(embedded.path(name)), embedded.read(name))
        assertDataFrameEqual(EmbeddedLake(spark, str(tmp_path / "b"), REGISTRY).read(name), delta.read(name))


def test_delta_spark_schema_errors_match_the_embedded_ones(spark, tmp_path):
    delta = DeltaSparkLake(spark, str(tmp_path / "b"), REGISTRY)
    with pytest.raises(SchemaMismatchError, match="missing columns: amount"):
        delta.append("test.events", events_df(spark, 2, D1).drop("amount"))


def test_table_properties_are_set_through_delta_spark(spark, tmp_path):
    from deltalake import DeltaTable

    delta = DeltaSparkLake(spark, str(tmp_path / "b"), REGISTRY)
    delta.append("test.events", events_df(spark, 2, D1))
    delta.set_table_properties("test.events", {"delta.logRetentionDuration": "interval 3 days"})
    assert DeltaTable(delta.path("test.events")).metadata().configuration["delta.logRetentionDuration"] == \
        "interval 3 days"
