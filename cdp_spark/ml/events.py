"""Event typing shared by the score models: configured event names -> purchase / cart / view.

Example:
    >>> typed = typed_events(events, {"purchase": ["order_completed"], "view": ["product_viewed"]})  # doctest: +SKIP
    >>> purchases(typed, "revenue_reporting").columns                                                 # doctest: +SKIP
    ['profile_id', 'event_time', 'revenue']
"""
from __future__ import annotations

from typing import Mapping, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def event_type_column(events_map: Mapping[str, Sequence[str]]) -> F.Column:
    """``event_type`` from ``event_name`` via the configured map (null for other events).

    Example:
        >>> df.select(event_type_column({"purchase": ["order_completed"]}))   # doctest: +SKIP
    """
    col = F.lit(None).cast("string")
    for kind, names in reversed(list(events_map.items())):
        col = F.when(F.col("event_name").isin(list(names)), F.lit(kind)).otherwise(col)
    return col


def typed_events(events: DataFrame, events_map: Mapping[str, Sequence[str]]) -> DataFrame:
    """Keep the events named in ``events_map`` and add their ``event_type``.

    Example:
        >>> typed_events(events, {"purchase": ["order_completed"]}).select("event_type").distinct()  # doctest: +SKIP
    """
    return events.withColumn("event_type", event_type_column(events_map)).where(F.col("event_type").isNotNull())


def purchases(typed: DataFrame, value_field: str = "revenue_reporting") -> DataFrame:
    """Purchase rows as the RFM/CLV functions expect them: (profile_id, event_time, revenue).

    Bronze may hold one event per order line (orders source) and one per order (web/app "Order Completed");
    a purchase is one ``order_id`` (its value summed over lines), falling back to the event id when an event
    carries no order id. Counting lines as purchases would inflate frequency.
    """
    rows = typed.where(F.col("event_type") == "purchase")
    value = F.col(value_field).cast("double") if value_field in typed.columns else F.lit(None).cast("double")
    order = F.coalesce(F.col("order_id"), F.col("event_id")) if "order_id" in typed.columns else F.col("event_id")
    return (rows.select("profile_id", order.alias("_order"), "event_time", value.alias("_value"))
            .groupBy("profile_id", "_order")
            .agg(F.min("event_time").alias("event_time"),
                 F.coalesce(F.sum("_value"), F.lit(0.0)).alias("revenue"))
            .select("profile_id", "event_time", "revenue"))


def profile_bucket(salt: object, buckets: int) -> F.Column:
    """A stable bucket 0 .. ``buckets`` - 1 of ``profile_id`` for ``salt``: samples and holdouts keep the profiles
    whose bucket is below a threshold, so reruns (and other jobs with the same salt) pick the same profiles.

    Example:
        >>> df.where(profile_bucket("als-eval", 1 << 20) < 1 << 19)   # doctest: +SKIP
    """
    return F.pmod(F.xxhash64(F.lit(salt), F.col("profile_id")), F.lit(buckets))
