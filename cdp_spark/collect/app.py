"""The Segment-compatible HTTP collector (FastAPI): auth, limits, validation, stamping, durable spool, ack.

Endpoints: ``POST /v1/{track,identify,page,screen,group,alias,batch}`` (also ``/v1/t``, ``/v1/i``, ... as
Segment's short forms), ``GET /health`` (process up) and ``GET /ready`` (landing zone writable).

- Auth: HTTP Basic with the write key as user name (empty password), or ``writeKey`` in the JSON body.
  Unknown or disabled key → 401; disabled source → 404.
- Errors are JSON ``{"code": ..., "message": ...}``; messages never echo request data (no PII in responses/logs).
- A batch with invalid messages is accepted (200): the invalid ones are dead-lettered to the landing zone with
  their reason (``_cdp_reject``), and the stream sends them to ``bronze.quarantine``. Official clients drop a
  whole batch on a 4xx, so only request-level problems (auth, JSON, size, count, rate, encoding) are refused.
  A message is invalid when it misses a required field, nests deeper than ``limits.max_nesting_depth``, holds a
  time outside the years 1-9999 (also after clock-skew correction) or a lone UTF-16 surrogate.
- 200 is sent only after the spool fsync'd the messages; a spool failure is a 503, so clients retry.

Example:
    >>> from fastapi.testclient import TestClient                              # doctest: +SKIP
    >>> client = TestClient(create_app(collector_config, "/tmp/landing"))     # doctest: +SKIP
    >>> client.post("/v1/track", json={...}, auth=("KEY", "")).json()         # doctest: +SKIP
    {'success': True}
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import os
import re
import threading
import time
import zlib
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from cdp_spark.collect.config import CollectorConfig, KeyInfo
from cdp_spark.collect.messages import TYPES, Unusable, iso, problem, split_batch, stamp, too_deep
from cdp_spark.collect.spool import Spool, recover
from cdp_spark.http_errors import error, install_error_handlers, strict_json

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.collect.kafka import KafkaSink

log = logging.getLogger("cdp_spark.collect")
STAMP_BYTES = 256  # messageId, receivedAt, timestamp, originalTimestamp, sentAt added by `stamp`
RAW_BYTES = 4096  # a dead letter that cannot keep its structure keeps this much of its text
# Dead-letter reasons whose message is stored as (cut) text, not as JSON structure the stream would have to read.
AS_TEXT = frozenset({"message_too_large", "invalid:unicode", "too_deep", "not_an_object"})
_WRITE_KEY = re.compile(rb'"writeKey"\s*:\s*"[^"\\]*(?:\\.[^"\\]*)*"')
SHORT = {"t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias", "b": "batch"}


# The request bodies in the OpenAPI document (the handlers read the raw body themselves: the limits apply to the
# bytes, before any parsing). Segment's spec: https://segment.com/docs/connections/spec/common/
_ERROR_SCHEMA = {"type": "object", "required": ["code", "message"],
                 "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}
_MESSAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": list(TYPES)}, "messageId": {"type": "string"},
        "userId": {"type": "string"}, "anonymousId": {"type": "string"}, "event": {"type": "string"},
        "previousId": {"type": "string"}, "groupId": {"type": "string"}, "name": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"}, "sentAt": {"type": "string", "format": "date-time"},
        "originalTimestamp": {"type": "string", "format": "date-time"},
        "properties": {"type": "object"}, "traits": {"type": "object"}, "context": {"type": "object"},
        "integrations": {"type": "object"}, "writeKey": {"type": "string"},
    },
}
_BATCH_SCHEMA = {"type": "object", "required": ["batch"], "properties": {
    "batch": {"type": "array", "items": _MESSAGE_SCHEMA}, "sentAt": {"type": "string", "format": "date-time"},
    "context": {"type": "object"}, "writeKey": {"type": "string"}}}


def _openapi(kind: str) -> dict[str, Any]:
    body = _BATCH_SCHEMA if kind == "batch" else _MESSAGE_SCHEMA
    error = {"content": {"application/json": {"schema": _ERROR_SCHEMA}}}
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "security": [{"writeKey": []}, {}],
        "responses": {
            "200": {"description": "stored (a batch's invalid messages are dead-lettered)",
                    "content": {"application/json": {"schema": {"type": "object", "properties": {
                        "success": {"type": "boolean"}}}}}},
            **{str(code): {"description": text, **error} for code, text in (
                (400, "invalid JSON, message, batch or encoding; too deep"), (401, "no, unknown or disabled write key"),
                (404, "source disabled"), (413, "body too large, or inflates too much"),
                (415, "unsupported Content-Encoding"), (429, "rate limited (Retry-After)"),
                (503, "landing zone unavailable: retry"))},
        },
    }


class Refused(Exception):
    """A request-level refusal: status, code, message (no data values) and extra headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class RateLimiter:
    """Token bucket per write key (per worker process)."""

    def __init__(self, per_second: float, burst: int):
        self.rate, self.burst = per_second, float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when allowed, else seconds until a request would be."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


