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
import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

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


_NO_EVIDENCE = 1 << len(_PATTERNS)


def type_evidence(value: Column, sampled: Column) -> Column:
    """Per row, a bit per type of `_PATTERNS` the text value fits, for ``bit_and`` over a batch: a row that is not
    sampled, or has no value, fits every type and sets the no-evidence bit (`predicted_type` decodes the result).
    One aggregate per key instead of one per key and type."""
    fits = sum(F.when(value.rlike(pattern), 1 << i).otherwise(0) for i, (_, pattern) in enumerate(_PATTERNS))
    return F.when(sampled & value.isNotNull(), fits).otherwise(2 * _NO_EVIDENCE - 1)


def predicted_type(evidence: int | None) -> str:
    """The narrowest type every sampled value fits, from the ``bit_and`` of `type_evidence`; "string" without
    evidence (not the vacuous "boolean").

    Example:
        >>> predicted_type(0b0110), predicted_type(0b11111), predicted_type(0)
        ('long', 'string', 'string')
    """
    if evidence is None or evidence & _NO_EVIDENCE:
        return "string"
    return next((name for i, (name, _) in enumerate(_PATTERNS) if evidence & (1 << i)), "string")


# The predicted type needs four regular expressions per value (measured: more than counting and sketching
# together), so it is checked on the first this-many records of every input partition (a file split, or a
# micro-batch); counts and sketches see every record.
TYPE_SAMPLE_PER_PARTITION = 1_000


def sample_flag(per_partition: int | None = None) -> Column:
    """True for the first ``per_partition`` rows of each partition (deterministic, and no row count needed up front).

    Example:
        >>> df.withColumn("_sampled", sample_flag())      # doctest: +SKIP
    """
    per_partition = TYPE_SAMPLE_PER_PARTITION if per_partition is None else per_partition
    # monotonically_increasing_id is (partition index << 33) + the row's index in its partition.
    return F.monotonically_increasing_id().bitwiseAND((1 << 33) - 1) < per_partition


def aggregates(keys: Sequence[tuple[Column, T.DataType]], sampled: Column) -> list[Column]:
    """Aggregate columns over a batch for every key (value expression, type): count ``n<i>``, HLL sketch
    ``h<i>`` and, for text keys, the type evidence of the ``sampled`` rows ``t<i>`` (see `type_evidence`). Side
    by side in one pass, rather than exploding the batch into (key, value) rows (which multiplied the rows by the
    keys and shuffled them). The stage computes them with `DataFrame.observe` while it caches its batch;
    `from_totals` turns the result into `bronze.raw_keys` rows.

    Example:
        >>> totals = raw.agg(*aggregates([(F.col("id"), T.StringType())], sample_flag())).first()  # doctest: +SKIP
    """
    out: list[Column] = []
    for i, (expr, data_type) in enumerate(keys):
        value = expr.cast("string")
        out += [F.count(value).alias(f"n{i}"), F.hll_sketch_agg(value).alias(f"h{i}")]
        if data_type.simpleString() == "string":
            out.append(F.bit_and(type_evidence(value, sampled)).alias(f"t{i}"))
    return out


def from_totals(spark: SparkSession, source: Source, keys: Sequence[tuple[str, T.DataType]], totals: Mapping[str, Any],
                seen_at: Column) -> DataFrame:
    """`bronze.raw_keys` rows of one batch (one per key seen) from the values of `aggregates`.

    Example:
        >>> from_totals(spark, source, [("id", T.StringType())], {"n0": 3, "h0": sketch, "t0": 0b0110}, seen_at)  # doctest: +SKIP
    """
    mapped = {v for v in source.mapping.values()} | {e.column for e in source.consent.purposes.values()}
    if source.timestamp:
        mapped.add(source.timestamp.field)
    rows = [(key, predicted_type(totals[f"t{i}"]) if f"t{i}" in totals else data_type.simpleString(),
             int(totals[f"n{i}"]), totals[f"h{i}"], key in mapped)
            for i, (key, data_type) in enumerate(keys) if totals[f"n{i}"]]
    stats = spark.createDataFrame(rows, "key string, predicted_type string, times_seen long, distinct_sketch binary, "
                                        "mapped boolean")
    return stats.select(
        F.lit(source.name).alias("source"), "key", "predicted_type", seen_at.alias("first_seen"),
        seen_at.alias("last_seen"), "times_seen",
        F.hll_sketch_estimate("distinct_sketch").cast("long").alias("approx_distinct"), "distinct_sketch", "mapped",
    )


def key_stats(raw: DataFrame, source: Source, seen_at: Column) -> DataFrame:
    """One row per incoming key of ``raw`` (every column not starting with ``_``), in `bronze.raw_keys` shape: one
    aggregation (`aggregates`) collected, then `from_totals`.

    Example:
        >>> key_stats(raw, source, F.lit(dt.datetime(2026, 11, 1)).cast("timestamp")).show()   # doctest: +SKIP
    """
    keys = [(f.name, F.col(f"`{f.name}`"), f.dataType) for f in raw.schema.fields if not f.name.startswith("_")]
    if not keys:
        totals: Mapping[str, Any] = {}
    else:
        sampled = raw.withColumn("_sampled", sample_flag())
        totals = sampled.agg(*aggregates([(c, t) for _, c, t in keys], F.col("_sampled"))).first().asDict()
    return from_totals(raw.sparkSession, source, [(k, t) for k, _, t in keys], totals, seen_at)


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

    def __init__(self, spark: SparkSession, source: str, folder: str, app_id: str,
                 storage_options: dict[str, str] | None = None):
        from cdp_spark.lake.files import filesystem

        self.spark, self.source, self.app_id = spark, source, app_id
        self.fs, self.folder = filesystem(folder, storage_options)

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
