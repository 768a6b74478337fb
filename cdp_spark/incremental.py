"""When a stage may fold in only what is new, and when it must rebuild: the one decision identity and profiles share.

Example:
    >>> run_mode(lake, state, "ab12", date(2026, 11, 2), False, needed=["gold.id_graph"],
    ...          appended_only={"bronze.events": "events_version"})      # doctest: +SKIP
    ('incremental', 'new data since the previous run')
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from pyspark.sql import functions as F

from cdp_spark.ingest.tables import EVENTS, PROFILE_RECORDS

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.lake import Lake

# The bronze tables the incremental stages fold in, with the state key under which a run records the version it read.
BRONZE_VERSIONS = {EVENTS.name: "events_version", PROFILE_RECORDS.name: "profile_records_version"}

_REWRITES = ("DELETE", "MERGE", "UPDATE", "RESTORE", "TRUNCATE", "REPLACE")


def rewritten_since(lake: "Lake", name: str, version: int | None) -> bool:
    """True when a commit after ``version`` did more than append (erasure, overwrite, merge): incremental evidence
    would then count records that are gone, so a full rebuild is needed.

    Example:
        >>> rewritten_since(lake, "bronze.events", 12)    # doctest: +SKIP
        False
    """
    if version is None or not lake.exists(name):
        return False
    for commit in lake.history(name):
        if commit.get("version", -1) <= version:
            continue
        op = str(commit.get("operation", "")).upper()
        mode = str((commit.get("operationParameters") or {}).get("mode", "Append")).strip('"').lower()
        if any(w in op for w in _REWRITES) or ("WRITE" in op and mode != "append"):
            return True
    return False


def latest_run(lake: "Lake", runs_table: str) -> dict[str, Any] | None:
    """The newest row of a stage's runs table (``silver.identity_runs``, ``silver.profile_runs``) as a dict: the state
    its next run decides from; None before the first run.

    Example:
        >>> latest_run(lake, "silver.identity_runs")["as_of"]      # doctest: +SKIP
        datetime.date(2026, 11, 1)
    """
    if not lake.exists(runs_table):
        return None
    runs = lake.read(runs_table)
    newest_first = [F.desc(c) for c in ("finished_at", "run_id") if c in runs.columns]
    rows = runs.orderBy(*newest_first).limit(1).collect()
    return rows[0].asDict() if rows else None


def run_mode(lake: "Lake", state: Mapping[str, Any] | None, fingerprint: str, as_of: dt.date, full: bool, *,
             needed: Sequence[str], appended_only: Mapping[str, str]) -> tuple[str, str]:
    """(``"full"`` or ``"incremental"``, reason) for a stage whose previous run recorded ``state`` (its rules
    ``rules_fingerprint``, ``as_of`` and, per table of ``appended_only``, the version it read under the named key).

    Incremental only when the rules are unchanged, time moves forward, the ``needed`` tables exist and the
    ``appended_only`` tables were only appended to since.
    """
    if full:
        return "full", "requested"
    if state is None:
        return "full", "first run"
    if state["rules_fingerprint"] != fingerprint:
        return "full", "rules changed"
    if as_of < state["as_of"]:
        return "full", "as-of before the previous run's"
    if not all(lake.exists(t) for t in needed):
        return "full", "state tables missing"
    if any(rewritten_since(lake, table, state[key]) for table, key in appended_only.items()):
        return "full", "bronze rewritten (not only appended) since the previous run"
    return "incremental", "new data since the previous run"


__all__ = ["BRONZE_VERSIONS", "latest_run", "rewritten_since", "run_mode"]
