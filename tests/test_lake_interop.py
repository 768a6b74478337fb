"""The two backends on one table: each reads and appends to what the other wrote, their idempotency tokens are one
log's tokens, and they write concurrently without losing a row."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time

import pytest
from deltalake import DeltaTable
from pyspark.testing import assertDataFrameEqual

from cdp_spark.lake import SchemaMismatchError, Txn
from cdp_spark.lake.delta_spark import DeltaSparkLake
from cdp_spark.lake.embedded import EmbeddedLake
from tests.lake_fixtures import PROFILES, REGISTRY, events_df

pytestmark = [pytest.mark.delta_spark, pytest.mark.slow, pytest.mark.usefixtures("requires_delta_jvm")]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
        assert embedded.table_schema(name) == delta.table_schema(name)
        assert embedded.info(name).partition_by == delta.info(name).partition_by
        assert ([h["cdp.operation"] for h in embedded.history(name) if "cdp.operation" in h]
                == [h["cdp.operation"] for h in delta.history(name) if "cdp.operation" in h])


def test_each_backend_appends_to_and_reads_what_the_other_wrote(spark, tmp_path):
    root = str(tmp_path / "lake")
    embedded, delta = EmbeddedLake(spark, root, REGISTRY), DeltaSparkLake(spark, root, REGISTRY)
    embedded.append("test.events", events_df(spark, 5, D1, "e"), txn=Txn("ingest", 1))
    delta.append("test.events", events_df(spark, 4, D2, "d"), txn=Txn("ingest", 2))
    # One log, one set of tokens: a replay through either backend is a no-op.
    assert delta.append("test.events", events_df(spark, 5, D1, "e"), txn=Txn("ingest", 1)).skipped
    assert embedded.append("test.events", events_df(spark, 4, D2, "d"), txn=Txn("ingest", 2)).skipped
    embedded.merge("test.profiles", spark.createDataFrame([("p1", "Ann", 1)], PROFILES.schema))
    delta.merge("test.profiles", spark.createDataFrame([("p1", "Ann", 2), ("p2", "Bo", 3)], PROFILES.schema),
                txn=Txn("profiles", 1))
    assert embedded.merge("test.profiles", spark.createDataFrame([("p9", "X", 9)], PROFILES.schema),
                          txn=Txn("profiles", 1)).skipped
    delta.delete("test.events", "event_id = 'e0'")
    embedded.append("test.events", events_df(spark, 2, D2, "x"))
    expected = (events_df(spark, 5, D1, "e").where("event_id != 'e0'")
                .unionByName(events_df(spark, 4, D2, "d")).unionByName(events_df(spark, 2, D2, "x")))
    for lake in (embedded, delta):
        assertDataFrameEqual(lake.read("test.events"), expected)
        assert sorted(tuple(r) for r in lake.read("test.profiles").collect()) == [("p1", "Ann", 2), ("p2", "Bo", 3)]
    independent = DeltaTable(embedded.path("test.events")).to_pyarrow_table(columns=["event_id"])
    assert sorted(independent.column("event_id").to_pylist()) == sorted(r.event_id for r in expected.collect())


def test_delta_spark_and_an_embedded_process_append_at_once_and_lose_nothing(spark, tmp_path):
    root = str(tmp_path / "lake")
    delta = DeltaSparkLake(spark, root, REGISTRY)
    delta.create_if_missing("test.events")
    start = str(tmp_path / "go")
    env = {**os.environ, "PYTHONPATH": ROOT}
    with open(tmp_path / "worker.log", "w+") as log:
        worker = subprocess.Popen([sys.executable, "-m", "tests.lake_worker", root, "b", "4", "25", start], cwd=ROOT,
                                  env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        frames = [events_df(spark, 25, D1, f"a{b}-") for b in range(4)]
        open(start + ".a", "w").close()
        deadline = time.monotonic() + 300
        while not os.path.exists(start + ".b") and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        for frame in frames:
            delta.append("test.events", frame)
        worker.wait(timeout=300)
        log.seek(0)
        assert worker.returncode == 0, log.read()[-2000:]
    table = DeltaTable(delta.path("test.events"))
    ids = table.to_pyarrow_table(columns=["event_id"]).column("event_id").to_pylist()
    assert len(ids) == 200 and len(set(ids)) == 200
    assert sorted(h["version"] for h in table.history()) == list(range(9))  # the create and eight appends


def test_delta_spark_schema_errors_match_the_embedded_ones(spark, tmp_path):
    delta = DeltaSparkLake(spark, str(tmp_path / "b"), REGISTRY)
    with pytest.raises(SchemaMismatchError, match="missing columns: amount"):
        delta.append("test.events", events_df(spark, 2, D1).drop("amount"))
