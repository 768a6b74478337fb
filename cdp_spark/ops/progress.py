"""Progress of a running command: the code doing the work reports steps, a display (if any) shows them.

The pipeline runner reports each stage (`started`, `finished` with its rows in and out); code inside a step reports
how far it is with `advance` (sources, files, micro-batches), from any thread. Nothing happens unless a display is
attached (`attached`), so library use, notebooks and jobs pay nothing. The `cdp` command attaches
`TerminalProgress`: one line per step with a spinner, a bar once a total is known, rows in and out when it ends,
and the elapsed time.

Example:
    >>> with attached(TerminalProgress(console)):            # doctest: +SKIP
    ...     with step("generate", "demo data"):
    ...         advance(3, 30, "days")
"""
from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Iterator, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console


class ProgressSink(Protocol):
    def started(self, name: str, label: str | None = None) -> None: ...
    def advanced(self, done: int, total: int | None, unit: str) -> None: ...
    def finished(self, name: str, status: str, rows_in: int | None = None, rows_out: int | None = None,
                 detail: str = "") -> None: ...


_SINK: ProgressSink | None = None
_LOCK = threading.Lock()  # stream micro-batches report from py4j's callback threads


@contextlib.contextmanager
def attached(sink: ProgressSink) -> Iterator[ProgressSink]:
    """Send the block's progress reports to ``sink`` (one sink per process; the previous one is restored)."""
    global _SINK
    previous, _SINK = _SINK, sink
    try:
        yield sink
    finally:
        _SINK = previous


def started(name: str, label: str | None = None) -> None:
    """A step (a stage, or a command's own step such as generating demo data) began."""
    if _SINK is not None:
        with _LOCK:
            _SINK.started(name, label)


def advance(done: int, total: int | None = None, unit: str = "") -> None:
    """The running step has done ``done`` of ``total`` ``unit`` (total None: not known in advance).

    Example:
        >>> advance(2, 4, "sources")   # no display attached: nothing happens
    """
    if _SINK is not None:
        with _LOCK:
            _SINK.advanced(done, total, unit)


def finished(name: str, status: str, *, rows_in: int | None = None, rows_out: int | None = None,
             detail: str = "") -> None:
    """The step ended: ``succeeded``, ``failed`` or ``skipped``, with its row counts when it has them."""
    if _SINK is not None:
        with _LOCK:
            _SINK.finished(name, status, rows_in, rows_out, detail)


@contextlib.contextmanager
def step(name: str, label: str | None = None) -> Iterator[None]:
    """`started` on entry, `finished` on exit (``failed`` when the block raises)."""
    started(name, label)
    try:
        yield
    except BaseException:
        finished(name, "failed")
        raise
    finished(name, "succeeded")


class TerminalProgress:
    """The terminal display: one line per step (rich), on stderr so stdout keeps only results.

    Live (redrawn in place) on a terminal; elsewhere (CI logs, a pipe) and with ``live=False`` (``-v``, where
    library logs interleave) each step prints one line when it ends.
    """

    ICONS = {"succeeded": "[green]✔[/green]", "failed": "[red]✘[/red]", "skipped": "[blue]↷[/blue]"}

    def __init__(self, console: "Console", *, live: bool = True):
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.live = live and console.is_terminal
        self.progress = Progress(
            SpinnerColumn(finished_text=" "), TextColumn("{task.fields[icon]} {task.description:<12}"),
            BarColumn(bar_width=24), TextColumn("{task.fields[count]:<18}"), TextColumn("{task.fields[rows]:<30}"),
            TimeElapsedColumn(), console=console, transient=False, auto_refresh=self.live, disable=not self.live)
        self.tasks: dict[str, int] = {}
        self.current: str | None = None

    def __enter__(self) -> "TerminalProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def started(self, name: str, label: str | None = None) -> None:
        task = self.progress.add_task(label or name, total=None, icon=" ", count="", rows="")
        self.tasks[name], self.current = task, name

    def advanced(self, done: int, total: int | None, unit: str) -> None:
        if self.current is None:
            return
        count = f"{done:,}/{total:,} {unit}" if total is not None else f"{done:,} {unit}"
        self.progress.update(self.tasks[self.current], completed=done, total=total, count=count)

    def finished(self, name: str, status: str, rows_in: int | None = None, rows_out: int | None = None,
                 detail: str = "") -> None:
        if name not in self.tasks:
            self.started(name)
        task_id = self.tasks[name]
        rows = detail or " → ".join(f"{what} {n:,}" for what, n in (("in", rows_in), ("out", rows_out))
                                    if n is not None)
        if rows and not detail:
            rows += " rows"
        task = next(t for t in self.progress.tasks if t.id == task_id)
        total = task.total if task.total is not None else 1
        self.progress.update(task_id, icon=self.ICONS.get(status, status), rows=rows, total=total,
                             completed=total if status == "succeeded" else task.completed)
        self.progress.stop_task(task_id)
        if self.current == name:
            self.current = None
        if not self.live:
            self.console.print(f"{self.ICONS.get(status, status)} {task.description:<12} "
                               f"{task.fields.get('count', ''):<18} {rows:<30} {task.elapsed or 0.0:6.1f} s",
                               highlight=False)
