"""Two writers on one table: appends both land; conflicting operations fail cleanly and lose nothing."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time

import pytest
from deltalake import DeltaTable

from cdp_spark.lake import ConcurrentWriteError
from cdp_spark.lake.embedded import EmbeddedLake
from tests.lake_fixtures import REGISTRY, events_df

pytestmark = pytest.mark.slow  # writer processes racing on one table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D1, D2 = dt.date(2026, 10, 1), dt.date(2026, 10, 2)


def test_two_processes_appending_at_once_lose_no_row(spark, tmp_path):
    # Writer "b" is a separate process with its own JVM and delta-rs; writer "a" is this test process on the shared
    # session (a second worker process would only add another JVM start-up to the suite).
    root = str(tmp_path / "lake")
    lake = EmbeddedLake(spark, root, REGISTRY)
    lake.create_if_missing("test.events")
    start = str(tmp_path / "go")
    env = {**os.environ, "PYTHONPATH": ROOT}
    with open(tmp_path / "worker.log", "w+") as log:  # a file, not a pipe: Spark's chatter must never block it
        worker = subprocess.Popen([sys.executable, "-m", "tests.lake_worker", root, "b", "4", "25", start], cwd=ROOT,
                                  env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        frames = [events_df(spark, 25, D1, f"a{b}-") for b in range(4)]
        open(start + ".a", "w").close()
        # Same protocol as tests/lake_worker.py: both writers start appending once both are ready.
        deadline = time.monotonic() + 300
        while not os.path.exists(start + ".b") and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        for frame in frames:
            lake.append("test.events", frame)
        worker.wait(timeout=300)
        log.seek(0)
        assert worker.returncode == 0, log.read()[-2000:]
    table = DeltaTable(root + "/test/events")
    ids = table.to_pyarrow_table(columns=["event_id"]).column("event_id").to_pylist()
    assert len(ids) == 200 and len(set(ids)) == 200
    assert {i.split("-")[0] for i in ids} == {f"{p}{b}" for p in "ab" for b in range(4)}
    versions = [h["version"] for h in table.history()]
    assert sorted(versions) == list(range(len(versions)))  # one commit per append, plus the create
    assert len(versions) == 1 + 8


def test_overwrite_racing_another_commit_fails_cleanly(spark, tmp_path, monkeypatch):
    lake = EmbeddedLake(spark, str(tmp_path / "lake"), REGISTRY)
    other = EmbeddedLake(spark, str(tmp_path / "lake"), REGISTRY)
    lake.append("test.events", events_df(spark, 10, D1))
    real_write = EmbeddedLake._write_files

    def write_then_race(self, name, df):
        adds = real_write(self, name, df)
        if self is lake:  # another writer commits between our snapshot and our commit
            other.append("test.events", events_df(spark, 5, D2, "race"))
        return adds

    monkeypatch.setattr(EmbeddedLake, "_write_files", write_then_race)
    with pytest.raises(ConcurrentWriteError, match="nothing was written"):
        lake.overwrite("test.events", events_df(spark, 3, D1, "new"), where="event_date = DATE'2026-10-01'")
    rows = {r.event_id for r in lake.read("test.events").collect()}
    assert len(rows) == 15 and not any(r.startswith("new") for r in rows)
    # The losing writer's staged files are gone: only committed files remain on disk.
    on_disk = {f for d, _, fs in os.walk(lake.path("test.events")) if "_delta_log" not in d for f in fs}
    committed = {os.path.basename(u) for u in DeltaTable(lake.path("test.events")).file_uris()}
    assert on_disk == committed


def test_threads_of_one_session_write_with_their_own_tokens(spark, tmp_path, requires_delta_jvm):
    """delta-spark's idempotency token is a session setting: threads writing at once (a stream's micro-batches and
    the folds beside it) must neither borrow nor leave behind each other's token, or later writes are skipped."""
    from concurrent.futures import ThreadPoolExecutor

    from cdp_spark.lake import Txn
    from cdp_spark.lake.delta_spark import DeltaSparkLake

    lake = DeltaSparkLake(spark, str(tmp_path / "lake"), REGISTRY)
    lake.create_if_missing("test.events")

    def write(i: int):
        return lake.append("test.events", events_df(spark, 2, D1, f"t{i}-"), txn=Txn(f"thread-{i}", 1))

    with ThreadPoolExecutor(4) as pool:
        assert not any(r.skipped for r in pool.map(write, range(8)))
    assert lake.read("test.events").count() == 16
    assert spark.conf.get("spark.databricks.delta.write.txnAppId", None) is None
    assert all(lake.committed("test.events", Txn(f"thread-{i}", 1)) for i in range(8))
    lake.append("test.events", events_df(spark, 2, D2, "after-"))  # an untagged write afterwards lands
    assert lake.read("test.events").count() == 18
