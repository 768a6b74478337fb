"""The delta-spark backend: Delta's own JVM writer, used when `io.delta` classes are on the classpath.

It keeps the contract of the embedded backend (same tables, same errors, same idempotency tokens, the same
`WriteResult` rows and metrics, the same `cdp.operation` in the history), so a lake can move between a laptop and
a cluster, and either backend can append to tables the other wrote (tests/test_lake_contract.py runs both).
Metadata reads (history, versions, transaction ids) go through delta-rs, which reads the same log.
"""
from __future__ import annotations

import contextlib
import json
import re
import threading
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from cdp_spark.lake.base import Lake, Txn, WriteResult
from cdp_spark.lake.errors import ConcurrentWriteError, LakeError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

# Delta's session-level idempotency settings apply to every write command (DataFrame writes, MERGE, DELETE).
_TXN_APP = "spark.databricks.delta.write.txnAppId"
_TXN_VERSION = "spark.databricks.delta.write.txnVersion"
_USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
_CONFLICT = re.compile(r"Concurrent\w*Exception|ConcurrentModification|DELTA_CONCURRENT")
_DELETE, _DIGEST = "_cdp_delete", "_cdp_digest"
_MERGE_COUNTS = ("num_source_rows", "num_target_rows_inserted", "num_target_rows_updated", "num_target_rows_deleted")
_REPLACE_WHERE_MISMATCH = re.compile(r"DELTA_REPLACE_WHERE_MISMATCH|does not conform to partial table overwrite")
# The commit metadata and idempotency token are session settings, shared by every thread of the driver (a stream's
# micro-batches and the folds beside them write at once). Interleaved, one thread restored another's token, and
# every later write with that token was skipped as already committed; so tagged commands run one at a time.
_SESSION_SETTINGS = threading.RLock()


