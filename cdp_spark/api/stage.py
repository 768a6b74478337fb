"""The `serve` stage: rebuild the Profile API's serving store from the day's profiles, attributes, scores and
audience memberships. It runs after activation, last in the daily plan, so the API serves the same day's scores
and audiences (the store is swapped in atomically; see `cdp_spark.api.store`).

Example:
    >>> run(spark, config, lake, date(2026, 11, 1)).metrics["profiles"]      # doctest: +SKIP
    2000
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from cdp_spark.api.store import refresh_serving_store
from cdp_spark.pipeline import StageResult

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake

PROFILES = "gold.profiles"


def run(spark: "SparkSession", config: "CdpConfig", lake: "Lake", as_of: dt.date) -> StageResult:
    """Rebuild the serving store (skipped before the first profiles run: there is nothing to serve)."""
    if not lake.exists(PROFILES):
        return StageResult(metrics={"skipped": "no profiles yet"})
    built = refresh_serving_store(spark, config, lake)
    return StageResult(metrics=built)
