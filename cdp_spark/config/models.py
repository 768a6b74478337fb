"""Typed configuration models. Every model forbids unknown keys so that typos surface as errors."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt


class Strict(BaseModel):
    """Base for all config models: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EngineConfig(Strict):
    """How Spark runs: embedded local mode, or the cluster's session under spark-submit/Databricks."""

    mode: Literal["auto", "embedded", "cluster"] = "auto"
    app_name: str = "cdp-spark"
    cores: PositiveInt | None = Field(None, description="local[N]; defaults to all cores")
    shuffle_partitions: PositiveInt | None = Field(None, description="defaults to 2 x cores in embedded mode")
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = "WARN"
    spark_conf: dict[str, str] = Field(default_factory=dict)


class LakeConfig(Strict):
    """Where the Delta tables live and which backend writes them."""

    root: str = "./lake"
    backend: Literal["auto", "embedded", "delta-spark"] = "auto"
    vacuum_retention_hours: PositiveInt = 168
    log_retention_days: PositiveInt = 30
    storage_options: dict[str, str] = Field(default_factory=dict, description="object-store credentials (secrets)")
    checkpoint_dir: str | None = Field(None, description="Spark checkpoints; defaults to <root>/_system/checkpoints")

    def model_post_init(self, _context: object) -> None:
        if self.checkpoint_dir is None:
            object.__setattr__(self, "checkpoint_dir", self.root.rstrip("/") + "/_system/checkpoints")


class PipelineConfig(Strict):
    """The daily pipeline: stage order and ledger behaviour."""

    stages: list[str] = Field(
        default_factory=lambda: ["ingest", "identity", "profiles", "scores", "audiences", "activation"]
    )
    stale_after_minutes: PositiveInt = Field(
        180, description="a 'running' ledger entry older than this, with no live process, is shown as stale"
    )


class DemoConfig(Strict):
    """The demo retailer that `cdp demo` and `cdp generate` create."""

    people: PositiveInt = 2000
    days: PositiveInt = 30
    seed: int = 42
    end_date: dt.date = dt.date(2026, 11, 1)
    out_dir: str | None = Field(None, description="defaults to <lake.root>/demo")


class CdpConfig(Strict):
    """The whole resolved configuration: `conf/cdp.yaml` plus the domain files it references.

    Domain sections (sources, catalogue, identity, ...) are added as fields by the stages that own them; `files`
    in cdp.yaml says where each one is loaded from.
    """

    engine: EngineConfig = Field(default_factory=EngineConfig)
    lake: LakeConfig = Field(default_factory=LakeConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    demo: DemoConfig = Field(default_factory=DemoConfig)
    files: dict[str, str] = Field(default_factory=dict, description="domain name -> file or folder, relative to cdp.yaml")

    @property
    def demo_dir(self) -> str:
        return self.demo.out_dir or self.lake.root.rstrip("/") + "/demo"
