"""Resume: which stages of a job for an as-of date already finished, according to the ledger.

The latest earlier run of the same job and as-of date decides: its stages that ``succeeded`` (or that it
``skipped`` because an earlier run had finished them) are done; everything from its failed stage on runs again.
Skipped stages are recorded in the new run with ``metrics.resumed_from``, so a chain of resumes keeps working.

Example:
    >>> point = resume_point(ledger, "daily", date(2026, 11, 1), ["ingest", "identity"])   # doctest: +SKIP
    >>> point.done, point.previous_run_id                                                  # doctest: +SKIP
    (['ingest'], 'daily-20261101T020000Z-1a2b3c4d')
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Iterable

from cdp_spark.ops.ledger import JOB_STEP, Ledger

DONE = ("succeeded", "skipped")


@dataclass(frozen=True)
class ResumePoint:
    """What a resumed run may skip: the stages done by ``previous_run_id`` (None when there is none)."""

    previous_run_id: str | None
    previous_status: str | None
    done: list[str] = field(default_factory=list)
    failed_stage: str | None = None


def resume_point(ledger: Ledger, job: str, as_of: date, stages: Iterable[str]) -> ResumePoint:
    """The stages of ``stages`` already done for ``job`` on ``as_of`` by its latest recorded run."""
    rows = ledger.runs(limit=0)
    return resume_point_from_rows(rows, job, as_of, stages)


def resume_point_from_rows(rows: list[dict[str, Any]], job: str, as_of: date, stages: Iterable[str]) -> ResumePoint:
    """Pure part of `resume_point`, on ledger rows (newest first, with effective status).

    Example:
        >>> rows = [{"run_id": "r1", "step": "job", "job": "daily", "as_of": date(2026, 11, 1), "status": "failed"},
        ...         {"run_id": "r1", "step": "a", "job": "daily", "as_of": date(2026, 11, 1), "status": "succeeded"},
        ...         {"run_id": "r1", "step": "b", "job": "daily", "as_of": date(2026, 11, 1), "status": "failed"}]
        >>> resume_point_from_rows(rows, "daily", date(2026, 11, 1), ["a", "b", "c"]).done
        ['a']
    """
    runs = [r for r in rows if r["step"] == JOB_STEP and r["job"] == job and r["as_of"] == as_of
            and r["status"] != "running"]
    if not runs:
        return ResumePoint(None, None)
    previous = runs[0]
    steps = {r["step"]: r["status"] for r in rows if r["run_id"] == previous["run_id"] and r["step"] != JOB_STEP}
    done = [s for s in stages if steps.get(s) in DONE]
    failed = next((s for s, status in steps.items() if status in ("failed", "stale")), None)
    return ResumePoint(previous["run_id"], previous["status"], done, failed)
