"""Options and output shared by every ``cdp`` sub-command, defined once so help texts, env vars and the shape of an
error never drift apart.

Also the helpers every command uses: `exit_codes` (failures -> message, next step, exit code), `read_config`,
`require_lake`, `print_json`, `parse_as_of`, `progress_display`.

Every error ends with one line saying what to do next (``next: ...``): `fail` prints it and returns the exit to
raise; failures raised as `ActionableError` get the same treatment from `cdp_spark.cli.main`.

Example:
    >>> import typer
    >>> from cdp_spark.cli_common import ConfOption, JsonOption, fail
    >>> def status(conf: str = ConfOption, as_json: bool = JsonOption) -> None: ...
    >>> def boom() -> None:
    ...     raise fail("no such key", "list them with `cdp api keys list`", code=2)
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.console import Console

from cdp_spark.config import CdpConfig, ConfigError, ConfigNotFoundError, load_config
from cdp_spark.jars import JarsError
from cdp_spark.lake import LakeError
from cdp_spark.locations import local_path
from cdp_spark.ops import logs
from cdp_spark.pipeline import StageFailed, StageOrderError, UnknownStageError

ConfOption = typer.Option("conf/cdp.yaml", "--conf", "-c", envvar="CDP_CONF", help="path to cdp.yaml")
JsonOption = typer.Option(False, "--json", help="machine-readable JSON on stdout")

out = Console()                 # results: tables, JSON
err = Console(stderr=True)      # everything else: progress, notes, errors


class ActionableError(Exception):
    """A failure the user can act on: what went wrong (``str(exc)``), the next step (``hint``) and the exit code.

    Example:
        >>> str(ActionableError("lake not found at /data/lake", hint="check `lake.root` in conf/cdp.yaml"))
        'lake not found at /data/lake'
    """

    def __init__(self, message: str, *, hint: str, code: int = 1, title: str = "error"):
        super().__init__(message)
        self.hint, self.code, self.title = hint, code, title


def print_error(title: str, message: str, hint: str) -> None:
    """``<title>: <message>`` (the message may span lines), then ``next: <hint>`` as the last line, on stderr.

    Example:
        >>> print_error("error", "unknown audience 'x'", "run `cdp audience list`")   # doctest: +SKIP
        error: unknown audience 'x'
        next: run `cdp audience list`
    """
    from rich.markup import escape

    separator = "\n" if "\n" in message else " "
    err.print(f"[red]{escape(title)}:[/red]{separator}{escape(message)}", highlight=False, soft_wrap=True)
    err.print(f"[bold]next:[/bold] {escape(hint)}", highlight=False, soft_wrap=True)


def fail(message: str, hint: str, *, code: int = 1, title: str = "error") -> typer.Exit:
    """Print an error with its next step and return the `typer.Exit` to raise (``raise fail(...) from None``)."""
    print_error(title, message, hint)
    return typer.Exit(code)


def log_note() -> str:
    """``"; the log file <path> has the details"`` when logs go to a file, else empty (appended to a hint)."""
    routing = logs.routing()
    return f"; the log file {shown(routing.path)} has the details" if routing and routing.path else ""


@contextlib.contextmanager
def exit_codes() -> Iterator[None]:
    """Map failures to exit codes: what went wrong on stderr, then one line saying what to do next (details are
    in the ledger and the log file).

    Example:
        >>> with exit_codes():                       # doctest: +SKIP
        ...     config = read_config("conf/cdp.yaml")   # a bad file exits 2, naming file, key and value
    """
    from cdp_spark.ops.lock import LeaseHeld
    from cdp_spark.spark import JavaNotFoundError

    try:
        yield
    except ActionableError as exc:
        raise fail(str(exc), exc.hint, code=exc.code, title=exc.title) from None
    except ConfigNotFoundError as exc:
        raise fail(str(exc), "run `cdp init` to create a project here, or point --conf (or CDP_CONF) at your cdp.yaml",
                   code=2, title="configuration error") from None
    except ConfigError as exc:
        raise fail(str(exc), "fix the value named above, then validate the whole configuration with "
                             "`cdp config check`", code=2, title="configuration error") from None
    except UnknownStageError as exc:
        raise fail(str(exc), "run `cdp run daily` for the whole pipeline, or one of the stages listed above",
                   code=2) from None
    except StageOrderError as exc:
        raise fail(str(exc), "reorder `pipeline.stages` in cdp.yaml as said above", code=2,
                   title="configuration error") from None
    except StageFailed as exc:
        raise fail(str(exc), f"`cdp runs` shows the error{log_note()}; once the cause is fixed, continue with "
                             f"`cdp run {exc.report.job} --as-of {exc.report.as_of} --resume`", title="failed") from None
    except LeaseHeld as exc:
        raise fail(str(exc), "wait for that run to finish (`cdp status` shows it), then run this command again",
                   title="not started") from None
    except LakeError as exc:
        raise fail(str(exc), f"`cdp tables` lists the lake's tables{log_note()}", title="lake error") from None
    except JarsError as exc:  # engine.jars: required, and the cache lacks a bundle
        raise fail(str(exc), "run `cdp jars fetch` where Maven Central is reachable, or set `engine.jars: none` "
                             "in cdp.yaml", code=2, title="jars") from None
    except JavaNotFoundError as exc:
        raise fail(str(exc), "install Java 17 or newer, or set JAVA_HOME to one, then run this command again",
                   code=2, title="java") from None


def read_config(conf: str) -> CdpConfig:
    """The configuration at ``conf`` (inside `exit_codes`, a bad one exits 2)."""
    return load_config(conf)


def require_lake(config: CdpConfig, conf: str) -> None:
    """Refuse a read-only command on a lake root that does not exist (a mistyped ``lake.root`` would otherwise read
    as an empty lake)."""
    root = config.lake.root
    if "://" in root and not root.startswith("file://"):
        return  # object storage has no folders to check; its tables say whether they exist
    path = Path(local_path(root, "lake.root"))
    if not path.is_dir():
        raise ActionableError(
            f"lake not found: {path.absolute()} does not exist (lake.root in {conf})",
            hint=f"check `lake.root` in {conf} (or CDP_LAKE_ROOT), or create the lake with `cdp demo` or "
                 "`cdp run daily`", title="lake error")


def shown(path: Path | None) -> str:
    """A path relative to the working folder when it is inside it (shorter to read and to copy)."""
    if path is None:
        return ""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def print_json(data: Any) -> None:
    """``data`` as JSON on stdout (dates and other values as text).

    Example:
        >>> print_json({"as_of": dt.date(2026, 11, 1)})   # doctest: +SKIP
    """
    out.print_json(json.dumps(data, default=str))


def parse_as_of(value: Optional[str]) -> dt.date:
    """``--as-of``: a YYYY-MM-DD date, today (UTC) when not given.

    Example:
        >>> parse_as_of("2026-11-01")
        datetime.date(2026, 11, 1)
    """
    if value is None:
        return dt.datetime.now(dt.timezone.utc).date()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date; expected YYYY-MM-DD", param_hint="--as-of") from None


@contextlib.contextmanager
def progress_display() -> Iterator[None]:
    """The stage-by-stage display on stderr (one line per step; plain lines with -v, where logs interleave)."""
    from cdp_spark.ops import progress

    routing = logs.routing()
    with progress.TerminalProgress(err, live=not (routing and routing.verbose)) as display, progress.attached(display):
        yield
