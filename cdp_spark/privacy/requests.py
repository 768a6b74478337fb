"""Erasure requests: filed by `cdp erase` or the API's DELETE, executed by `cdp erase run`, tracked in
``ops.erasure_requests`` (salted hashes only).

The clear identifiers a request needs (to find the person in landing files and to verify afterwards) are kept
in ``<lake.root>/_system/erasure/<request_id>.json`` (mode 0600) while the request is open, and removed when its
verification finds nothing (or after ``privacy.keep_request_identifiers_hours``).

Example:
    >>> rid = file_request(config, lake, [Identifier("email", "a@x.com")], requested_by="cli")   # doctest: +SKIP
    >>> latest(lake, rid)["status"]                                                             # doctest: +SKIP
    'pending'
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from cdp_spark.lake.deltaio import append_rows, read_rows
from cdp_spark.privacy.matching import Identifier
from cdp_spark.privacy.tombstones import salt_for, token

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake

TABLE = "ops.erasure_requests"
OPEN = ("pending", "running", "deleted", "failed")
_ID = re.compile(r"^er_[0-9a-f]{24}$")


class UnknownRequest(LookupError):
    """No such erasure request."""


def valid_request_id(request_id: str) -> bool:
    return bool(_ID.match(request_id or ""))


def sealed_dir(lake_root: str) -> Path:
    return Path(lake_root) / "_system" / "erasure"


def _sealed_path(lake_root: str, request_id: str) -> Path:
    if not valid_request_id(request_id):
        raise UnknownRequest("malformed erasure request id")
    return sealed_dir(lake_root) / f"{request_id}.json"


def read_sealed(lake_root: str, request_id: str) -> dict[str, Any] | None:
    path = _sealed_path(lake_root, request_id)
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def write_sealed(lake_root: str, request_id: str, doc: dict[str, Any]) -> None:
    path = _sealed_path(lake_root, request_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def purge_sealed(lake_root: str, request_id: str) -> None:
    path = _sealed_path(lake_root, request_id)
    if path.exists():
        size = path.stat().st_size
        with open(path, "r+b") as f:  # overwrite before unlinking: the clear values must not linger on disk
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
        path.unlink()


def identifiers_of(doc: dict[str, Any]) -> list[Identifier]:
    return [Identifier(t, v) for t, v in doc.get("identifiers", [])]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def file_request(config: "CdpConfig", lake: "Lake", identifiers: Iterable[Identifier], *,
                 profile_ids: Iterable[str] = (), requested_by: str = "cli") -> str:
    """Record a new request (status pending); returns its id."""
    ids = sorted({(i.id_type, i.value) for i in identifiers})
    pids = sorted(set(profile_ids))
    if not ids and not pids:
        raise ValueError("an erasure request needs at least one identifier or profile id")
    request_id = "er_" + uuid.uuid4().hex[:24]
    now = _now()
    write_sealed(lake.root, request_id, {"request_id": request_id, "identifiers": [list(p) for p in ids],
                                         "profile_ids": pids, "created_at": now.isoformat()})
    salt = salt_for(config, lake.root)
    append_rows(lake, TABLE, [{
        "request_id": request_id, "requested_at": now, "requested_by": requested_by,
        "identifier_hashes": [token(t, v, salt) for t, v in ids], "profile_ids": pids, "status": "pending",
        "step": None, "rows_deleted": [], "files_rewritten": 0, "occurrences": None, "vacuum_now": None,
        "error": None, "updated_at": now}])
    return request_id


def history(lake: "Lake", request_id: str) -> list[dict[str, Any]]:
    rows = read_rows(lake, TABLE, [("request_id", "=", request_id)])
    return sorted(rows, key=lambda r: r["updated_at"])


def latest(lake: "Lake", request_id: str) -> dict[str, Any] | None:
    rows = history(lake, request_id)
    return rows[-1] if rows else None


def record(lake: "Lake", request_id: str, **changes: Any) -> dict[str, Any]:
    """Append the request's new state (its latest row with ``changes``)."""
    last = latest(lake, request_id)
    if last is None:
        raise UnknownRequest(f"no erasure request {request_id}")
    row = {**last, **changes, "updated_at": max(_now(), _aware(last["updated_at"]) + dt.timedelta(microseconds=1))}
    if isinstance(row.get("rows_deleted"), dict):
        row["rows_deleted"] = list(row["rows_deleted"].items())
    append_rows(lake, TABLE, [row])
    return row


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def pending(lake: "Lake") -> list[str]:
    """Requests not finished yet (pending, running, deleted or failed), oldest first."""
    rows = read_rows(lake, TABLE)
    last: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["updated_at"]):
        last[r["request_id"]] = r
    return [rid for rid, r in sorted(last.items(), key=lambda kv: kv[1]["requested_at"]) if r["status"] in OPEN]


def open_profile_ids(config: "CdpConfig") -> set[str]:
    """Profile ids of requests whose identifiers are still sealed (not yet verified): never served meanwhile."""
    folder = sealed_dir(config.lake.root)
    out: set[str] = set()
    if folder.exists():
        for p in folder.glob("er_*.json"):
            try:
                out.update(json.loads(p.read_text(encoding="utf-8")).get("profile_ids", []))
            except (OSError, ValueError):
                continue
    return out
