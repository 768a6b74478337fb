"""RFM measures, scores and segments, checked against pandas references of the documented rules."""
from __future__ import annotations

import itertools
import math
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType, TimestampType

from cdp_spark.ml.rfm import (
    DEFAULT_SEGMENTS,
    SegmentRule,
    rfm_cut_points,
    rfm_measures,
    rfm_scores,
    rfm_segments,
    segment_for,
)

UTC = timezone.utc
PURCHASES = StructType([
    StructField("profile_id", StringType()),
    StructField("event_time", TimestampType()),
    StructField("revenue", DoubleType()),
])
MEASURES = StructType([
    StructField("profile_id", StringType()),
    StructField("recency_days", LongType()),
    StructField("frequency", LongType()),
    StructField("monetary", DoubleType()),
])


def reference_score(values: pd.Series, bins: int = 5) -> pd.Series:
    """The documented rank form: 1 + min(bins-1, floor(bins * L / n)), L = #strictly smaller values."""
    n = len(values)
    smaller = values.rank(method="min").astype(int) - 1
    return smaller.map(lambda L: 1 + min(bins - 1, math.floor(bins * L / n)))


def skewed_measures(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "profile_id": [f"c{i}" for i in range(n)],
        "recency_days": rng.integers(0, 120, n) * rng.integers(1, 4, n),   # many ties, long tail
        "frequency": rng.geometric(0.7, n),                              # ~70% bought once
        "monetary": np.round(rng.lognormal(3.5, 1.0, n), 0),             # ties after rounding
    })


def scores_pdf(spark, measures: pd.DataFrame, **kwargs) -> pd.DataFrame:
    df = spark.createDataFrame(measures, MEASURES)
    return rfm_scores(df, **kwargs).toPandas().sort_values("profile_id").reset_index(drop=True)


def test_scores_match_pandas_reference_on_skewed_data(spark):
    measures = skewed_measures(3000, seed=7)
    assert (measures["frequency"] == 1).mean() > 0.6
    got = scores_pdf(spark, measures, bins=5, relative_error=0.0)
    ref = measures.sort_values("profile_id").reset_index(drop=True)
    assert got["rfm_f"].tolist() == reference_score(ref["frequency"]).tolist()
    assert got["rfm_m"].tolist() == reference_score(ref["monetary"]).tolist()
    assert got["rfm_r"].tolist() == (6 - reference_score(ref["recency_days"])).tolist()
    # The frequency mass at 1 collapses the lower cut points; scores 2 and 3 are simply unused.
    assert set(got.loc[ref["frequency"] == 1, "rfm_f"]) == {1}
    assert set(got["rfm_f"]) <= {1, 4, 5}


@pytest.mark.parametrize("bins", [3, 4, 10])
def test_other_bin_counts_match_reference(spark, bins):
    measures = skewed_measures(400, seed=bins)
    got = scores_pdf(spark, measures, bins=bins, relative_error=0.0)
    ref = measures.sort_values("profile_id").reset_index(drop=True)
    assert got["rfm_m"].tolist() == reference_score(ref["monetary"], bins).tolist()
    assert got["rfm_r"].tolist() == (bins + 1 - reference_score(ref["recency_days"], bins)).tolist()
    assert got[["rfm_r", "rfm_f", "rfm_m"]].stack().between(1, bins).all()


def test_ties_never_straddle_bins_with_approximate_cut_points(spark):
    measures = skewed_measures(3000, seed=11)
    got = scores_pdf(spark, measures, bins=5, relative_error=0.01)
    for measure, score in (("recency_days", "rfm_r"), ("frequency", "rfm_f"), ("monetary", "rfm_m")):
        assert (got.groupby(measure)[score].nunique() == 1).all(), measure
        # Scores are monotone in the value: increasing for F and M, decreasing for recency days.
        ordered = got.sort_values(measure)[score].to_numpy()
        steps = np.diff(ordered)
        assert (steps <= 0).all() if score == "rfm_r" else (steps >= 0).all()


def test_all_equal_values_collapse_to_one_bin(spark):
    measures = pd.DataFrame({"profile_id": ["a", "b", "c", "d"], "recency_days": [3, 3, 3, 3],
                             "frequency": [1, 1, 1, 1], "monetary": [10.0, 10.0, 10.0, 10.0]})
    got = scores_pdf(spark, measures, relative_error=0.0)
    assert got["rfm_f"].tolist() == [1, 1, 1, 1]
    assert got["rfm_m"].tolist() == [1, 1, 1, 1]
    assert got["rfm_r"].tolist() == [5, 5, 5, 5]


