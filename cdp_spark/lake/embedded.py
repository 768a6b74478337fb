"""The embedded backend: Spark computes and writes Parquet, delta-rs commits it atomically.

Why: on a machine without Delta's JVM jars, Spark still does the heavy lifting in parallel, and the `deltalake`
package (delta-rs) turns the written files into one Delta commit. Reads hand Spark the snapshot's file list.

Write path, in order:
1. Spark writes Parquet (partitioned like the table) to a fresh ``stage-<uuid>`` folder inside the table folder.
   It is deliberately not hidden (no leading ``_`` or ``.``) so that a full vacuum removes it after a crash.
2. On local disks the files move into the table's Hive-style partition folders (a rename), so Spark can read
   partition values from paths exactly as it reads plain Parquet.
3. delta-rs commits add (and remove) actions with the optional (app_id, version) transaction, once. Blind
   appends retry on a concurrent commit; every other operation raises ConcurrentWriteError instead.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake import Field as DeltaField
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, CommitProperties, RemoveAction, Transaction

from cdp_spark.lake import deltaio
from cdp_spark.lake.base import Lake, Txn, WriteResult
from cdp_spark.lake.files import filesystem
from cdp_spark.lake.errors import ConcurrentWriteError, LakeError, UnsupportedTableError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
APPEND_ATTEMPTS = 20


class EmbeddedLake(Lake):
    """Delta tables written by Spark (Parquet) + delta-rs (commits); see the module docstring."""

    backend = "embedded"

    # ---- create ----
    def create_if_missing(self, name: str) -> bool:
        if self.exists(name):
            return False
        spec = self.spec(name)
        try:
            DeltaTable.create(
                self.path(name),
                DeltaSchema.from_json(spec.schema.json()),
                mode="ignore",
                partition_by=list(spec.partition_by) or None,
                name=spec.name,
                description=spec.description,
                configuration=spec.table_properties,
                storage_options=self.storage_options,
            )
        except (CommitFailedError, DeltaError):
            if self.exists(name):  # another process created it first
                return False
            raise
        return True

    # ---- read ----
    def read(self, name: str, *, version: int | None = None, timestamp: datetime | str | None = None) -> "DataFrame":
        dt = self.delta_table(name)
        if timestamp is not None:
            dt.load_as_version(timestamp)
        elif version is not None:
            dt.load_as_version(version)
        return self._read_snapshot(name, dt, self.path(name))

    def read_path(self, path: str, *, version: int | None = None) -> "DataFrame":
        dt = DeltaTable(path, version=version, storage_options=self.storage_options)
        return self._read_snapshot(path, dt, path.rstrip("/"))

    def _read_snapshot(self, label: str, dt: DeltaTable, base: str) -> "DataFrame":
        """Hand Spark the snapshot's file list; `base` is the table's root URI."""
        self._check_readable(label, dt)
        from pyspark.sql import types as T

        schema = T.StructType.fromJson(json.loads(dt.schema().to_json()))
        partitions = list(dt.metadata().partition_columns)
        actions = pa.table(dt.get_add_actions(flatten=False))
        if actions.num_rows == 0:
            return self.spark.createDataFrame([], schema)
        paths = [unquote(p) for p in actions.column("path").to_pylist()]
        uris = [f"{base}/{p}" for p in paths]
        columns = schema.fieldNames()
        if not partitions:
            return self.spark.read.schema(schema).parquet(*uris).select(*columns)
        values = actions.column("partition").to_pylist()
        if all(_hive_consistent(p, v, partitions) for p, v in zip(paths, values)):
            # The fast path: exactly how Spark reads plain partitioned Parquet, with pruning on partition filters.
            reader = self.spark.read.schema(schema).option("basePath", base)
            return reader.parquet(*uris).select(*columns)
        return self._read_by_file_join(schema, partitions, uris, paths, values).select(*columns)

    def _read_by_file_join(self, schema, partitions, uris, paths, values):  # type: ignore[no-untyped-def]
        """Attach partition values by file name when files are not in Hive-style folders (e.g. object stores)."""
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        data_schema = T.StructType([f for f in schema.fields if f.name not in partitions])
        part_schema = T.StructType(
            [T.StructField("_cdp_file", T.StringType())] + [schema[p] for p in partitions]
        )
        rows = [(os.path.basename(p), *[(v or {}).get(c) for c in partitions]) for p, v in zip(paths, values)]
        mapping = self.spark.createDataFrame(rows, part_schema)
        data = self.spark.read.schema(data_schema).parquet(*uris).withColumn("_cdp_file", F.col("_metadata.file_name"))
        return data.join(F.broadcast(mapping), "_cdp_file").drop("_cdp_file")

    def _check_readable(self, name: str, dt: DeltaTable) -> None:
        mode = dt.metadata().configuration.get("delta.columnMapping.mode", "none")
        if mode not in (None, "none"):
            raise UnsupportedTableError(
                f"{name} uses Delta column mapping ({mode}); the embedded backend reads files by physical column "
                "name and would return wrong columns. Read it with the delta-spark backend (lake.backend: delta-spark)."
            )
        if "deletionVectors" in (dt.protocol().reader_features or []):
            try:
                has_dvs = pa.table(dt.deletion_vectors()).num_rows > 0
            except Exception:  # noqa: BLE001 - if delta-rs cannot tell, be safe
                has_dvs = True
            if has_dvs:
                raise UnsupportedTableError(
                    f"{name} has deletion vectors; reading its file list would resurrect deleted rows. "
                    "Run OPTIMIZE/REORG PURGE on it, or use the delta-spark backend (lake.backend: delta-spark)."
                )

    # ---- writes ----
    def append(self, name: str, df: "DataFrame", *, txn: Txn | None = None, evolve: bool = False) -> WriteResult:
        self.create_if_missing(name)
        if self.committed(name, txn):
            return WriteResult(name, "append", self.version(name), skipped=True)
        df, added = self.conform(name, df, evolve=evolve)
        if added:
            # delta-rs changes a schema only through ALTER; it is a separate, additive commit.
            self.delta_table(name).alter.add_columns([DeltaField.from_json(f.json()) for f in added])
        adds = self._write_files(name, df)
        return self._commit(name, "append", adds, txn=txn, retry=True)

    def append_rows(self, name: str, rows: Sequence[tuple[Any, ...]], *, txn: Txn | None = None) -> None:
        # A few rows (the file ledgers): straight through delta-rs, without a Spark job.
        names = self.spec(name).schema.fieldNames()
        deltaio.append_rows(self, name, [dict(zip(names, r)) for r in rows], txn)

    def overwrite(self, name: str, df: "DataFrame", *, where: str | None = None, txn: Txn | None = None) -> WriteResult:
        self.create_if_missing(name)
        if self.committed(name, txn):
            return WriteResult(name, "overwrite", self.version(name), skipped=True)
        df, _ = self.conform(name, df)
        # The snapshot this overwrite replaces: committing against it makes delta-rs detect concurrent writers.
        snapshot = self.delta_table(name)
        adds = self._write_files(name, df)
        if where is None:
            return self._commit(name, "overwrite", adds, txn=txn, mode="overwrite", snapshot=snapshot)
        if self._partitions_outside(name, [a.partition_values for a in adds], where):
            self._discard(name, adds)
            raise LakeError(f"{name}: overwrite where {where!r}: the data has rows outside that predicate")
        removes = self._files_matching(name, snapshot, where)
        return self._commit(name, "overwrite", [*adds, *removes], txn=txn, snapshot=snapshot, extra={"where": where})

    def merge(
        self,
        name: str,
        source: "DataFrame",
        *,
        keys: Sequence[str] | None = None,
        delete_unmatched: bool = False,
        delete_where: str | None = None,
        txn: Txn | None = None,
    ) -> WriteResult:
        self.create_if_missing(name)
        if self.committed(name, txn):
            return WriteResult(name, "merge", self.version(name), skipped=True)
        source, _ = self.conform(name, source)
        keys, condition = self._merge_condition(name, keys)
        # Merge sources are change sets (small or medium): delta-rs merges them from Arrow in one transaction.
        data = _arrow_for_table(source.toArrow(), self.delta_table(name))
        commit_id = uuid.uuid4().hex
        merger = self.delta_table(name).merge(
            data,
            condition,
            source_alias="s",
            target_alias="t",
            streamed_exec=False,
            commit_properties=self._properties("merge", txn, commit_id),
        )
        merger = merger.when_matched_update_all(predicate=self._changed_condition(source.columns, keys))
        merger = merger.when_not_matched_insert_all()
        if delete_unmatched:
            merger = merger.when_not_matched_by_source_delete(predicate=delete_where)
        try:
            metrics = merger.execute()
        except CommitFailedError as exc:
            raise ConcurrentWriteError(f"{name}: merge lost a race with another writer; rerun it ({exc})") from None
        return WriteResult(name, "merge", self._version_of(name, commit_id), rows=data.num_rows, metrics=metrics)

    def delete(self, name: str, predicate: str, *, txn: Txn | None = None) -> WriteResult:
        if self.committed(name, txn):
            return WriteResult(name, "delete", self.version(name), skipped=True)
        commit_id = uuid.uuid4().hex
        try:
            metrics = self.delta_table(name).delete(
                predicate, commit_properties=self._properties("delete", txn, commit_id)
            )
        except CommitFailedError as exc:
            raise ConcurrentWriteError(f"{name}: delete lost a race with another writer; rerun it ({exc})") from None
        deleted = metrics.get("num_deleted_rows")
        return WriteResult(name, "delete", self._version_of(name, commit_id), rows=deleted, metrics=metrics)

    # ---- change feed and maintenance ----
    def changes(self, name: str, start_version: int, end_version: int | None = None) -> "DataFrame":
        from pyspark.sql import types as T

        reader = self.delta_table(name).load_cdf(starting_version=start_version, ending_version=end_version)
        table = pa.table(reader)
        schema = T.StructType(
            self.table_schema(name).fields
            + [
                T.StructField("_change_type", T.StringType()),
                T.StructField("_commit_version", T.LongType()),
                T.StructField("_commit_timestamp", T.TimestampType()),
            ]
        )
        return _spark_from_arrow(self.spark, table, schema)

    def optimize(self, name: str) -> dict[str, Any]:
        return self.delta_table(name).optimize.compact(commit_properties=self._properties("optimize", None))

    # ---- internals ----
    def _uri(self, name: str, relative: str) -> str:
        base = self.path(name)
        return f"{base}/{relative}" if relative else base

    def _filesystem(self, name: str) -> tuple[pafs.FileSystem, str]:
        return filesystem(self.path(name), self.storage_options)

    def _write_files(self, name: str, df: "DataFrame") -> list[AddAction]:
        """Spark writes the Parquet files; return their add actions (files already in final place)."""
        partitions = list(self.delta_table(name).metadata().partition_columns)
        stage = f"stage-{uuid.uuid4().hex}"
        writer = df.write.mode("errorifexists")
        if partitions:
            writer = writer.partitionBy(*partitions)
        writer.parquet(self._uri(name, stage))
        fs, base = self._filesystem(name)
        local = isinstance(fs, pafs.LocalFileSystem)
        infos = fs.get_file_info(pafs.FileSelector(f"{base}/{stage}", recursive=True))
        files = []
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            if info.base_name.startswith((".", "_")):  # .crc checksums and markers: not data
                fs.delete_file(info.path)
                continue
            files.append(info)

        def describe(info: pafs.FileInfo) -> AddAction | None:
            relative = info.path[len(base) + 1 + len(stage) + 1 :]
            folders = relative.split("/")[:-1]
            values = _partition_values(folders, partitions)
            rows = pq.read_metadata(info.path, filesystem=fs).num_rows
            if rows == 0:
                fs.delete_file(info.path)
                return None
            target = relative if local else f"{stage}/{relative}"
            if local:
                os.makedirs(os.path.dirname(f"{base}/{target}"), exist_ok=True)
                fs.move(info.path, f"{base}/{target}")
            return AddAction(
                path=target,
                size=info.size,
                partition_values=values,
                modification_time=int(info.mtime_ns // 1_000_000) if info.mtime_ns else int(time.time() * 1000),
                data_change=True,
                stats=json.dumps({"numRecords": rows}),
            )

        with ThreadPoolExecutor(max_workers=8) as pool:
            adds = [a for a in pool.map(describe, files) if a is not None]
        if local:
            fs.delete_dir(f"{base}/{stage}")
        return adds

    def _discard(self, name: str, adds: list[AddAction]) -> None:
        fs, base = self._filesystem(name)
        for add in adds:
            fs.delete_file(f"{base}/{add.path}")

    def _partition_frame(self, name: str, rows: list[tuple[Any, ...]], partitions: list[str]):  # type: ignore[no-untyped-def]
        """A small DataFrame of (file path, typed partition values) to evaluate partition predicates in Spark SQL."""
        from pyspark.sql import functions as F

        schema = self.table_schema(name)
        frame = self.spark.createDataFrame(
            [tuple(None if v is None else str(v) for v in r) for r in rows] or [(None,) * (len(partitions) + 1)],
            ", ".join(f"`{c}` string" for c in ["_cdp_path", *partitions]),
        )
        typed = frame.select("_cdp_path", *[F.col(c).cast(schema[c].dataType).alias(c) for c in partitions])
        return typed if rows else typed.limit(0)

    def _files_matching(self, name: str, dt: DeltaTable, where: str) -> list[RemoveAction]:
        """Remove actions for the snapshot's files whose partition values satisfy ``where`` (Spark SQL)."""
        partitions = list(dt.metadata().partition_columns)
        if not partitions:
            raise LakeError(f"{name}: overwrite with a predicate needs a partitioned table")
        actions = pa.table(dt.get_add_actions(flatten=False))
        if actions.num_rows == 0:
            return []
        paths = actions.column("path").to_pylist()
        values = actions.column("partition").to_pylist()
        sizes = actions.column("size_bytes").to_pylist()
        rows = [(p, *[_partition_string(v.get(c)) for c in partitions]) for p, v in zip(paths, values)]
        matching = {r["_cdp_path"] for r in self._partition_frame(name, rows, partitions).where(where).collect()}
        now = int(time.time() * 1000)
        return [
            RemoveAction(
                path=p,
                data_change=True,
                deletion_timestamp=now,
                size=s,
                partition_values={c: _partition_string(v.get(c)) for c in partitions},
            )
            for p, v, s in zip(paths, values, sizes)
            if p in matching
        ]

    def _partitions_outside(self, name: str, values: list[dict[str, str | None]], where: str) -> bool:
        """True if any new file's partition does not satisfy ``where`` (the overwrite would lose those rows)."""
        partitions = list(self.delta_table(name).metadata().partition_columns)
        rows = [(str(i), *[v.get(c) for c in partitions]) for i, v in enumerate(values)]
        frame = self._partition_frame(name, rows, partitions)
        return bool(rows) and frame.where(f"NOT coalesce(({where}), false)").limit(1).count() > 0

    def _properties(self, operation: str, txn: Txn | None, commit_id: str | None = None, **extra: Any) -> CommitProperties:
        metadata = {"cdp.operation": operation, "cdp.commit_id": commit_id or uuid.uuid4().hex, **extra}
        return CommitProperties(
            custom_metadata=metadata,
            max_commit_retries=0,
            app_transactions=[Transaction(txn.app_id, txn.version)] if txn else None,
        )

    def _commit(
        self,
        name: str,
        operation: str,
        actions: list[AddAction | RemoveAction],
        *,
        txn: Txn | None,
        mode: str = "append",
        retry: bool = False,
        snapshot: DeltaTable | None = None,
        extra: dict[str, Any] | None = None,
    ) -> WriteResult:
        """Commit once. Blind appends (``retry``) re-read the log and try again on a race; other operations
        commit against ``snapshot`` so that any commit made since fails them with ConcurrentWriteError."""
        commit_id = uuid.uuid4().hex
        rows = sum(json.loads(a.stats)["numRecords"] for a in actions if isinstance(a, AddAction))
        adds = [a for a in actions if isinstance(a, AddAction)]
        for attempt in range(APPEND_ATTEMPTS if retry else 1):
            dt = snapshot if snapshot is not None and not retry else self.delta_table(name)
            if txn is not None and (dt.transaction_version(txn.app_id) or -1) >= txn.version:
                # A concurrent writer committed the same (app_id, version): ours is the duplicate.
                self._discard(name, adds)
                return WriteResult(name, operation, dt.version(), skipped=True)
            try:
                dt.create_write_transaction(
                    actions,
                    mode=mode,
                    schema=dt.schema(),
                    partition_by=list(dt.metadata().partition_columns) or None,
                    commit_properties=self._properties(operation, txn, commit_id, **(extra or {})),
                )
                return WriteResult(name, operation, self._version_of(name, commit_id), rows=rows)
            except CommitFailedError as exc:
                if not retry:
                    self._discard(name, adds)
                    raise ConcurrentWriteError(
                        f"{name}: {operation} conflicts with a concurrent commit; nothing was written, rerun it"
                    ) from exc
                time.sleep(min(2.0, 0.02 * 2**attempt))
        self._discard(name, adds)
        raise ConcurrentWriteError(f"{name}: {operation} could not commit after {APPEND_ATTEMPTS} attempts")

    def _version_of(self, name: str, commit_id: str) -> int | None:
        for entry in self.delta_table(name).history(50):
            if entry.get("cdp.commit_id") == commit_id:
                return int(entry["version"])
        return None


