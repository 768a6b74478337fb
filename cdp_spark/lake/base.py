"""The lake port: one interface for every Delta table operation, implemented by two backends.

Stages only talk to `Lake`; which engine commits the files (delta-rs or delta-spark) is a deployment detail.

Example:
    >>> lake = open_lake(spark, config)                       # doctest: +SKIP
    >>> lake.append("ops.job_runs", df, txn=Txn("daily-2026-11-01", 1))   # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

from deltalake import DeltaTable

from cdp_spark.lake.errors import SchemaMismatchError, TableMissingError
from cdp_spark.lake.files import LakeFiles, delta_storage_options
from cdp_spark.lake.registry import TableRegistry, TableSpec

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql import types as T

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The current time as the lake's timestamps hold it: UTC, without a time zone (Spark's session time zone is
    UTC here, so a naive value is read back unchanged).

    Example:
        >>> utc_now().tzinfo is None
        True
    """
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Txn(NamedTuple):
    """An idempotency token: a write carrying an (app_id, version) already committed is a no-op."""

    app_id: str
    version: int


@dataclass(frozen=True)
class WriteResult:
    """What a write did. ``skipped`` is True when its Txn had already been committed."""

    table: str
    operation: str
    version: int | None
    skipped: bool = False
    rows: int | None = None
    metrics: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TableInfo:
    """Size facts of one table's current snapshot."""

    name: str
    path: str
    version: int | None
    rows: int
    files: int
    size_bytes: int
    partition_by: tuple[str, ...]


