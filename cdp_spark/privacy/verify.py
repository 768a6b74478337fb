"""The verification scan: does any byte of a person's identifiers remain in the lake's files?

Every file under the given roots is read as what it is: Parquet through pyarrow (decompressed, every string and
binary value at any nesting depth, plus the min/max statistics in the footer), gzip decompressed, anything else
(NDJSON, CSV, Delta logs, SQLite stores and their WAL, checkpoints) as raw bytes. A hit is reported by file,
place (column or ``bytes``) and identifier type with a count, never with the value.

Example:
    >>> scan(["/lake"], [Identifier("email", "a@x.com")])       # doctest: +SKIP
    []
"""
from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from cdp_spark.lake.files import LakeFiles, LakeFilesError
from cdp_spark.privacy.matching import Identifier


@dataclass(frozen=True)
class Occurrence:
    path: str
    place: str
    id_type: str
    count: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _leaves(arr: pa.Array, name: str) -> Iterable[tuple[str, pa.Array]]:
    t = arr.type
    if isinstance(arr, pa.ChunkedArray):
        for chunk in arr.chunks:
            yield from _leaves(chunk, name)
        return
    if pa.types.is_dictionary(t):
        yield from _leaves(arr.dictionary_decode(), name)
    elif pa.types.is_struct(t):
        for i, f in enumerate(t):
            yield from _leaves(arr.field(i), f"{name}.{f.name}")
    elif pa.types.is_map(t):
        yield from _leaves(arr.keys, f"{name}.key")
        yield from _leaves(arr.items, f"{name}.value")
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        yield from _leaves(arr.flatten(), name)
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        yield name, arr


def _count(arr: pa.Array, pattern: str, compiled: "re.Pattern[bytes]") -> int:
    if len(arr) == 0:
        return 0
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return int(pc.sum(pc.match_substring_regex(arr, pattern, ignore_case=True)).as_py() or 0)
    return sum(1 for v in arr.to_pylist() if v is not None and compiled.search(v))


def _needles(identifiers: list[Identifier]) -> list[tuple[str, str, "re.Pattern[bytes]"]]:
    out = []
    for i in identifiers:
        text = "|".join(f"({p})" for p in i.patterns())
        out.append((i.id_type, text, re.compile(text.encode("utf-8"), re.I)))
    return out


def _is_parquet(files: LakeFiles, relative: str) -> bool:
    with files.open_input(relative) as f:
        size = f.size()
        if size < 8:
            return False
        head = f.read(4)
        f.seek(size - 4)
        return head == b"PAR1" and f.read(4) == b"PAR1"


def _scan_parquet(files: LakeFiles, relative: str,
                  needles: list[tuple[str, str, "re.Pattern[bytes]"]]) -> list[Occurrence]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(files.open_input(relative))
    hits: Counter[tuple[str, str]] = Counter()
    for rg in range(pf.num_row_groups):
        table = pf.read_row_group(rg)
        for name in table.column_names:
            for place, arr in _leaves(table.column(name), name):
                for id_type, text, compiled in needles:
                    hits[(place, id_type)] += _count(arr, text, compiled)
        meta = pf.metadata.row_group(rg)
        for c in range(meta.num_columns):
            stats = meta.column(c).statistics
            if stats is None or not stats.has_min_max:
                continue
            for bound in (stats.min, stats.max):
                raw = bound.encode("utf-8") if isinstance(bound, str) else bound if isinstance(bound, bytes) else None
                for id_type, _, compiled in needles:
                    if raw is not None and compiled.search(raw):
                        hits[(f"{meta.column(c).path_in_schema} (statistics)", id_type)] += 1
    return [Occurrence(files.uri(relative), place, t, n) for (place, t), n in sorted(hits.items()) if n]


def _scan_bytes(where: str, data: bytes, needles: list[tuple[str, str, "re.Pattern[bytes]"]]) -> list[Occurrence]:
    place = "bytes"
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
            place = "bytes (gunzipped)"
        except (OSError, EOFError, zlib.error):
            pass
    out = []
    for id_type, _, compiled in needles:
        n = sum(1 for _ in compiled.finditer(data))
        if n:
            out.append(Occurrence(where, place, id_type, n))
    return out


class UnreadableRoot(LakeFilesError):
    """A folder the scan had to read could not be listed or read: the scan proves nothing, so it fails."""


def scan(roots: Iterable[str], identifiers: list[Identifier], *, exclude: Iterable[str] = (),
         required: Iterable[str] = (), storage_options: Mapping[str, str] | None = None) -> list[Occurrence]:
    """Every occurrence of the identifiers (clear in any usual written form, or SHA-256) under ``roots``, which
    may be local folders or object-store URIs (listed and read through `LakeFiles`).

    A root that cannot be listed (missing bucket, wrong credentials) raises `UnreadableRoot`, and so does a
    ``required`` root (the lake root) that holds no file: "could not look" is never reported as "found nothing".
    Other local roots that do not exist yet (a landing folder never written) hold nothing and are skipped.

    Example:
        >>> scan(["s3://bucket/lake"], [Identifier("email", "a@x.com")], required=["s3://bucket/lake"])  # doctest: +SKIP
        []
    """
    needles = _needles(identifiers)
    if not needles:
        return []
    must = {LakeFiles(r, storage_options).uri() for r in required}
    skip = [LakeFiles(e, storage_options).uri() for e in exclude]
    out: list[Occurrence] = []
    seen: set[str] = set()
    for root in roots:
        files = LakeFiles(root, storage_options)
        if not files.remote and not os.path.isdir(files.uri()) and files.uri() not in must:
            continue
        try:
            listing = list(files.walk())
        except LakeFilesError as exc:
            raise UnreadableRoot(f"erasure verification cannot read {files.uri()}: {exc}") from None
        if not listing and files.uri() in must:
            raise UnreadableRoot(f"erasure verification found no file at all under {files.uri()}; expected the "
                                 f"lake's tables there (check lake.root and lake.storage_options)")
        for relative, _size in listing:
            where = files.uri(relative)
            if where in seen or any(where.startswith(s + "/") for s in skip):
                continue
            seen.add(where)
            try:
                if _is_parquet(files, relative):
                    try:
                        out.extend(_scan_parquet(files, relative, needles))
                        continue
                    except Exception:  # noqa: BLE001 - unreadable Parquet is still scanned as bytes
                        pass
                out.extend(_scan_bytes(where, files.read_bytes(relative), needles))
            except FileNotFoundError:  # removed while scanning (a vacuum, a rotated spool file)
                continue
            except LakeFilesError as exc:
                raise UnreadableRoot(f"erasure verification cannot read {where}: {exc}") from None
    return out


def row_matches(table: pa.Table, pattern: str) -> list[bool]:
    """Per row: does any value (rendered as JSON text) match ``pattern`` (ignore case)."""
    compiled = re.compile(pattern, re.I)
    return [bool(compiled.search(json.dumps(r, default=str, ensure_ascii=False))) for r in table.to_pylist()]
