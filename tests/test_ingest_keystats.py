"""Raw key statistics: exact counts and sketches over the whole batch, types from a sample on large batches."""
from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from cdp_spark.ingest import keystats
from cdp_spark.ingest.sources import Source


@pytest.fixture(scope="module")
def raw(spark):
    rows = [(f"f{i % 3}", i, str(i), f"{1.5 * i}", "2026-11-01T10:00:00Z" if i % 2 else None, f"v{i % 40}", i % 7 == 0,
             "42" if i == 1000 else None) for i in range(1, 2001)]
    return spark.createDataFrame(rows, "_file string, _line long, id string, price string, ts string, tag string, "
                                       "flag boolean, rare string")


def _stats(raw, rows):
    source = Source(name="t", format="json", path="/x", glob="*.json", mapping={})
    out = keystats.key_stats(raw, source, F.lit(dt.datetime(2026, 11, 1)).cast("timestamp"), rows)
    return {r["key"]: r for r in out.collect()}


@pytest.mark.parametrize("sampled", [False, True])
def test_counts_are_exact_and_types_right_with_or_without_sampling(raw, sampled, monkeypatch):
    if sampled:  # a 2,000-row batch above a 300-row threshold: types come from a ~15% sample
        monkeypatch.setattr(keystats, "TYPE_SAMPLE_ROWS", 300)
    stats = _stats(raw, 2000)
    assert {k: s["times_seen"] for k, s in stats.items()} == {"id": 2000, "price": 2000, "ts": 1000, "tag": 2000,
                                                              "flag": 2000, "rare": 1}
    types = {k: s["predicted_type"] for k, s in stats.items()}
    assert {k: t for k, t in types.items() if k != "rare"} == {
        "id": "long", "price": "double", "ts": "timestamp", "tag": "string", "flag": "boolean"}
    # one value in 2,000: seen whole it is a long; a sample that misses it must not call it boolean
    assert types["rare"] == "long" if not sampled else types["rare"] in ("long", "string")
    assert stats["tag"]["approx_distinct"] == 40  # the sketch sees every row, sampled or not
    assert 1900 <= stats["id"]["approx_distinct"] <= 2100
