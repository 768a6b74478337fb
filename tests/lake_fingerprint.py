"""A lake's fingerprint: per table, its row count and a hash of its schema and of its rows (a multiset, with the
columns of `tests.lake_compare.VOLATILE` left out), so a refactoring can be checked against a committed fingerprint
of the demo lake built by the code before it.

Run ids that carry a digest of the stage's idempotency token (identity, audiences) are left out too, and inside
other text (identity's run statistics) their digest is masked: the token is how a re-run is recognised, not data,
and its digest changes when the way it is computed does.

    python -m tests.lake_fingerprint <lake root> > tests/data/demo_fingerprint.json

Example:
    >>> lake_fingerprint("/tmp/demo-lake")["gold.profiles"]["rows"]    # doctest: +SKIP
    120
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from typing import Any

from tests.lake_compare import VOLATILE, existing_tables, table_snapshot

TOKEN_DIGEST = re.compile(r"\b(identity|audiences)-(\d{8})-[0-9a-f]{8}\b")
TOKEN_RUN_IDS: dict[str, set[str]] = {name: {"run_id"} for name in
                                      ("silver.identity_runs", "gold.profile_id_history", "gold.audience_changes")}


def _digest(lines: list[str]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()


def lake_fingerprint(root: str, without: dict[str, tuple[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Table name -> rows, schema hash and rows hash, for every registered table under ``root``; ``without`` leaves
    out the rows of a table whose column has a value (``{"ops.job_runs": ("step", "serve")}``)."""
    out = {}
    for name in existing_tables(root):
        ignore = VOLATILE.get(name, set()) | TOKEN_RUN_IDS.get(name, set())
        snap = table_snapshot(root, name, ignore)
        rows = list(snap["rows"].elements())
        if without and name in without:
            column, value = without[name]
            at = [f["name"] for f in snap["schema"]["fields"] if f["name"] not in ignore].index(column)
            rows = [row for row in rows if row[at] != value]
        rows = sorted(TOKEN_DIGEST.sub(r"\1-\2-<token>", repr(row)) for row in rows)
        out[name] = {"rows": len(rows), "schema": _digest([json.dumps(snap["schema"], sort_keys=True)]),
                     "content": _digest(rows)}
    return out


if __name__ == "__main__":
    json.dump(lake_fingerprint(sys.argv[1]), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
