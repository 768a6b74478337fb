"""`cdp status`: a one-screen summary from metadata only (Delta logs and the ledger; no Spark, no data scanned).

Last run per stage, freshness of each table, ingestion per source (files, records in = accepted + quarantined +
duplicates + suppressed, quarantined by reason, diverted records, files that could not be read), streaming lag,
failing destinations and the pipeline lease.

Example:
    >>> summary = status(metadata_lake(config), config)        # doctest: +SKIP
    >>> summary["stages"]["identity"]["status"]                 # doctest: +SKIP
    'succeeded'
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from cdp_spark.ops.ledger import JOB_STEP, Ledger
from cdp_spark.ops.lock import read_leases
from cdp_spark.ops.report import data

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake


def _age_hours(ts: datetime | None, now: datetime) -> float | None:
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return round((now - ts).total_seconds() / 3600, 2)


def last_runs(rows: list[dict[str, Any]], stages: list[str]) -> dict[str, dict[str, Any]]:
    """The latest ledger row per stage (and per job: daily, maintain, collect_stream), newest first input."""
    latest: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = r["job"] if r["step"] == JOB_STEP else r["step"]
        if key in latest:
            continue
        seconds = (r["ended_at"] - r["started_at"]).total_seconds() if r["ended_at"] else None
        latest[key] = {"kind": "job" if r["step"] == JOB_STEP else "stage", "run_id": r["run_id"],
                       "as_of": r["as_of"], "status": r["status"], "started_at": r["started_at"],
                       "seconds": round(seconds, 1) if seconds is not None else None, "error": r["error"]}
    ordered = {s: latest[s] for s in stages if s in latest}
    ordered.update({k: v for k, v in latest.items() if k not in ordered})
    return ordered


INGEST_COUNTERS = ("read", "accepted", "quarantined", "duplicates", "suppressed", "refused_records", "diverted",
                   "files_ingested",
                   "files_duplicate", "files_failed", "files_unreadable", "files_rejected")


def ingestion(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per source, from the latest finished `ingest` stage run and `collect_stream` run (newest first input): the
    file and record counts (zeros left out), quarantined records per reason (a record with several reasons counts
    under each), diverted records (kept in bronze, left out downstream), whether the records reconcile
    (read = accepted + quarantined + duplicates + suppressed + refused_records: a snapshot delivery whose deletes
    were refused) and the files that could not be read.

    Example:
        >>> ingestion([{"step": "ingest", "job": "daily", "status": "succeeded", "run_id": "r1",
        ...             "metrics": {"sources": {"web": {"read": 3, "accepted": 1, "quarantined": 2, "diverted": 1,
        ...                                             "quarantine_reasons": {"too_deep": 2}, "reconciled": True,
        ...                                             "files_failed": 1, "problem_files": [{"path": "a.json.gz", "status": "failed"}]}}}}])
        {'web': {'run_id': 'r1', 'read': 3, 'accepted': 1, 'quarantined': 2, 'diverted': 1, 'files_failed': 1, 'reconciled': True, 'quarantine_reasons': {'too_deep': 2}, 'problem_files': [{'path': 'a.json.gz', 'status': 'failed'}]}}
    """
    out: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for r in rows:
        kind = "stream" if r["job"] == "collect_stream" and r["step"] == JOB_STEP else r["step"]
        if kind not in ("ingest", "stream") or kind in seen or r["status"] == "running":
            continue
        seen.add(kind)
        raw = r.get("metrics")
        metrics = raw if isinstance(raw, dict) else json.loads(raw or "{}")
        for source, m in (metrics.get("sources") or {}).items():
            name = source if kind == "ingest" else f"{source} (stream)"
            m = {"read": m.get("read_lines"), **m}  # the stream counts lines read as read_lines
            counts = {k: m[k] for k in INGEST_COUNTERS if m.get(k)}
            out[name] = {"run_id": r["run_id"], **counts, "reconciled": m.get("reconciled"),
                         "quarantine_reasons": m.get("quarantine_reasons") or {},
                         "problem_files": m.get("problem_files") or [], "refused": m.get("refused")}
            for key in ("quarantine_reasons", "problem_files", "refused"):
                if not out[name][key]:
                    del out[name][key]
    return out


def table_freshness(lake: "Lake", now: datetime) -> list[dict[str, Any]]:
    """Per existing table: version, last commit time and operation, age in hours, rows."""
    out = []
    for spec in lake.registry:
        if not lake.exists(spec.name):
            continue
        commit = (lake.history(spec.name, 1) or [{}])[0]
        when = datetime.fromtimestamp(commit["timestamp"] / 1000, tz=timezone.utc) if commit.get("timestamp") else None
        info = lake.info(spec.name)
        out.append({"table": spec.name, "version": info.version, "rows": info.rows, "last_commit": when,
                    "operation": commit.get("cdp.operation") or commit.get("operation"),
                    "age_hours": _age_hours(when, now)})
    return out


def status(lake: "Lake", config: "CdpConfig", *, now: datetime | None = None) -> dict[str, Any]:
    """The whole summary as plain data (the CLI prints it as tables or JSON)."""
    now = now or datetime.now(timezone.utc)
    rows = Ledger(lake, stale_after_minutes=config.pipeline.stale_after_minutes).runs(limit=0)
    lag = data.streaming_lag(rows)
    streaming: dict[str, Any] = {}
    if lag is not None:
        for record in lag.sort_values("run_started").to_dict("records"):
            streaming[record["source"]] = {"run_started": record["run_started"], "max_lag_s": record["max_lag_s"],
                                           "accepted": record["accepted"]}
    deliveries = data.activation_results(rows)
    destinations = [] if deliveries is None else deliveries.to_dict("records")
    return {
        "generated_at": now,
        "org": config.org.id,
        "lake": lake.root,
        "stages": last_runs(rows, list(config.pipeline.stages)),
        "tables": table_freshness(lake, now),
        "ingestion": ingestion(rows),
        "streaming": streaming,
        "destinations": destinations,
        "failing_destinations": [d["destination"] for d in destinations if d.get("status") == "failing"],
        "leases": read_leases(lake),
    }
