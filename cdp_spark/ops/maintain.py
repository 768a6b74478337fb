"""Table maintenance: compact small files, vacuum unreferenced files, checkpoint the Delta log and delete log files
older than ``lake.log_retention_days``, on every table.

Safe while readers are active: compaction only commits a new version (old snapshots keep their files), and vacuum
deletes only files that no snapshot younger than ``lake.vacuum_retention_hours`` references, so a read that
started less than the retention ago always finds its files. Writers are kept out by the ``pipeline`` lease, so
compaction never makes a stage's merge lose a race.

Example:
    >>> result = maintain(lake, config)                                   # doctest: +SKIP
    >>> result.tables["bronze.events"]["files_removed"]                   # doctest: +SKIP
    12
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterable

from cdp_spark.lake.files import LakeFiles

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake

log = logging.getLogger(__name__)

# The lease table is rewritten by every lease operation; compacting it is pointless and races the holders.
SKIP = ("ops.leases",)


@dataclass
class MaintainResult:
    """Per table: what optimize, vacuum and checkpoint did; errors per table (the others still ran)."""

    run_id: str | None = None
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "tables": self.tables, "errors": self.errors, "ok": self.ok}


def retention_properties(log_retention_days: int, retention_hours: int) -> dict[str, str]:
    """The table properties that carry the lake's retention: ``delta.logRetentionDuration`` (how long the log keeps
    versions) and ``delta.deletedFileRetentionDuration`` (how long vacuum keeps removed files). Set together because
    Delta's JVM writer refuses a log retention shorter than the file retention.

    Example:
        >>> retention_properties(30, 168)
        {'delta.logRetentionDuration': 'interval 30 days', 'delta.deletedFileRetentionDuration': 'interval 168 hours'}
    """
    return {"delta.logRetentionDuration": f"interval {log_retention_days} days",
            "delta.deletedFileRetentionDuration": f"interval {retention_hours} hours"}


def maintain_table(lake: "Lake", name: str, retention_hours: int, *, dry_run: bool = False,
                   log_retention_days: int | None = None) -> dict[str, Any]:
    """Optimize, vacuum and checkpoint one table; return counts (files before/after, vacuumed, version, log files
    deleted).

    With ``log_retention_days``, the table's retention properties (``retention_properties``) are set first (one
    commit, only when they differ): the checkpoint then deletes the log files older than that which the checkpoint covers, and Delta's
    own writers (delta-spark checkpoints) keep the same retention.
    """
    started = time.monotonic()
    before = lake.info(name)
    optimized: dict[str, Any] = {}
    if not dry_run:
        optimized = _plain(lake.optimize(name))
    vacuumed = lake.vacuum(name, retention_hours, dry_run=dry_run)
    logs_before = _log_files(lake, name)
    if not dry_run:
        if log_retention_days is not None:
            wanted = retention_properties(log_retention_days, retention_hours)
            current = lake.delta_table(name).metadata().configuration
            if any(current.get(key) != value for key, value in wanted.items()):
                lake.set_table_properties(name, wanted)
        lake.checkpoint(name)
    after = lake.info(name)
    return {
        "version_before": before.version,
        "version_after": after.version,
        "files_before": before.files,
        "files_after": after.files,
        "rows": after.rows,
        "files_added": int(optimized.get("numFilesAdded", optimized.get("numAddedFiles", 0)) or 0),
        "files_removed": int(optimized.get("numFilesRemoved", optimized.get("numRemovedFiles", 0)) or 0),
        "vacuumed": len(vacuumed),
        "retention_hours": retention_hours,
        "checkpoint": not dry_run,
        "log_retention_days": log_retention_days,
        "log_files_deleted": len(logs_before - _log_files(lake, name)),
        "seconds": round(time.monotonic() - started, 3),
    }


def maintain(
    lake: "Lake",
    config: "CdpConfig",
    *,
    tables: Iterable[str] | None = None,
    retention_hours: int | None = None,
    dry_run: bool = False,
    lock: bool = True,
) -> MaintainResult:
    """Maintain every existing registered table (or ``tables``), holding the pipeline lease, recorded in the ledger.

    ``retention_hours`` defaults to ``lake.vacuum_retention_hours``. Failures of one table are recorded and the
    others still run; the ledger row is ``failed`` when any table failed.
    """
    from cdp_spark.ops import logs
    from cdp_spark.ops.ledger import Ledger, new_run_id
    from cdp_spark.ops.lock import Lease

    hours = config.lake.vacuum_retention_hours if retention_hours is None else retention_hours
    names = list(tables) if tables is not None else [s.name for s in lake.registry if s.name not in SKIP]
    run_id = new_run_id("maintain")
    result = MaintainResult(run_id)
    ledger = Ledger(lake, stale_after_minutes=config.pipeline.stale_after_minutes) if lake.spark is not None else None
    today = datetime.now(timezone.utc).date()
    with logs.bind(run_id=run_id, stage="maintain"):
        lease = Lease(lake, run_id=run_id, job="maintain", ttl=timedelta(minutes=config.pipeline.stale_after_minutes))
        if lock:
            lease.acquire()
        try:
            entry = ledger.start("maintain", as_of=today, params={"retention_hours": hours, "dry_run": dry_run},
                                 run_id=run_id) if ledger else None
            for name in names:
                if not lake.exists(name):
                    continue
                try:
                    result.tables[name] = maintain_table(lake, name, hours, dry_run=dry_run,
                                                         log_retention_days=config.lake.log_retention_days)
                    log.info("maintained %s: %s", name, result.tables[name])
                except Exception as exc:  # one bad table must not stop the others
                    from cdp_spark.pipeline import describe_error

                    result.errors[name] = describe_error(exc)
                    log.error("maintenance of %s failed: %s", name, result.errors[name])
            if ledger and entry:
                ledger.finish(entry, "succeeded" if result.ok else "failed",
                              metrics={"tables": result.tables, "errors": result.errors},
                              error="; ".join(f"{k}: {v}" for k, v in result.errors.items())[:500] or None)
        finally:
            if lock:
                lease.release()
    return result


def _delta_log(lake: "Lake", name: str) -> LakeFiles:
    return LakeFiles(f"{lake.path(name)}/_delta_log", lake.storage_options)


def _log_files(lake: "Lake", name: str) -> set[str]:
    """The commit files in a table's Delta log (local or on object storage)."""
    return set(_delta_log(lake, name).list(suffix=".json"))


def checkpoints(lake: "Lake", name: str) -> list[str]:
    """The checkpoint files in a table's Delta log, for checks and `cdp status`."""
    return [f for f in _delta_log(lake, name).list() if ".checkpoint." in f]


def _plain(metrics: Any) -> dict[str, Any]:
    if isinstance(metrics, str):
        import json

        try:
            return json.loads(metrics)
        except ValueError:
            return {}
    return dict(metrics or {})
