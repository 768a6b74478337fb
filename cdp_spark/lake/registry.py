"""The table registry: every Delta table's schema, keys, partitioning, PII columns and description.

Stages declare their tables as `TableSpec`s in their own `tables.py`; `default_registry()` gathers them.

Example:
    >>> from pyspark.sql import types as T
    >>> spec = TableSpec("ops.example", "An example.", [Column("id", T.LongType(), "the key")], keys=("id",))
    >>> spec.layer, spec.table
    ('ops', 'example')
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Literal

from pyspark.sql import types as T

from cdp_spark.lake.errors import UnknownTableError

PiiClass = Literal["pii", "sensitive"]

# Modules whose TABLES lists make up the default registry, in pipeline order.
TABLE_MODULES = ("cdp_spark.ops.tables", "cdp_spark.ingest.tables", "cdp_spark.identity.tables",
                 "cdp_spark.profiles.tables", "cdp_spark.ml.tables", "cdp_spark.api.tables",
                 "cdp_spark.privacy.tables", "cdp_spark.audiences.tables", "cdp_spark.activation.tables",
                 "cdp_spark.connections.tables", "cdp_spark.content.tables")


@dataclass(frozen=True)
class Column:
    """One column: name, Spark type, one-line meaning and PII class (None when not personal data)."""

    name: str
    type: T.DataType
    description: str
    pii: PiiClass | None = None
    nullable: bool = True


@dataclass(frozen=True)
class TableSpec:
    """A logical Delta table, e.g. ``bronze.events``, stored at ``<lake root>/bronze/events``."""

    name: str
    description: str
    columns: list[Column]
    keys: tuple[str, ...] = ()
    partition_by: tuple[str, ...] = ()
    change_data_feed: bool = False
    properties: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        layer, _, table = self.name.partition(".")
        if not layer or not table:
            raise ValueError(f"table name {self.name!r} must look like 'layer.table'")
        names = [c.name for c in self.columns]
        for col in (*self.keys, *self.partition_by):
            if col not in names:
                raise ValueError(f"{self.name}: key/partition column {col!r} is not a column")

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def table(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def schema(self) -> T.StructType:
        """The Spark schema; PII classes travel as column metadata into the Delta log."""
        return T.StructType(
            [
                T.StructField(c.name, c.type, c.nullable, {"comment": c.description, **({"pii": c.pii} if c.pii else {})})
                for c in self.columns
            ]
        )

    @property
    def pii_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.pii]

    @property
    def table_properties(self) -> dict[str, str]:
        props = dict(self.properties)
        if self.change_data_feed:
            props["delta.enableChangeDataFeed"] = "true"
        return props


class TableRegistry:
    """An immutable lookup of table specs by logical name."""

    def __init__(self, specs: Iterable[TableSpec]):
        self._specs: dict[str, TableSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"table {spec.name} is registered twice")
            self._specs[spec.name] = spec

    def __getitem__(self, name: str) -> TableSpec:
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(sorted(self._specs))
            raise UnknownTableError(f"unknown table {name!r} (registered: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[TableSpec]:
        return iter(self._specs.values())

    def names(self) -> list[str]:
        return list(self._specs)

    def with_tables(self, specs: Iterable[TableSpec]) -> "TableRegistry":
        """A new registry with extra tables (e.g. a test's own)."""
        return TableRegistry([*self, *specs])


def default_registry() -> TableRegistry:
    """All tables declared by the installed stages.

    Example:
        >>> "ops.job_runs" in default_registry()
        True
    """
    specs: list[TableSpec] = []
    for module in TABLE_MODULES:
        specs.extend(importlib.import_module(module).TABLES)
    return TableRegistry(specs)
