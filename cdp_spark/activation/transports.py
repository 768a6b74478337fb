"""Transports: an atomic file drop with a manifest, a webhook with retries and idempotency keys, a Delta table.

Each transport sends a delivery's items in batches and reports every acknowledged batch through ``on_sent`` so
that the caller records exactly what the destination holds, also when a later batch fails.
Errors never carry URLs, headers or record values (they may hold secrets or personal data).

Example:
    >>> t = WebhookSender(cfg, "ads")                                  # doctest: +SKIP
    >>> t.send(items, delivery_id, on_sent=state_update)               # doctest: +SKIP
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from cdp_spark.activation.config import FileTransport, WebhookTransport
from cdp_spark.activation.records import Item, batches, idempotency_key
from cdp_spark.lake.files import LakeFiles
from cdp_spark.locations import is_remote, local_path

OnSent = Callable[[list[Item]], None]
LEAD = ("action", "audience")   # the leading columns of an audience record


class DeliveryError(RuntimeError):
    """A delivery stopped; items acknowledged before the failure stay delivered."""


@dataclass
class Stats:
    """Counts of one delivery's transport work."""

    batches: int = 0
    records_sent: int = 0
    retries: int = 0
    failures: int = 0
    location: Optional[str] = None
    notes: list[str] = field(default_factory=list)


# ---- file drop ----
def _render(items: list[Item], cols: list[str], fmt: str, lead: Sequence[str] = LEAD) -> bytes:
    fields = [*lead, *cols]
    if fmt == "ndjson":
        return "".join(json.dumps({c: i.body().get(c) for c in fields}, default=str) + "\n" for i in items).encode()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    for i in items:
        body = i.body()
        w.writerow(["" if body.get(c) is None else body.get(c) for c in fields])
    return buf.getvalue().encode()


