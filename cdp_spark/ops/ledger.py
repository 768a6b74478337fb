"""The job ledger (`ops.job_runs`): every job and stage run, so schedulers and people can see what happened.

A crashed or killed run cannot update its own row, so readers derive *stale*: a row still marked running whose
process is gone (same host) or whose heartbeat is older than ``pipeline.stale_after_minutes``.

Example:
    >>> ledger = Ledger(lake, stale_after_minutes=180)                       # doctest: +SKIP
    >>> entry = ledger.start("daily", as_of=date(2026, 11, 1), params={})     # doctest: +SKIP
    >>> ledger.finish(entry, "succeeded", rows_out={"bronze.events": 10})     # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from typing import Any, Mapping

from cdp_spark.lake.base import Lake
from cdp_spark.ops.tables import JOB_RUNS

TABLE = JOB_RUNS.name
JOB_STEP = "job"


@dataclass(frozen=True)
class LedgerEntry:
    """One row of the ledger as the running process knows it."""

    run_id: str
    step: str
    job: str
    as_of: date
    status: str
    started_at: datetime
    params: dict[str, Any] = field(default_factory=dict)
    ended_at: datetime | None = None
    heartbeat_at: datetime | None = None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    rows_in: dict[str, int] = field(default_factory=dict)
    rows_out: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def row(self) -> tuple[Any, ...]:
        return (
            self.run_id,
            self.step,
            self.job,
            self.as_of,
            self.status,
            self.started_at,
            self.ended_at,
            self.heartbeat_at or self.started_at,
            self.host,
            self.pid,
            json.dumps(self.params, default=str, sort_keys=True),
            {k: int(v) for k, v in self.rows_in.items()},
            {k: int(v) for k, v in self.rows_out.items()},
            json.dumps(self.metrics, default=str, sort_keys=True),
            self.error,
        )


def new_run_id(job: str, now: datetime | None = None) -> str:
    """Sortable, unique run id: ``<job>-<UTC time>-<random>``.

    Example:
        >>> new_run_id("daily", datetime(2026, 11, 1, tzinfo=timezone.utc))[:22]
        'daily-20261101T000000Z'
    """
    now = now or datetime.now(timezone.utc)
    return f"{job}-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


class Ledger:
    """Writes and reads `ops.job_runs` through the lake (merge by run_id + step)."""

    def __init__(self, lake: Lake, *, stale_after_minutes: int = 180):
        self.lake = lake
        self.stale_after = timedelta(minutes=stale_after_minutes)

    def start(
        self,
        job: str,
        *,
        as_of: date,
        params: Mapping[str, Any] | None = None,
        step: str = JOB_STEP,
        run_id: str | None = None,
    ) -> LedgerEntry:
        now = _now()
        entry = LedgerEntry(
            run_id=run_id or new_run_id(job, now),
            step=step,
            job=job,
            as_of=as_of,
            status="running",
            started_at=now,
            heartbeat_at=now,
            params=dict(params or {}),
        )
        self._write(entry)
        return entry

    def finish(
        self,
        entry: LedgerEntry,
        status: str,
        *,
        rows_in: Mapping[str, int] | None = None,
        rows_out: Mapping[str, int] | None = None,
        metrics: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> LedgerEntry:
        now = _now()
        done = replace(
            entry,
            status=status,
            ended_at=now,
            heartbeat_at=now,
            rows_in=dict(rows_in or {}),
            rows_out=dict(rows_out or {}),
            metrics=dict(metrics or {}),
            error=error,
        )
        self._write(done)
        return done

    def skip(self, job: str, *, as_of: date, step: str, run_id: str, metrics: Mapping[str, Any] | None = None) -> LedgerEntry:
        """Record a stage this run did not run (a resumed run skips what an earlier run finished)."""
        now = _now()
        entry = LedgerEntry(run_id=run_id, step=step, job=job, as_of=as_of, status="skipped", started_at=now,
                            ended_at=now, heartbeat_at=now, metrics=dict(metrics or {}))
        self._write(entry)
        return entry

    def runs(self, *, limit: int = 50, job: str | None = None) -> list[dict[str, Any]]:
        """Ledger rows, newest first, with ``status`` showing ``stale`` for abandoned running rows."""
        if not self.lake.exists(TABLE):
            return []
        import pyarrow as pa

        table = pa.table(self.lake.delta_table(TABLE).to_pyarrow_table())
        rows = table.to_pylist()
        if job:
            rows = [r for r in rows if r["job"] == job or r["step"] == job]
        rows.sort(key=lambda r: (r["started_at"], r["step"] == JOB_STEP), reverse=True)
        for row in rows:
            row["status"] = self.effective_status(row)
            row["rows_in"] = dict(row["rows_in"] or [])
            row["rows_out"] = dict(row["rows_out"] or [])
        return rows[:limit] if limit else rows

    def effective_status(self, row: Mapping[str, Any]) -> str:
        """``stale`` for a row left 'running' by a process that is gone or silent for too long."""
        if row["status"] != "running":
            return str(row["status"])
        heartbeat = row.get("heartbeat_at") or row["started_at"]
        if heartbeat.tzinfo is None:
            heartbeat = heartbeat.replace(tzinfo=timezone.utc)
        if row.get("host") == socket.gethostname() and row.get("pid") and not process_alive(int(row["pid"])):
            return "stale"
        if _now() - heartbeat > self.stale_after:
            return "stale"
        return "running"

    def _write(self, entry: LedgerEntry) -> None:
        df = self.lake.spark.createDataFrame([entry.row()], JOB_RUNS.schema)
        self.lake.merge(TABLE, df)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (used to tell a crashed writer from a slow one).

    Example:
        >>> process_alive(os.getpid())
        True
    """
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
