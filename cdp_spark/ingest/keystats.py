"""Raw key statistics: every incoming key of a source with predicted type, first/last seen, times seen,
approximate distinct values (HLL sketches, mergeable across runs) and whether it is mapped.

The file stage folds each batch's stats into `bronze.raw_keys` at once (`fold`); the collector's stream keeps
them in `PendingKeyStats` and folds many micro-batches with one MERGE (a MERGE per micro-batch cost seconds).

Example:
    >>> batch = key_stats(raw, source, seen_at)       # doctest: +SKIP
    >>> fold(lake, "web", batch, Txn("ingest.web.abc", 1))   # doctest: +SKIP
"""
from __future__ import annotations

import datetime as dt
import os
import re
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_spark.ingest.sources import Source
from cdp_spark.ingest.tables import RAW_KEYS
from cdp_spark.lake import ConcurrentWriteError, Txn

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.lake import Lake

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
    # The newest evidence decides the type (max_by, not last(): a union has no row order to rely on).
    return both.groupBy("source", "key").agg(
        F.max_by("predicted_type", "last_seen").alias("predicted_type"), F.min("first_seen").alias("first_seen"),
        F.max("last_seen").alias("last_seen"), F.sum("times_seen").cast("long").alias("times_seen"),
        F.hll_union_agg("distinct_sketch", True).alias("distinct_sketch"), F.max("mapped").alias("mapped"),
    ).withColumn("approx_distinct", F.hll_sketch_estimate("distinct_sketch").cast("long"))


def fold(lake: "Lake", source: str, batch: DataFrame, txn: Txn) -> None:
    """Fold key stats of `source` (`key_stats` rows of one or more batches) into bronze.raw_keys: one MERGE.

    Example:
        >>> fold(lake, "web", key_stats(raw, source, seen_at), Txn("ingest.web.abc", 1))   # doctest: +SKIP
    """
    if lake.exists(RAW_KEYS.name):
        old = lake.read(RAW_KEYS.name).where(F.col("source") == source)
        batch = combine(old.select(*batch.columns), batch)
    else:  # several batches of the same keys still make one row per key
        batch = combine(batch.limit(0), batch)
    lake.merge(RAW_KEYS.name, batch.select(*RAW_KEYS.schema.fieldNames()), txn=txn)


_PENDING = re.compile(r"^batch-(\d+)\.parquet$")


class PendingKeyStats:
    """Key stats of streamed micro-batches, kept durably until `flush` folds them into bronze.raw_keys.

    One small Parquet file per batch id in `folder` (under the query's checkpoint), written atomically and
    overwritten when Spark replays the batch, so a batch counts once however often it runs. `flush` folds every
    pending batch with one MERGE carrying ``Txn(app_id, highest batch id)``, then removes the files. A crash between
    that MERGE and the removal leaves files whose ids are <= the committed version: the next flush drops them
    instead of counting them again. `app_id` must be unique per query (the stream uses its query id).

    Example:
        >>> pending = PendingKeyStats(spark, "web", "/lake/_checkpoints/collect_web/key_stats", "collect-keys.web.q1")  # doctest: +SKIP
        >>> pending.put(7, key_stats(raw, source, seen_at))                             # doctest: +SKIP
        >>> pending.flush(lake)          # number of batches folded                     # doctest: +SKIP
        1
    """

    def __init__(self, spark: SparkSession, source: str, folder: str, app_id: str):
        self.spark, self.source, self.app_id = spark, source, app_id
        self.fs, self.folder = pafs.FileSystem.from_uri(folder if "://" in folder else os.path.abspath(folder))

    def put(self, batch_id: int, stats: DataFrame, seen_at: dt.datetime | None = None) -> int:
        """Keep the key stats of micro-batch `batch_id` (replacing what an earlier attempt of it kept); `seen_at`,
        when given, becomes their first and last seen time."""
        table = stats.select(*RAW_KEYS.schema.fieldNames()).toArrow()
        if seen_at is not None:
            for name in ("first_seen", "last_seen"):
                i = table.schema.get_field_index(name)
                table = table.set_column(i, table.schema.field(i), pa.array([seen_at] * table.num_rows,
                                                                             table.schema.field(i).type))
        self.fs.create_dir(self.folder, recursive=True)
        final = f"{self.folder}/batch-{int(batch_id)}.parquet"
        temp = f"{self.folder}/.batch-{int(batch_id)}.parquet.tmp"
        # Written aside, then renamed: a kill mid-write leaves a hidden temp file, never half a batch's stats.
        pq.write_table(table, temp, filesystem=self.fs)
        self.fs.move(temp, final)
        return table.num_rows

    def batch_ids(self) -> list[int]:
        """Ids of the micro-batches whose key stats are pending, in order."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.folder, allow_not_found=True))
        return sorted(int(m.group(1)) for i in infos if (m := _PENDING.match(i.base_name)))

    def flush(self, lake: "Lake", attempts: int = 3) -> int:
        """Fold the pending batches into bronze.raw_keys (one MERGE) and remove them; returns how many were folded.

        Safe to call again after any crash. A MERGE that loses a race with another writer of bronze.raw_keys (e.g.
        another source's stream) is retried: the Txn check makes a retry of an already committed fold a no-op."""
        ids = self.batch_ids()
        if not ids:
            return 0
        folded = self._fresh(lake, ids)
        for attempt in range(attempts):
            try:
                if folded:
                    fold(lake, self.source, self._read(folded), Txn(self.app_id, ids[-1]))
                break
            except ConcurrentWriteError:
                if attempt == attempts - 1:
                    raise
                folded = self._fresh(lake, ids)
        for i in ids:
            self.fs.delete_file(f"{self.folder}/batch-{i}.parquet")
        return len(folded)

    def _fresh(self, lake: "Lake", ids: list[int]) -> list[int]:
        """The ids not yet folded: above the version of this app's last committed fold."""
        done = lake.delta_table(RAW_KEYS.name).transaction_version(self.app_id) if lake.exists(RAW_KEYS.name) else None
        return [i for i in ids if done is None or i > done]

    def _read(self, ids: list[int]) -> DataFrame:
        from pyspark.sql.pandas.types import to_arrow_schema

        tables = [pq.read_table(f"{self.folder}/batch-{i}.parquet", filesystem=self.fs) for i in ids]
        schema = RAW_KEYS.schema
        arrow = to_arrow_schema(schema, timezone=self.spark.conf.get("spark.sql.session.timeZone"))
        table = pa.concat_tables([t.select(schema.fieldNames()).cast(arrow) for t in tables])
        return self.spark.createDataFrame(table, schema=schema)
