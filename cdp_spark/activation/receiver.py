"""A small local webhook receiver (127.0.0.1, a free port) for the demo, tests and benchmarks.

It stores every accepted batch once per ``Idempotency-Key`` (a repeated key is acknowledged, not stored again) and
can be scripted to answer the next requests with failures, e.g. ``[500, 429, 200]``.

Example:
    >>> with WebhookReceiver() as r:                # doctest: +SKIP
    ...     url = r.url                              # POST JSON batches here
    >>> r.records()                                  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator, Optional

from pydantic import SecretStr


class WebhookReceiver:
    """Context manager running the receiver in a background thread."""

    def __init__(self, script: Optional[list[int]] = None, path: str = "/audiences", retry_after: str = "0"):
        self.script = list(script or [])
        self.path = path
        self.retry_after = retry_after
        self.requests: list[dict[str, Any]] = []       # every request: key, status, arrival time (``at``, epoch s)
        self.batches: dict[str, dict[str, Any]] = {}   # idempotency key -> body, first accepted copy
        self.duplicates = 0
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the receiver first"
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def records(self) -> list[dict[str, Any]]:
        """Every record of every stored batch, in arrival order."""
        return [r for b in self.batches.values() for r in b.get("records", [])]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                return

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                at = time.time()
                key = self.headers.get("Idempotency-Key") or ""
                with receiver._lock:
                    status = receiver.script.pop(0) if receiver.script else 200
                    receiver.requests.append({"key": key, "status": status,
                                              "authorization": bool(self.headers.get("Authorization")), "at": at})
                    duplicate = False
                    if status < 300:
                        if key in receiver.batches:
                            receiver.duplicates += 1
                            duplicate = True
                        else:
                            receiver.batches[key] = json.loads(body or b"{}")
                out = json.dumps({"ok": status < 300, "duplicate": duplicate}).encode()
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", receiver.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        return Handler

    def __enter__(self) -> "WebhookReceiver":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@contextlib.contextmanager
def demo_receiver(config: Any) -> Iterator[Any]:
    """Serve the demo's webhook destinations: start a receiver and yield a config copy whose loopback webhook
    destinations (e.g. ``${CDP_DEMO_WEBHOOK_URL:-http://127.0.0.1:8799/audiences}``) point at it.

    Destinations on other hosts are left alone. The receiver is stopped on exit.
    """
    from urllib.parse import urlsplit

    hooks = [d for d in getattr(config, "destinations", []) if d.transport.type == "webhook"
             and urlsplit(d.transport.url.get_secret_value()).hostname in LOOPBACK]
    if not hooks:
        yield config
        return
    with WebhookReceiver() as receiver:
        os.environ["CDP_DEMO_WEBHOOK_URL"] = receiver.url  # for anything that reloads the config meanwhile
        dests = []
        for d in config.destinations:
            if d in hooks:
                d = d.model_copy(update={"transport": d.transport.model_copy(update={"url": SecretStr(receiver.url)})})
            dests.append(d)
        try:
            yield config.model_copy(update={"destinations": dests})
        finally:
            os.environ.pop("CDP_DEMO_WEBHOOK_URL", None)
