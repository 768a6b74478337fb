"""The pipeline runner: registered stages in order, each recorded in the job ledger.

A stage is a function ``(spark, config, lake, as_of) -> StageResult``. Stages register themselves in
``STAGES`` (name -> "module:function") as they land; `daily` runs every registered stage named in
``pipeline.stages``, in that order. Re-running a stage for the same as-of must leave the same tables: stages make
their writes idempotent with ``Txn`` tokens derived from the stage and the as-of date.

Example:
    >>> report = run_job(spark, config, lake, "daily", date(2026, 11, 1))     # doctest: +SKIP
    >>> report.status                                                          # doctest: +SKIP
    'succeeded'
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Callable

from cdp_spark.ops.ledger import Ledger

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake

log = logging.getLogger(__name__)

DAILY = "daily"

# Stage name -> "module:function". A stage is listed here once its issue has landed.
STAGES: dict[str, str] = {"ingest": "cdp_spark.ingest.stage:run", "identity": "cdp_spark.identity.stage:run"}


@dataclass
class StageResult:
    """What a stage reports to the ledger: rows read and written per table, and any other metrics."""

    rows_in: dict[str, int] = field(default_factory=dict)
    rows_out: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


StageFunction = Callable[["SparkSession", "CdpConfig", "Lake", date], StageResult]


@dataclass
class RunReport:
    """The outcome of one job run."""

    run_id: str
    job: str
    as_of: date
    status: str
    stages: dict[str, str] = field(default_factory=dict)
    results: dict[str, StageResult] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "job": self.job,
            "as_of": self.as_of.isoformat(),
            "status": self.status,
            "stages": self.stages,
            "rows_in": {s: r.rows_in for s, r in self.results.items()},
            "rows_out": {s: r.rows_out for s, r in self.results.items()},
            "metrics": {s: r.metrics for s, r in self.results.items()},
            "error": self.error,
        }


class StageFailed(RuntimeError):
    """A stage raised; the ledger holds the details, the message names the stage."""

    def __init__(self, report: RunReport, stage: str):
        super().__init__(f"stage {stage} failed in run {report.run_id}: {report.error}")
        self.report = report
        self.stage = stage


class UnknownStageError(ValueError):
    """The requested stage is not registered."""


def _target(name: str, registry: dict[str, str]) -> str:
    if name not in registry:
        known = ", ".join(registry) or "none yet"
        raise UnknownStageError(f"unknown stage {name!r} (registered: {known}; or 'daily')")
    return registry[name]


def stage_function(name: str, registry: dict[str, str] | None = None) -> StageFunction:
    """Import a registered stage's function."""
    module, _, function = _target(name, registry if registry is not None else STAGES).partition(":")
    return getattr(importlib.import_module(module), function)


def plan(config: "CdpConfig", job: str, registry: dict[str, str] | None = None) -> list[str]:
    """The stages a job runs: one stage, or for `daily` the registered ones in the configured order."""
    registry = registry if registry is not None else STAGES
    if job != DAILY:
        _target(job, registry)
        return [job]
    return [s for s in config.pipeline.stages if s in registry]


def run_job(
    spark: "SparkSession",
    config: "CdpConfig",
    lake: "Lake",
    job: str,
    as_of: date,
    *,
    params: dict[str, Any] | None = None,
    registry: dict[str, str] | None = None,
) -> RunReport:
    """Run a stage or the daily pipeline for ``as_of``; raise StageFailed after recording a failure."""
    stages = plan(config, job, registry)
    ledger = Ledger(lake, stale_after_minutes=config.pipeline.stale_after_minutes)
    job_entry = ledger.start(job, as_of=as_of, params={"stages": stages, **(params or {})})
    report = RunReport(job_entry.run_id, job, as_of, "running")
    for name in stages:
        entry = ledger.start(job, as_of=as_of, step=name, run_id=job_entry.run_id)
        log.info("stage %s started (run %s, as of %s)", name, job_entry.run_id, as_of)
        try:
            result = stage_function(name, registry)(spark, config, lake, as_of)
        except Exception as exc:  # recorded, then re-raised as StageFailed for the exit code
            report.error = describe_error(exc)
            report.stages[name] = report.status = "failed"
            ledger.finish(entry, "failed", error=report.error)
            ledger.finish(job_entry, "failed", error=f"stage {name}: {report.error}")
            raise StageFailed(report, name) from exc
        report.results[name] = result
        report.stages[name] = "succeeded"
        ledger.finish(entry, "succeeded", rows_in=result.rows_in, rows_out=result.rows_out, metrics=result.metrics)
        log.info("stage %s succeeded: %s", name, result.rows_out)
    totals: dict[str, int] = {}
    for result in report.results.values():
        for table, rows in result.rows_out.items():
            totals[table] = totals.get(table, 0) + rows
    ledger.finish(job_entry, "succeeded", rows_out=totals)
    report.status = "succeeded"
    return report


def describe_error(exc: BaseException) -> str:
    """Type and first line of an error, bounded: enough to triage, short enough to keep data values out."""
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line[:500]}"
