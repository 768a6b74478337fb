"""Propensity models: P(purchase in the next N days) and P(churn = no purchase in the next M days).

Point-in-time features, no leakage (:func:`features_at`, :func:`features_at_cutoffs`)
------------------------------------------------------------------------------------
Features are computed from events strictly before a cutoff instant, in one aggregation over the events:

- activity: events and active days in the last 7/30/90 days; distinct categories in 30 days;
- funnel counts: product views, add-to-carts and purchases (distinct orders) in the last 7/30/90 days;
- recency: days since the first and the last event, the last view, the last add-to-cart and the last
  purchase (``rfm_recency_days``); "never" (or before the 365-day look-back) reads as 365 days;
- RFM: purchase frequency and monetary value over the whole history;
- when the profile view exists, static traits (age, days since signup, only when signup precedes the cutoff).

The profile table's calculated attributes are not used as such: they hold today's values, which would leak
the label; the same aggregates are recomputed here as of each cutoff instead.

Training (:func:`training_frame`, :func:`train_classifier`)
-----------------------------------------------------------
Snapshots: cutoff_i = end of (as_of - (i + 1) * N days) for i = 0 .. snapshots - 1. Each snapshot has the
features at its cutoff and the label from the N days after it (purchase: any purchase; churn: none, among
customers who had bought before the cutoff), so label windows tile the recent past without overlapping and a
small shop still gets several hundred training rows. Profiles are split by a hash of their id into train and
holdout (all snapshots of a profile on the same side); the holdout gives AUC, Brier score and a calibration
curve. The model is a scikit-learn pipeline (:func:`make_estimator`): an L2-regularised logistic regression
on log-scaled features by default, or HistGradientBoostingClassifier for large data.

Scoring (:func:`score_distributed`) runs the fitted model on features at as_of in ``mapInPandas``.

Example:
    >>> frame = training_frame(events, date(2026, 11, 1), kind="purchase", days=7, snapshots=4)  # doctest: +SKIP
    >>> result = train_classifier(frame.toPandas(), EVENT_FEATURES)                              # doctest: +SKIP
    >>> round(result.metrics["auc"], 2)                                                           # doctest: +SKIP
    0.78
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_spark.ml.events import profile_bucket
from cdp_spark.ml.rfm import as_of_cutoff

WINDOWS = (7, 30, 90)
RECENCY_CAP_DAYS = 365.0  # "never" or longer ago than the look-back
EVENT_FEATURES = [
    *(f"events_{w}d" for w in WINDOWS), "active_days_7d", "active_days_30d", "active_days_90d",
    *(f"views_{w}d" for w in WINDOWS), *(f"carts_{w}d" for w in WINDOWS), *(f"purchases_{w}d" for w in WINDOWS),
    "categories_30d", "days_since_first_event", "days_since_last_event", "days_since_last_view",
    "days_since_last_cart", "rfm_recency_days", "rfm_frequency", "rfm_monetary",
]
TRAIT_FEATURES = ["age_years", "days_since_signup"]
_DAY = 86_400.0


def features_at_cutoffs(events: DataFrame, cutoffs: Sequence[datetime],
                        value_field: str = "revenue_reporting") -> DataFrame:
    """(profile_id, cutoff timestamp, :data:`EVENT_FEATURES`) for every cutoff, in one pass over ``events``.

    ``events`` are profile events with ``event_type`` (purchase/cart/view or null for other events). Each event
    is paired with the cutoffs it precedes, then grouped by ``(profile_id, cutoff)``, so several training
    snapshots cost one scan. A profile appears at a cutoff when it has an event before it.

    The distinct counts (active days, orders, categories) avoid ``countDistinct``: Spark evaluates each of
    those with its own copy of every row (an ``Expand`` of 9 copies here). Instead each key (day, order,
    category) is first reduced to its most recent event, and a key is in a window when that event is.

    Example:
        >>> features_at_cutoffs(typed, [datetime(2026, 10, 18, tzinfo=timezone.utc),
        ...                             datetime(2026, 10, 25, tzinfo=timezone.utc)]).count()   # doctest: +SKIP
    """
    if not cutoffs:
        raise ValueError("features_at_cutoffs needs at least one cutoff")
    cut_array = F.array(*[F.lit(c).cast("timestamp") for c in sorted(set(cutoffs))])
    kind = F.col("event_type")
    value = F.col(value_field).cast("double") if value_field in events.columns else F.lit(None).cast("double")
    order = F.coalesce(F.col("order_id"), F.col("event_id")) if "order_id" in events.columns else F.col("event_id")
    category = F.col("category") if "category" in events.columns else F.lit(None).cast("string")
    age_days = (F.unix_micros(F.col("cutoff")) - F.unix_micros(F.col("event_time"))) / F.lit(1e6 * _DAY)
    paired = (events.select("profile_id", "event_date", kind.alias("kind"), value.alias("value"),
                            order.alias("order"), category.alias("category"), "event_time",
                            F.explode(cut_array).alias("cutoff"))
              .where(F.col("event_time") < F.col("cutoff")).withColumn("age", age_days))
    keys = ["profile_id", "cutoff"]
    age, is_purchase = F.col("age"), F.col("kind") == "purchase"

    def freshest(cond: Column) -> Column:
        return F.min(F.when(cond, age))

    # Level 1: one row per (profile, cutoff, key), with the age of the key's most recent event.
    days = paired.groupBy(*keys, "event_date").agg(
        freshest(F.lit(True)).alias("key_age"), F.max(age).alias("oldest"),
        *(F.count(F.when(age <= w, 1)).alias(f"events_{w}d") for w in WINDOWS),
        *(F.count(F.when((age <= w) & (F.col("kind") == t), 1)).alias(f"{t}s_{w}d")
          for t in ("view", "cart") for w in WINDOWS),
        freshest(F.col("kind") == "view").alias("last_view"), freshest(F.col("kind") == "cart").alias("last_cart"),
        freshest(is_purchase).alias("last_purchase"),
        F.sum(F.when(is_purchase, F.coalesce(F.col("value"), F.lit(0.0)))).alias("monetary"))
    orders = paired.where(is_purchase).groupBy(*keys, "order").agg(freshest(F.lit(True)).alias("key_age"))
    categories = (paired.where(F.col("category").isNotNull() & (age <= 30)).groupBy(*keys, "category")
                  .agg(F.lit(1).alias("key_age")))
    part = F.col("part")
    rows = (days.withColumn("part", F.lit("day")).drop("event_date")
            .unionByName(orders.withColumn("part", F.lit("order")).drop("order"), allowMissingColumns=True)
            .unionByName(categories.withColumn("part", F.lit("category")).drop("category"),
                         allowMissingColumns=True))

    def keys_within(name: str, w: float) -> Column:
        return F.count(F.when((part == name) & (F.col("key_age") <= w), 1))

    cap = F.lit(RECENCY_CAP_DAYS)

    def recency(column: str) -> Column:
        return F.least(F.coalesce(F.min(column), cap), cap)

    # Level 2: one row per (profile, cutoff).
    agg = rows.groupBy(*keys).agg(
        *(F.sum(f"events_{w}d").alias(f"events_{w}d") for w in WINDOWS),
        *(keys_within("day", w).alias(f"active_days_{w}d") for w in WINDOWS),
        *(F.sum(f"{t}s_{w}d").alias(f"{t}s_{w}d") for t in ("view", "cart") for w in WINDOWS),
        *(keys_within("order", w).alias(f"purchases_{w}d") for w in WINDOWS),
        F.count(F.when(part == "category", 1)).alias("categories_30d"),
        F.max("oldest").alias("days_since_first_event"),
        F.least(F.min(F.when(part == "day", F.col("key_age"))), cap).alias("days_since_last_event"),
        recency("last_view").alias("days_since_last_view"), recency("last_cart").alias("days_since_last_cart"),
        recency("last_purchase").alias("rfm_recency_days"),
        F.count(F.when(part == "order", 1)).alias("rfm_frequency"),
        F.coalesce(F.sum("monetary"), F.lit(0.0)).alias("rfm_monetary"))
    return agg.select("profile_id", "cutoff", *(F.col(c).cast("double").alias(c) for c in EVENT_FEATURES))


def features_at(events: DataFrame, cutoff: datetime, value_field: str = "revenue_reporting") -> DataFrame:
    """One row per profile with any event before ``cutoff``: profile_id + :data:`EVENT_FEATURES`.

    Example:
        >>> features_at(typed, datetime(2026, 10, 25, tzinfo=timezone.utc)).show(3)   # doctest: +SKIP
    """
    return features_at_cutoffs(events, [cutoff], value_field).drop("cutoff")


def _trait_columns(traits: Column | None, fields: set[str], cut_day: Column) -> list[Column]:
    age = (F.months_between(cut_day, traits["birth_date"]) / 12.0) if traits is not None and "birth_date" in fields \
        else F.lit(None)
    signup = F.datediff(cut_day, traits["signup_date"]) if traits is not None and "signup_date" in fields \
        else F.lit(None)
    return [age.cast("double").alias("age_years"),
            F.when(signup >= 0, signup).cast("double").alias("days_since_signup")]


def _trait_fields(profiles: DataFrame) -> set[str]:
    return set(profiles.schema["traits"].dataType.fieldNames()) if "traits" in profiles.columns else set()


def trait_features(profiles: DataFrame, cutoff: datetime) -> DataFrame:
    """(profile_id, age_years, days_since_signup) from the profile view's traits, as known at ``cutoff``.

    Missing trait fields give nulls; a signup after the cutoff is unknown at the cutoff (null).
    """
    fields = _trait_fields(profiles)
    traits = F.col("traits") if fields else None
    return profiles.select("profile_id", *_trait_columns(traits, fields, F.lit(cutoff.date())))


def buyers_after(events: DataFrame, cutoff: datetime, days: int) -> DataFrame:
    """(profile_id, _bought = 1) for the profiles with a purchase in [cutoff, cutoff + days).

    Example:
        >>> buyers_after(typed, cutoff, 7).count()   # doctest: +SKIP
    """
    return buyers_after_cutoffs(events, [cutoff], days).drop("cutoff")


def buyers_after_cutoffs(events: DataFrame, cutoffs: Sequence[datetime], days: int) -> DataFrame:
    """(profile_id, cutoff, _bought = 1) for each cutoff's buyers in [cutoff, cutoff + days), in one pass."""
    cut_array = F.array(*[F.lit(c).cast("timestamp") for c in sorted(set(cutoffs))])
    bought = (events.where(F.col("event_type") == "purchase").select("profile_id", "event_time")
              .select("*", F.explode(cut_array).alias("cutoff")))
    end = F.col("cutoff") + F.make_interval(days=F.lit(days))
    return (bought.where((F.col("event_time") >= F.col("cutoff")) & (F.col("event_time") < end))
            .select("profile_id", "cutoff").distinct().withColumn("_bought", F.lit(1)))


