"""The file ledger's decisions: which landed files to ingest, skip or reject (pure Python, no Spark).

A file is identified by path; its size and modification time tell whether a re-delivery under the same name
changed. Changed files follow the source's `on_changed_file` rule: `reject` records them and ingests nothing,
`new_version` ingests them again under the next version.

Example:
    >>> plan_files([LandedFile("a", 1, 0)], {}, "reject").ingest[0].version
    1
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from cdp_spark.ingest.readers import LandedFile


REFUSED = "refused_deletes"  # a snapshot delivery the delete guard refused (see ingest.stage.SnapshotDeletesRefused)


@dataclass(frozen=True)
class FileAction:
    file: LandedFile
    version: int


@dataclass
class FilePlan:
    ingest: list[FileAction] = field(default_factory=list)
    rejected: list[FileAction] = field(default_factory=list)
    skipped: list[LandedFile] = field(default_factory=list)
    superseded: list[FileAction] = field(default_factory=list)


def _stamp(value: Any) -> Any:
    # Spark gives naive UTC datetimes, the Delta table may give them too; compare as ISO text to the microsecond.
    return value.replace(tzinfo=None).isoformat() if hasattr(value, "isoformat") else value


def plan_files(landed: Iterable[LandedFile], known: Mapping[str, Mapping[str, Any]], on_changed: str,
               snapshot: bool = False) -> FilePlan:
    """Decide per file; ``known`` maps path -> the latest ledger row (size, modified_at, version, status).

    For snapshot sources only the newest delivery is ingested; older pending ones are marked superseded.
    """
    plan = FilePlan()
    for f in landed:
        last = known.get(f.path)
        if last is None:
            plan.ingest.append(FileAction(f, 1))
        elif last.get("status") == REFUSED:  # nothing of it was applied: offered again (e.g. with the override)
            plan.ingest.append(FileAction(f, int(last["version"]) + 1))
        elif last["size"] == f.size and _stamp(last["modified_at"]) == _stamp(f.modified_at):
            plan.skipped.append(f)
        elif on_changed == "new_version":
            plan.ingest.append(FileAction(f, int(last["version"]) + 1))
        else:
            plan.rejected.append(FileAction(f, int(last["version"]) + 1))
    if snapshot and len(plan.ingest) > 1:
        newest = max(plan.ingest, key=lambda a: (_stamp(a.file.modified_at), a.file.path))
        plan.superseded = [a for a in plan.ingest if a is not newest]
        plan.ingest = [newest]
    return plan
