"""`ingest.files.plan_files`, the file ledger's decisions, as a pure function: one test per rule of its docstring."""
from __future__ import annotations

import datetime as dt

from cdp_spark.ingest.files import MAX_FILE_ATTEMPTS, REFUSED, plan_files
from cdp_spark.ingest.readers import LandedFile

T0 = dt.datetime(2026, 11, 1, 8, 0)
T1 = dt.datetime(2026, 11, 2, 8, 0)


def landed(name: str, size: int = 10, at: dt.datetime = T0, problem: str | None = None) -> LandedFile:
    return LandedFile(f"file:/in/{name}", size, at, problem=problem, relative=name)


def row(status: str = "ingested", size: int = 10, at: dt.datetime = T0, digest: str = "h1", version: int = 1) -> dict:
    return {"status": status, "size": size, "modified_at": at, "content_hash": digest, "version": version}


def names(actions) -> list[tuple[str, int]]:
    return [(a.path, a.version) for a in actions]


def test_a_new_file_is_ingested_as_version_one_under_its_relative_name():
    plan = plan_files([landed("a.csv")], {}, "reject", hashes={"file:/in/a.csv": "h1"})
    assert names(plan.ingest) == [("a.csv", 1)] and plan.ingest[0].content_hash == "h1"


def test_same_path_size_and_time_is_skipped_without_its_hash():
    plan = plan_files([landed("a.csv")], {"a.csv": row()}, "reject", hashes={})
    assert [f.relative for f in plan.skipped] == ["a.csv"] and not plan.ingest and not plan.missing


def test_same_content_with_a_new_modification_time_is_unchanged():
    plan = plan_files([landed("a.csv", at=T1)], {"a.csv": row()}, "reject", hashes={"file:/in/a.csv": "h1"})
    assert names(plan.unchanged) == [("a.csv", 1)] and not plan.ingest


def test_content_already_taken_in_under_another_path_is_a_duplicate():
    plan = plan_files([landed("copy.csv")], {"a.csv": row()}, "reject", hashes={"file:/in/copy.csv": "h1"})
    assert names(plan.duplicate) == [("copy.csv", 1)] and not plan.ingest


def test_a_changed_redelivery_follows_on_changed_file():
    known = {"a.csv": row()}
    changed = [landed("a.csv", size=12, at=T1)]
    rejected = plan_files(changed, known, "reject", hashes={"file:/in/a.csv": "h2"})
    assert names(rejected.rejected) == [("a.csv", 2)] and not rejected.ingest
    again = plan_files(changed, known, "new_version", hashes={"file:/in/a.csv": "h2"})
    assert names(again.ingest) == [("a.csv", 2)] and not again.rejected


def test_a_failed_file_is_retried_until_its_attempts_are_used_up():
    known = {"a.csv": row(status="failed")}
    retried = plan_files([landed("a.csv")], known, "reject", hashes={"file:/in/a.csv": "h1"},
                         attempts={("a.csv", "h1"): MAX_FILE_ATTEMPTS - 1})
    assert names(retried.ingest) == [("a.csv", 1)]
    given_up = plan_files([landed("a.csv")], known, "reject", hashes={"file:/in/a.csv": "h1"},
                          attempts={("a.csv", "h1"): MAX_FILE_ATTEMPTS})
    assert not given_up.ingest and [f.relative for f in given_up.skipped] == ["a.csv"]


def test_a_snapshot_whose_deletes_were_refused_is_offered_again_as_the_next_version():
    plan = plan_files([landed("s.csv")], {"s.csv": row(status=REFUSED)}, "reject", snapshot=True,
                      hashes={"file:/in/s.csv": "h1"})
    assert names(plan.ingest) == [("s.csv", 2)]


def test_an_unreadable_file_is_recorded_and_a_vanished_one_is_missing():
    plan = plan_files([landed("a.csv.lz4", problem="unsupported compression"), landed("gone.csv")], {}, "reject",
                      hashes={"file:/in/a.csv.lz4": "h1", "file:/in/gone.csv": None})
    assert names(plan.unreadable) == [("a.csv.lz4", 1)] and [f.relative for f in plan.missing] == ["gone.csv"]
    assert not plan.ingest


def test_only_the_newest_pending_snapshot_delivery_is_ingested():
    files = [landed("day1.csv", at=T0), landed("day2.csv", at=T1)]
    plan = plan_files(files, {}, "reject", snapshot=True, hashes={"file:/in/day1.csv": "h1", "file:/in/day2.csv": "h2"})
    assert names(plan.ingest) == [("day2.csv", 1)] and names(plan.superseded) == [("day1.csv", 1)]
    batch = plan_files(files, {}, "reject", snapshot=False, hashes={"file:/in/day1.csv": "h1", "file:/in/day2.csv": "h2"})
    assert names(batch.ingest) == [("day1.csv", 1), ("day2.csv", 1)] and not batch.superseded
