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
import re
import uuid
from typing import TYPE_CHECKING, Any, Iterable

from cdp_spark.lake.deltaio import append_rows, read_rows
from cdp_spark.lake.files import LakeFiles
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


SEALED_DIR = "_system/erasure"


def _sealed_name(request_id: str) -> str:
    if not valid_request_id(request_id):
        raise UnknownRequest("malformed erasure request id")
    return f"{SEALED_DIR}/{request_id}.json"


def sealed_ids(files: "LakeFiles") -> list[str]:
    """Ids of the requests whose identifiers are sealed (kept) in the lake."""
    return [n.removesuffix(".json") for n in files.list(SEALED_DIR, suffix=".json") if valid_request_id(n[:-5])]


def read_sealed(files: "LakeFiles", request_id: str) -> dict[str, Any] | None:
    try:
        return json.loads(files.read_text(_sealed_name(request_id)))
    except FileNotFoundError:
        return None


def write_sealed(files: "LakeFiles", request_id: str, doc: dict[str, Any]) -> None:
    files.write_text(_sealed_name(request_id), json.dumps(doc), private=True)


def purge_sealed(files: "LakeFiles", request_id: str) -> None:
    files.delete(_sealed_name(request_id), scrub=True)  # the clear values must not linger on disk


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
    write_sealed(lake.files, request_id, {"request_id": request_id, "identifiers": [list(p) for p in ids],
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
    files = LakeFiles.of(config)
    out: set[str] = set()
    for rid in sealed_ids(files):
        try:
            out.update((read_sealed(files, rid) or {}).get("profile_ids", []))
        except ValueError:
            continue
    return out