def file_drop(cfg: FileTransport, root: str, destination: str, items: list[Item], delivery: str, cols: list[str],
              fmt: str, meta: dict[str, Any], on_sent: OnSent, stats: Stats, lead: Sequence[str] = LEAD,
              storage_options: Mapping[str, str] | None = None) -> None:
    """Write ``<root>/<delivery>/part-NNNNN.<ext>`` + ``_manifest.json`` atomically (a staged folder renamed).

    Each record is written as ``lead`` + ``cols`` of its body (audience records lead with action and audience;
    forwarded events have no such columns). A folder that already exists is a delivery that completed before
    (e.g. a crash before the state was saved): it is not written again.
    """
    if is_remote(cfg.path or root):
        _object_drop(LakeFiles(cfg.path or root, storage_options), delivery, items, cols, fmt, meta, cfg.rows_per_file,
                     stats, lead)
        on_sent(items)
        return
    base = Path(local_path(cfg.path or root, "transport.path"))
    base.mkdir(parents=True, exist_ok=True)
    final = base / delivery
    stats.location = str(final)
    if not (final / "_manifest.json").exists():
        staging = base / f".staging-{delivery}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        ext = "ndjson" if fmt == "ndjson" else "csv"
        files = []
        for n, chunk in enumerate(batches(items, cfg.rows_per_file) or [[]]):
            data = _render(chunk, cols, "ndjson" if ext == "ndjson" else "csv", lead)
            name = f"part-{n:05d}.{ext}"
            (staging / name).write_bytes(data)
            files.append({"name": name, "rows": len(chunk), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        manifest = {**meta, "delivery_id": delivery, "rows": len(items), "files": files,
                    "adds": sum(i.action == "add" for i in items), "removes": sum(i.action == "remove" for i in items)}
        (staging / "_manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        os.replace(staging, final)  # atomic on one filesystem: readers see all files or none
        stats.batches += len(files)
    else:
        stats.notes.append("delivery folder already present: not rewritten")
    stats.records_sent += len(items)
    on_sent(items)


def _object_drop(files: LakeFiles, delivery: str, items: list[Item], cols: list[str], fmt: str, meta: dict[str, Any],
                 rows_per_file: int, stats: Stats, lead: Sequence[str]) -> None:
    """On object storage a folder cannot be renamed atomically: the parts are uploaded first and the manifest
    last, so a delivery is complete exactly when its ``_manifest.json`` exists (readers wait for it)."""
    stats.location = files.uri(delivery)
    if files.exists(f"{delivery}/_manifest.json"):
        stats.notes.append("delivery folder already present: not rewritten")
    else:
        ext = "ndjson" if fmt == "ndjson" else "csv"
        parts = []
        for n, chunk in enumerate(batches(items, rows_per_file) or [[]]):
            data = _render(chunk, cols, ext, lead)
            name = f"part-{n:05d}.{ext}"
            files.write_bytes(f"{delivery}/{name}", data)
            parts.append({"name": name, "rows": len(chunk), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        manifest = {**meta, "delivery_id": delivery, "rows": len(items), "files": parts,
                    "adds": sum(i.action == "add" for i in items), "removes": sum(i.action == "remove" for i in items)}
        files.write_text(f"{delivery}/_manifest.json", json.dumps(manifest, indent=2, default=str))
        stats.batches += len(parts)
    stats.records_sent += len(items)


def verify_manifest(folder: str | Path) -> dict[str, Any]:
    """Re-read a delivery folder and check every file's rows and checksum against its manifest."""
    folder = Path(folder)
    manifest = json.loads((folder / "_manifest.json").read_text())
    for f in manifest["files"]:
        data = (folder / f["name"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != f["sha256"] or len(data) != f["bytes"]:
            raise ValueError(f"{f['name']}: checksum or size does not match the manifest")
        rows = data.count(b"\n") - (1 if f["name"].endswith(".csv") else 0)
        if rows != f["rows"]:
            raise ValueError(f"{f['name']}: {rows} rows, manifest says {f['rows']}")
    return manifest


# ---- webhook ----
class RateLimiter:
    """At most ``per_second`` calls per second (spaced evenly)."""

    def __init__(self, per_second: Optional[float], clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 1.0 / per_second if per_second else 0.0
        self.clock, self.sleep, self._next = clock, sleep, 0.0
        self._lock = threading.Lock()   # concurrent posts take their slots one at a time

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self.clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self.sleep(slot - now)


RETRYABLE = {408, 425, 429}


def _acknowledged(batch: list[Item], stats: Stats, on_sent: OnSent) -> None:
    stats.batches += 1
    stats.records_sent += len(batch)
    on_sent(batch)


class WebhookSender:
    """POST JSON batches with an ``Idempotency-Key``; retry 5xx/429/timeouts with exponential backoff."""

    def __init__(self, cfg: WebhookTransport, destination: str, *, sleep: Callable[[float], None] = time.sleep,
                 client: Any = None):
        import httpx

        self.cfg, self.destination, self.sleep = cfg, destination, sleep
        self.client = client or httpx.Client(timeout=cfg.timeout_seconds)
        self.limiter = RateLimiter(cfg.rate_limit_per_second, sleep=sleep)

    def _delay(self, attempt: int, response: Any) -> float:
        delay = min(self.cfg.backoff_seconds * (2 ** attempt), self.cfg.max_backoff_seconds)
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), self.cfg.max_backoff_seconds))
            except ValueError:
                pass
        return delay

    def post(self, body: dict[str, Any] | bytes, key: str, stats: Stats) -> None:
        """POST one batch (a body, or its JSON bytes) with its key; retried as configured, DeliveryError at the end."""
        import httpx

        headers = {k: v.get_secret_value() for k, v in self.cfg.headers.items()}
        headers.update({"Idempotency-Key": key, "Content-Type": "application/json"})
        data = body if isinstance(body, bytes) else json.dumps(body, default=str).encode()
        attempt = 0
        while True:
            self.limiter.wait()
            response, problem = None, ""
            try:
                response = self.client.post(self.cfg.url.get_secret_value(), content=data, headers=headers)
            except httpx.TimeoutException:
                problem, retryable = "timeout", True
            except httpx.TransportError as exc:
                problem, retryable = f"connection error ({type(exc).__name__})", True
            else:
                if response.status_code < 300:
                    return
                problem = f"HTTP {response.status_code}"
                retryable = response.status_code >= 500 or response.status_code in RETRYABLE
            if not retryable or attempt >= self.cfg.max_retries:
                stats.failures += 1
                why = "not retryable" if not retryable else f"gave up after {attempt} retries"
                raise DeliveryError(f"webhook {self.destination}: {problem} ({why})")
            stats.retries += 1
            self.sleep(self._delay(attempt, response))
            attempt += 1

    def body(self, delivery: str, n: int, batch: list[Item]) -> bytes:
        """Batch ``n`` of a delivery as JSON bytes: ``{"destination", "delivery_id", "batch", "records": [...]}``,
        each record as its item renders it (`Item.body_json`)."""
        head = json.dumps({"destination": self.destination, "delivery_id": delivery, "batch": n})
        return f'{head[:-1]}, "records": [{", ".join(i.body_json() for i in batch)}]}}'.encode()

    def send(self, items: list[Item], delivery: str, on_sent: OnSent, stats: Stats) -> None:
        """Post ``items`` in batches, up to ``concurrency`` at once; ``on_sent`` gets each acknowledged batch (in the
        caller's thread). When a batch fails for good, batches not yet started are not sent and DeliveryError is
        raised once those in flight are done: what was acknowledged stays reported."""
        work = batches(items, self.cfg.batch_size)
        if self.cfg.concurrency == 1 or len(work) < 2:
            for n, batch in enumerate(work):
                self.post(self.body(delivery, n, batch), idempotency_key(self.destination, batch), stats)
                _acknowledged(batch, stats, on_sent)
            return

        def post(n: int, batch: list[Item]) -> tuple[Stats, Optional[DeliveryError]]:
            own = Stats()   # merged by the caller: threads never share counters
            try:
                self.post(self.body(delivery, n, batch), idempotency_key(self.destination, batch), own)
            except DeliveryError as exc:
                return own, exc
            return own, None

        failed: Optional[DeliveryError] = None
        with ThreadPoolExecutor(max_workers=min(self.cfg.concurrency, len(work)),
                                thread_name_prefix=f"webhook-{self.destination}") as pool:
            running = {pool.submit(post, n, batch): batch for n, batch in enumerate(work)}
            for done in as_completed(running):
                if done.cancelled():
                    continue
                own, error = done.result()
                stats.retries += own.retries
                stats.failures += own.failures
                if error is None:
                    _acknowledged(running[done], stats, on_sent)
                elif failed is None:
                    failed = error
                    for f in running:
                        f.cancel()
        if failed is not None:
            raise failed

    def close(self) -> None:
        self.client.close()
