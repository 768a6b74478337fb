"""The pipeline runner: registered stages in order, each recorded in the job ledger.

A stage is a function ``(spark, config, lake, as_of) -> StageResult``, declared by its domain with the tables it
reads and writes (`cdp_spark.stage_spec.StageSpec`) and listed in `cdp_spark.domains`; ``STAGES`` (name ->
"module:function") is built from that list. `daily` runs every stage named in ``pipeline.stages``, in that order,
after `check_order` has confirmed that no stage reads a table a later one writes. Re-running a stage for the same
as-of must leave the same tables: stages make their writes idempotent with the ``Txn`` token of `stage_token`,
derived from the versions of the tables they read, their rules and the as-of date.

Example:
    >>> report = run_job(spark, config, lake, "daily", date(2026, 11, 1))     # doctest: +SKIP
    >>> report.status                                                          # doctest: +SKIP
    'succeeded'
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from cdp_spark import domains
from cdp_spark.domain_spec import load
from cdp_spark.lake.base import Txn
from cdp_spark.ops import progress
from cdp_spark.ops.ledger import Ledger
from cdp_spark.stage_spec import StageSpec

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake

log = logging.getLogger(__name__)

DAILY = "daily"

SPECS: dict[str, StageSpec] = {s.name: s for s in domains.STAGES}
STAGES: dict[str, str] = {s.name: s.run for s in domains.STAGES}  # name -> "module:function"
# The same with the full rebuild of each incremental stage (`cdp run daily --full`).
FULL_STAGES: dict[str, str] = {s.name: s.run_full or s.run for s in domains.STAGES}


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


class StageOrderError(ValueError):
    """A stage would read a table before the stage that writes it has run."""


def order_problems(stages: Sequence[StageSpec]) -> list[str]:
    """Why this order is wrong, one line per table a stage reads before a later stage writes it (empty when
    the order is right). A stage may read its own outputs and the tables it declares ``reads_previous``.

    Example:
        >>> early = StageSpec("a", run="m:f", reads=("gold.x",))
        >>> late = StageSpec("b", run="m:g", writes=("gold.x",))
        >>> order_problems([early, late])
        ["stage 'a' reads gold.x, which stage 'b' writes after it: put 'b' before 'a'"]
        >>> order_problems([late, early])
        []
    """
    problems = []
    for i, stage in enumerate(stages):
        for later in stages[i + 1:]:
            for table in stage.reads:
                if table in later.writes and table not in stage.writes:
                    problems.append(f"stage {stage.name!r} reads {table}, which stage {later.name!r} writes after "
                                    f"it: put {later.name!r} before {stage.name!r}")
    return problems


def check_order(names: Iterable[str]) -> None:
    """Refuse (StageOrderError) an order of declared stages in which one reads what a later one writes; names
    without a declaration (a test's own stages) are not checked."""
    problems = order_problems([SPECS[n] for n in names if n in SPECS])
    if problems:
        raise StageOrderError("; ".join(problems))


def read_versions(lake: "Lake", tables: Iterable[str]) -> dict[str, int | None]:
    """The current version of each table (None when it does not exist or is not registered)."""
    return {t: lake.version(t) if t in lake.registry else None for t in tables}


def _rule_json(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [_rule_json(v) for v in value]
    return value


def stage_token(stage: StageSpec, config: "CdpConfig", lake: "Lake", as_of: date, *,
                versions: Mapping[str, int | None] | None = None) -> Txn:
    """The stage's idempotency token: its name and a digest of its rules (the config sections it declares) and the
    versions of the tables it reads (``versions``, default the current ones of ``stage.token_reads``), with the
    as-of date as the transaction version. Same inputs, rules and as-of give the same token, so a re-run that
    finds the token committed changes nothing.

    Example:
        >>> txn = stage_token(SPECS["profiles"], config, lake, date(2026, 11, 1))   # doctest: +SKIP
        >>> txn.app_id, txn.version                                               # doctest: +SKIP
        ('profiles.3f2a9c0d1e4b5a6f', 20261101)
    """
    versions = read_versions(lake, stage.token_reads) if versions is None else versions
    rules = {name: _rule_json(getattr(config, name, None)) for name in stage.rules}
    digest = hashlib.sha256(json.dumps({"rules": rules, "reads": dict(sorted(versions.items()))},
                                       sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Txn(f"{stage.name}.{digest}", int(as_of.strftime("%Y%m%d")))


def unknown_stage_message(name: str, registry: dict[str, str] | None = None) -> str:
    """Why ``name`` is not a stage: the registered ones, and the closest when it looks like a typo.

    Example:
        >>> unknown_stage_message("identiy", {"ingest": "m:f", "identity": "m:g"})
        "expected a registered stage (ingest, identity); did you mean 'identity'?"
    """
    import difflib

    registry = STAGES if registry is None else registry
    close = difflib.get_close_matches(name, list(registry), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"expected a registered stage ({', '.join(registry) or 'none yet'}){hint}"


def _target(name: str, registry: dict[str, str]) -> str:
    if name not in registry:
        known = ", ".join(registry) or "none yet"
        raise UnknownStageError(f"unknown stage {name!r} (registered: {known}; or 'daily')")
    return registry[name]


def stage_function(name: str, registry: dict[str, str] | None = None) -> StageFunction:
    """Import a registered stage's function."""
    return load(_target(name, registry if registry is not None else STAGES))


def plan(config: "CdpConfig", job: str, registry: dict[str, str] | None = None) -> list[str]:
    """The stages a job runs: one stage, or for `daily` the registered ones in the configured order (refused with
    StageOrderError when a stage would read a table before the stage that writes it)."""
    registry = registry if registry is not None else STAGES
    if job != DAILY:
        _target(job, registry)
        return [job]
    stages = [s for s in config.pipeline.stages if s in registry]
    check_order(stages)
    return stages


def run_job(
    spark: "SparkSession",
    config: "CdpConfig",
    lake: "Lake",
    job: str,
    as_of: date,
    *,
    params: dict[str, Any] | None = None,
    registry: dict[str, str] | None = None,
    resume: bool = False,
    lock: bool = True,
) -> RunReport:
    """Run a stage or the daily pipeline for ``as_of``; raise StageFailed after recording a failure.

    ``lock`` holds the lake's ``pipeline`` lease for the run (LeaseHeld when another live run has it);
    ``resume`` skips the stages that the latest earlier run of this job and as-of finished.
    """
    from cdp_spark.ops import logs
    from cdp_spark.ops.ledger import new_run_id
    from cdp_spark.ops.lock import Lease
    from cdp_spark.ops.resume import resume_point

    stages = plan(config, job, registry)
    ledger = Ledger(lake, stale_after_minutes=config.pipeline.stale_after_minutes)
    run_id = new_run_id(job)
    with contextlib.ExitStack() as scope:
        scope.enter_context(logs.bind(run_id=run_id, stage="-"))
        if lock:  # raises LeaseHeld before anything is recorded
            ttl = timedelta(minutes=config.pipeline.stale_after_minutes)
            scope.enter_context(Lease(lake, run_id=run_id, job=job, ttl=ttl))
        point = resume_point(ledger, job, as_of, stages) if resume else None
        resumed = {"resume_of": point.previous_run_id} if point and point.previous_run_id else {}
        job_entry = ledger.start(job, as_of=as_of, params={"stages": stages, **resumed, **(params or {})}, run_id=run_id)
        report = RunReport(run_id, job, as_of, "running")
        if point and point.done:
            log.info("resuming after run %s: %s already done", point.previous_run_id, ", ".join(point.done))
        for name in stages:
            if point and name in point.done:
                ledger.skip(job, as_of=as_of, step=name, run_id=run_id, metrics={"resumed_from": point.previous_run_id})
                report.stages[name] = "skipped"
                progress.finished(name, "skipped", detail="already done")
                continue
            with logs.bind(stage=name):
                report.results[name] = _run_stage(spark, config, lake, ledger, job_entry, report, name, registry)
            report.stages[name] = "succeeded"
        totals: dict[str, int] = {}
        for result in report.results.values():
            for table, rows in result.rows_out.items():
                totals[table] = totals.get(table, 0) + rows
        ledger.finish(job_entry, "succeeded", rows_out=totals, metrics={"skipped": point.done} if point else None)
        report.status = "succeeded"
        return report


def _run_stage(spark, config, lake, ledger, job_entry, report, name, registry) -> StageResult:  # type: ignore[no-untyped-def]
    """One stage, recorded in the ledger; a failure (or an interrupt) is recorded on the stage and the job."""
    entry = ledger.start(job_entry.job, as_of=job_entry.as_of, step=name, run_id=job_entry.run_id)
    log.info("stage %s started (as of %s)", name, job_entry.as_of)
    progress.started(name)
    started = time.monotonic()
    try:
        result = stage_function(name, registry)(spark, config, lake, job_entry.as_of)
    except BaseException as exc:  # recorded, then re-raised (as StageFailed for ordinary errors)
        report.error = describe_error(exc) if isinstance(exc, Exception) else f"interrupted ({type(exc).__name__})"
        report.stages[name] = report.status = "failed"
        ledger.finish(entry, "failed", error=report.error)
        ledger.finish(job_entry, "failed", error=f"stage {name}: {report.error}")
        log.error("stage %s failed after %.1f s: %s", name, time.monotonic() - started, report.error)
        progress.finished(name, "failed")
        if isinstance(exc, Exception):
            raise StageFailed(report, name) from exc
        raise
    ledger.finish(entry, "succeeded", rows_in=result.rows_in, rows_out=result.rows_out, metrics=result.metrics)
    log.info("stage %s succeeded in %.1f s: %s", name, time.monotonic() - started, result.rows_out)
    progress.finished(name, "succeeded", rows_in=sum(result.rows_in.values()) if result.rows_in else None,
                      rows_out=sum(result.rows_out.values()))
    return result


def describe_error(exc: BaseException) -> str:
    """Type and first line of an error, bounded: enough to triage, short enough to keep data values out."""
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line[:500]}"
