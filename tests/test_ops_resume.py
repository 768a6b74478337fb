"""Resume and the lease in the runner, with tiny stages: a failed day resumes from the failed stage without redoing
finished ones, every log line of the run carries its run id and stage as JSON, and a held lease refuses a run."""
from __future__ import annotations

import datetime as dt
import io
import json
import logging

import pytest

from cdp_spark.config import CdpConfig
from cdp_spark.lake.embedded import EmbeddedLake
from cdp_spark.lake.registry import default_registry
from cdp_spark.ops.ledger import Ledger
from cdp_spark.ops.lock import Lease, LeaseHeld
from cdp_spark.ops.logs import configure_logging
from cdp_spark.ops.resume import resume_point_from_rows
from cdp_spark.pipeline import StageFailed, run_job
from tests.lake_fixtures import EVENTS, PROFILES

AS_OF = dt.date(2026, 11, 1)
CALLS: list[str] = []
BROKEN = {"identity": True}
log = logging.getLogger("cdp_spark.tests.stage")


def counted_ingest(spark, config, lake, as_of):
    from tests.stages_for_tests import write_events

    CALLS.append("ingest")
    log.info("ingesting for ann@example.com")  # a careless message: the log must not carry the address
    return write_events(spark, config, lake, as_of)


def flaky_identity(spark, config, lake, as_of):
    CALLS.append("identity")
    if BROKEN["identity"]:
        raise ValueError("the id graph folder is unreadable")
    log.info("identity done")
    from cdp_spark.pipeline import StageResult

    return StageResult(rows_out={"test.graph": 3})


def last_stage(spark, config, lake, as_of):
    CALLS.append("profiles")
    from cdp_spark.pipeline import StageResult

    return StageResult(rows_out={"test.profiles": 1})


REGISTRY = {"ingest": "tests.test_ops_resume:counted_ingest", "identity": "tests.test_ops_resume:flaky_identity",
            "profiles": "tests.test_ops_resume:last_stage"}


@pytest.fixture
def lake(spark, tmp_path):
    return EmbeddedLake(spark, str(tmp_path / "lake"), default_registry().with_tables([EVENTS, PROFILES]))


@pytest.fixture
def config(tmp_path):
    return CdpConfig.model_validate({"lake": {"root": str(tmp_path / "lake")}})


@pytest.fixture
def json_logs():
    stream = io.StringIO()
    handler = configure_logging(json_format=True, level="INFO", stream=stream)
    yield stream
    logging.getLogger().removeHandler(handler)


def test_resume_reruns_from_the_failed_stage_only_and_logs_carry_run_and_stage(spark, lake, config, json_logs):
    CALLS.clear()
    BROKEN["identity"] = True
    with pytest.raises(StageFailed) as failed:
        run_job(spark, config, lake, "daily", AS_OF, registry=REGISTRY)
    first = failed.value.report.run_id
    assert CALLS == ["ingest", "identity"]
    events_version = lake.version("test.events")

    BROKEN["identity"] = False
    CALLS.clear()
    resumed = run_job(spark, config, lake, "daily", AS_OF, registry=REGISTRY, resume=True)
    assert CALLS == ["identity", "profiles"]  # ingest finished in the failed run: not redone
    assert resumed.stages == {"ingest": "skipped", "identity": "succeeded", "profiles": "succeeded"}
    assert lake.version("test.events") == events_version

    rows = Ledger(lake).runs(limit=0)
    mine = {r["step"]: r for r in rows if r["run_id"] == resumed.run_id}
    assert mine["ingest"]["status"] == "skipped" and json.loads(mine["ingest"]["metrics"])["resumed_from"] == first
    assert json.loads(mine["job"]["params"])["resume_of"] == first
    assert mine["job"]["status"] == "succeeded"

    # Resuming a day that succeeded redoes nothing.
    CALLS.clear()
    again = run_job(spark, config, lake, "daily", AS_OF, registry=REGISTRY, resume=True)
    assert CALLS == [] and set(again.stages.values()) == {"skipped"}
    # Another day is not affected by this day's runs.
    assert resume_point_from_rows(Ledger(lake).runs(limit=0), "daily", AS_OF + dt.timedelta(days=1),
                                  list(REGISTRY)).done == []

    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    stage_lines = [l for l in lines if l["logger"] in ("cdp_spark.tests.stage", "cdp_spark.pipeline")]
    assert stage_lines and all(l["run_id"] in (first, resumed.run_id, again.run_id) for l in stage_lines)
    by_message = {l["message"]: l for l in stage_lines}
    assert by_message["identity done"]["stage"] == "identity" and by_message["identity done"]["run_id"] == resumed.run_id
    failed_line = next(l for l in stage_lines if "failed" in l["message"])
    assert failed_line["stage"] == "identity" and failed_line["run_id"] == first and failed_line["level"] == "ERROR"
    assert "ann@example.com" not in json_logs.getvalue()
    assert any("<email>" in l["message"] and l["stage"] == "ingest" for l in stage_lines)


def test_a_held_lease_refuses_the_run_before_anything_is_recorded(spark, lake, config):
    with Lease(lake, run_id="daily-other", job="daily", heartbeat=False):
        with pytest.raises(LeaseHeld, match="daily-other"):
            run_job(spark, config, lake, "daily", AS_OF, registry={"ingest": REGISTRY["ingest"]})
    assert Ledger(lake).runs() == []
