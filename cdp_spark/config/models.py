"""Typed configuration models. Every model forbids unknown keys so that typos surface as errors."""
from __future__ import annotations

import datetime as dt
import os
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, PositiveInt, create_model, model_validator

from cdp_spark.config_base import Strict, repeated
from cdp_spark.domains import SECTIONS
from cdp_spark.jars import BUNDLES


class EngineConfig(Strict):
    """How Spark runs: embedded local mode, or the cluster's session under spark-submit/Databricks."""

    mode: Literal["auto", "embedded", "cluster"] = "auto"
    app_name: str = "cdp-spark"
    cores: PositiveInt | None = Field(None, description="local[N]; defaults to all cores")
    shuffle_partitions: PositiveInt | None = Field(None, description="defaults to 2 x cores in embedded mode")
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = "WARN"
    spark_conf: dict[str, str] = Field(default_factory=dict)
    jars: Literal["none", "auto", "required"] = Field(
        "none", description="embedded mode: put the cached JVM jar bundles on the classpath (`cdp jars fetch`); "
                            "auto fetches missing ones once and falls back to the embedded lake when it cannot, "
                            "required fails instead")
    jar_bundles: list[str] = Field(default_factory=lambda: ["delta", "kafka"],
                                   description="which bundles `jars` loads (see `cdp jars list`)")

    @model_validator(mode="after")
    def _known_bundles(self) -> "EngineConfig":
        unknown = [b for b in self.jar_bundles if b not in BUNDLES or not BUNDLES[b].on_classpath]
        if unknown:
            known = ", ".join(n for n, b in BUNDLES.items() if b.on_classpath)
            raise ValueError(f"jar_bundles: unknown bundle(s) {', '.join(map(repr, unknown))} (expected any of {known})")
        return self


class LakeConfig(Strict):
    """Where the Delta tables live and which backend writes them."""

    root: str = "./lake"
    backend: Literal["auto", "embedded", "delta-spark"] = "auto"
    vacuum_retention_hours: PositiveInt = 168
    log_retention_days: PositiveInt = 30
    storage_options: dict[str, str] = Field(default_factory=dict, description="object-store credentials (secrets)")
    checkpoint_dir: str | None = Field(None, description="Spark checkpoints; defaults to <root>/_system/checkpoints")

    @model_validator(mode="after")
    def _log_outlives_files(self) -> "LakeConfig":
        # Delta's JVM writer refuses a log retention shorter than the removed-file retention (vacuum's).
        if self.log_retention_days * 24 < self.vacuum_retention_hours:
            raise ValueError(f"log_retention_days: {self.log_retention_days} days is shorter than "
                             f"vacuum_retention_hours ({self.vacuum_retention_hours} h); expected at least "
                             f"{-(-self.vacuum_retention_hours // 24)} days")
        return self

    @model_validator(mode="after")
    def _storage_options_complete(self) -> "LakeConfig":
        from cdp_spark.lake.files import storage_option_problems

        problems = storage_option_problems(self.root, self.storage_options)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def model_post_init(self, _context: object) -> None:
        if self.checkpoint_dir is None:
            object.__setattr__(self, "checkpoint_dir", self.root.rstrip("/") + "/_system/checkpoints")


def _registered_stage(name: str) -> str:
    from cdp_spark.pipeline import STAGES, unknown_stage_message

    if name not in STAGES:
        raise ValueError(unknown_stage_message(name))
    return name


def _each_once(names: list[str]) -> list[str]:
    twice = repeated(names)
    if twice:
        raise ValueError(f"expected each stage once; listed more than once: {', '.join(twice)}")
    return names


def _in_order(names: list[str]) -> list[str]:
    from cdp_spark.pipeline import check_order

    check_order(names)  # a StageOrderError is a ValueError: reported as this key's error
    return names


