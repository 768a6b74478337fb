"""Structured logging: every line carries the run id and the stage, optionally as one JSON object, never PII.

The runner binds ``run_id`` and ``stage`` in context variables (`bind`), so any logger anywhere in the driver
(stage code, the lake, libraries) gets them without passing them around. A scrubbing filter masks e-mail
addresses, phone-like digit runs and long tokens in messages as a last line of defence: code logs names, counts
and error types, never row values.

Example:
    >>> configure_logging(json_format=True, level="INFO")            # doctest: +SKIP
    >>> with bind(run_id="daily-20261101T020000Z-1a2b3c4d", stage="identity"):   # doctest: +SKIP
    ...     logging.getLogger("cdp_spark").info("stage started")
    {"time": "...", "level": "INFO", "logger": "cdp_spark", "run_id": "daily-...", "stage": "identity", ...}
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any, Iterator, TextIO

_RUN_ID: contextvars.ContextVar[str] = contextvars.ContextVar("cdp_run_id", default="-")
_STAGE: contextvars.ContextVar[str] = contextvars.ContextVar("cdp_stage", default="-")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [run=%(run_id)s stage=%(stage)s] %(message)s"
_HANDLER_MARK = "_cdp_handler"

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Phone numbers with a leading +, or long bare digit runs; dates and times (2026-11-01 02:00) stay readable.
_PHONE = re.compile(r"\+\d[\d ()-]{6,}\d|\b\d{9,}\b")
_CARD_OR_TOKEN = re.compile(r"\b[A-Za-z0-9_]{32,}\b")


def scrub(text: str) -> str:
    """Mask e-mail addresses, phone-like digit runs and long opaque tokens in a log message.

    Example:
        >>> scrub("sent to ann@example.com, phone +44 20 7946 0958")
        'sent to <email>, phone <number>'
    """
    text = _EMAIL.sub("<email>", text)
    text = _PHONE.sub("<number>", text)
    return _CARD_OR_TOKEN.sub("<token>", text)


@contextlib.contextmanager
def bind(*, run_id: str | None = None, stage: str | None = None) -> Iterator[None]:
    """Set the run id and/or stage for every log line emitted inside the block (this thread/task only)."""
    tokens = []
    if run_id is not None:
        tokens.append((_RUN_ID, _RUN_ID.set(run_id)))
    if stage is not None:
        tokens.append((_STAGE, _STAGE.set(stage)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, str]:
    """The bound context: ``{"run_id": ..., "stage": ...}`` ("-" when unbound)."""
    return {"run_id": _RUN_ID.get(), "stage": _STAGE.get()}


class ContextFilter(logging.Filter):
    """Adds run_id and stage to every record and scrubs its message (args are merged first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = _RUN_ID.get()
        record.stage = _STAGE.get()
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not kill the log line
            message = str(record.msg)
        record.msg, record.args = scrub(message), None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, run_id, stage, message (+ scrubbed exception type)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "run_id": getattr(record, "run_id", _RUN_ID.get()),
            "stage": getattr(record, "stage", _STAGE.get()),
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            # The type and a scrubbed first line only: tracebacks can quote data values.
            exc = record.exc_info[1]
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            data["error"] = f"{record.exc_info[0].__name__}: {scrub(first)}"
        return json.dumps(data, ensure_ascii=False, default=str)


class _TextFormatter(logging.Formatter):
    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        first = (str(ei[1]).strip().splitlines() or [""])[0][:300]
        return f"{ei[0].__name__}: {scrub(first)}"


def configure_logging(*, json_format: bool = False, level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Install one handler on the root logger (replacing a previous cdp handler) and return it.

    ``json_format`` writes one JSON object per line; otherwise a text line with ``[run=... stage=...]``.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        # Our previous handler, and basicConfig's plain one (lines without context), are replaced.
        plain = type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.stdout)
        if getattr(handler, _HANDLER_MARK, False) or plain:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if json_format else _TextFormatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("py4j", "urllib3", "matplotlib", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler


class StageLogger(logging.LoggerAdapter):
    """A logger adapter for code that wants the context explicitly in ``extra`` (e.g. to ship elsewhere)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs.setdefault("extra", {}).update(current())
        return msg, kwargs
