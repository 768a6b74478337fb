"""A scores-ready lake straight from the demo retailer's behaviour model, for tests, benchmarks and notebooks.

It writes ``bronze.events`` (one event per landing, login, product view, add-to-cart and order line, keyed by
a customer id) and ``gold.id_graph`` (one profile per person), skipping rendering, ingestion and identity
resolution, which have their own tests and benchmarks. Orders carry their value in EUR, the reporting currency.

Example:
    >>> truth = demo_events_lake(spark, lake, people=500, days=42, seed=11, end_date=date(2026, 11, 1))  # doctest: +SKIP
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_spark.demo.model import WorldSpec, build_world, category_of, price_eur, product_id

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

    from cdp_spark.lake import Lake

EVENT_NAMES = {"landing": "app_opened", "login": "login", "view": "product_viewed", "cart": "add_to_cart",
               "order": "order_completed"}


def conform(df: DataFrame, schema: T.StructType) -> DataFrame:
    """``df`` with exactly ``schema``'s columns (missing ones null), cast to its types."""
    return df.select(*[(F.col(f.name) if f.name in df.columns else F.lit(None)).cast(f.dataType).alias(f.name)
                       for f in schema.fields])


def demo_events_lake(spark: "SparkSession", lake: "Lake", *, people: int, days: int, seed: int,
                     end_date: dt.date, activity: float = 1.0) -> DataFrame:
    """Write bronze.events and gold.id_graph from the demo world; return the events with profile ids.

    ``activity`` scales everyone's visit and purchase rates (see :class:`cdp_spark.demo.model.WorldSpec`).
    """
    world = build_world(spark, WorldSpec(people=people, days=days, seed=seed, end_date=end_date, activity=activity))
    # Orders arrive as one event per order line (as from a commerce backend), with the line's value.
    lines = world.order_lines.select(
        "pid", "day_idx", "sess_no", (F.lit(1000) + F.col("line_no")).alias("slot"), "order_id",
        F.lit("order").alias("event_kind"), F.col("order_epoch").alias("event_epoch"), "product_idx",
        F.round(price_eur(seed, F.col("product_idx")) * F.col("quantity"), 2).alias("order_value"))
    browsing = world.events.where(F.col("event_kind") != "order").select(
        "pid", "day_idx", "sess_no", "slot", "order_id", "event_kind", "event_epoch", "product_idx",
        F.lit(None).cast("double").alias("order_value"))
    kind = F.col("event_kind")
    name = F.lit(None).cast("string")
    for k, v in EVENT_NAMES.items():
        name = F.when(kind == k, F.lit(v)).otherwise(name)
    ts = F.timestamp_seconds(F.col("event_epoch"))
    customer = F.concat(F.lit("X"), F.col("pid").cast("string"))
    events = (browsing.unionByName(lines).select(
        F.concat_ws("-", F.lit("e"), "pid", "day_idx", "sess_no", "slot").alias("event_id"),
        F.lit("demo").alias("source"), F.lit("demo").alias("stream"), name.alias("event_name"),
        ts.alias("event_time"), F.to_date(ts).alias("event_date"),
        F.create_map(F.lit("customer_id"), customer).alias("identifiers"),
        F.when(F.col("product_idx").isNotNull(), product_id(F.col("product_idx"))).alias("product_id"),
        F.when(F.col("product_idx").isNotNull(), category_of(F.col("product_idx"))).alias("category"),
        "order_id", F.col("order_value").alias("revenue"), F.col("order_value").alias("revenue_reporting"),
        F.lit("EUR").alias("currency"), F.concat(F.lit("prof-"), F.col("pid").cast("string")).alias("profile_id"))
        .where(F.col("event_name").isNotNull()))
    lake.overwrite("bronze.events", conform(events, lake.spec("bronze.events").schema))
    graph = world.people.select(
        F.lit("customer_id").alias("id_type"), customer.alias("value"),
        F.xxhash64(F.lit("customer_id"), customer).alias("vertex_id"),
        F.concat(F.lit("prof-"), F.col("pid").cast("string")).alias("profile_id"),
        F.lit(end_date - dt.timedelta(days=days)).alias("profile_created_at"))
    lake.overwrite("gold.id_graph", conform(graph, lake.spec("gold.id_graph").schema))
    world.sessions.unpersist()
    return lake.read("bronze.events").select(
        "event_name", "event_time", "event_date", "order_id", "product_id",
        F.concat(F.lit("prof-"), F.substring(F.col("identifiers")["customer_id"], 2, 20)).alias("profile_id"))
