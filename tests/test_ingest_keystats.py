"""Raw key statistics: exact counts and sketches over the whole batch, types from the first rows of each partition."""
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


def _stats(raw):
    source = Source(name="t", format="json", path="/x", glob="*.json", mapping={})
    out = keystats.key_stats(raw, source, F.lit(dt.datetime(2026, 11, 1)).cast("timestamp"))
    return {r["key"]: r for r in out.collect()}


@pytest.mark.parametrize("sampled", [False, True])
def test_counts_are_exact_and_types_right_with_or_without_sampling(raw, sampled, monkeypatch):
    assert raw.rdd.getNumPartitions() > 1
    if sampled:  # types from the first 75 rows of each partition; counts and sketches still see every row
        monkeypatch.setattr(keystats, "TYPE_SAMPLE_PER_PARTITION", 75)
    stats = _stats(raw)
    assert {k: s["times_seen"] for k, s in stats.items()} == {"id": 2000, "price": 2000, "ts": 1000, "tag": 2000,
                                                              "flag": 2000, "rare": 1}
    types = {k: s["predicted_type"] for k, s in stats.items()}
    assert {k: t for k, t in types.items() if k != "rare"} == {
        "id": "long", "price": "double", "ts": "timestamp", "tag": "string", "flag": "boolean"}
    # one value in 2,000 (row 1,000: past the first 75 of its partition): seen whole it is a long; the sample has no
    # value of it, so no evidence of a narrower type than string (not the vacuous boolean)
    assert types["rare"] == ("string" if sampled else "long")
    assert stats["tag"]["approx_distinct"] == 40  # the sketch sees every row, sampled or not
    assert 1900 <= stats["id"]["approx_distinct"] <= 2100


def _seen(spark, seen_at, rows):
    source = Source(name="web", format="json", path="/x", glob="*.json", mapping={"customer_id": "userId"})
    raw = spark.createDataFrame(rows, "_file string, userId string, colour string")
    return keystats.key_stats(raw, source, F.lit(seen_at).cast("timestamp"))


def _raw_keys(lake):
    return {r.key: (r.times_seen, r.approx_distinct, r.first_seen, r.last_seen)
            for r in lake.read("bronze.raw_keys").collect()}


def test_pending_key_stats_fold_once_across_replays_and_a_crash_after_the_merge(spark, tmp_path, monkeypatch):
    from cdp_spark.lake import default_registry
    from cdp_spark.lake.embedded import EmbeddedLake

    lake = EmbeddedLake(spark, str(tmp_path / "lake"), default_registry())
    pending = keystats.PendingKeyStats(spark, "web", str(tmp_path / "ck" / "key_stats"), "collect-keys.web.q1")
    day1, day2, day3 = (dt.datetime(2026, 11, d) for d in (1, 2, 3))
    assert pending.flush(lake) == 0 and not lake.exists("bronze.raw_keys")    # nothing pending: no table, no commit
    pending.put(0, _seen(spark, day1, [("f", "u1", "red"), ("f", "u2", None)]))
    pending.put(1, _seen(spark, day2, [("f", "u1", "blue")]))
    pending.put(1, _seen(spark, day2, [("f", "u1", "blue")]))                 # batch 1 replayed: replaced, not added
    assert pending.batch_ids() == [0, 1] and not lake.exists("bronze.raw_keys")  # pending until the fold
    assert pending.flush(lake) == 2 and pending.batch_ids() == []
    assert _raw_keys(lake) == {"userId": (3, 2, day1, day2), "colour": (2, 2, day1, day2)}

    # Batch 1 replayed after the fold (the crash came before Spark's checkpoint commit): it is not counted again.
    pending.put(1, _seen(spark, day2, [("f", "u1", "blue")]))
    assert pending.flush(lake) == 0 and pending.batch_ids() == []
    assert _raw_keys(lake)["userId"] == (3, 2, day1, day2)

    # A crash between the MERGE and the removal of the files: the next fold drops them, and folds the new batch.
    pending.put(2, _seen(spark, day3, [("f", "u3", None)]))
    real_fold = keystats.fold

    def merge_then_die(*args, **kwargs):
        real_fold(*args, **kwargs)
        raise OSError("killed after the merge")

    monkeypatch.setattr(keystats, "fold", merge_then_die)
    with pytest.raises(OSError):
        pending.flush(lake)
    assert _raw_keys(lake)["userId"] == (4, 3, day1, day3) and pending.batch_ids() == [2]
    monkeypatch.setattr(keystats, "fold", real_fold)
    pending.put(3, _seen(spark, day3, [("f", "u1", "green")]))
    assert pending.flush(lake) == 1 and pending.batch_ids() == []
    assert _raw_keys(lake) == {"userId": (5, 3, day1, day3), "colour": (3, 3, day1, day3)}
    # the file stage's own fold (another app id) adds to the same rows
    keystats.fold(lake, "web", _seen(spark, day3, [("f", "u9", None)]), keystats.Txn("ingest.web.b1", 1))
    assert _raw_keys(lake)["userId"] == (6, 4, day1, day3)
