"""The lake: Delta tables by logical name, behind one port with two backends.

Example:
    >>> from cdp_spark.lake import open_lake
    >>> lake = open_lake(spark, config)          # doctest: +SKIP
    >>> lake.read("ops.job_runs").count()         # doctest: +SKIP
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from cdp_spark.lake.base import Lake, TableInfo, Txn, WriteResult, utc_now
from cdp_spark.lake.errors import (
    ConcurrentWriteError,
    LakeError,
    SchemaMismatchError,
    TableMissingError,
    UnknownTableError,
    UnsupportedTableError,
)
from cdp_spark.lake.registry import Column, TableRegistry, TableSpec, default_registry

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

    from cdp_spark.config import CdpConfig


def open_lake(spark: "SparkSession", config: "CdpConfig", registry: TableRegistry | None = None) -> Lake:
    """The lake for this config: delta-spark when its JVM classes are loadable (or forced), else embedded.

    Example:
        >>> open_lake(spark, config).backend          # doctest: +SKIP
        'embedded'
    """
    from cdp_spark.lake.delta_spark import DeltaSparkLake
    from cdp_spark.lake.embedded import EmbeddedLake
    from cdp_spark.spark import capabilities

    backend = config.lake.backend
    if backend == "auto":
        backend = "delta-spark" if capabilities(spark).delta_jvm else "embedded"
    cls = DeltaSparkLake if backend == "delta-spark" else EmbeddedLake
    return cls(
        spark,
        config.lake.root,
        registry or default_registry(),
        storage_options=dict(config.lake.storage_options),
        vacuum_retention_hours=config.lake.vacuum_retention_hours,
    )


__all__ = [
    "Column",
    "ConcurrentWriteError",
    "Lake",
    "LakeError",
    "SchemaMismatchError",
    "TableInfo",
    "TableMissingError",
    "TableRegistry",
    "TableSpec",
    "Txn",
    "UnknownTableError",
    "UnsupportedTableError",
    "WriteResult",
    "default_registry",
    "open_lake",
    "utc_now",
]
