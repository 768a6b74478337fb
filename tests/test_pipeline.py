"""The pipeline runner and the job ledger."""
from __future__ import annotations

import datetime as dt
import os
import socket

import pytest

from cdp_spark.config import CdpConfig
from cdp_spark.lake.embedded import EmbeddedLake
from cdp_spark.lake.registry import default_registry
from cdp_spark.ops.ledger import Ledger, LedgerEntry
from cdp_spark.pipeline import StageFailed, UnknownStageError, plan, run_job
from tests.lake_fixtures import EVENTS, PROFILES

AS_OF = dt.date(2026, 11, 1)
STAGES = {
    "ingest": "tests.stages_for_tests:write_events",
    "identity": "tests.stages_for_tests:explode",
    "profiles": "tests.stages_for_tests:never",
}


@pytest.fixture
def lake(spark, tmp_path):
    return EmbeddedLake(spark, str(tmp_path / "lake"), default_registry().with_tables([EVENTS, PROFILES]))


@pytest.fixture
def config(tmp_path):
    return CdpConfig.model_validate({"lake": {"root": str(tmp_path / "lake")}})


def test_plan_follows_configured_order_and_skips_unregistered(config):
    assert plan(config, "daily", {"profiles": "m:f", "ingest": "m:f"}) == ["ingest", "profiles"]
    assert plan(config, "ingest", {"ingest": "m:f"}) == ["ingest"]
    with pytest.raises(UnknownStageError, match="registered: ingest"):
        plan(config, "scores", {"ingest": "m:f"})


def test_daily_run_records_job_and_stages_and_reruns_idempotently(spark, lake, config):
    registry = {"ingest": STAGES["ingest"]}
    first = run_job(spark, config, lake, "daily", AS_OF, registry=registry)
    second = run_job(spark, config, lake, "daily", AS_OF, registry=registry)
    assert first.status == second.status == "succeeded"
    assert lake.read("test.events").count() == 5  # the rerun added nothing
    rows = Ledger(lake).runs(limit=0)
    by_run = {(r["run_id"], r["step"]): r for r in rows}
    assert by_run[(first.run_id, "job")]["status"] == "succeeded"
    assert by_run[(first.run_id, "ingest")]["rows_out"] == {"test.events": 5}
    assert dict(by_run[(second.run_id, "ingest")]["rows_out"]) == {"test.events": 0}
    assert by_run[(first.run_id, "ingest")]["as_of"] == AS_OF
    assert all(r["ended_at"] >= r["started_at"] for r in rows)


def test_failed_stage_stops_the_run_and_is_recorded(spark, lake, config):
    with pytest.raises(StageFailed) as err:
        run_job(spark, config, lake, "daily", AS_OF, registry=STAGES)
    assert err.value.stage == "identity"
    rows = {r["step"]: r for r in Ledger(lake).runs() if r["run_id"] == err.value.report.run_id}
    assert rows["ingest"]["status"] == "succeeded"
    assert rows["identity"]["status"] == "failed"
    assert rows["identity"]["error"] == "ValueError: the source folder is unreadable"
    assert rows["job"]["status"] == "failed" and "stage identity" in rows["job"]["error"]
    assert "profiles" not in rows


def test_killed_run_shows_as_stale(spark, lake):
    ledger = Ledger(lake, stale_after_minutes=60)
    now = dt.datetime.now(dt.timezone.utc)
    dead_pid = 2**22 + 12345  # above pid_max defaults: no such process
    killed = LedgerEntry("r-killed", "job", "daily", AS_OF, "running", now, host=socket.gethostname(), pid=dead_pid)
    silent = LedgerEntry("r-silent", "job", "daily", AS_OF, "running", now - dt.timedelta(hours=3),
                         heartbeat_at=now - dt.timedelta(hours=3), host="other-host", pid=1)
    alive = LedgerEntry("r-alive", "job", "daily", AS_OF, "running", now, pid=os.getpid())
    for entry in (killed, silent, alive):
        ledger._write(entry)
    status = {r["run_id"]: r["status"] for r in ledger.runs()}
    assert status == {"r-killed": "stale", "r-silent": "stale", "r-alive": "running"}