def snapshot_cutoffs(as_of: date, days: int, snapshots: int = 1) -> list[datetime]:
    """Training cutoffs: the ends of as_of - days, as_of - 2 days, ... (``snapshots`` of them, latest first).

    Example:
        >>> [c.date().isoformat() for c in snapshot_cutoffs(date(2026, 11, 1), 7, 3)]
        ['2026-10-26', '2026-10-19', '2026-10-12']
    """
    if snapshots < 1:
        raise ValueError("snapshots must be at least 1")
    return [as_of_cutoff(as_of - timedelta(days=days * (i + 1)))[0] for i in range(snapshots)]


def training_frame(events: DataFrame, as_of: date, *, kind: Literal["purchase", "churn"], days: int,
                   value_field: str = "revenue_reporting", traits: DataFrame | None = None,
                   snapshots: int = 1, features: DataFrame | None = None) -> DataFrame:
    """Features at each snapshot cutoff (see :func:`snapshot_cutoffs`) and the label from the ``days`` after it.

    purchase: every profile active before the cutoff, label 1 when it bought in the window.
    churn: customers who bought before the cutoff, label 1 when they did not buy in the window.
    Columns: profile_id, cutoff, the features, label. ``features``: :func:`features_at_cutoffs` already
    computed for these cutoffs and maybe others (the stage computes every cutoff it needs in one pass).

    Example:
        >>> training_frame(typed, date(2026, 11, 1), kind="churn", days=14).groupBy("label").count()  # doctest: +SKIP
    """
    cutoffs = snapshot_cutoffs(as_of, days, snapshots)
    if features is None:
        feats = features_at_cutoffs(events, cutoffs, value_field)
    else:
        feats = features.where(F.col("cutoff").isin(*[F.lit(c).cast("timestamp") for c in cutoffs]))
    if traits is not None:
        fields = _trait_fields(traits)
        cols = ["profile_id", "traits"] if fields else ["profile_id"]
        joined = feats.join(traits.select(*cols), "profile_id", "left")
        feats = joined.select(*feats.columns, *_trait_columns(F.col("traits") if fields else None, fields,
                                                              F.to_date(F.col("cutoff"))))
    if kind == "churn":
        feats = feats.where(F.col("rfm_frequency") > 0)
    bought = buyers_after_cutoffs(events, cutoffs, days)
    joined = feats.join(bought, ["profile_id", "cutoff"], "left")
    label = F.col("_bought").isNotNull() if kind == "purchase" else F.col("_bought").isNull()
    return joined.withColumn("label", label.cast("int")).drop("_bought")