class PipelineConfig(Strict):
    """The daily pipeline: stage order and ledger behaviour."""

    stages: Annotated[list[Annotated[str, AfterValidator(_registered_stage)]], AfterValidator(_each_once),
                      AfterValidator(_in_order)] = Field(
        default_factory=lambda: ["erasure", "ingest", "identity", "profiles", "connections", "scores", "content",
                                 "audiences", "activation", "serve"],
        description="the daily order; `erasure` (open erasure requests) runs first, so that tombstones suppress "
                    "re-delivered records and no later stage rebuilds an erased person; `serve` (the API's "
                    "serving store) last, so the API serves the day's scores and audiences. A stage may not read a "
                    "table that a later stage writes")
    stale_after_minutes: PositiveInt = Field(
        180, description="a 'running' ledger entry older than this, with no live process, is shown as stale"
    )


class OrgConfig(Strict):
    """The organisation this config and lake belong to. Data is never unified across organisations: each has its
    own lake root, and its id salts profile ids, so the same email in two orgs gives two unrelated profiles."""

    id: str = Field("default", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="organisation id (lower-case slug)")
    sandbox: bool = Field(False, description="a sandbox copy for validating sources: activation never reaches "
                                            "external destinations")


class DemoConfig(Strict):
    """The demo retailer that `cdp demo` and `cdp generate` create."""

    people: PositiveInt = 2000
    days: PositiveInt = 30
    seed: int = 42
    end_date: dt.date = dt.date(2026, 11, 1)
    out_dir: str | None = Field(None, description="defaults to <lake.root>/demo")
    truth_dir: str | None = Field(None, description="the generator's answer key (who is who); defaults to "
                                                     "<lake.root>-demo-truth, beside the lake root and never under it "
                                                     "(erasure's verification scans everything under the lake root)")


class CoreConfig(Strict):
    """The sections of `conf/cdp.yaml` itself: the organisation, the engine, the lake, the pipeline, the demo and
    `files` (where each domain's section is loaded from)."""

    org: OrgConfig = Field(default_factory=OrgConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    lake: LakeConfig = Field(default_factory=LakeConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    demo: DemoConfig = Field(default_factory=DemoConfig)
    files: dict[str, str] = Field(default_factory=dict, description="domain name -> file or folder, relative to cdp.yaml")

    @model_validator(mode="after")
    def _truth_outside_lake(self) -> "CoreConfig":
        truth = self.demo.truth_dir
        if truth and "://" not in truth and "://" not in self.lake.root:
            root, key = os.path.abspath(self.lake.root), os.path.abspath(truth)
            if key == root or key.startswith(root.rstrip(os.sep) + os.sep):
                raise ValueError(f"demo.truth_dir: {truth!r} is under lake.root {self.lake.root!r}; the answer key "
                                 "must live outside the lake (erasure's verification scans the whole lake root)")
        return self

    @property
    def demo_dir(self) -> str:
        return self.demo.out_dir or self.lake.root.rstrip("/") + "/demo"

    @property
    def demo_truth_dir(self) -> str:
        """Where `cdp demo`/`cdp generate` write the answer key: ``demo.truth_dir``, else beside the lake root."""
        return self.demo.truth_dir or self.lake.root.rstrip("/") + "-demo-truth"


# Sections of cdp.yaml itself; every other CdpConfig field is a domain's section, loadable from `files:`.
CORE_SECTIONS = tuple(CoreConfig.model_fields)

CdpConfig = create_model(
    "CdpConfig", __base__=CoreConfig, __module__=__name__,
    __doc__="""The whole resolved configuration: `conf/cdp.yaml` plus the domain files it references.

    The domain sections (catalogue, sources, identity, ...) are the ones the domains declare (`cdp_spark.domains`),
    each with the model its domain defines; `files` in cdp.yaml says where each one is loaded from.

    Example:
        >>> CdpConfig.model_validate({"sources": [{"name": "web", "path": "/landing/web"}]}).sources[0].format
        'json'
    """,
    **{s.name: (s.type, Field(default_factory=s.default, description=s.description)) for s in SECTIONS})
