"""`cdp_spark.incremental`: when identity and profiles may fold in only what is new."""
from __future__ import annotations

import datetime as dt

from cdp_spark.incremental import latest_run, rewritten_since, run_mode

DAY = dt.date(2026, 11, 2)


class Lake:
    """The two things the decision reads: which tables exist, and each table's commit history."""

    def __init__(self, tables: dict[str, list[dict]]):
        self.tables = tables

    def exists(self, name: str) -> bool:
        return name in self.tables

    def history(self, name: str) -> list[dict]:
        return self.tables[name]


def append(version: int) -> dict:
    return {"version": version, "operation": "WRITE", "operationParameters": {"mode": "Append"}}


STATE = {"rules_fingerprint": "r1", "as_of": dt.date(2026, 11, 1), "events_version": 1}
APPENDED = {"bronze.events": "events_version"}


def mode(lake: Lake, state=STATE, fingerprint="r1", as_of=DAY, full=False) -> tuple[str, str]:
    return run_mode(lake, state, fingerprint, as_of, full, needed=["gold.id_graph"], appended_only=APPENDED)


def test_appends_since_the_last_run_are_folded_in():
    lake = Lake({"gold.id_graph": [], "bronze.events": [append(0), append(1), append(2)]})
    assert mode(lake) == ("incremental", "new data since the previous run")


def test_each_reason_for_a_full_rebuild():
    lake = Lake({"gold.id_graph": [], "bronze.events": [append(0), append(1)]})
    assert mode(lake, full=True) == ("full", "requested")
    assert mode(lake, state=None) == ("full", "first run")
    assert mode(lake, fingerprint="r2") == ("full", "rules changed")
    assert mode(lake, as_of=dt.date(2026, 10, 31)) == ("full", "as-of before the previous run's")
    assert mode(Lake({"bronze.events": []})) == ("full", "state tables missing")
    erased = Lake({"gold.id_graph": [], "bronze.events": [append(1), {"version": 2, "operation": "DELETE"}]})
    assert mode(erased)[0] == "full"


def test_only_commits_after_the_version_read_count_and_overwrites_are_rewrites():
    deleted_before = [{"version": 1, "operation": "DELETE"}, append(2)]
    assert not rewritten_since(Lake({"t": deleted_before}), "t", 1)
    overwrite = [append(1), {"version": 2, "operation": "WRITE", "operationParameters": {"mode": "Overwrite"}}]
    assert rewritten_since(Lake({"t": overwrite}), "t", 1)
    assert not rewritten_since(Lake({}), "t", 1) and not rewritten_since(Lake({"t": overwrite}), "t", None)


class RunsLake(Lake):
    """A lake whose runs tables are small Spark frames."""

    def __init__(self, frames: dict):
        super().__init__({name: [] for name in frames})
        self.frames = frames

    def read(self, name: str):
        return self.frames[name]


def test_the_latest_run_is_the_last_finished_and_none_before_the_first(spark):
    at = dt.datetime
    identity = spark.createDataFrame([("identity-a", DAY, at(2026, 11, 2, 5)), ("identity-b", DAY, at(2026, 11, 2, 5)),
                                      ("identity-c", DAY, at(2026, 11, 1, 9))], "run_id string, as_of date, finished_at timestamp")
    profiles = spark.createDataFrame([("incremental", at(2026, 11, 2, 6)), ("full", at(2026, 11, 3, 6))],
                                     "mode string, finished_at timestamp")
    lake = RunsLake({"silver.identity_runs": identity, "silver.profile_runs": profiles,
                     "silver.empty_runs": profiles.limit(0)})
    assert latest_run(lake, "silver.identity_runs")["run_id"] == "identity-b"  # ties: the greater run id
    assert latest_run(lake, "silver.profile_runs")["mode"] == "full"  # runs tables without a run id
    assert latest_run(lake, "silver.empty_runs") is None
    assert latest_run(lake, "silver.never_written") is None