def holdout_flag(share: float, seed: int = 0) -> Column:
    """True for the profiles kept out of training (a fixed hash share, stable across runs)."""
    buckets = 1 << 20
    return profile_bucket(seed, buckets) < F.lit(int(share * buckets))


def to_pandas_bounded(frame: DataFrame, max_rows: int, seed: int = 0) -> pd.DataFrame:
    """Collect for training, keeping a deterministic hash sample when ``frame`` has more than ``max_rows`` rows."""
    total = frame.count()
    if total > max_rows:
        buckets = 1 << 30
        frame = frame.where(profile_bucket(seed + 1, buckets) < F.lit(int(buckets * max_rows / total)))
    return frame.toPandas()


@dataclass
class TrainResult:
    """A fitted classifier with its holdout evaluation."""

    estimator: Any
    features: list[str]
    metrics: dict[str, float]
    calibration: tuple[np.ndarray, np.ndarray]
    summary: dict[str, Any] = field(default_factory=dict)


def make_estimator(model: str = "logistic", *, max_iter: int = 200, learning_rate: float = 0.05,
                   max_leaf_nodes: int = 15, random_state: int = 0, c: float = 0.1) -> Any:
    """The scikit-learn classifier: ``logistic`` or ``gradient_boosting``.

    ``logistic``: log1p of the (non-negative, skewed) counts, median imputation with missing-value
    indicators (traits), standardisation and an L2 logistic regression with inverse strength ``c`` (the
    count windows are strongly correlated, so a firm penalty keeps the weights stable); robust on a few
    hundred customers and well calibrated. ``gradient_boosting``: HistGradientBoostingClassifier, for large data with interactions.

    Example:
        >>> type(make_estimator("logistic")).__name__
        'Pipeline'
    """
    if model == "gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=learning_rate,
                                              max_leaf_nodes=max_leaf_nodes, random_state=random_state,
                                              early_stopping=False)
    if model != "logistic":
        raise ValueError(f"unknown propensity model {model!r}; expected logistic or gradient_boosting")
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return make_pipeline(FunctionTransformer(_signed_log1p), SimpleImputer(strategy="median", add_indicator=True),
                         StandardScaler(), LogisticRegression(C=c, max_iter=1000))


