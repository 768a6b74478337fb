"""Options and output shared by every ``cdp`` sub-command, defined once so help texts, env vars and the shape of an
error never drift apart.

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

import typer
from rich.console import Console

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
