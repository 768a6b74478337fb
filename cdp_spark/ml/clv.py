"""Customer lifetime value with BG/NBD + Gamma-Gamma: Spark summaries, driver-side fits, Spark scoring.

Pipeline (the same calls from a job or a notebook)::

    summary = clv_summary(purchases, as_of, time_unit="W")             # Spark, one row per customer
    bg = fit_bgnbd(summary)                                             # driver, on a bounded sample
    gg = fit_gamma_gamma(summary)
    scores = score_clv(summary, bg, gg, horizon=12, discount_rate=0.01, time_unit="W")   # Spark

Summary convention (as lifetimes' ``summary_data_from_transaction_data``): purchases are bucketed into
periods (UTC days for ``"D"``; Monday-to-Sunday UTC weeks for ``"W"``, like pandas' ``to_period("W")``) and
the purchases of one period are one purchase whose value is their sum. Then per customer

- ``frequency``: distinct purchase periods after the first one (repeat purchases);
- ``recency``: periods from the first to the last purchase period;
- ``T``: periods from the first purchase period to the period of ``as_of``;
- ``monetary_value``: mean value of the repeat periods (the first is left out), 0 when frequency is 0.

Only purchases at or before ``as_of`` count (see :func:`cdp_spark.ml.rfm.purchases_as_of`); unlike
lifetimes, purchases later in the ``as_of`` period are not included.

The model math lives in :mod:`cdp_spark.ml.btyd` (plain numpy/scipy, which says why no BTYD library is
used): ``lifetimes`` is archived and breaks on pandas 3, ``pymc-marketing`` needs Python >= 3.12 and
``btyd`` does not install on Python 3.11. Fitting runs on the driver from a pandas summary that
:func:`summary_to_pandas` bounds with a deterministic hash sample; scoring runs in ``mapInPandas`` with the
exact functions used for pandas scoring (:func:`cdp_spark.ml.btyd.score_summary`), never collecting customers.

Example:
    >>> from datetime import date
    >>> summary = clv_summary(purchases, date(2024, 6, 30), time_unit="W")   # doctest: +SKIP
    >>> bg, gg = fit_bgnbd(summary), fit_gamma_gamma(summary)               # doctest: +SKIP
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Iterator

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField, StructType

from cdp_spark.ml.btyd import (
    BGNBDParams,
    GammaGammaParams,
    fit_bgnbd_arrays,
    fit_gamma_gamma_arrays,
    periods_per_month,
    score_summary,
)
from cdp_spark.ml.events import profile_bucket
from cdp_spark.ml.rfm import as_of_cutoff, as_of_day, purchases_as_of, utc_day

__all__ = [
    "BGNBDParams",
    "GammaGammaParams",
    "calibration_holdout_summary",
    "clv_summary",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "score_clv",
    "score_clv_pandas",
    "summary_to_pandas",
]

SUMMARY_COLUMNS = ["profile_id", "frequency", "recency", "T", "monetary_value"]
SCORE_FIELDS = ["expected_purchases", "p_alive", "expected_spend", "clv"]
# 1970-01-01 was a Thursday: shifting by 3 days makes week numbers start on Mondays.
_MONDAY_SHIFT = 3


def _check_unit(time_unit: str) -> None:
    periods_per_month(time_unit)  # raises on an unknown unit


def _period(day: Column | int, time_unit: str) -> Column | int:
    if time_unit == "D":
        return day
    if isinstance(day, int):
        return (day + _MONDAY_SHIFT) // 7
    return F.floor((day + F.lit(_MONDAY_SHIFT)) / F.lit(7)).cast("long")


def _period_values(purchases: DataFrame, time_unit: str) -> DataFrame:
    """(profile_id, period, value): all purchases of one period folded into one."""
    revenue = F.coalesce(F.col("revenue").cast("double"), F.lit(0.0))
    return (purchases
            .select("profile_id", _period(utc_day("event_time"), time_unit).alias("period"), revenue.alias("value"))
            .groupBy("profile_id", "period")
            .agg(F.sum("value").alias("value")))


def clv_summary(purchases: DataFrame, as_of: date | datetime, *, time_unit: str = "W",
                calibration_end: date | datetime | None = None) -> DataFrame:
    """Per-customer (profile_id, frequency, recency, T, monetary_value) at ``as_of``, in ``time_unit`` periods.

    With ``calibration_end`` this is :func:`calibration_holdout_summary` (calibration up to
    ``calibration_end``, holdout up to ``as_of``).

    Example:
        >>> clv_summary(purchases, date(2024, 6, 30), time_unit="D")   # doctest: +SKIP
        DataFrame[profile_id: string, frequency: bigint, recency: double, T: double, monetary_value: double]
    """
    _check_unit(time_unit)
    if calibration_end is not None:
        return calibration_holdout_summary(purchases, calibration_end, as_of, time_unit=time_unit)
    periods = _period_values(purchases_as_of(purchases, as_of), time_unit)
    end_period = _period(as_of_day(as_of), time_unit)
    first = F.min(F.struct("period", "value"))  # the earliest period and its value
    per_customer = periods.groupBy("profile_id").agg(
        first.alias("_first"),
        F.max("period").alias("_last"),
        F.count(F.lit(1)).alias("_periods"),
        F.sum("value").alias("_total"),
    )
    frequency = F.col("_periods") - 1
    return per_customer.select(
        "profile_id",
        frequency.cast("long").alias("frequency"),
        (F.col("_last") - F.col("_first.period")).cast("double").alias("recency"),
        (F.lit(end_period) - F.col("_first.period")).cast("double").alias("T"),
        F.when(frequency > 0, (F.col("_total") - F.col("_first.value")) / frequency)
        .otherwise(F.lit(0.0)).alias("monetary_value"),
    )


def calibration_holdout_summary(purchases: DataFrame, calibration_end: date | datetime,
                                observation_end: date | datetime, *, time_unit: str = "W") -> DataFrame:
    """Summary at ``calibration_end`` plus what each customer actually bought up to ``observation_end``.

    Adds ``frequency_holdout`` (distinct purchase periods among the holdout purchases),
    ``monetary_value_holdout`` (their mean period value, 0 if none) and ``duration_holdout``
    (periods from the calibration end to the observation end). Only customers with a calibration
    purchase appear, as the models can only score those.

    Example:
        >>> calibration_holdout_summary(purchases, date(2024, 3, 31), date(2024, 6, 30))   # doctest: +SKIP
    """
    _check_unit(time_unit)
    cal_cutoff, _ = as_of_cutoff(calibration_end)
    obs_cutoff, _ = as_of_cutoff(observation_end)
    if obs_cutoff <= cal_cutoff:
        raise ValueError("observation_end must come after calibration_end")
    calibration = clv_summary(purchases, calibration_end, time_unit=time_unit)
    # Holdout = observation window minus calibration window, with the same date/datetime rules.
    holdout_rows = purchases_as_of(purchases, observation_end).where(
        _after(F.col("event_time").cast("timestamp"), calibration_end))
    holdout = (_period_values(holdout_rows, time_unit)
               .groupBy("profile_id")
               .agg(F.count(F.lit(1)).alias("frequency_holdout"), F.avg("value").alias("monetary_value_holdout")))
    duration = _period(as_of_day(observation_end), time_unit) - _period(as_of_day(calibration_end), time_unit)
    return (calibration.join(holdout, "profile_id", "left")
            .select(*SUMMARY_COLUMNS,
                    F.coalesce("frequency_holdout", F.lit(0)).cast("long").alias("frequency_holdout"),
                    F.coalesce("monetary_value_holdout", F.lit(0.0)).alias("monetary_value_holdout"),
                    F.lit(float(duration)).alias("duration_holdout")))


def _after(ts: Column, as_of: date | datetime) -> Column:
    cutoff, inclusive = as_of_cutoff(as_of)
    return ts > F.lit(cutoff) if inclusive else ts >= F.lit(cutoff)


def summary_to_pandas(summary: DataFrame, max_rows: int = 1_000_000, seed: int = 0) -> pd.DataFrame:
    """Collect a summary for fitting, keeping a deterministic hash sample when it has more than ``max_rows``.

    A customer is kept when ``xxhash64(seed, profile_id)`` falls in the first ``max_rows / count`` share of
    the hash range, so reruns and other jobs with the same seed pick the same customers. Only the
    summary columns are collected (holdout columns are dropped).

    Example:
        >>> pdf = summary_to_pandas(clv_summary(purchases, date(2024, 6, 30)), max_rows=500_000)   # doctest: +SKIP
    """
    if max_rows < 1:
        raise ValueError("max_rows must be positive")
    columns = [c for c in summary.columns if c in SUMMARY_COLUMNS]
    selected = summary.select(*columns)
    total = selected.count()
    if total > max_rows:
        buckets = 1 << 30
        keep_below = int(buckets * max_rows / total)
        selected = selected.where(profile_bucket(int(seed), buckets) < F.lit(keep_below))
    return selected.toPandas()


def _as_pandas(summary: pd.DataFrame | DataFrame, max_rows: int) -> pd.DataFrame:
    if isinstance(summary, pd.DataFrame):
        return summary
    if isinstance(summary, DataFrame):
        return summary_to_pandas(summary, max_rows=max_rows)
    raise TypeError(f"expected a pandas or Spark DataFrame, got {type(summary).__name__}")


def fit_bgnbd(summary: pd.DataFrame | DataFrame, *, max_rows: int = 1_000_000) -> BGNBDParams:
    """Fit BG/NBD by maximum likelihood on a summary (pandas, or Spark sampled via :func:`summary_to_pandas`).

    Example:
        >>> fit_bgnbd(summary_pdf)   # doctest: +SKIP
        BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426, log_likelihood=-9582.4, n=2357, converged=True)
    """
    pdf = _as_pandas(summary, max_rows)
    return fit_bgnbd_arrays(pdf["frequency"].to_numpy(float), pdf["recency"].to_numpy(float),
                            pdf["T"].to_numpy(float))


def fit_gamma_gamma(summary: pd.DataFrame | DataFrame, *, max_rows: int = 1_000_000) -> GammaGammaParams:
    """Fit Gamma-Gamma on the repeat buyers (frequency > 0, monetary_value > 0) of a summary.

    Example:
        >>> fit_gamma_gamma(summary_pdf)   # doctest: +SKIP
        GammaGammaParams(p=6.25, q=3.74, gamma=15.44, log_likelihood=..., n=946, converged=True)
    """
    pdf = _as_pandas(summary, max_rows)
    return fit_gamma_gamma_arrays(pdf["frequency"].to_numpy(float), pdf["monetary_value"].fillna(0.0).to_numpy(float))


def score_clv_pandas(summary: pd.DataFrame, bgnbd_params: BGNBDParams, gg_params: GammaGammaParams,
                     horizon: int = 12, discount_rate: float = 0.01, time_unit: str = "W") -> pd.DataFrame:
    """Score a pandas summary; same output and math as :func:`score_clv`.

    Example:
        >>> score_clv_pandas(summary_pdf, bg, gg, horizon=12, discount_rate=0.01)   # doctest: +SKIP
    """
    return score_summary(summary, bgnbd_params, gg_params, horizon=horizon, discount_rate=discount_rate,
                         time_unit=time_unit)


def score_clv(summary_df: DataFrame, bgnbd_params: BGNBDParams, gg_params: GammaGammaParams,
              horizon: int = 12, discount_rate: float = 0.01, time_unit: str = "W") -> DataFrame:
    """Score every customer in Spark: (profile_id, expected_purchases, p_alive, expected_spend, clv).

    ``horizon`` is in months and ``discount_rate`` is monthly; ``expected_purchases`` is undiscounted
    over the horizon and ``clv`` the discounted expected revenue (see :mod:`cdp_spark.ml.btyd`).
    Runs :func:`cdp_spark.ml.btyd.score_summary` on each Arrow batch with ``mapInPandas``.

    Example:
        >>> score_clv(summary, bg, gg, horizon=12, discount_rate=0.01, time_unit="W")   # doctest: +SKIP
    """
    _check_unit(time_unit)
    if horizon < 1:
        raise ValueError("horizon must be at least one month")
    if gg_params.q <= 1.0:
        raise ValueError(f"Gamma-Gamma expected spend needs q > 1, got q={gg_params.q:.4g}")
    schema = StructType([summary_df.schema["profile_id"]]
                        + [StructField(name, DoubleType(), True) for name in SCORE_FIELDS])
    inputs = summary_df.select(
        "profile_id",
        *(F.col(c).cast("double").alias(c) for c in ("frequency", "recency", "T", "monetary_value")),
    )

    def score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield score_summary(batch, bgnbd_params, gg_params, horizon=horizon,
                                discount_rate=discount_rate, time_unit=time_unit)

    return inputs.mapInPandas(score_batches, schema)