def _signed_log1p(X: Any) -> Any:
    return np.sign(X) * np.log1p(np.abs(X))


def train_classifier(pdf: pd.DataFrame, features: list[str], *, model: str = "logistic", max_iter: int = 200,
                     learning_rate: float = 0.05, max_leaf_nodes: int = 15, random_state: int = 0,
                     c: float = 0.1) -> TrainResult:
    """Fit on rows with ``holdout`` False, evaluate on the others (AUC, Brier, log loss, calibration curve).

    With a ``cutoff`` column (several snapshots), ``auc_latest_cutoff`` is the AUC of the latest snapshot alone.

    Example:
        >>> train_classifier(pdf, EVENT_FEATURES).metrics["auc"]   # doctest: +SKIP
    """
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    train, test = pdf[~pdf["holdout"]], pdf[pdf["holdout"]]
    for name, part in (("training", train), ("holdout", test)):
        if part["label"].nunique() < 2:
            raise ValueError(f"the {name} set has a single label class")
    est = make_estimator(model, max_iter=max_iter, learning_rate=learning_rate, max_leaf_nodes=max_leaf_nodes,
                         random_state=random_state, c=c)
    est.fit(train[features].astype(float), train["label"].astype(int))
    p = est.predict_proba(test[features].astype(float))[:, 1]
    y = test["label"].astype(int).to_numpy()
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
    metrics = {"auc": float(roc_auc_score(y, p)), "brier": float(brier_score_loss(y, p)),
               "log_loss": float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6))),
               "base_rate_holdout": float(y.mean())}
    if "cutoff" in test.columns and test["cutoff"].nunique() > 1:
        latest = (test["cutoff"] == test["cutoff"].max()).to_numpy()
        if len(np.unique(y[latest])) == 2:
            metrics["auc_latest_cutoff"] = float(roc_auc_score(y[latest], p[latest]))
    summary = {"rows_train": int(len(train)), "rows_holdout": int(len(test)),
               "positives_train": int(train["label"].sum()), "positives_holdout": int(y.sum()),
               "features": features,
               "cutoffs": sorted({str(t) for t in pdf["cutoff"]}) if "cutoff" in pdf.columns else []}
    return TrainResult(est, features, metrics, (prob_true, prob_pred), summary)


