"""Erasure in plain files: landing-zone NDJSON/CSV (optionally gzipped), the collector spool and export staging.

A file holding a matching record is rewritten without it: written next to the original under a hidden name
(ingestion ignores names starting with '.'), fsync'd, given the original's mode and modification time, then
renamed over the original (atomic on POSIX). A CSV header line is always kept. Files being written by a live
collector (``*.inprogress``) are left alone; the spool rotates them within seconds, so run erasure again (or
verify) after that. Parquet files outside Delta tables (e.g. exports) are rewritten row-wise with pyarrow.

Example:
    >>> rewrite_text(Path("landing/crm/customers.csv"), re.compile("ann@x[.]com", re.I))   # doctest: +SKIP
    1
"""
from __future__ import annotations

import gzip
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from cdp_spark.lake.files import LakeFiles
from cdp_spark.locations import is_remote

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

TEXT_SUFFIXES = (".json", ".ndjson", ".jsonl", ".csv", ".tsv", ".txt")
SKIP_SUFFIXES = (".inprogress",)


@dataclass
class FileResult:
    rewritten: list[str] = field(default_factory=list)  # paths
    records_dropped: int = 0
    skipped_live: list[str] = field(default_factory=list)


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(SKIP_SUFFIXES) or name.startswith("."):
        return None
    base = name[:-3] if name.endswith(".gz") else name
    if base.endswith(TEXT_SUFFIXES):
        return "text"
    if base.endswith(".parquet"):
        return "parquet"
    return None


def walk(folders: Iterable[str | os.PathLike[str]]) -> Iterable[Path]:
    seen: set[Path] = set()
    for folder in folders:
        root = Path(folder)
        if not root.exists():
            continue
        for dirpath, _, names in os.walk(root):
            for n in names:
                p = Path(dirpath, n).resolve()
                if p not in seen:
                    seen.add(p)
                    yield p


def _replace(path: Path, data: bytes) -> None:
    st = path.stat()
    tmp = path.with_name(f".{path.name}.erase-{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, st.st_mode & 0o777)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: the ingest ledger sees only the new size
    os.replace(tmp, path)


def drop_lines(name: str, raw: bytes, pattern: "re.Pattern[bytes]") -> tuple[bytes | None, int]:
    """The content of text file ``name`` without its lines matching ``pattern`` (gzip kept, a CSV header kept),
    and the lines dropped; None when nothing matched."""
    zipped = name.lower().endswith(".gz")
    text = gzip.decompress(raw) if zipped else raw
    if not pattern.search(text):
        return None, 0
    lines = text.splitlines(keepends=True)
    is_csv = name.lower().removesuffix(".gz").endswith((".csv", ".tsv"))
    kept, dropped = [], 0
    for i, line in enumerate(lines):
        if pattern.search(line) and not (is_csv and i == 0):
            dropped += 1
        else:
            kept.append(line)
    body = b"".join(kept)
    return (gzip.compress(body, mtime=0) if zipped else body), dropped


def rewrite_text(path: Path, pattern: "re.Pattern[bytes]") -> int:
    """Drop the lines of ``path`` matching ``pattern`` (bytes regex); returns the lines dropped."""
    data, dropped = drop_lines(path.name, path.read_bytes(), pattern)
    if data is not None:
        _replace(path, data)
    return dropped


def _without_rows(table: "pa.Table", pattern: str) -> tuple["pa.Table", int]:
    import pyarrow as pa

    from cdp_spark.privacy.verify import row_matches

    hit = row_matches(table, pattern)
    return table.filter(pa.array([not h for h in hit])), int(sum(hit))


def _clean_remote(files: LakeFiles, text_pattern: "re.Pattern[bytes]", re2_pattern: str, result: FileResult) -> None:
    """Object storage: each matching object is replaced whole by its cleaned content (an object's upload is
    atomic; its modification time changes, and the ingest ledger records the rewritten files)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for relative, _ in files.walk():
        name = relative.rsplit("/", 1)[-1]
        if name.lower().endswith(SKIP_SUFFIXES):
            result.skipped_live.append(files.uri(relative))
            continue
        kind = _kind(Path(name))
        if kind == "text":
            data, n = drop_lines(name, files.read_bytes(relative), text_pattern)
        elif kind == "parquet" and "_delta_log" not in relative.split("/"):
            kept, n = _without_rows(pq.read_table(files.open_input(relative)), re2_pattern)
            sink = pa.BufferOutputStream()
            pq.write_table(kept, sink)
            data = sink.getvalue().to_pybytes() if n else None
        else:
            continue
        if data is not None:
            files.write_bytes(relative, data)
            result.rewritten.append(files.uri(relative))
            result.records_dropped += n


def rewrite_parquet(path: Path, pattern: str) -> int:
    """Drop the rows of a plain Parquet file having any string value matching ``pattern`` (RE2, ignore case)."""
    import pyarrow.parquet as pq

    keep, dropped = _without_rows(pq.read_table(path), pattern)
    if dropped:
        tmp = path.with_name(f".{path.name}.erase-{uuid.uuid4().hex[:8]}")
        pq.write_table(keep, tmp)
        st = path.stat()
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, path)
    return dropped


def clean_folders(folders: Iterable[str | os.PathLike[str]], text_pattern: "re.Pattern[bytes]",
                  re2_pattern: str, *, storage_options: Mapping[str, str] | None = None) -> FileResult:
    """Rewrite every landing/export file under ``folders`` (local or object storage) that holds a matching record."""
    result = FileResult()
    local = []
    for folder in folders:
        if is_remote(os.fspath(folder)):
            _clean_remote(LakeFiles(os.fspath(folder), storage_options), text_pattern, re2_pattern, result)
        else:
            local.append(folder)
    for path in walk(local):
        if path.name.lower().endswith(SKIP_SUFFIXES):
            result.skipped_live.append(str(path))
            continue
        kind = _kind(path)
        if kind == "text":
            n = rewrite_text(path, text_pattern)
        elif kind == "parquet" and "_delta_log" not in path.parts:
            n = rewrite_parquet(path, re2_pattern)
        else:
            continue
        if n:
            result.rewritten.append(str(path))
            result.records_dropped += n
    return result
