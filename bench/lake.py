"""Benchmark: the lake's two backends (embedded: Spark writes Parquet, delta-rs commits; delta-spark: Delta's JVM
writer) against plain Spark Parquet, in one process.

Writes then reads N rows of a realistic events schema partitioned by date through each backend and through plain
`df.write.parquet`, prints rows/s and the ratios, and times a 10k-row merge into the N-row table per backend.

    cdp jars fetch delta
    python -m bench.lake --rows 10000000
"""
from __future__ import annotations

import argparse
import shutil
import tempfile

from pyspark.sql import functions as F
from pyspark.sql import types as T

from bench.common import Timer, write_result
from cdp_spark.lake import Column, TableRegistry, TableSpec
from cdp_spark import jars
from cdp_spark.lake.delta_spark import DeltaSparkLake
from cdp_spark.lake.embedded import EmbeddedLake
from cdp_spark.spark import build_session, embedded_conf

EVENTS = TableSpec(
    name="bench.events",
    description="benchmark events",
    columns=[
        Column("event_id", T.StringType(), "key"),
        Column("profile_key", T.LongType(), "who"),
        Column("event_name", T.StringType(), "what"),
        Column("source", T.StringType(), "where from"),
        Column("email", T.StringType(), "identifier", pii="pii"),
        Column("cookie_id", T.StringType(), "identifier"),
        Column("product_id", T.StringType(), "product"),
        Column("price", T.DoubleType(), "price"),
        Column("quantity", T.IntegerType(), "quantity"),
        Column("properties", T.StringType(), "JSON properties"),
        Column("event_time", T.TimestampType(), "when"),
        Column("event_date", T.DateType(), "partition"),
    ],
    keys=("event_date", "event_id"),
    partition_by=("event_date",),
)


def events(spark, rows: int, days: int = 30):
    """Deterministic synthetic events spread over ``days`` dates."""
    names = F.array(*[F.lit(n) for n in ("page", "product_viewed", "add_to_cart", "order_completed", "login")])
    h = F.xxhash64("id")
    return spark.range(rows).select(
        F.concat(F.lit("evt-"), F.col("id").cast("string")).alias("event_id"),
        (F.abs(h) % (rows // 10 + 1)).alias("profile_key"),
        names[F.abs(h) % 5].alias("event_name"),
        F.when(F.col("id") % 3 == 0, "app").otherwise("web").alias("source"),
        F.when(F.col("id") % 4 == 0, F.concat(F.lit("u"), (F.abs(h) % 100000).cast("string"), F.lit("@example.com"))).alias("email"),
        F.sha1(F.col("id").cast("string")).alias("cookie_id"),
        F.concat(F.lit("sku-"), (F.abs(h) % 5000).cast("string")).alias("product_id"),
        (F.abs(h) % 10000 / 100.0).alias("price"),
        (F.abs(h) % 4 + 1).cast("int").alias("quantity"),
        F.to_json(F.struct((F.abs(h) % 7).alias("variant"), F.lit("campaign-x").alias("utm"))).alias("properties"),
        F.timestamp_seconds(F.lit(1790000000) + (F.col("id") * (days * 86400) / rows).cast("long")).alias("event_time"),
    ).withColumn("event_date", F.to_date("event_time"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--merge-rows", type=int, default=10_000)
    parser.add_argument("--backends", default="embedded,delta-spark",
                        help="lake backends to measure beside plain Parquet (delta-spark loads the cached jars)")
    args = parser.parse_args()
    backends = args.backends.split(",")
    work = tempfile.mkdtemp(prefix="cdp-bench-lake-")
    extra: dict[str, str] = {}
    if "delta-spark" in backends:
        extra, missing = jars.session_conf(["delta"])
        if missing:
            raise SystemExit("delta-spark needs Delta's jars: run `cdp jars fetch delta` first")
    spark = build_session("bench-lake", embedded_conf(cores=2, extra=extra), f"{work}/ckpt")
    kinds = {"embedded": EmbeddedLake, "delta-spark": DeltaSparkLake}
    lakes = {b: kinds[b](spark, f"{work}/{b}", TableRegistry([EVENTS])) for b in backends}
    source = events(spark, args.rows).cache()
    source.count()
    for lake in lakes.values():
        lake.create_if_missing("bench.events")

    def scan(df) -> None:
        df.write.format("noop").mode("overwrite").save()

    # Two rounds in alternating order; the best of each counts, so JIT warm-up favours no side.
    best: dict[str, float] = {}

    def measure(key: str, action) -> None:  # type: ignore[no-untyped-def]
        with Timer() as t:
            action()
        best[key] = min(best.get(key, float("inf")), t.seconds)

    for round_no in range(2):
        plain_dir = f"{work}/plain{round_no}"
        writes = [("parquet_write", lambda: source.write.partitionBy("event_date").parquet(plain_dir))]
        writes += [(f"{b}_write", lambda lake=lake: lake.overwrite("bench.events", source)) for b, lake in lakes.items()]
        for key, action in writes if round_no == 0 else reversed(writes):
            measure(key, action)
        reads = [("parquet_read", lambda: scan(spark.read.parquet(plain_dir)))]
        reads += [(f"{b}_read", lambda lake=lake: scan(lake.read("bench.events"))) for b, lake in lakes.items()]
        for key, action in reads if round_no == 0 else reversed(reads):
            measure(key, action)

    changes = (
        source.where(F.col("event_id").isin([f"evt-{i}" for i in range(0, args.rows, args.rows // args.merge_rows)]))
        .withColumn("price", F.col("price") + 1)
    ).cache()
    changes.count()
    rows = args.rows
    results = {}
    for b, lake in lakes.items():
        with Timer() as merge:
            result = lake.merge("bench.events", changes)
        results[b] = {
            "write_rows_per_s": round(rows / best[f"{b}_write"]),
            "write_ratio": round(best["parquet_write"] / best[f"{b}_write"], 3),
            "read_rows_per_s": round(rows / best[f"{b}_read"]),
            "read_ratio": round(best["parquet_read"] / best[f"{b}_read"], 3),
            "merge_rows": (result.metrics or {}).get("num_source_rows"),
            "merge_seconds": round(merge.seconds, 2),
            "merge_metrics": result.metrics,
        }
        print(b, results[b], flush=True)
    payload = {
        "rows": rows,
        "parquet_write_rows_per_s": round(rows / best["parquet_write"]),
        "parquet_read_rows_per_s": round(rows / best["parquet_read"]),
        "backends": results,
        "targets": {"write_ratio": ">= 0.7", "read_ratio": ">= 0.9"},
        "best_seconds_of_2": {k: round(v, 2) for k, v in best.items()},
    }
    write_result("lake", payload)
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