def _partition_values(folders: list[str], partitions: list[str]) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for folder in folders:
        key, _, raw = folder.partition("=")
        value = unquote(raw)
        values[key] = None if value == HIVE_NULL else value
    missing = [p for p in partitions if p not in values]
    if missing:
        raise LakeError(f"staged file without partition folders for {missing}")
    return {p: values[p] for p in partitions}


def _partition_string(value: Any) -> str | None:
    """Delta's string form of a partition value."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _hive_consistent(path: str, values: dict[str, Any] | None, partitions: list[str]) -> bool:
    """True when the file sits in folders ``col=value`` that spell its partition values (so Spark infers them)."""
    folders = path.split("/")[:-1]
    if len(folders) != len(partitions):
        return False
    for folder, column in zip(folders, partitions):
        key, _, raw = folder.partition("=")
        if key != column:
            return False
        parsed = unquote(raw)
        expected = _partition_string((values or {}).get(column))
        if (parsed == HIVE_NULL and expected is not None) or (parsed != HIVE_NULL and parsed != expected):
            return False
        if isinstance((values or {}).get(column), datetime):
            return False  # Spark's path parser and Delta format timestamps differently
    return True


def _arrow_for_table(table: pa.Table, dt: DeltaTable) -> pa.Table:
    """Cast Spark's Arrow output to the table's own Arrow types (delta-rs merges are strict about types)."""
    target = pa.schema(dt.schema().to_arrow())
    return table.select(target.names).cast(pa.schema(
        [pa.field(f.name, deltaio.plain_type(f.type), f.nullable, f.metadata) for f in target]))


def _spark_from_arrow(spark, table: pa.Table, schema):  # type: ignore[no-untyped-def]
    """A Spark DataFrame from a (driver-side) Arrow table, typed by ``schema``."""
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow_schema = to_arrow_schema(schema, timezone=spark.conf.get("spark.sql.session.timeZone"))
    table = table.select(schema.fieldNames())
    table = table.cast(pa.schema([pa.field(f.name, f.type, True) for f in arrow_schema]))
    return spark.createDataFrame(table, schema=schema)
