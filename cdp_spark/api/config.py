"""Typed configuration of the Profile API and its serving store (`conf/api.yaml`, the `api` domain).

Example:
    >>> c = ApiConfig()
    >>> c.serving.backend, c.audit.flush_seconds
    ('sqlite', 2.0)
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from cdp_spark.config_base import Strict
from cdp_spark.ingest.sources import Expectation


class ServingConfig(Strict):
    """Where lookups are served from: a store built for them, refreshed at each profile rebuild."""

    backend: Literal["sqlite", "postgres"] = Field(
        "sqlite", description="sqlite (embedded, the default); postgres is reserved and not supported yet")
    path: str = Field("{lake_root}/_system/serving", description="folder of the SQLite store files; may use {lake_root}")
    postgres_dsn: str | None = Field(None, description="reserved for the postgres backend")
    keep_files: PositiveInt = Field(2, description="store files kept after a swap (readers may still hold old ones)")
    patch_replay_minutes: PositiveInt = Field(
        1440, description="API trait patches this recent are re-applied on top of a freshly built store, in case the "
                          "rebuild read bronze before they landed")

    @model_validator(mode="after")
    def _supported(self) -> "ServingConfig":
        if self.backend == "postgres":
            raise ValueError("backend 'postgres' is not supported yet; use 'sqlite' (the embedded store, "
                             "see docs/operations.md, Profile API)")
        return self

    def folder(self, lake_root: str) -> str:
        return self.path.format(lake_root=lake_root.rstrip("/"))


class AuditConfig(Strict):
    """`ops.api_audit`: every call is buffered in memory and appended in one Delta commit per flush."""

    flush_seconds: float = Field(2.0, gt=0, description="flush the buffer at least this often")
    flush_rows: PositiveInt = Field(5000, description="flush early when this many calls are buffered")


class ApiConfig(Strict):
    """The Profile API service (`cdp api serve`)."""

    host: str = "127.0.0.1"
    port: int = Field(8090, ge=0, le=65535)
    workers: PositiveInt = 1
    keys_path: str = Field("{lake_root}/_system/api/keys.json",
                           description="the org's API keys (hashed); may use {lake_root}")
    mask: str = Field("***", description="what a masked PII value is replaced with")
    max_patch_traits: PositiveInt = Field(50, description="traits one PATCH may set")
    default_country: str = Field("GB", description="region of phone-number traits written without a country code "
                                                   "(as a source's default_country)")
    expectations: list[Expectation] = Field(
        default_factory=list, description="checks on PATCHed trait values, as a source's expectations: not_null, valid, "
                                          "regex, range, allowed (not sql); drop/fail refuse the PATCH with 422, warn "
                                          "records a quality issue")
    serving: ServingConfig = Field(default_factory=ServingConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)

    @field_validator("expectations")
    @classmethod
    def _without_spark(cls, value: list[Expectation]) -> list[Expectation]:
        for i, e in enumerate(value):
            if e.check == "sql":
                raise ValueError(f"{i}.check: 'sql' needs Spark, which API writes do not run; use not_null, valid, "
                                 "regex, range or allowed")
        return value

    def keys_file(self, lake_root: str) -> str:
        return self.keys_path.format(lake_root=lake_root.rstrip("/"))