class Lake(ABC):
    """Delta tables addressed by logical name (``bronze.events``), stored under one root."""

    backend: str = "abstract"

    def __init__(
        self,
        spark: "SparkSession",
        root: str,
        registry: TableRegistry,
        *,
        storage_options: dict[str, str] | None = None,
        vacuum_retention_hours: int = 168,
    ):
        self.spark = spark
        # Local roots become absolute so Spark, delta-rs and pyarrow agree on every path.
        self.root = (root if "://" in root else os.path.abspath(root)).rstrip("/")
        self.registry = registry
        self.storage_options = delta_storage_options(self.root, storage_options) or None
        self.vacuum_retention_hours = vacuum_retention_hours

    @property
    def files(self) -> LakeFiles:
        """The lake's non-table files (API keys, erasure requests, the tombstone salt), on the tables' store."""
        return LakeFiles(self.root, self.storage_options)

    # ---- naming and metadata (shared: delta-rs reads the log for both backends) ----
    def spec(self, name: str) -> TableSpec:
        return self.registry[name]

    def path(self, name: str) -> str:
        spec = self.spec(name)
        return f"{self.root}/{spec.layer}/{spec.table}"

    def exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(self.path(name), storage_options=self.storage_options)

    def delta_table(self, name: str, version: int | None = None) -> DeltaTable:
        """The delta-rs handle of a table (for metadata; data flows through Spark)."""
        if not self.exists(name):
            raise TableMissingError(f"table {name} does not exist yet at {self.path(name)}")
        return DeltaTable(self.path(name), version=version, storage_options=self.storage_options)

    def version(self, name: str) -> int | None:
        return self.delta_table(name).version() if self.exists(name) else None

    def committed(self, name: str, txn: Txn | None) -> bool:
        """True when ``txn`` (or a later version of its app) is already in the table's log."""
        if txn is None or not self.exists(name):
            return False
        done = self.delta_table(name).transaction_version(txn.app_id)
        return done is not None and done >= txn.version

    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits, newest first: version, timestamp, operation, parameters and our custom metadata.

        delta-rs stores our metadata (``cdp.operation``, ...) as commit-info fields, delta-spark as the JSON of
        ``userMetadata``; both come back as the same top-level keys."""
        return [_lift_user_metadata(entry) for entry in self.delta_table(name).history(limit)]

    def info(self, name: str) -> TableInfo:
        import pyarrow as pa

        dt = self.delta_table(name)
        actions = pa.table(dt.get_add_actions(flatten=True))
        rows = actions.column("num_records").to_pylist() if actions.num_rows else []
        sizes = actions.column("size_bytes").to_pylist() if actions.num_rows else []
        return TableInfo(
            name=name,
            path=self.path(name),
            version=dt.version(),
            rows=int(sum(r or 0 for r in rows)),
            files=actions.num_rows,
            size_bytes=int(sum(sizes)),
            partition_by=tuple(dt.metadata().partition_columns),
        )

    def tables(self) -> list[TableInfo]:
        """Info for every registered table that exists."""
        return [self.info(spec.name) for spec in self.registry if self.exists(spec.name)]

    def table_schema(self, name: str) -> "T.StructType":
        """The table's current schema as Spark types (Delta's schema JSON is Spark's)."""
        from pyspark.sql import types as T

        return T.StructType.fromJson(json.loads(self.delta_table(name).schema().to_json()))

    # ---- schema checks (shared so both backends give the same errors) ----
    def conform(self, name: str, df: "DataFrame", *, evolve: bool = False) -> tuple["DataFrame", list["T.StructField"]]:
        """Order ``df``'s columns like the table; return new nullable columns when ``evolve`` allows them.

        Raises SchemaMismatchError listing missing, unexpected and retyped columns.
        """
        target = self.table_schema(name) if self.exists(name) else self.spec(name).schema
        want = {f.name: f for f in target.fields}
        have = {f.name: f for f in df.schema.fields}
        missing = [n for n in want if n not in have]
        extra = [f for n, f in have.items() if n not in want]
        retyped = [n for n in want if n in have and have[n].dataType != want[n].dataType]
        added: list[T.StructField] = []
        if evolve:
            # Evolution only ever adds columns, and always as nullable: old rows have no value for them.
            from pyspark.sql import types as T

            added = [T.StructField(f.name, f.dataType, True, f.metadata) for f in extra]
            extra = []
        if missing or extra or retyped:
            parts = []
            if missing:
                parts.append("missing columns: " + ", ".join(f"{n} ({want[n].dataType.simpleString()})" for n in missing))
            if extra:
                hint = "" if evolve else " (schema evolution is off)"
                parts.append(
                    "unexpected columns: " + ", ".join(f"{f.name} ({f.dataType.simpleString()})" for f in extra) + hint
                )
            if retyped:
                parts.append(
                    "type changes: "
                    + ", ".join(
                        f"{n} (table {want[n].dataType.simpleString()}, data {have[n].dataType.simpleString()})"
                        for n in retyped
                    )
                )
            raise SchemaMismatchError(f"{name}: schema mismatch; " + "; ".join(parts))
        return df.select(*want, *[f.name for f in added]), added

    def _merge_condition(self, name: str, keys: Sequence[str] | None) -> tuple[list[str], str]:
        keys = list(keys or self.spec(name).keys)
        if not keys:
            raise ValueError(f"{name}: merge needs keys, and the table declares none")
        return keys, " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)

    @staticmethod
    def _changed_condition(columns: Sequence[str], keys: Sequence[str]) -> str | None:
        """Update a matched row only when a non-key value differs (null-safe), so CDF shows real changes."""
        others = [c for c in columns if c not in keys]
        if not others:
            return None
        return " OR ".join(f"(t.`{c}` IS DISTINCT FROM s.`{c}`)" for c in others)

    # ---- operations every backend implements ----
    @abstractmethod
    def create_if_missing(self, name: str) -> bool:
        """Create the table from its spec; True when it was created now."""

    @abstractmethod
    def read(self, name: str, *, version: int | None = None, timestamp: datetime | str | None = None) -> "DataFrame":
        """The latest snapshot, or the one as of a version or timestamp."""

    @abstractmethod
    def read_path(self, path: str, *, version: int | None = None) -> "DataFrame":
        """A Delta table outside the registry (e.g. a source), by its path or URI."""

    @abstractmethod
    def append(self, name: str, df: "DataFrame", *, txn: Txn | None = None, evolve: bool = False) -> WriteResult:
        """Blind append. Concurrent appends both succeed."""

    def append_rows(self, name: str, rows: Sequence[tuple[Any, ...]], *, txn: Txn | None = None) -> None:
        """Append a few rows (tuples in the table's column order) in one commit; nothing when ``txn`` is there.

        Example:
            >>> lake.append_rows("bronze.ingested_files", [row], txn=Txn("ingest.web", 3))   # doctest: +SKIP
        """
        if rows:
            self.append(name, self.spark.createDataFrame(list(rows), self.spec(name).schema), txn=txn)

    @abstractmethod
    def overwrite(self, name: str, df: "DataFrame", *, where: str | None = None, txn: Txn | None = None) -> WriteResult:
        """Replace the whole table, or only the rows matching a partition predicate ``where``."""

    @abstractmethod
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
        """Upsert by keys; optionally delete target rows (matching ``delete_where``) absent from the source."""

    @abstractmethod
    def delete(self, name: str, predicate: str, *, txn: Txn | None = None) -> WriteResult:
        """Delete rows matching a SQL predicate."""

    @abstractmethod
    def changes(self, name: str, start_version: int, end_version: int | None = None) -> "DataFrame":
        """Change data feed rows (with _change_type, _commit_version, _commit_timestamp)."""

    @abstractmethod
    def optimize(self, name: str) -> dict[str, Any]:
        """Compact small files."""

    def vacuum(self, name: str, retention_hours: int | None = None, *, dry_run: bool = False) -> list[str]:
        """Delete files no longer referenced and older than the retention; returns the files.

        Both backends vacuum with delta-rs: ``full=True`` also removes orphans (staged files of killed writes), which
        Delta's JVM VACUUM (4.4, FULL too) left in place here, while reporting nothing deleted.

        Example:
            >>> lake.vacuum("bronze.events", 168, dry_run=True)      # doctest: +SKIP
            []
        """
        hours = self.vacuum_retention_hours if retention_hours is None else retention_hours
        return self.delta_table(name).vacuum(retention_hours=hours, dry_run=dry_run, enforce_retention_duration=False,
                                             full=True)

    def set_table_properties(self, name: str, properties: dict[str, str]) -> None:
        """Set Delta table properties (one commit), e.g. ``delta.logRetentionDuration``."""
        self.delta_table(name).alter.set_table_properties(properties, raise_if_not_exists=False)

    def checkpoint(self, name: str) -> None:
        """Write a Delta log checkpoint and drop expired log files, so readers replay less."""
        dt = self.delta_table(name)
        dt.create_checkpoint()
        dt.cleanup_metadata()

    def _empty(self, name: str) -> "DataFrame":
        return self.spark.createDataFrame([], self.table_schema(name))


def _lift_user_metadata(entry: dict[str, Any]) -> dict[str, Any]:
    raw = entry.get("userMetadata")
    if not isinstance(raw, str) or not raw.startswith("{"):
        return entry
    try:
        metadata = json.loads(raw)
    except ValueError:
        return entry
    return {**entry, **{k: v for k, v in metadata.items() if k.startswith("cdp.")}}
