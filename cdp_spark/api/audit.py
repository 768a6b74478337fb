"""The call audit: every API call becomes a row of ``ops.api_audit`` (no PII values), without one Delta commit
per request.

Rows are buffered in memory and appended in one commit by a background thread every ``audit.flush_seconds``
(or as soon as ``audit.flush_rows`` are waiting), and once more when the server shuts down (the FastAPI
lifespan calls `AuditLog.close`). A failed flush keeps the rows and retries at the next tick; only a process
killed with SIGKILL loses the last interval's rows (at most ``flush_seconds`` of calls). With several API
workers, each worker buffers and commits its own rows (concurrent blind appends do not conflict in Delta).

`AuditMiddleware` makes the row of every HTTP call: who (key id), what (action, route, identifier *type*,
profile id), when, the status and the duration; never identifier values, traits or the key's secret.

Example:
    >>> log = AuditLog(lake, flush_seconds=2)          # doctest: +SKIP
    >>> log.record({"key_id": "k1", "action": "read", "status": 200})   # doctest: +SKIP
    >>> log.close()                                    # doctest: +SKIP
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable

from cdp_spark.http_errors import error

if TYPE_CHECKING:  # pragma: no cover
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from cdp_spark.lake import Lake

log = logging.getLogger(__name__)
TABLE = "ops.api_audit"
MAX_BUFFER = 1_000_000  # beyond this (the lake unreachable for long) the oldest rows are dropped, and counted


class AuditLog:
    """A buffered writer of audit rows."""

    def __init__(self, lake: "Lake", *, flush_seconds: float = 2.0, flush_rows: int = 5000,
                 writer: Callable[[list[dict[str, Any]]], None] | None = None, background: bool = True):
        from cdp_spark.lake.deltaio import Appender

        self.lake = lake
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self._write = writer or Appender(lake, TABLE).append
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


class AuditMiddleware:
    """ASGI middleware: one audit row per HTTP call, and an ``X-Request-Id`` header on every response.

    The handlers say what the call was through ``request.state`` (``action``, ``key_id``, ``id_type``,
    ``profile_id``); a call refused before that is audited as ``refused``. An exception that escapes the app is
    answered with a JSON 500 (its text is not logged: it may hold request data) and audited with status 500.

    A plain ASGI middleware rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs each
    request through an extra task and memory streams. Dropping it and the thread-pool hop of reads cut the app's
    CPU per read from 0.60 to 0.21 ms (measured in-process, without the HTTP server).

    Example:
        >>> app.add_middleware(AuditMiddleware, audit=AuditLog(lake), org_id="default")   # doctest: +SKIP
    """

    def __init__(self, app: "ASGIApp", *, audit: AuditLog, org_id: str):
        self.app, self.audit, self.org_id = app, audit, org_id

    async def __call__(self, scope: "Scope", receive: "Receive", send: "Send") -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        state = scope.setdefault("state", {})  # the dict behind request.state in the handlers
        status = 500
        response_started = False

        async def send_tagged(message: "Message") -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message = {**message, "headers": [*message.get("headers", ()), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_tagged)
        except Exception as exc:  # noqa: BLE001 - never a stack trace (or data) to the client
            log.error("unexpected API error: %s", type(exc).__name__)
            if not response_started:
                await error(500, "internal_error", "internal error")(scope, receive, send_tagged)
        finally:
            self.audit.record(self._row(scope, state, status, request_id, started))

    def _row(self, scope: "Scope", state: dict[str, Any], status: int, request_id: str,
             started: float) -> dict[str, Any]:
        now = dt.datetime.now(dt.timezone.utc)
        route = scope.get("route")
        return {"at": now, "at_date": now.date(), "org_id": self.org_id, "key_id": state.get("key_id"),
                "action": state.get("action") or "refused", "method": scope["method"],
                "route": getattr(route, "path", None), "id_type": state.get("id_type"),
                "profile_id": state.get("profile_id"), "status": status,
                "duration_ms": (time.perf_counter() - started) * 1000, "request_id": request_id}
