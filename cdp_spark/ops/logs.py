"""Structured logging: every line carries the run id and the stage, optionally as one JSON object, never PII.

The runner binds ``run_id`` and ``stage`` in context variables (`bind`), so any logger anywhere in the driver
(stage code, the lake, libraries) gets them without passing them around. A scrubbing filter masks e-mail
addresses, phone-like digit runs and long tokens in messages as a last line of defence: code logs names, counts
and error types, never row values.

A `cdp` command routes logs (`LogRouting`, installed by `route_logs`): Python logs (ours, MLflow's, py4j's, Python
warnings) and, through `log_file`, the embedded JVM's output (`cdp_spark.spark`) go to one file per command under
``<lake.root>/_system/logs/``, so the terminal shows progress and results only. ``-v`` sends them to the terminal.

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
import os
import re
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from cdp_spark.locations import local_path

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
    _quiet_chatty_libraries()
    if _ROUTING is not None:
        _ROUTING.json_lines = json_format
    return handler


def _quiet_chatty_libraries() -> None:
    for noisy in ("py4j", "urllib3", "matplotlib", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ---------------------------------------------------------------------------------------------- routing

LOG_DIR = "_system/logs"
KEEP_LOG_FILES = 30
# Loggers that libraries configure with a handler of their own (MLflow does, for its loggers and alembic's), so
# their lines skip the root handler; while routed they propagate like everyone else's.
_OWN_HANDLERS = ("mlflow", "alembic", "sqlalchemy.engine", "huey")


class LogRouting:
    """Where one `cdp` command's logs go: a file under the lake (quiet terminal), or the terminal (``verbose``).

    Until a file is opened (`open`, on the first Spark session or by the command), lines of level WARNING and up
    still reach stderr, so metadata-only commands report problems as before.
    """

    def __init__(self, *, command: str, verbose: bool, announce: Callable[[Path], None]):
        self.command = command if re.fullmatch(r"[a-z][a-z0-9_-]{0,30}", command or "") else "cdp"
        self.verbose = verbose
        self.announce = announce
        self.json_lines = False          # `cdp run --log-json`: the file's location is announced as a log line
        self.path: Path | None = None
        self._stream: TextIO | None = None

    def open(self, lake_root: str) -> Path | None:
        """The log file under ``lake_root`` (opened and announced once); None when logs go to the terminal."""
        if self.verbose:
            return None
        if self.path is None:
            folder = log_folder(lake_root)
            folder.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            self.path = folder / f"cdp-{self.command}-{stamp}-{os.getpid()}.log"
            self._stream = open(self.path, "a", encoding="utf-8", buffering=1)
            _prune(folder, keep=KEEP_LOG_FILES, current=self.path)
            if self.json_lines:
                logging.getLogger("cdp_spark").info("library and JVM logs: %s", self.path)
            else:
                self.announce(self.path)
        return self.path

    def write(self, line: str, level: int) -> None:
        if self._stream is not None:
            self._stream.write(line + "\n")
        elif self.verbose or level >= logging.WARNING:
            sys.stderr.write(line + "\n")

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


class _RoutedHandler(logging.Handler):
    def __init__(self, routing: LogRouting):
        super().__init__()
        self.routing = routing
        setattr(self, _HANDLER_MARK, True)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.routing.write(self.format(record), record.levelno)
        except Exception:  # logging must never break the command
            self.handleError(record)


_ROUTING: LogRouting | None = None


def log_folder(lake_root: str) -> Path:
    """Where command logs go: ``<lake.root>/_system/logs``; a local temp folder for a lake on object storage.

    Example:
        >>> str(log_folder("/data/lake"))
        '/data/lake/_system/logs'
    """
    if "://" in lake_root and not lake_root.startswith("file://"):
        return Path(tempfile.gettempdir()) / "cdp-spark-logs"
    return Path(local_path(lake_root, "lake.root")).absolute() / LOG_DIR


def _prune(folder: Path, *, keep: int, current: Path) -> None:
    logs = sorted(folder.glob("cdp-*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in logs[keep:]:
        if old != current:
            with contextlib.suppress(OSError):
                old.unlink()


def log_file(lake_root: str) -> Path | None:
    """The file this command's library and JVM logs go to, opened under ``lake_root`` on first use; None when no
    `cdp` command routes logs (library use, notebooks, tests) or with ``-v``.

    Example:
        >>> log_file("/data/lake") is None     # outside a `cdp` command
        True
    """
    return _ROUTING.open(lake_root) if _ROUTING is not None else None


def routing() -> LogRouting | None:
    """The routing of the running `cdp` command, if any."""
    return _ROUTING


@contextlib.contextmanager
def route_logs(*, command: str, verbose: bool, announce: Callable[[Path], None],
               level: str = "INFO") -> Iterator[LogRouting]:
    """Route every Python log line (and Python warnings) of the block through one handler: to the command's log
    file once one is opened, to stderr before that (WARNING and up) or always with ``verbose``. Restores the
    previous logging setup on exit.

    Example:
        >>> with route_logs(command="demo", verbose=False, announce=print) as r:   # doctest: +SKIP
        ...     r.open("./lake")
        lake/_system/logs/cdp-demo-20261101T020000Z-4242.log
    """
    global _ROUTING
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    adopted = []
    for name in _OWN_HANDLERS:
        logger = logging.getLogger(name)
        adopted.append((logger, list(logger.handlers), logger.propagate, logger.level))
        logger.handlers, logger.propagate = [], True
        if name != "mlflow":
            logger.setLevel(logging.WARNING)
    # MLflow installs its own stderr handler when imported; it may be imported later in this command.
    saved_env = os.environ.get("MLFLOW_CONFIGURE_LOGGING")
    os.environ["MLFLOW_CONFIGURE_LOGGING"] = "false"
    previous, _ROUTING = _ROUTING, LogRouting(command=command, verbose=verbose, announce=announce)
    handler = _RoutedHandler(_ROUTING)
    handler.addFilter(ContextFilter())
    handler.setFormatter(_TextFormatter(TEXT_FORMAT))
    root.handlers = [handler]
    root.setLevel(level.upper())
    _quiet_chatty_libraries()
    logging.captureWarnings(True)
    try:
        yield _ROUTING
    finally:
        logging.captureWarnings(False)
        _ROUTING.close()
        _ROUTING = previous
        root.handlers, root.level = saved_root
        for logger, handlers, propagate, level_ in adopted:
            logger.handlers, logger.propagate, logger.level = handlers, propagate, level_
        if saved_env is None:
            os.environ.pop("MLFLOW_CONFIGURE_LOGGING", None)
        else:
            os.environ["MLFLOW_CONFIGURE_LOGGING"] = saved_env


class StageLogger(logging.LoggerAdapter):
    """A logger adapter for code that wants the context explicitly in ``extra`` (e.g. to ship elsewhere)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs.setdefault("extra", {}).update(current())
        return msg, kwargs