class Collector:
    """The request pipeline, independent of the web framework's routing."""

    def __init__(self, config: CollectorConfig, spool: "Spool | KafkaSink"):
        self.config = config
        self.spool = spool
        self.keys = config.key_index()
        self.limiter = RateLimiter(config.rate_limit.per_second, config.rate_limit.burst)
        self.stats = {"requests": 0, "accepted": 0, "dead_lettered": 0, "refused": 0}

    # ---- request level ----
    def basic_key(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise Refused(401, "invalid_auth", "Authorization must be HTTP Basic with the write key as user name")
        try:
            user = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            raise Refused(401, "invalid_auth", "malformed Basic credentials") from None
        return user

    def authorise(self, key: Any) -> KeyInfo:
        if not isinstance(key, str) or not key:
            raise Refused(401, "missing_write_key", "no write key: send HTTP Basic auth or writeKey in the body")
        info = self.keys.get(key)
        if info is None or not info.key_enabled:
            raise Refused(401, "invalid_write_key", "unknown or disabled write key")
        if not info.source_enabled:
            raise Refused(404, "source_disabled", "the source of this write key is disabled")
        return info

    def rate(self, key: str) -> None:
        wait = self.limiter.take(key)
        if wait > 0:
            raise Refused(429, "rate_limited", "too many requests for this write key",
                          {"Retry-After": str(max(1, int(wait + 0.999)))})

    async def body(self, request: Request, cap: int) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > cap:
            raise Refused(413, "body_too_large", f"request body exceeds {cap} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                raise Refused(413, "body_too_large", f"request body exceeds {cap} bytes")
            chunks.append(chunk)
        raw = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            return raw
        if encoding not in ("gzip", "x-gzip", "deflate"):
            raise Refused(415, "unsupported_encoding", "Content-Encoding must be gzip, deflate or identity")
        return inflate(raw, cap, self.config.limits.max_compression_ratio)

    def parse(self, raw: bytes, kind: str) -> tuple[dict[str, Any], list[bytes]]:
        """The JSON body, and for a batch the texts of messages nesting deeper than the limit (left out of it, to
        be dead-lettered). The depth is checked on the bytes before parsing: the parser recurses once per level."""
        limit = self.config.limits.max_nesting_depth
        if kind != "batch":
            if too_deep(raw, limit):
                raise Refused(400, "too_deep", f"a message nests deeper than {limit} levels")
            return _object(raw), []
        if not too_deep(raw, limit + 2):  # the body object and its batch array are two levels
            return _object(raw), []
        parts = split_batch(raw)
        if parts is None or too_deep(parts[0], limit + 2):
            raise Refused(400, "too_deep", f"the body nests deeper than {limit} levels outside its batch messages")
        envelope, texts = parts
        deep = [too_deep(text, limit) for text in texts]
        doc = _object(envelope)
        doc["batch"] = [_json(text) for text, d in zip(texts, deep) if not d]
        return doc, [text for text, d in zip(texts, deep) if d]

    async def handle(self, request: Request, kind: str) -> JSONResponse:
        self.stats["requests"] += 1
        try:
            return await self._handle(request, kind)
        except Refused as r:
            self.stats["refused"] += 1
            log.info("refused %s request: %d %s", kind, r.status, r.code)
            return error(r.status, r.code, r.message, r.headers)

    async def _handle(self, request: Request, kind: str) -> JSONResponse:
        limits = self.config.limits
        header_key = self.basic_key(request)
        if header_key is not None:
            info = self.authorise(header_key)  # refuse unknown keys before reading the body
            self.rate(header_key)
        cap = limits.max_batch_bytes if kind == "batch" else limits.max_message_bytes
        doc, deep = self.parse(await self.body(request, cap), kind)
        if header_key is None:
            key = doc.get("writeKey")
            info = self.authorise(key)
            self.rate(key)
        received = dt.datetime.now(dt.timezone.utc)
        good: list[bytes] = []
        bad: list[bytes] = []
        if kind == "batch":
            batch = doc.get("batch")
            if not isinstance(batch, list):
                raise Refused(400, "invalid_batch", "the body needs a 'batch' array of messages")
            if len(batch) + len(deep) > limits.max_batch_messages:
                raise Refused(400, "too_many_messages", f"a batch holds at most {limits.max_batch_messages} messages")
            sent_at = doc.get("sentAt")
            for message in batch:
                line, reason = _stamped(message, received, batch_sent_at=sent_at)
                # the stamped fields add at most STAMP_BYTES to what the client sent
                if line is not None and len(line) > limits.max_message_bytes + STAMP_BYTES:
                    line, reason = None, "message_too_large"
                if line is not None:
                    good.append(line)
                else:
                    bad.append(_reject(message, reason, received))
            bad += [_reject(text, "too_deep", received) for text in deep]
        else:
            line, reason = _stamped(doc, received, kind=kind)
            if line is None:
                raise Refused(400, "invalid_message", f"invalid {kind} message: {reason}")
            good.append(line)
        try:
            await run_in_threadpool(self.spool.append, info.source, good + bad)
        except OSError:
            log.exception("landing write failed; request refused with 503 so the client retries")
            raise Refused(503, "spool_unavailable", "the landing zone is unavailable; retry later") from None
        self.stats["accepted"] += len(good)
        self.stats["dead_lettered"] += len(bad)
        if bad:
            log.info("source %s: %d message(s) accepted, %d dead-lettered", info.source, len(good), len(bad))
        return JSONResponse({"success": True})


def inflate(raw: bytes, cap: int, max_ratio: int) -> bytes:
    """A gzip or deflate body decompressed: every gzip member in turn (RFC 1952 allows several), each checked to its
    end (a cut trailer or bytes after the last member are refused), and at most ``cap`` bytes and ``max_ratio``
    times the compressed size (no zip bombs).

    Example:
        >>> import gzip
        >>> inflate(gzip.compress(b'{"a":') + gzip.compress(b'1}'), 1000, 100)
        b'{"a":1}'
    """
    limit = min(cap, max_ratio * len(raw))
    out = bytearray()
    rest = raw
    while True:
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, auto-detected
        try:
            out += inflater.decompress(rest, limit - len(out) + 1)  # bounded output: memory stays bounded too
        except zlib.error:
            raise Refused(400, "invalid_encoding", "the body is not valid gzip/deflate data") from None
        if len(out) > cap:
            raise Refused(413, "body_too_large", f"decompressed body exceeds {cap} bytes")
        if len(out) > limit:
            raise Refused(413, "compression_ratio",
                          f"the body inflates to more than {max_ratio} times its compressed size")
        if not inflater.eof:
            raise Refused(400, "invalid_encoding", "the compressed body is truncated (no end of stream or checksum)")
        rest = inflater.unused_data
        if not rest:
            return bytes(out)


def _json(raw: bytes) -> Any:
    """Strict JSON (no NaN, no Infinity, no number that overflows a double); a request error otherwise."""
    try:
        return strict_json(raw)
    except (ValueError, RecursionError):
        raise Refused(400, "invalid_json", "the body is not valid JSON") from None


def _object(raw: bytes) -> dict[str, Any]:
    doc = _json(raw)
    if not isinstance(doc, dict):
        raise Refused(400, "invalid_json", "the body must be a JSON object")
    return doc


def _stamped(message: Any, received: dt.datetime, **how: Any) -> tuple[bytes | None, str | None]:
    """(the stamped message as a landing line, None) or (None, why it cannot be stored)."""
    reason = problem(message, how.get("kind"))
    if reason is not None:
        return None, reason
    try:
        return _dump(stamp(message, received, **how)), None
    except Unusable as exc:
        return None, exc.reason
    except UnicodeEncodeError:  # a lone UTF-16 surrogate (JSON "\ud800"): no UTF-8 text can hold it
        return None, "invalid:unicode"


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


def _reject(message: Any, reason: str, received: dt.datetime) -> bytes:
    """A dead-letter line: the message itself plus `_cdp_reject`; or, when its structure cannot be kept (see
    `AS_TEXT`), its first 4 KB of text in `_cdp_raw` (ASCII-escaped JSON, or the raw bytes of a too-deep message).
    The write key, a secret, is never stored."""
    if isinstance(message, bytes):
        text = _WRITE_KEY.sub(b'"writeKey":"***"', message.strip()[:RAW_BYTES]).decode("utf-8", "replace")
    elif isinstance(message, dict):
        message = {k: v for k, v in message.items() if k != "writeKey"}
    if isinstance(message, dict) and reason not in AS_TEXT:
        out = message
    else:
        if not isinstance(message, bytes):
            text = json.dumps(message, separators=(",", ":"), ensure_ascii=True, default=str)[:RAW_BYTES]
        out = {"_cdp_raw": text}
    return _dump({**out, "_cdp_reject": reason, "receivedAt": iso(received)})


def create_app(config: CollectorConfig, landing: str, *, spool: Spool | None = None) -> FastAPI:
    """The collector app writing to `landing` (or to a given spool, e.g. in tests), or to Kafka when
    ``config.sink`` is kafka."""
    own = spool is None
    if spool is None and config.sink == "kafka":
        from cdp_spark.collect.kafka import KafkaSink

        sink: Any = KafkaSink(config.kafka)  # type: ignore[arg-type]
    else:
        sink = spool or Spool(landing, rotate_bytes=config.spool.rotate_bytes,
                              rotate_seconds=config.spool.rotate_seconds, fsync=config.spool.fsync, background=True)
    collector = Collector(config, sink)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if isinstance(sink, Spool):
            recovered = recover(landing)
            if recovered:
                log.info("made %d in-progress landing file(s) of dead collectors visible", len(recovered))
        yield
        if own:
            sink.close()

    app = FastAPI(title="cdp-spark collector", version="1", lifespan=lifespan,
                  description="Segment HTTP Tracking API compatible collector")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            doc.setdefault("components", {})["securitySchemes"] = {
                "writeKey": {"type": "http", "scheme": "basic",
                             "description": "the write key as user name, empty password (or writeKey in the body)"}}
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.collector = collector

    install_error_handlers(app, log=log, internal_message="internal error; retry later")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        if collector.spool.ready():
            return JSONResponse({"status": "ready"})
        return error(503, "not_ready", "the landing zone is not writable")

    def route(kind: str):  # type: ignore[no-untyped-def]
        async def endpoint(request: Request) -> JSONResponse:
            return await collector.handle(request, kind)

        endpoint.__name__ = f"ingest_{kind}"
        return endpoint

    for kind in (*TYPES, "batch"):
        app.post(f"/v1/{kind}", summary=f"Segment {kind}", openapi_extra=_openapi(kind))(route(kind))
    for short, kind in SHORT.items():
        app.post(f"/v1/{short}", include_in_schema=False)(route(kind))
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory for `cdp collect serve` with several workers: config from ``CDP_CONF``."""
    from cdp_spark.config import load_config

    config = load_config(os.environ.get("CDP_CONF", "conf/cdp.yaml"))
    collector: CollectorConfig = config.collector  # type: ignore[attr-defined]
    return create_app(collector, collector.landing(config.lake.root))


def serve(config: Any, *, host: str | None = None, port: int | None = None, workers: int | None = None,
          conf_path: str | None = None) -> None:
    """Run the collector with uvicorn (blocking)."""
    import uvicorn

    c: CollectorConfig = config.collector
    workers = workers or c.workers
    if conf_path:
        os.environ["CDP_CONF"] = conf_path
    if workers > 1:
        uvicorn.run("cdp_spark.collect.app:app_from_env", factory=True, host=host or c.host, port=port or c.port,
                    workers=workers, access_log=False, log_level="warning")
    else:
        uvicorn.run(create_app(c, c.landing(config.lake.root)), host=host or c.host, port=port or c.port,
                    access_log=False, log_level="warning")
