"""Point-in-time propensity features and training snapshots, checked against an independent pandas computation."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from cdp_spark.ml import propensity as P

UTC = dt.timezone.utc
AS_OF = dt.date(2026, 10, 31)


def _events() -> pd.DataFrame:
    """Three profiles over ~100 days: a regular buyer, a browser who abandons carts, a one-off early buyer."""
    rng = np.random.default_rng(3)
    rows = []
    start = dt.datetime(2026, 7, 20, 9, tzinfo=UTC)
    for i in range(400):
        profile = f"p{rng.integers(0, 3)}"
        when = start + dt.timedelta(hours=float(rng.uniform(0, 103 * 24)))
        kind = rng.choice(["view", "view", "view", "cart", "purchase", None])
        order = f"o{i // 2}" if kind == "purchase" else None  # two lines per order
        value = float(rng.integers(5, 50)) if kind == "purchase" else None
        rows.append((f"e{i}", profile, when, when.date(), kind, order, value, rng.choice(["books", "toys", "home"])))
    # Exactly at the cutoff (end of the as-of day) and later: must never be counted.
    cut = dt.datetime(2026, 11, 1, tzinfo=UTC)
    rows.append(("late0", "p0", cut, cut.date(), "purchase", "late-order", 999.0, "books"))
    rows.append(("late1", "p1", cut + dt.timedelta(days=2), (cut + dt.timedelta(days=2)).date(), "cart", None, None,
                 "toys"))
    return pd.DataFrame(rows, columns=["event_id", "profile_id", "event_time", "event_date", "event_type", "order_id",
                                       "revenue_reporting", "category"])


def _expected(pdf: pd.DataFrame, cutoff: dt.datetime) -> pd.DataFrame:
    """The features written out longhand in pandas, one profile at a time."""
    out = []
    for pid, g in pdf[pdf["event_time"] < cutoff].groupby("profile_id"):
        age = (cutoff - g["event_time"]).dt.total_seconds() / 86_400.0
        row = {"profile_id": pid}
        order = g["order_id"].fillna(g["event_id"])
        buy = g["event_type"] == "purchase"
        for w in P.WINDOWS:
            inw = age <= w
            row[f"events_{w}d"] = inw.sum()
            row[f"active_days_{w}d"] = g.loc[inw, "event_date"].nunique()
            row[f"views_{w}d"] = (inw & (g["event_type"] == "view")).sum()
            row[f"carts_{w}d"] = (inw & (g["event_type"] == "cart")).sum()
            row[f"purchases_{w}d"] = order[inw & buy].nunique()
        row["categories_30d"] = g.loc[age <= 30, "category"].nunique()
        row["days_since_first_event"] = age.max()

        def rec(mask: pd.Series) -> float:
            return min(age[mask].min(), P.RECENCY_CAP_DAYS) if mask.any() else P.RECENCY_CAP_DAYS

        row["days_since_last_event"] = rec(age >= 0)
        row["days_since_last_view"] = rec(g["event_type"] == "view")
        row["days_since_last_cart"] = rec(g["event_type"] == "cart")
        row["rfm_recency_days"] = rec(buy)
        row["rfm_frequency"] = order[buy].nunique()
        row["rfm_monetary"] = g.loc[buy, "revenue_reporting"].fillna(0).sum()
        out.append(row)
    return pd.DataFrame(out).set_index("profile_id").astype(float)


@pytest.fixture(scope="module")
def events(spark):
    pdf = _events()
    schema = ("event_id string, profile_id string, event_time timestamp, event_date date, event_type string, "
              "order_id string, revenue_reporting double, category string")
    return pdf, spark.createDataFrame(pdf.astype(object).where(pdf.notna(), None), schema).cache()


def test_snapshot_cutoffs_tile_the_recent_past():
    cuts = P.snapshot_cutoffs(AS_OF, 7, 3)
    assert cuts == [dt.datetime(2026, 10, 25, tzinfo=UTC), dt.datetime(2026, 10, 18, tzinfo=UTC),
                    dt.datetime(2026, 10, 11, tzinfo=UTC)]
    with pytest.raises(ValueError):
        P.snapshot_cutoffs(AS_OF, 7, 0)


def test_features_at_several_cutoffs_match_pandas_and_ignore_the_future(events):
    pdf, df = events
    cutoffs = [dt.datetime(2026, 11, 1, tzinfo=UTC), dt.datetime(2026, 10, 1, tzinfo=UTC),
               dt.datetime(2026, 8, 1, tzinfo=UTC)]
    got = P.features_at_cutoffs(df, cutoffs).toPandas()
    assert list(got.columns) == ["profile_id", "cutoff", *P.EVENT_FEATURES]
    for cutoff in cutoffs:
        part = got[got["cutoff"] == pd.Timestamp(cutoff).tz_localize(None)].set_index("profile_id")
        expected = _expected(pdf, cutoff)
        assert len(expected) > 0
        pd.testing.assert_frame_equal(part[P.EVENT_FEATURES].sort_index(), expected[P.EVENT_FEATURES].sort_index(),
                                      check_exact=False, rtol=1e-9)
    latest = got[got["cutoff"] == got["cutoff"].max()].set_index("profile_id")
    assert latest.loc["p0", "rfm_monetary"] < 999.0  # the order placed exactly at the cutoff is the future
    single = P.features_at(df, cutoffs[0]).toPandas().set_index("profile_id").sort_index()
    pd.testing.assert_frame_equal(single, latest[P.EVENT_FEATURES].sort_index(), check_exact=False, rtol=1e-12)


def test_training_frame_labels_each_snapshot_from_its_own_window(events):
    pdf, df = events
    frame = P.training_frame(df, AS_OF, kind="purchase", days=7, snapshots=3).toPandas()
    assert frame.groupby("cutoff").size().shape[0] == 3 and not frame.duplicated(["profile_id", "cutoff"]).any()
    for row in frame.itertuples():
        start = pd.Timestamp(row.cutoff).tz_localize(UTC)
        window = pdf[(pdf["profile_id"] == row.profile_id) & (pdf["event_type"] == "purchase")
                     & (pdf["event_time"] >= start) & (pdf["event_time"] < start + pd.Timedelta(days=7))]
        assert row.label == int(len(window) > 0)
    churn = P.training_frame(df, AS_OF, kind="churn", days=14, snapshots=2).toPandas()
    assert (churn["rfm_frequency"] > 0).all()
    merged = churn.merge(P.training_frame(df, AS_OF, kind="purchase", days=14, snapshots=2).toPandas(),
                         on=["profile_id", "cutoff"], suffixes=("_churn", "_buy"))
    assert len(merged) == len(churn) and (merged["label_churn"] == 1 - merged["label_buy"]).all()


def test_logistic_model_is_regularised_and_reports_the_latest_snapshot():
    rng = np.random.default_rng(0)
    n = 600
    x = rng.normal(size=n)
    pdf = pd.DataFrame({"views_7d": np.exp(x), "noise": rng.normal(size=n) ** 2,
                        "label": (rng.uniform(size=n) < 1 / (1 + np.exp(-2 * x))).astype(int),
                        "holdout": np.arange(n) % 3 == 0,
                        "cutoff": np.where(np.arange(n) % 2 == 0, "2026-10-25", "2026-10-18")})
    strong = P.train_classifier(pdf, ["views_7d", "noise"], c=0.001)
    weak = P.train_classifier(pdf, ["views_7d", "noise"], c=10.0)
    coef = lambda r: np.abs(r.estimator[-1].coef_).sum()  # noqa: E731
    assert coef(strong) < coef(weak)
    assert weak.metrics["auc"] > 0.75 and 0.5 < weak.metrics["auc_latest_cutoff"] <= 1.0
    assert weak.summary["cutoffs"] == ["2026-10-18", "2026-10-25"]
