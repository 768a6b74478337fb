"""The call audit: every API call becomes a row of ``ops.api_audit`` (no PII values), without one Delta commit
per request.

Rows are buffered in memory and appended in one commit by a background thread every ``audit.flush_seconds``
(or as soon as ``audit.flush_rows`` are waiting), and once more when the server shuts down (the FastAPI
lifespan calls `AuditLog.close`). A failed flush keeps the rows and retries at the next tick; only a process
killed with SIGKILL loses the last interval's rows (at most ``flush_seconds`` of calls).

Example:
    >>> log = AuditLog(lake, flush_seconds=2)          # doctest: +SKIP
    >>> log.record({"key_id": "k1", "action": "read", "status": 200})   # doctest: +SKIP
    >>> log.close()                                    # doctest: +SKIP
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.lake import Lake

log = logging.getLogger(__name__)
TABLE = "ops.api_audit"
MAX_BUFFER = 1_000_000  # beyond this (the lake unreachable for long) the oldest rows are dropped, and counted


class AuditLog:
    """A buffered writer of audit rows."""

    def __init__(self, lake: "Lake", *, flush_seconds: float = 2.0, flush_rows: int = 5000,
                 writer: Callable[[list[dict[str, Any]]], None] | None = None, background: bool = True):
        from cdp_spark.api.deltaio import append_rows

        self.lake = lake
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self._write = writer or (lambda rows: append_rows(lake, TABLE, rows))
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.dropped = 0
        self.commits = 0
        self._thread = threading.Thread(target=self._loop, name="api-audit", daemon=True) if background else None
        if self._thread:
            self._thread.start()

    def record(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._rows.append(row)
            if len(self._rows) > MAX_BUFFER:
                del self._rows[: len(self._rows) - MAX_BUFFER]
                self.dropped += 1
            if len(self._rows) >= self.flush_rows:
                self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._rows)

    def flush(self) -> int:
        """Append what is buffered in one commit; returns the rows written (0 on failure: they are kept)."""
        with self._flush_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            try:
                self._write(rows)
            except Exception as exc:  # noqa: BLE001 - the API must keep serving; retry next tick
                log.warning("audit flush failed (%s); %d row(s) kept for the next attempt", type(exc).__name__, len(rows))
                with self._lock:
                    self._rows[:0] = rows
                return 0
            self.commits += 1
            return len(rows)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Stop the flusher and write what is left (called at shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=30)
        self.flush()
