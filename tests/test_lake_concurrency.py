"""Two writers on one table: appends both land; conflicting operations fail cleanly and lose nothing."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
from deltalake import DeltaTable

from cdp_spark.lake import ConcurrentWriteError
from cdp_spark.lake.embedded import EmbeddedLake
from tests.lake_fixtures import REGISTRY, events_df

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D1, D2 = dt.date(2026, 10, 1), dt.date(2026, 10, 2)


def test_two_processes_appending_at_once_lose_no_row(spark, tmp_path):
    root = str(tmp_path / "lake")
    EmbeddedLake(spark, root, REGISTRY).create_if_missing("test.events")
    start = str(tmp_path / "go")
    env = {**os.environ, "PYTHONPATH": ROOT}
    procs = [
        subprocess.Popen([sys.executable, "-m", "tests.lake_worker", root, p, "4", "25", start], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for p in ("a", "b")
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outputs]
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
