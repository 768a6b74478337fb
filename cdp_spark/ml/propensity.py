"""Propensity models: P(purchase in the next N days) and P(churn = no purchase in the next M days).

Point-in-time features, no leakage (:func:`features_at`)
--------------------------------------------------------
Features are computed from events strictly up to a cutoff instant: activity counts over 7/30 days and in
total, views, carts and purchases, days since the first/last event and the last purchase, distinct
categories, the RFM measures (recency, frequency, monetary) and, when the profile view exists, static traits
(age, days since signup, only when signup precedes the cutoff). The profile table's calculated attributes are
not used as such: they hold today's values, which would leak the label; the same aggregates are recomputed
here as of the cutoff instead.

Training (:func:`training_frame`, :func:`train_classifier`)
-----------------------------------------------------------
Cutoff = end of (as_of - N days). Features at the cutoff, label from the N days after it (purchase: any
purchase; churn: none, among customers who had bought before the cutoff). Profiles are split by a hash of
their id into train and holdout; the holdout gives AUC, Brier score and a calibration curve. The model is a
scikit-learn pipeline (:func:`make_estimator`): a regularised logistic regression on log-scaled features by
default, or HistGradientBoostingClassifier for large data.

Scoring (:func:`score_distributed`) runs the fitted model on features at as_of in ``mapInPandas``.

Example:
    >>> frame = training_frame(events, date(2026, 11, 1), kind="purchase", days=7)     # doctest: +SKIP
    >>> result = train_classifier(summary_to_pandas(frame))                              # doctest: +SKIP
    >>> round(result.metrics["auc"], 2)                                                   # doctest: +SKIP
    0.78
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Iterator, Literal

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_spark.ml.rfm import as_of_cutoff

EVENT_FEATURES = [
    "events_total", "events_7d", "events_30d", "active_days_30d", "views_7d", "views_30d", "carts_30d",
    "purchases_30d", "categories_30d", "days_since_first_event", "days_since_last_event",
    "rfm_recency_days", "rfm_frequency", "rfm_monetary",
]
TRAIT_FEATURES = ["age_years", "days_since_signup"]
_DAY = 86_400.0


def _days_before(cutoff: datetime, ts: Column) -> Column:
    return (F.lit(cutoff.timestamp()) - F.unix_micros(ts) / F.lit(1e6)) / F.lit(_DAY)


def features_at(events: DataFrame, cutoff: datetime, value_field: str = "revenue_reporting") -> DataFrame:
    """One row per profile with any event before ``cutoff``: profile_id + :data:`EVENT_FEATURES`.

    ``events`` are profile events with ``event_type`` (purchase/cart/view or null for other events);
    only events strictly before ``cutoff`` are read.

    Example:
        >>> features_at(typed, datetime(2026, 10, 25, tzinfo=timezone.utc)).show(3)   # doctest: +SKIP
    """
    past = events.where(F.col("event_time") < F.lit(cutoff))
    age = _days_before(cutoff, F.col("event_time"))
    kind = F.col("event_type")
    in7, in30 = age <= 7, age <= 30
    value = F.col(value_field).cast("double") if value_field in events.columns else F.lit(None).cast("double")
    order = F.coalesce(F.col("order_id"), F.col("event_id")) if "order_id" in events.columns else F.col("event_id")
    is_purchase = kind == "purchase"
    category = F.col("category") if "category" in events.columns else F.lit(None).cast("string")
    agg = past.groupBy("profile_id").agg(
        F.count(F.lit(1)).alias("events_total"),
        F.count(F.when(in7, 1)).alias("events_7d"),
        F.count(F.when(in30, 1)).alias("events_30d"),
        F.countDistinct(F.when(in30, F.col("event_date"))).alias("active_days_30d"),
        F.count(F.when(in7 & (kind == "view"), 1)).alias("views_7d"),
        F.count(F.when(in30 & (kind == "view"), 1)).alias("views_30d"),
        F.count(F.when(in30 & (kind == "cart"), 1)).alias("carts_30d"),
        F.countDistinct(F.when(in30 & is_purchase, order)).alias("purchases_30d"),
        F.countDistinct(F.when(in30, category)).alias("categories_30d"),
        F.max(age).alias("days_since_first_event"),
        F.min(age).alias("days_since_last_event"),
        F.min(F.when(is_purchase, age)).alias("rfm_recency_days"),
        F.countDistinct(F.when(is_purchase, order)).alias("rfm_frequency"),
        F.sum(F.when(is_purchase, F.coalesce(value, F.lit(0.0)))).alias("rfm_monetary"),
    )
    return agg.select("profile_id", *(F.col(c).cast("double").alias(c) for c in EVENT_FEATURES))


def trait_features(profiles: DataFrame, cutoff: datetime) -> DataFrame:
    """(profile_id, age_years, days_since_signup) from the profile view's traits, as known at ``cutoff``.

    Missing trait fields give nulls; a signup after the cutoff is unknown at the cutoff (null).
    """
    fields = set(profiles.schema["traits"].dataType.fieldNames()) if "traits" in profiles.columns else set()
    cut_day = F.lit(cutoff.date())
    age = (F.months_between(cut_day, F.col("traits.birth_date")) / 12.0) if "birth_date" in fields else F.lit(None)
    signup = F.datediff(cut_day, F.col("traits.signup_date")) if "signup_date" in fields else F.lit(None)
    return profiles.select("profile_id", age.cast("double").alias("age_years"),
                           F.when(signup >= 0, signup).cast("double").alias("days_since_signup"))


def buyers_after(events: DataFrame, cutoff: datetime, days: int) -> DataFrame:
    """(profile_id, _bought = 1) for the profiles with a purchase in [cutoff, cutoff + days).

    Example:
        >>> buyers_after(typed, cutoff, 7).count()   # doctest: +SKIP
    """
    end = cutoff + timedelta(days=days)
    return (events.where((F.col("event_type") == "purchase") & (F.col("event_time") >= F.lit(cutoff))
                         & (F.col("event_time") < F.lit(end)))
            .select("profile_id").distinct().withColumn("_bought", F.lit(1)))


def training_frame(events: DataFrame, as_of: date, *, kind: Literal["purchase", "churn"], days: int,
                   value_field: str = "revenue_reporting", traits: DataFrame | None = None) -> DataFrame:
    """Features at cutoff = end of (as_of - days) and the label from the ``days`` after it.

    purchase: every profile active before the cutoff, label 1 when it bought in the window.
    churn: customers who bought before the cutoff, label 1 when they did not buy in the window.

    Example:
        >>> training_frame(typed, date(2026, 11, 1), kind="churn", days=14).groupBy("label").count()  # doctest: +SKIP
    """
    cutoff, _ = as_of_cutoff(as_of - timedelta(days=days))
    feats = features_at(events, cutoff, value_field)
    if traits is not None:
        feats = feats.join(trait_features(traits, cutoff), "profile_id", "left")
    if kind == "churn":
        feats = feats.where(F.col("rfm_frequency") > 0)
    bought = buyers_after(events, cutoff, days)
    joined = feats.join(bought, "profile_id", "left")
    label = F.col("_bought").isNotNull() if kind == "purchase" else F.col("_bought").isNull()
    return joined.withColumn("label", label.cast("int")).drop("_bought")


def holdout_flag(share: float, seed: int = 0) -> Column:
    """True for the profiles kept out of training (a fixed hash share, stable across runs)."""
    buckets = 1 << 20
    return F.pmod(F.xxhash64(F.lit(seed), F.col("profile_id")), F.lit(buckets)) < F.lit(int(share * buckets))


def to_pandas_bounded(frame: DataFrame, max_rows: int, seed: int = 0) -> pd.DataFrame:
    """Collect for training, keeping a deterministic hash sample when ``frame`` has more than ``max_rows`` rows."""
    total = frame.count()
    if total > max_rows:
        buckets = 1 << 30
        bucket = F.pmod(F.xxhash64(F.lit(seed + 1), F.col("profile_id")), F.lit(buckets))
        frame = frame.where(bucket < F.lit(int(buckets * max_rows / total)))
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
                   max_leaf_nodes: int = 15, random_state: int = 0) -> Any:
    """The scikit-learn classifier: ``logistic`` or ``gradient_boosting``.

    ``logistic``: log1p of the (non-negative, skewed) counts, median imputation with missing-value
    indicators, standardisation and an L2 logistic regression; robust on a few hundred customers and well
    calibrated. ``gradient_boosting``: HistGradientBoostingClassifier, for large data with interactions.

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
                         StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))


def _signed_log1p(X: Any) -> Any:
    return np.sign(X) * np.log1p(np.abs(X))


def train_classifier(pdf: pd.DataFrame, features: list[str], *, model: str = "logistic", max_iter: int = 200,
                     learning_rate: float = 0.05, max_leaf_nodes: int = 15, random_state: int = 0) -> TrainResult:
    """Fit on rows with ``holdout`` False, evaluate on the others (AUC, Brier, log loss, calibration curve).

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
                         random_state=random_state)
    est.fit(train[features].astype(float), train["label"].astype(int))
    p = est.predict_proba(test[features].astype(float))[:, 1]
    y = test["label"].astype(int).to_numpy()
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
    metrics = {"auc": float(roc_auc_score(y, p)), "brier": float(brier_score_loss(y, p)),
               "log_loss": float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6))),
               "base_rate_holdout": float(y.mean())}
    summary = {"rows_train": int(len(train)), "rows_holdout": int(len(test)),
               "positives_train": int(train["label"].sum()), "positives_holdout": int(y.sum()),
               "features": features}
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
