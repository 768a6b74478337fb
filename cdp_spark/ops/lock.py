"""Run leases: a lock on the lake that survives crashes, kept in the Delta table `ops.leases`.

Taking a lease is a compare-and-swap on the table's log: read the snapshot, decide, then overwrite the (tiny)
table *against that snapshot*. Delta commits are atomic per version, and delta-rs refuses an overwrite whose
snapshot another commit has changed since ("a concurrent transaction deleted data this operation read"), so of
two processes racing for a free lease exactly one wins; the other re-reads and finds it held.

A holder renews its lease from a heartbeat thread. A lease is *live* while it is not released, not expired and
(on the same host) its process still runs, so a killed run's lease is taken over at once on its host, and after
expiry from anywhere else. Expiry is ``pipeline.stale_after_minutes``, like stale ledger rows.

On object stores, delta-rs needs atomic put-if-absent for its commits (S3: a locking provider or conditional
puts, see the delta-rs docs); local disks, HDFS, ADLS and GCS have it.

Example:
    >>> with Lease(lake, "pipeline", run_id=run_id, job="daily", ttl=timedelta(hours=3)):   # doctest: +SKIP
    ...     run_the_stages()
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake import write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from cdp_spark.lake.base import Lake
from cdp_spark.ops.ledger import process_alive
from cdp_spark.ops.tables import LEASES

log = logging.getLogger(__name__)

PIPELINE = "pipeline"
ATTEMPTS = 30

_TS = pa.timestamp("us", tz="UTC")
ARROW_SCHEMA = pa.schema([
    ("name", pa.string()), ("holder", pa.string()), ("job", pa.string()), ("host", pa.string()),
    ("pid", pa.int32()), ("acquired_at", _TS), ("heartbeat_at", _TS), ("expires_at", _TS), ("released_at", _TS),
])


class LeaseHeld(RuntimeError):
    """Another live run holds the lease; the message names it (run id, host, pid, since, expiry)."""

    def __init__(self, name: str, row: dict[str, Any]):
        self.name, self.row = name, row
        super().__init__(
            f"another run holds the {name!r} lease on this lake: run {row['holder']} ({row.get('job') or '?'}) "
            f"on host {row['host']} pid {row['pid']}, since {_fmt(row['acquired_at'])}, lease expires "
            f"{_fmt(row['expires_at'])} unless renewed. Wait for it to finish (`cdp status`); a crashed holder's "
            f"lease is taken over automatically once its process is gone or the lease has expired."
        )


class LeaseLost(RuntimeError):
    """The holder's lease was taken over (it had expired) while the holder still ran."""


def _fmt(ts: datetime | None) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "?"


def _now() -> datetime:
    # Delta stores microseconds: truncate so that a row read back compares equal to the one written.
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def lease_state(row: dict[str, Any] | None, now: datetime | None = None, host: str | None = None) -> str:
    """``free``, ``held``, ``expired`` or ``dead`` (holder's process gone, same host).

    Example:
        >>> lease_state(None)
        'free'
    """
    if row is None or row.get("holder") is None or row.get("released_at") is not None:
        return "free"
    now = now or _now()
    expires = row["expires_at"]
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    if row.get("host") == (host or socket.gethostname()) and row.get("pid") and not process_alive(int(row["pid"])):
        return "dead"
    if expires <= now:
        return "expired"
    return "held"


def read_leases(lake: Lake) -> list[dict[str, Any]]:
    """Current lease rows with their derived ``state`` (no Spark needed)."""
    if not lake.exists(LEASES.name):
        return []
    rows = pa.table(lake.delta_table(LEASES.name).to_pyarrow_table()).to_pylist()
    now = _now()
    return [{**r, "state": lease_state(r, now)} for r in rows if r["name"]]


