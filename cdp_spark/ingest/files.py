"""The file ledger's decisions: which landed files to ingest, skip or record otherwise (pure Python, no Spark).

A file is identified by its content (size and SHA-256) and named in the ledger by its path relative to the
source's folder, so renaming a file, or moving or copying the whole lake with its landing zone, re-ingests
nothing. A file whose relative path, size and modification time match the ledger is skipped without reading it;
any other is hashed first:
- same path and content as recorded, new modification time: `unchanged` (recorded, so the next run skips it fast);
- content already ingested under another path: `duplicate_file`;
- same path, other content: a changed re-delivery, which follows the source's `on_changed_file` rule: `reject`
  records it (`rejected_changed`) and ingests nothing, `new_version` ingests it again under the next version;
- a file whose reading failed is tried again by later runs, `MAX_FILE_ATTEMPTS` times in all;
- a snapshot delivery whose deletes were refused (`refused_deletes`) is offered again, as the next version;
- a file in a compression Spark cannot read is recorded `unreadable` and never read.

Example:
    >>> plan_files([LandedFile("file:/in/a", 1, 0, relative="a")], {}, "reject", hashes={"file:/in/a": "h"}).ingest[0].path
    'a'
    >>> plan_files([LandedFile("file:/in/b", 1, 0, relative="b")], {"a": {"size": 1, "content_hash": "h",
    ...     "modified_at": 0, "version": 1, "status": "ingested"}}, "reject", hashes={"file:/in/b": "h"}).duplicate[0].path
    'b'
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from cdp_spark.ingest.readers import LandedFile

# Statuses under which a file's content counts as taken in (its records are in bronze, or were quarantined; or
# an erasure rewrote the file without some of them).
TAKEN = ("ingested", "duplicate_file", "unchanged", "rewritten")
# Reading a file is tried this many times (runs) in all before the file is left as failed.
MAX_FILE_ATTEMPTS = 3
REFUSED = "refused_deletes"  # a snapshot delivery the delete guard refused (see ingest.stage.SnapshotDeletesRefused)


@dataclass(frozen=True)
class FileAction:
    """A landed file with its ledger name (``path`` relative to the source folder), content hash and version."""

    file: LandedFile
    version: int
    path: str = ""
    content_hash: str | None = None


@dataclass
class FilePlan:
    ingest: list[FileAction] = field(default_factory=list)
    rejected: list[FileAction] = field(default_factory=list)
    skipped: list[LandedFile] = field(default_factory=list)
    superseded: list[FileAction] = field(default_factory=list)
    duplicate: list[FileAction] = field(default_factory=list)
    unchanged: list[FileAction] = field(default_factory=list)
    unreadable: list[FileAction] = field(default_factory=list)
    missing: list[LandedFile] = field(default_factory=list)


def _stamp(value: Any) -> Any:
    # Spark gives naive UTC datetimes, the Delta table may give them too; compare as ISO text to the microsecond.
    return value.replace(tzinfo=None).isoformat() if hasattr(value, "isoformat") else value


def known_unchanged(f: LandedFile, last: Mapping[str, Any] | None) -> bool:
    """Whether the ledger's latest row for the file's path has its size and modification time (no need to hash)."""
    return last is not None and last["size"] == f.size and _stamp(last["modified_at"]) == _stamp(f.modified_at)


def plan_files(landed: Iterable[LandedFile], known: Mapping[str, Mapping[str, Any]], on_changed: str,
               snapshot: bool = False, *, hashes: Mapping[str, str | None],
               attempts: Mapping[tuple[str, str], int] | None = None) -> FilePlan:
    """Decide per file (see the module docstring).

    ``known`` maps a relative path to its latest ledger row (size, modified_at, version, status, content_hash);
    ``hashes`` maps a landed file's path to its SHA-256 (None: gone since listing), for every file that
    `known_unchanged` does not skip; ``attempts`` counts failed readings per (relative path, hash). For snapshot
    sources only the newest delivery is ingested; older pending ones are marked superseded.
    """
    plan = FilePlan()
    attempts = attempts or {}
    taken = {(int(r["size"]), r.get("content_hash")) for r in known.values() if r["status"] in TAKEN}
    for f in landed:
        path = f.relative or f.path
        last = known.get(path)
        # Nothing of a file whose reading failed, that could not be read, or whose snapshot deletes were refused
        # was taken in: not a changed delivery.
        nothing_taken = last is not None and last["status"] in ("failed", "unreadable", REFUSED)
        refused = last is not None and last["status"] == REFUSED  # offered again (e.g. with the override)
        retry = refused or (last is not None and last["status"] == "failed"
                            and attempts.get((path, last.get("content_hash")), 0) < MAX_FILE_ATTEMPTS)
        if known_unchanged(f, last) and not retry:
            plan.skipped.append(f)
            continue
        digest = hashes.get(f.path)
        if digest is None:
            plan.missing.append(f)
        elif f.problem is not None:
            plan.unreadable.append(FileAction(f, 1 if last is None else int(last["version"]), path, digest))
        elif last is not None and last.get("content_hash") == digest and last["size"] == f.size:
            if retry:
                plan.ingest.append(FileAction(f, int(last["version"]) + int(refused), path, digest))
            elif last["status"] in TAKEN:
                plan.unchanged.append(FileAction(f, int(last["version"]), path, digest))
            else:
                plan.skipped.append(f)  # rejected, superseded or given up before: still the same bytes
        elif (f.size, digest) in taken:
            plan.duplicate.append(FileAction(f, 1 if last is None else int(last["version"]) + 1, path, digest))
        elif last is None:
            plan.ingest.append(FileAction(f, 1, path, digest))
        elif on_changed == "new_version" or nothing_taken:
            plan.ingest.append(FileAction(f, int(last["version"]) + 1, path, digest))
        else:
            plan.rejected.append(FileAction(f, int(last["version"]) + 1, path, digest))
    if snapshot and len(plan.ingest) > 1:
        newest = max(plan.ingest, key=lambda a: (_stamp(a.file.modified_at), a.file.path))
        plan.superseded = [a for a in plan.ingest if a is not newest]
        plan.ingest = [newest]
    return plan
