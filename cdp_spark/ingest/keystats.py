"""Raw key statistics: every incoming key of a source with predicted type, first/last seen, times seen,
approximate distinct values (HLL sketches, mergeable across runs) and whether it is mapped.

Example:
    >>> batch = key_stats(raw, source, seen_at)       # doctest: +SKIP
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_spark.ingest.sources import Source

_PATTERNS = [("boolean", r"^(?i)(true|false)$"), ("long", r"^-?\d{1,18}$"), ("double", r"^-?\d*\.\d+([eE][-+]?\d+)?$"),
             ("timestamp", r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")]


def predicted_type(values: Column) -> Column:
    """The narrowest type every sampled text value fits (aggregate expression over one key's values)."""
    checks = [(name, F.min(F.when(values.isNull(), True).otherwise(values.rlike(p)))) for name, p in _PATTERNS]
    out = F.lit("string")
    for name, ok in reversed(checks):
        out = F.when(ok, F.lit(name)).otherwise(out)
    return out


TYPE_SAMPLE_ROWS = 50_000


def key_stats(raw: DataFrame, source: Source, seen_at: Column, rows: int | None = None) -> DataFrame:
    """One row per incoming key of this batch, in `bronze.raw_keys` shape (sketch per batch).

    Every key is aggregated side by side in one pass (count, HLL sketch) rather than exploding the batch into
    (key, value) rows, which multiplied the rows by the number of keys and shuffled them. Keys without a non-null
    value in the batch are left out. The predicted type needs four regular expressions per value; for a batch of
    known size `rows` above `TYPE_SAMPLE_ROWS` it is checked on a seeded random sample of about that many rows
    (measured: the type checks cost more than counting and sketching together).
    """
    keys = [f for f in raw.schema.fields if not f.name.startswith("_")]
    if not keys:
        return raw.sparkSession.createDataFrame([], "source string").limit(0)
    mapped = {v for v in source.mapping.values()} | {e.column for e in source.consent.purposes.values()}
    if source.timestamp:
        mapped.add(source.timestamp.field)
    value = {f.name: F.col(f"`{f.name}`").cast("string") for f in keys}
    texts = [i for i, f in enumerate(keys) if f.dataType.simpleString() == "string"]
    # A key with no value in the sample has no evidence of a narrower type: "string" (not the vacuous "boolean").
    types = [F.when(F.count(value[keys[i].name]) > 0, predicted_type(value[keys[i].name])).otherwise(F.lit("string"))
             .alias(f"t{i}") for i in texts]
    counts = [c for i, f in enumerate(keys)
              for c in (F.count(value[f.name]).alias(f"n{i}"), F.hll_sketch_agg(value[f.name]).alias(f"h{i}"))]
    if rows is not None and rows > TYPE_SAMPLE_ROWS and types:
        sample = raw.sample(fraction=TYPE_SAMPLE_ROWS / rows, seed=17)
        totals = raw.agg(*counts).crossJoin(sample.agg(*types))
    else:
        totals = raw.agg(*counts, *types)
    per_key = [F.struct(F.lit(f.name).alias("key"), F.col(f"n{i}").alias("times_seen"),
                        F.col(f"h{i}").alias("distinct_sketch"),
                        (F.col(f"t{i}") if i in texts else F.lit(f.dataType.simpleString())).alias("predicted_type"))
               for i, f in enumerate(keys)]
    stacked = totals.select(F.explode(F.array(*per_key)).alias("k")).select("k.*").where(F.col("times_seen") > 0)
    return stacked.select(
        F.lit(source.name).alias("source"), "key", "predicted_type",
        seen_at.alias("first_seen"), seen_at.alias("last_seen"), F.col("times_seen").cast("long"),
        F.hll_sketch_estimate("distinct_sketch").cast("long").alias("approx_distinct"), "distinct_sketch",
        F.col("key").isin(*sorted(mapped)).alias("mapped") if mapped else F.lit(False).alias("mapped"),
    )


def combine(old: DataFrame, batch: DataFrame) -> DataFrame:
    """Merge a batch's stats into the stored ones: counts add, sketches union, first/last seen widen."""
    both = old.unionByName(batch)
    return both.groupBy("source", "key").agg(
        F.last("predicted_type").alias("predicted_type"), F.min("first_seen").alias("first_seen"),
        F.max("last_seen").alias("last_seen"), F.sum("times_seen").cast("long").alias("times_seen"),
        F.hll_union_agg("distinct_sketch", True).alias("distinct_sketch"), F.max("mapped").alias("mapped"),
    ).withColumn("approx_distinct", F.hll_sketch_estimate("distinct_sketch").cast("long"))