class Lease:
    """A named lease held by one run; use as a context manager (acquire, heartbeat, release)."""

    def __init__(
        self,
        lake: Lake,
        name: str = PIPELINE,
        *,
        run_id: str,
        job: str,
        ttl: timedelta = timedelta(hours=3),
        heartbeat: bool = True,
    ):
        self.lake, self.name, self.run_id, self.job, self.ttl = lake, name, run_id, job, ttl
        self.heartbeat = heartbeat
        self.took_over: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- public ----
    def acquire(self) -> "Lease":
        """Take the lease or raise LeaseHeld; a dead or expired holder's lease is taken over (and logged)."""

        def decide(current: dict[str, Any] | None) -> dict[str, Any]:
            state = lease_state(current)
            if state == "held" and current is not None and current["holder"] != self.run_id:
                raise LeaseHeld(self.name, current)
            if state in ("dead", "expired") and current is not None:
                self.took_over = {**current, "state": state}
            now = _now()
            return self._row(acquired_at=now, now=now)

        self._swap(decide)
        if self.took_over:
            log.warning("lease %s taken over from run %s (%s)", self.name, self.took_over["holder"], self.took_over["state"])
        if self.heartbeat:
            self._thread = threading.Thread(target=self._beat, name=f"lease-{self.name}", daemon=True)
            self._thread.start()
        return self

    def renew(self) -> None:
        """Push the expiry forward; raise LeaseLost when someone else holds it now."""

        def decide(current: dict[str, Any] | None) -> dict[str, Any]:
            if current is None or current.get("holder") != self.run_id or current.get("released_at") is not None:
                raise LeaseLost(f"lease {self.name} is no longer held by run {self.run_id}")
            return self._row(acquired_at=current["acquired_at"], now=_now())

        self._swap(decide)

    def release(self) -> None:
        """Free the lease (only if still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

        def decide(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None or current.get("holder") != self.run_id:
                return None  # not ours any more: leave it alone
            now = _now()
            return {**current, "heartbeat_at": now, "released_at": now}

        self._swap(decide)

    def __enter__(self) -> "Lease":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ---- internals ----
    def _row(self, *, acquired_at: datetime, now: datetime) -> dict[str, Any]:
        return {"name": self.name, "holder": self.run_id, "job": self.job, "host": socket.gethostname(),
                "pid": os.getpid(), "acquired_at": acquired_at, "heartbeat_at": now, "expires_at": now + self.ttl,
                "released_at": None}

    def _beat(self) -> None:
        interval = max(self.ttl.total_seconds() / 3, 0.5)
        while not self._stop.wait(interval):
            try:
                self.renew()
            except LeaseLost as exc:
                log.error("%s", exc)
                return
            except Exception as exc:  # a transient store error: the next beat retries before expiry
                log.warning("lease %s renewal failed: %s", self.name, type(exc).__name__)

    def _table(self) -> DeltaTable:
        path, options = self.lake.path(LEASES.name), self.lake.storage_options
        if not DeltaTable.is_deltatable(path, storage_options=options):
            try:
                DeltaTable.create(path, DeltaSchema.from_json(LEASES.schema.json()), mode="ignore", name=LEASES.name,
                                  description=LEASES.description, storage_options=options)
            except (CommitFailedError, DeltaError):
                if not DeltaTable.is_deltatable(path, storage_options=options):
                    raise
        for attempt in range(ATTEMPTS):
            table = DeltaTable(path, storage_options=options)
            if table.get_add_actions(flatten=True).num_rows:
                return table
            # An overwrite of an empty snapshot detects no conflict, so the table never stays empty: a free row
            # first. Two racing seeders write two free rows, which is harmless; a seeder whose snapshot predates a
            # racing creator's metadata commit is refused and reads again.
            try:
                write_deltalake(table, pa.Table.from_pylist([{"name": self.name}], ARROW_SCHEMA), mode="append")
            except CommitFailedError:
                time.sleep(min(1.0, 0.02 * 2**attempt))
        raise RuntimeError(f"lease {self.name}: could not seed the lease table after {ATTEMPTS} attempts")

    def _swap(self, decide: Any) -> None:
        """Read the snapshot, let ``decide`` compute this lease's new row, commit against the same snapshot."""
        for attempt in range(ATTEMPTS):
            table = self._table()
            rows = pa.table(table.to_pyarrow_table()).to_pylist()
            mine = [r for r in rows if r["name"] == self.name]
            live = [r for r in mine if lease_state(r) == "held"]
            current = (live or sorted(mine, key=lambda r: r["heartbeat_at"] or datetime.min.replace(tzinfo=timezone.utc))[-1:] or [None])[0]
            new = decide(current)
            if new is None:
                return
            others = [r for r in rows if r["name"] != self.name]
            try:
                write_deltalake(table, pa.Table.from_pylist([*others, new], ARROW_SCHEMA), mode="overwrite")
                return
            except CommitFailedError:
                time.sleep(min(1.0, 0.02 * 2**attempt))
        raise RuntimeError(f"lease {self.name}: could not commit after {ATTEMPTS} attempts (heavy contention)")
