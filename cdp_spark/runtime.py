"""Wiring for jobs, the CLI and notebooks: config -> Spark session -> lake, built once and passed explicitly.

Example:
    >>> rt = Runtime.start(load_config("conf/cdp.yaml"))   # doctest: +SKIP
    >>> rt.lake.read("ops.job_runs").count()                # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cdp_spark.config import CdpConfig
from cdp_spark.lake import Lake, open_lake
from cdp_spark.lake.embedded import EmbeddedLake
from cdp_spark.lake.registry import default_registry

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession


@dataclass
class Runtime:
    """Everything a stage needs, created explicitly: no module-level sessions."""

    config: CdpConfig
    spark: "SparkSession"
    lake: Lake

    @classmethod
    def start(cls, config: CdpConfig) -> "Runtime":
        from cdp_spark.spark import session

        spark = session(config)
        return cls(config, spark, open_lake(spark, config))


def metadata_lake(config: CdpConfig) -> Lake:
    """A lake for metadata-only commands (tables, history, runs): delta-rs reads the log, no JVM is started."""
    return EmbeddedLake(
        None,  # type: ignore[arg-type]
        config.lake.root,
        default_registry(),
        storage_options=dict(config.lake.storage_options),
    )
