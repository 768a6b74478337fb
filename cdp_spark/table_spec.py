"""How a domain declares a Delta table: its columns (name, Spark type, meaning, PII class), keys, partitioning and
change feed. Each domain lists its tables in its own ``tables.py``; `cdp_spark.domains` gathers them into the
registry (`cdp_spark.lake.registry.default_registry`). This module imports nothing of the package.

Example:
    >>> from pyspark.sql import types as T
    >>> spec = TableSpec("ops.example", "An example.", [Column("id", T.LongType(), "the key")], keys=("id",))
    >>> spec.layer, spec.table
    ('ops', 'example')
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pyspark.sql import types as T

PiiClass = Literal["pii", "sensitive"]

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
