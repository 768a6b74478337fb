"""What only the embedded backend does (Spark writes Parquet, delta-rs commits): reading files outside Hive-style
folders, and refusing tables it would read wrongly. The shared contract is in tests/test_lake_contract.py."""
from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from pyspark.testing import assertDataFrameEqual

from cdp_spark.lake import UnsupportedTableError
from cdp_spark.lake.embedded import EmbeddedLake
from tests.lake_fixtures import REGISTRY, events_df

D1, D2 = dt.date(2026, 10, 1), dt.date(2026, 10, 2)


@pytest.fixture
def lake(spark, tmp_path):
    return EmbeddedLake(spark, str(tmp_path / "lake"), REGISTRY)


def test_read_attaches_partition_values_when_files_are_not_in_hive_folders(spark, lake, monkeypatch):
    df = events_df(spark, 6, D1).unionByName(events_df(spark, 4, D2, "f"))
    lake.append("test.events", df)
    monkeypatch.setattr("cdp_spark.lake.embedded._hive_consistent", lambda *a: False)
    assertDataFrameEqual(lake.read("test.events"), df)


def test_table_with_column_mapping_is_refused(lake):
    lake.create_if_missing("test.profiles")
    log_dir = os.path.join(lake.path("test.profiles"), "_delta_log")
    with open(os.path.join(log_dir, "00000000000000000000.json")) as f:
        meta = next(json.loads(line)["metaData"] for line in f if "metaData" in line)
    # Hand-write a metadata commit that turns column mapping on, as Databricks would.
    meta["configuration"]["delta.columnMapping.mode"] = "name"
    with open(os.path.join(log_dir, "00000000000000000001.json"), "w") as f:
        f.write(json.dumps({"metaData": meta}) + "\n")
    with pytest.raises(UnsupportedTableError, match="column mapping"):
        lake.read("test.profiles")
