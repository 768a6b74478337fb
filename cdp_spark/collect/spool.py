"""The landing spool: accepted messages are durable before they are acknowledged.

Each writer (one per collector worker process) appends NDJSON lines to its own hidden in-progress file per
source, ``<root>/<source>/.<name>.json.inprogress``, and fsyncs it before `append` returns, so an acknowledged
message survives ``kill -9`` of the collector and a power cut. The file is rotated by size or age: fsync'd,
atomically renamed to ``<name>.json`` (visible to the stream, which ignores names starting with ``.``) and the
folder fsync'd. In-progress files left behind by a dead writer are renamed into view by `recover`, which the
collector runs at start-up (and the stream job before each run), so nothing acknowledged is ever stranded.

Several collectors may share one landing zone: file names carry host, pid and a random id, so they never clash.

Example:
    >>> import tempfile
    >>> s = Spool(tempfile.mkdtemp(), rotate_bytes=1 << 20, rotate_seconds=60)
    >>> s.append("web", [b'{"messageId":"m1"}'])
    >>> len(s.rotate_all())
    1
    >>> s.close()
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from cdp_spark.lake.files import fsync_path
from cdp_spark.locations import local_path
from cdp_spark.ops.ledger import process_alive

log = logging.getLogger(__name__)

SUFFIX = ".json"
INPROGRESS = ".inprogress"


@dataclass
class _Open:
    name: str
    path: Path
    handle: object
    opened: float
    size: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Spool:
    """Durable NDJSON appends per source, rotated by size and age (thread-safe; one instance per process)."""

    def __init__(self, root: str | os.PathLike[str], *, rotate_bytes: int = 8 << 20, rotate_seconds: float = 2.0,
                 fsync: bool = True, background: bool = False):
        # appends are fsync'd line by line, which object storage cannot do: the spool is on local disk
        self.root = Path(local_path(os.fspath(root), "collector.spool.path"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.fsync = fsync
        self.writer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._seq = 0
        self._files: dict[str, _Open] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._rotator, name="spool-rotator", daemon=True)
            self._thread.start()

    # ---- writing ----
    def append(self, source: str, lines: Sequence[bytes]) -> None:
        """Append lines (each one JSON document without a newline) durably; returns once they are on disk."""
        if not lines:
            return
        data = b"\n".join(lines) + b"\n"
        while True:
            f = self._current(source)
            with f.lock:
                if self._files.get(source) is not f:  # rotated meanwhile by another thread
                    continue
                f.handle.write(data)  # type: ignore[attr-defined]
                f.handle.flush()  # type: ignore[attr-defined]
                if self.fsync:
                    os.fsync(f.handle.fileno())  # type: ignore[attr-defined]
                f.size += len(data)
                full = f.size >= self.rotate_bytes
            if full:
                self._rotate(source, f)
            return

    def _current(self, source: str) -> _Open:
        with self._lock:
            f = self._files.get(source)
            if f is None:
                folder = self.root / source
                folder.mkdir(parents=True, exist_ok=True)
                self._seq += 1
                name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{self.writer}-{self._seq:06d}"
                path = folder / f".{name}{SUFFIX}{INPROGRESS}"
                handle = open(path, "ab", buffering=0)
                if self.fsync:
                    fsync_path(folder)  # the new file's directory entry is durable too
                f = self._files[source] = _Open(name, path, handle, time.monotonic())
            return f

    def _rotate(self, source: str, f: _Open) -> Path | None:
        with f.lock:
            with self._lock:
                if self._files.get(source) is not f:
                    return None
                del self._files[source]
            if self.fsync:
                os.fsync(f.handle.fileno())  # type: ignore[attr-defined]
            f.handle.close()  # type: ignore[attr-defined]
            if f.size == 0:
                f.path.unlink(missing_ok=True)
                return None
            final = f.path.with_name(f.name + SUFFIX)
            os.replace(f.path, final)
            if self.fsync:
                fsync_path(final.parent)
            return final

    def rotate_all(self, *, older_than: float = 0.0) -> list[Path]:
        """Rotate open files at least `older_than` seconds old; returns the files made visible."""
        now = time.monotonic()
        with self._lock:
            due = [(s, f) for s, f in self._files.items() if now - f.opened >= older_than]
        return [p for s, f in due if (p := self._rotate(s, f)) is not None]

    def _rotator(self) -> None:
        while not self._stop.wait(min(self.rotate_seconds / 4, 0.5)):
            try:
                self.rotate_all(older_than=self.rotate_seconds)
            except Exception:  # pragma: no cover - logged, the next tick retries
                log.exception("spool rotation failed")

    def close(self) -> None:
        """Stop the rotator and make every open file visible."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.rotate_all()

    def ready(self) -> bool:
        """Whether the landing folder is writable (readiness probe)."""
        return os.access(self.root, os.W_OK)


def recover(root: str | os.PathLike[str], *, stale_seconds: float = 3600.0, fsync: bool = True) -> list[Path]:
    """Rename in-progress files of dead writers into view (same host: pid gone; other hosts: untouched for
    `stale_seconds`). Safe to run while other writers are alive: their files are left alone."""
    base = Path(local_path(os.fspath(root), "collector.spool.path"))
    if not base.exists():
        return []
    host = socket.gethostname()
    done: list[Path] = []
    for path in sorted(base.glob(f"*/.*{SUFFIX}{INPROGRESS}")):
        name = path.name[1:-len(SUFFIX + INPROGRESS)]
        parts = name.split("-")
        # name = <time>-<host (may hold dashes)>-<pid>-<id>-<seq>
        try:
            pid, writer_host = int(parts[-3]), "-".join(parts[1:-3])
        except (ValueError, IndexError):
            continue
        if writer_host == host and pid != os.getpid():
            dead = not process_alive(pid)
        elif writer_host == host:
            dead = False
        else:
            dead = time.time() - path.stat().st_mtime > stale_seconds
        if not dead:
            continue
        final = path.with_name(name + SUFFIX)
        if path.stat().st_size == 0:
            path.unlink(missing_ok=True)
            continue
        _truncate_partial_line(path)
        os.replace(path, final)
        if fsync:
            fsync_path(final.parent)
        done.append(final)
    if done:
        log.info("spool recovery: %d in-progress file(s) of dead writers made visible", len(done))
    return done


def _truncate_partial_line(path: Path) -> None:
    """A writer killed mid-write may leave a partial last line, which was never acknowledged: drop it."""
    with open(path, "rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        # find the last newline
        step, pos = 4096, size
        while pos > 0:
            start = max(0, pos - step)
            fh.seek(start)
            chunk = fh.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                fh.truncate(start + i + 1)
                return
            pos = start
        fh.truncate(0)
