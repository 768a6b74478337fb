"""Tiny stages used by the pipeline tests: one writes rows idempotently, one fails."""
from __future__ import annotations

from cdp_spark.lake import Txn
from cdp_spark.pipeline import StageResult
from tests.lake_fixtures import events_df


def write_events(spark, config, lake, as_of):
    # Idempotent per as-of: the txn version is the day number, so a rerun of the same day is a no-op.
    result = lake.append("test.events", events_df(spark, 5, as_of), txn=Txn("test-stage", as_of.toordinal()))
    return StageResult(rows_in={"source": 5}, rows_out={"test.events": 0 if result.skipped else result.rows})


def explode(spark, config, lake, as_of):
    raise ValueError("the source folder is unreadable")


def never(spark, config, lake, as_of):  # pragma: no cover - must not run after a failure
    raise AssertionError("a stage after a failed one ran")