def calibration_figure(result: TrainResult, title: str):  # type: ignore[no-untyped-def]
    """A matplotlib reliability diagram of the holdout predictions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    prob_true, prob_pred = result.calibration
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot(prob_pred, prob_true, marker="o", label=f"model (AUC {result.metrics['auc']:.3f})")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def score_distributed(features: DataFrame, model: Any, output: str) -> DataFrame:
    """(profile_id, ``output``): the model's probability for every row, computed in ``mapInPandas``.

    ``model`` needs ``predict_proba(pandas frame) -> array`` and ``features`` (e.g.
    :class:`cdp_spark.ml.tracking.ClassifierModel`); it is shipped to the workers with the task.

    Example:
        >>> score_distributed(features_at(typed, cutoff), champion_model, "propensity_purchase")   # doctest: +SKIP
    """
    cols = list(model.features)
    inputs = features.select("profile_id", *(F.col(c).cast("double").alias(c) if c in features.columns
                                             else F.lit(None).cast("double").alias(c) for c in cols))
    schema = T.StructType([T.StructField("profile_id", T.StringType(), True),
                           T.StructField(output, T.DoubleType(), True)])

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield pd.DataFrame({"profile_id": batch["profile_id"], output: model.predict_proba(batch)})

    return inputs.mapInPandas(score, schema)
