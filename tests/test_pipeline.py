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
from cdp_spark.pipeline import (SPECS, StageFailed, StageOrderError, UnknownStageError, order_problems, plan, run_job,
                                stage_token)
from cdp_spark.stage_spec import StageSpec
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


def test_the_plan_refuses_a_stage_that_reads_a_table_a_later_stage_writes(config):
    assert plan(config, "daily") == config.pipeline.stages  # the default order is a valid one
    swapped = config.pipeline.model_copy(update={"stages": ["ingest", "profiles", "identity", "scores"]})
    with pytest.raises(StageOrderError) as refused:
        plan(config.model_copy(update={"pipeline": swapped}), "daily")
    assert str(refused.value).startswith("stage 'profiles' reads gold.id_graph, which stage 'identity' writes after "
                                         "it: put 'identity' before 'profiles'")
    # the serving store reads scores and audience members: before them it would serve the previous day's
    assert order_problems([SPECS["serve"], SPECS["scores"]]) == [
        "stage 'serve' reads gold.profile_scores, which stage 'scores' writes after it: put 'scores' before 'serve'"]


def test_declared_reads_are_written_by_a_declared_stage_and_reading_ones_own_output_is_allowed():
    written = {t for s in SPECS.values() for t in s.writes}
    for stage in SPECS.values():
        assert set(stage.reads) <= written, stage.name
    own = StageSpec("a", run="m:f", reads=("gold.x",), writes=("gold.x",))
    assert order_problems([own, StageSpec("b", run="m:g", writes=("gold.x",))]) == []
    previous = StageSpec("a", run="m:f", reads_previous=("gold.x",))
    assert order_problems([previous, StageSpec("b", run="m:g", writes=("gold.x",))]) == []


class _Versions:
    """A stand-in lake: the registry and the versions the token reads."""

    def __init__(self, versions):
        self.versions, self.registry = versions, set(versions)

    def version(self, name):
        return self.versions[name]


def test_the_stage_token_changes_with_a_read_tables_version_or_a_rule_and_nothing_else():
    stage = SPECS["profiles"]
    versions = {t: 3 for t in stage.token_reads}
    config = CdpConfig()
    token = stage_token(stage, config, _Versions(versions), AS_OF)
    assert token.app_id.startswith("profiles.") and token.version == 20261101
    assert stage_token(stage, config, _Versions(dict(versions)), AS_OF) == token
    moved = stage_token(stage, config, _Versions({**versions, "gold.id_graph": 4}), AS_OF)
    assert moved.app_id != token.app_id
    own_output = stage_token(stage, config, _Versions({**versions, "gold.profiles": 9}), AS_OF)
    assert own_output == token  # its own writes do not enter the token: a re-run would never match otherwise
    ruled = config.model_copy(update={"profiles": config.profiles.model_copy(update={"default_rule": "first"})})
    assert stage_token(stage, ruled, _Versions(versions), AS_OF).app_id != token.app_id
    assert stage_token(stage, config, _Versions(versions), AS_OF + dt.timedelta(days=1)).version == 20261102


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


def test_the_full_rebuild_registry_swaps_only_the_incremental_stages():
    from cdp_spark.pipeline import FULL_STAGES, STAGES, stage_function

    swapped = {n for n in STAGES if FULL_STAGES[n] != STAGES[n]}
    assert swapped == {"identity", "profiles"}
    assert all(FULL_STAGES[n].endswith(":run_full") for n in swapped)
    assert all(callable(stage_function(n, FULL_STAGES)) for n in swapped)