class DeltaSparkLake(Lake):
    """Delta tables through delta-spark's DeltaTable API and ``format("delta")``."""

    backend = "delta-spark"

    def _table(self, name: str):  # type: ignore[no-untyped-def]
        from delta.tables import DeltaTable

        return DeltaTable.forPath(self.spark, self.path(name))

    def create_if_missing(self, name: str) -> bool:
        if self.exists(name):
            return False
        from delta.tables import DeltaTable

        spec = self.spec(name)
        builder = DeltaTable.createIfNotExists(self.spark).location(self.path(name)).addColumns(spec.schema)
        if spec.partition_by:
            builder = builder.partitionedBy(*spec.partition_by)
        for key, value in spec.table_properties.items():
            builder = builder.property(key, value)
        builder.comment(spec.description).execute()
        return True

    def read(self, name: str, *, version: int | None = None, timestamp: datetime | str | None = None) -> "DataFrame":
        reader = self.spark.read.format("delta")
        if timestamp is not None:
            if isinstance(timestamp, datetime) and timestamp.tzinfo is not None:
                timestamp = timestamp.isoformat()  # Delta parses ISO-8601 with its offset
            reader = reader.option("timestampAsOf", str(timestamp))
        elif version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.path(name))

    def read_path(self, path: str, *, version: int | None = None) -> "DataFrame":
        reader = self.spark.read.format("delta")
        return (reader.option("versionAsOf", version) if version is not None else reader).load(path)

    def append(self, name: str, df: "DataFrame", *, txn: Txn | None = None, evolve: bool = False) -> WriteResult:
        self.create_if_missing(name)
        if self.committed(name, txn):
            return WriteResult(name, "append", self.version(name), skipped=True)
        df, _ = self.conform(name, df, evolve=evolve)
        writer = df.write.format("delta").mode("append").option("mergeSchema", str(evolve).lower())
        return self._write(name, "append", txn, lambda: writer.save(self.path(name)))

    def overwrite(self, name: str, df: "DataFrame", *, where: str | None = None, txn: Txn | None = None) -> WriteResult:
        self.create_if_missing(name)
        if self.committed(name, txn):
            return WriteResult(name, "overwrite", self.version(name), skipped=True)
        df, _ = self.conform(name, df)
        writer = df.write.format("delta").mode("overwrite")
        if where is not None:
            writer = writer.option("replaceWhere", where)
        try:
            return self._write(name, "overwrite", txn, lambda: writer.save(self.path(name)),
                               extra={"where": where} if where else None)
        except Exception as exc:
            if where is not None and _REPLACE_WHERE_MISMATCH.search(str(exc)[:2000]):
                raise LakeError(f"{name}: overwrite where {where!r}: the data has rows outside that predicate") from None
            raise

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
        plan = self._merge_plan(name, source, keys, delete_unmatched, delete_where)
        if plan.isEmpty():  # nothing differs: like delta-rs, commit nothing
            return WriteResult(name, "merge", None, rows=0, metrics=dict.fromkeys(_MERGE_COUNTS, 0))
        columns = {f"`{c}`": f"s.`{c}`" for c in source.columns}
        merger = (self._table(name).alias("t").merge(plan.alias("s"), condition)
                  .whenMatchedDelete(condition=f"s.`{_DELETE}`")
                  .whenMatchedUpdate(set=columns)
                  .whenNotMatchedInsert(condition=f"NOT s.`{_DELETE}`", values=columns))
        return self._write(name, "merge", txn, merger.execute)

    def _merge_plan(self, name: str, source: "DataFrame", keys: list[str], delete_unmatched: bool,
                    delete_where: str | None) -> "DataFrame":
        """The rows a merge must touch: source rows that differ from the target (or are new), plus, with
        ``delete_unmatched``, target rows whose keys the source lacks, flagged for deletion.

        Delta's MERGE rewrites every file holding a matched row, even when the update changes nothing, so unchanged
        rows are dropped before it: a merge then rewrites only files with real changes. Rows are compared by the JSON
        of their non-key columns, since Spark cannot compare map columns."""
        from pyspark.sql import functions as F

        target = self.read(name)
        others = [c for c in source.columns if c not in keys]

        def digest(df: "DataFrame") -> "DataFrame":
            return df.withColumn(_DIGEST, F.to_json(F.struct(*[F.col(f"`{c}`") for c in others])) if others
                                 else F.lit(""))

        on = [F.col(f"s.`{k}`") == F.col(f"t.`{k}`") for k in keys] + [F.col(f"s.{_DIGEST}") == F.col(f"t.{_DIGEST}")]
        changed = (digest(source).alias("s").join(digest(target).alias("t"), on, "left_anti")
                   .drop(_DIGEST).withColumn(_DELETE, F.lit(False)))
        if not delete_unmatched:
            return changed
        scope = target.alias("t").where(delete_where) if delete_where else target.alias("t")  # it names t.<column>
        present = [F.col(f"t.`{k}`") == F.col(f"s.`{k}`") for k in keys]
        doomed = scope.join(source.select(*keys).alias("s"), present, "left_anti")
        return changed.unionByName(doomed.select(*source.columns).withColumn(_DELETE, F.lit(True)))

    def delete(self, name: str, predicate: str, *, txn: Txn | None = None) -> WriteResult:
        if self.committed(name, txn):
            return WriteResult(name, "delete", self.version(name), skipped=True)
        return self._write(name, "delete", txn, lambda: self._table(name).delete(predicate))

    def changes(self, name: str, start_version: int, end_version: int | None = None) -> "DataFrame":
        reader = self.spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", start_version)
        if end_version is not None:
            reader = reader.option("endingVersion", end_version)
        return reader.load(self.path(name))

    def optimize(self, name: str) -> dict[str, Any]:
        with self._commit_metadata("optimize", None):
            rows = self._table(name).optimize().executeCompaction().collect()
        return dict(rows[0].asDict(recursive=True).get("metrics") or {}) if rows else {}

    def set_table_properties(self, name: str, properties: dict[str, str]) -> None:
        pairs = ", ".join(f"'{k}' = '{v}'" for k, v in sorted(properties.items()))
        with self._commit_metadata("set_table_properties", None):
            self.spark.sql(f"ALTER TABLE delta.`{self.path(name)}` SET TBLPROPERTIES ({pairs})")

    # ---- internals ----
    def _write(self, name: str, operation: str, txn: Txn | None, action: Callable[[], Any],
               extra: dict[str, Any] | None = None) -> WriteResult:
        """Run one Delta write command tagged with our commit id; return its version, rows and metrics."""
        commit_id = uuid.uuid4().hex
        try:
            with self._commit_metadata(operation, txn, commit_id, extra):
                action()
        except Exception as exc:  # Delta raises py4j-wrapped ConcurrentModificationException subclasses
            if _CONFLICT.search(f"{type(exc).__name__} {str(exc)[:2000]}"):
                raise ConcurrentWriteError(f"{name}: {operation} conflicts with a concurrent commit; rerun it") from exc
            raise
        entry = next((h for h in self.history(name, 50) if h.get("cdp.commit_id") == commit_id), None)
        if entry is None:  # a MERGE that changed nothing commits nothing
            return WriteResult(name, operation, None, rows=0 if operation != "append" else None, metrics=_metrics({}))
        metrics = _metrics(entry.get("operationMetrics") or {})
        rows = {"append": "num_output_rows", "overwrite": "num_output_rows", "delete": "num_deleted_rows",
                "merge": "num_source_rows"}.get(operation)
        return WriteResult(name, operation, int(entry["version"]), rows=metrics.get(rows, 0) if rows else None,
                           metrics=metrics)

    @contextlib.contextmanager
    def _commit_metadata(self, operation: str, txn: Txn | None, commit_id: str | None = None,
                         extra: dict[str, Any] | None = None) -> Iterator[None]:
        """Delta's session settings for one command: our commit metadata (as the embedded backend writes it) and
        the idempotency token. They are always put back, so no later command inherits them."""
        conf = self.spark.conf
        metadata = {"cdp.operation": operation, "cdp.commit_id": commit_id or uuid.uuid4().hex, **(extra or {})}
        settings = {_USER_METADATA: json.dumps(metadata)}
        if txn is not None:
            settings.update({_TXN_APP: txn.app_id, _TXN_VERSION: str(txn.version)})
        with _SESSION_SETTINGS:
            previous = {key: conf.get(key, None) for key in settings}
            for key, value in settings.items():
                conf.set(key, value)
            try:
                yield
            finally:
                for key, value in previous.items():
                    self._restore_conf(key, value)

    def _restore_conf(self, key: str, value: str | None) -> None:
        if value is None:
            self.spark.conf.unset(key)
        else:
            self.spark.conf.set(key, value)


def _metrics(operation_metrics: dict[str, Any]) -> dict[str, Any]:
    """Delta's camelCase operation metrics (strings) as delta-rs names them: snake_case numbers."""
    out: dict[str, Any] = {}
    for key, value in operation_metrics.items():
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
        try:
            out[snake] = int(value)
        except (TypeError, ValueError):
            out[snake] = value
    return out
