"""The delta-spark backend: Delta's own JVM writer, used when `io.delta` classes are on the classpath.

It keeps the contract of the embedded backend (same tables, same errors, same idempotency tokens), so a lake can
move between a laptop and a cluster. Metadata reads (history, versions, transaction ids) still go through delta-rs,
which reads the same log.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Sequence

from cdp_spark.lake.base import Lake, Txn, WriteResult
from cdp_spark.lake.errors import ConcurrentWriteError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

_TXN_APP = "spark.databricks.delta.write.txnAppId"
_TXN_VERSION = "spark.databricks.delta.write.txnVersion"


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
        self._save(writer, name, txn)
        return WriteResult(name, "append", self.version(name))

    def overwrite(self, name: str, df: "DataFrame", *, where: str | None = None, txn: Txn | None = None) -> WriteResult:
        self.create_if_missing(name)
        if self.committed(name, txn):
            return WriteResult(name, "overwrite", self.version(name), skipped=True)
        df, _ = self.conform(name, df)
        writer = df.write.format("delta").mode("overwrite")
        if where is not None:
            writer = writer.option("replaceWhere", where)
        self._save(writer, name, txn)
        return WriteResult(name, "overwrite", self.version(name))

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
        merger = self._table(name).alias("t").merge(source.alias("s"), condition)
        merger = merger.whenMatchedUpdateAll(condition=self._changed_condition(source.columns, keys))
        merger = merger.whenNotMatchedInsertAll()
        if delete_unmatched:
            merger = merger.whenNotMatchedBySourceDelete(condition=delete_where)
        self._with_txn(txn, merger.execute, name)
        return WriteResult(name, "merge", self.version(name))

    def delete(self, name: str, predicate: str, *, txn: Txn | None = None) -> WriteResult:
        if self.committed(name, txn):
            return WriteResult(name, "delete", self.version(name), skipped=True)
        self._with_txn(txn, lambda: self._table(name).delete(predicate), name)
        return WriteResult(name, "delete", self.version(name))

    def changes(self, name: str, start_version: int, end_version: int | None = None) -> "DataFrame":
        reader = self.spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", start_version)
        if end_version is not None:
            reader = reader.option("endingVersion", end_version)
        return reader.load(self.path(name))

    def optimize(self, name: str) -> dict[str, Any]:
        rows = self._table(name).optimize().executeCompaction().collect()
        return rows[0].asDict(recursive=True) if rows else {}

    def vacuum(self, name: str, retention_hours: int | None = None, *, dry_run: bool = False) -> list[str]:
        hours = self.vacuum_retention_hours if retention_hours is None else retention_hours
        if dry_run:
            return self.delta_table(name).vacuum(retention_hours=hours, dry_run=True, enforce_retention_duration=False)
        self.spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        self._table(name).vacuum(hours)
        return []

    def set_table_properties(self, name: str, properties: dict[str, str]) -> None:
        pairs = ", ".join(f"'{k}' = '{v}'" for k, v in sorted(properties.items()))
        self.spark.sql(f"ALTER TABLE delta.`{self.path(name)}` SET TBLPROPERTIES ({pairs})")

    def _save(self, writer, name: str, txn: Txn | None) -> None:  # type: ignore[no-untyped-def]
        if txn is not None:
            writer = writer.option("txnAppId", txn.app_id).option("txnVersion", txn.version)
        self._with_txn(None, lambda: writer.save(self.path(name)), name)

    def _with_txn(self, txn: Txn | None, action, name: str) -> None:  # type: ignore[no-untyped-def]
        """Run ``action`` with Delta's session-level idempotency settings, translating conflicts."""
        conf = self.spark.conf
        if txn is not None:
            conf.set(_TXN_APP, txn.app_id)
            conf.set(_TXN_VERSION, str(txn.version))
        try:
            action()
        except Exception as exc:  # delta raises py4j-wrapped ConcurrentModificationException subclasses
            if "Concurrent" in type(exc).__name__ or "ConcurrentModification" in str(exc)[:500]:
                raise ConcurrentWriteError(f"{name}: conflicting concurrent commit; rerun it") from exc
            raise
        finally:
            if txn is not None:
                conf.unset(_TXN_APP)
                conf.unset(_TXN_VERSION)