def test_recency_is_inverted_and_cut_points_are_reusable(spark):
    measures = pd.DataFrame({"profile_id": [f"p{i}" for i in range(10)], "recency_days": list(range(0, 100, 10)),
                             "frequency": list(range(1, 11)), "monetary": [float(v) for v in range(10)]})
    df = spark.createDataFrame(measures, MEASURES)
    cuts = rfm_cut_points(df, bins=5, relative_error=0.0)
    assert cuts["recency_days"] == [10.0, 30.0, 50.0, 70.0]
    got = rfm_scores(df, cut_points=cuts).toPandas().sort_values("recency_days")
    assert got["rfm_r"].tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]   # most recent = 5
    assert got["rfm_f"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    with pytest.raises(ValueError):
        rfm_scores(df, bins=4, cut_points=cuts)


def test_measures_match_pandas_reference(spark):
    rng = np.random.default_rng(3)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = [(f"c{rng.integers(0, 25)}", start + timedelta(minutes=int(rng.integers(0, 60 * 24 * 60))),
             float(rng.integers(1, 200))) for _ in range(400)]
    # Edge rows: the last second of the as_of day, the next day's first second, and a null revenue.
    rows += [("edge", datetime(2024, 2, 15, 23, 59, 59, tzinfo=UTC), 5.0),
             ("edge", datetime(2024, 2, 16, 0, 0, 0, tzinfo=UTC), 7.0),
             ("nullrev", datetime(2024, 1, 5, 12, tzinfo=UTC), None),
             ("nullrev", datetime(2024, 1, 6, 12, tzinfo=UTC), 8.0)]
    purchases = spark.createDataFrame(rows, PURCHASES)
    pdf = pd.DataFrame(rows, columns=["profile_id", "event_time", "revenue"])
    pdf["revenue"] = pdf["revenue"].fillna(0.0)

    for as_of, cutoff_ok in ((date(2024, 2, 15), lambda t: t < pd.Timestamp("2024-02-16", tz="UTC")),
                             (datetime(2024, 2, 10, 6, 30), lambda t: t <= pd.Timestamp("2024-02-10 06:30", tz="UTC"))):
        kept = pdf[cutoff_ok(pdf["event_time"])]
        as_of_day = pd.Timestamp(as_of.date() if isinstance(as_of, datetime) else as_of, tz="UTC")
        for monetary, agg in (("total", "sum"), ("average", "mean")):
            ref = kept.groupby("profile_id").agg(last=("event_time", "max"), frequency=("revenue", "size"),
                                                 monetary=("revenue", agg))
            ref["recency_days"] = (as_of_day - ref["last"].dt.floor("D")).dt.days
            got = rfm_measures(purchases, as_of, monetary=monetary).toPandas().set_index("profile_id")
            assert sorted(got.index) == sorted(ref.index)
            got = got.loc[ref.index]
            assert got["recency_days"].tolist() == ref["recency_days"].tolist()
            assert got["frequency"].tolist() == ref["frequency"].tolist()
            np.testing.assert_allclose(got["monetary"], ref["monetary"], rtol=1e-12)
    got = rfm_measures(purchases, date(2024, 2, 15)).toPandas().set_index("profile_id")
    assert got.loc["edge", "frequency"] == 1 and got.loc["edge", "recency_days"] == 0
    assert got.loc["nullrev", "monetary"] == 8.0


# ---------------------------------------------------------------------------------------- segments

DEFAULT_NAMES = {"Champions", "Loyal", "Potential Loyalist", "New", "Promising", "Need Attention",
                 "About to Sleep", "At Risk", "Can't Lose", "Hibernating", "Lost"}


def test_default_grid_covers_every_cell_and_reaches_every_segment():
    assert {rule.name for rule in DEFAULT_SEGMENTS} == DEFAULT_NAMES
    seen = set()
    for r, f, m in itertools.product(range(1, 6), repeat=3):
        name = segment_for(r, f, m)
        assert name is not None, (r, f)
        seen.add(name)
    assert seen == DEFAULT_NAMES   # no rule is shadowed by an earlier one
    expected = {(5, 5): "Champions", (5, 4): "Champions", (4, 5): "Loyal", (3, 4): "Loyal",
                (5, 2): "Potential Loyalist", (5, 1): "New", (4, 1): "Promising", (3, 3): "Need Attention",
                (3, 1): "About to Sleep", (2, 3): "At Risk", (1, 5): "Can't Lose", (2, 2): "Hibernating",
                (1, 2): "Hibernating", (1, 1): "Lost"}
    for (r, f), name in expected.items():
        assert segment_for(r, f, 3) == name


def test_spark_segments_equal_python_rules_on_all_cells(spark):
    cells = list(itertools.product(range(1, 6), repeat=3))
    scores = spark.createDataFrame(cells, "rfm_r int, rfm_f int, rfm_m int")
    custom = [SegmentRule("Whales", fm=(4.5, 5)), SegmentRule("Fresh", r=(5, 5)),
              SegmentRule.from_mapping({"name": "Fresh too", "r": [4, 5], "m": [1, 2]})]
    for rules, default in ((DEFAULT_SEGMENTS, None), (custom, "Other")):
        got = {(row.rfm_r, row.rfm_f, row.rfm_m): row.rfm_segment
               for row in rfm_segments(scores, rules, default=default).collect()}
        assert got == {cell: segment_for(*cell, rules, default=default) for cell in cells}
    # First match wins: r=5, m=1 satisfies both Fresh rules and takes the first.
    assert segment_for(5, 1, 1, custom, "Other") == "Fresh"
    assert segment_for(4, 1, 1, custom, "Other") == "Fresh too"
    assert segment_for(1, 5, 4, custom, "Other") == "Whales"
    assert segment_for(1, 1, 1, custom, "Other") == "Other"


def test_segment_rule_validation():
    with pytest.raises(ValueError):
        SegmentRule("bad", r=(4, 2))
    with pytest.raises(ValueError):
        SegmentRule.from_mapping({"name": "x", "recency": [1, 2]})


def test_end_to_end_segments_from_purchases(spark):
    day = lambda d: datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=d)  # noqa: E731
    rows = [("recent_many", day(d), 50.0) for d in (80, 85, 88, 89)]
    rows += [("old_once", day(0), 5.0), ("recent_once", day(89), 10.0)]
    rows += [(f"mid{i}", day(40 + i), 20.0) for i in range(6)]
    purchases = spark.createDataFrame(rows, PURCHASES)
    out = rfm_segments(rfm_scores(rfm_measures(purchases, day(89).date()), relative_error=0.0))
    got = {row.profile_id: row for row in out.collect()}
    assert (got["recent_many"].rfm_r, got["recent_many"].rfm_f) == (5, 5)
    assert got["recent_many"].rfm_segment == "Champions"
    assert got["recent_once"].rfm_segment == "New"
    assert got["old_once"].rfm_r == 1 and got["old_once"].rfm_segment == "Lost"
