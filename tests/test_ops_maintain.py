"""`maintain` on a small lake while readers read: files compacted, old snapshots and in-flight reads still work,
only files older than the retention are vacuumed, the log is checkpointed, the run is in the ledger."""
from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time

from deltalake import DeltaTable

from cdp_spark.config import CdpConfig
from cdp_spark.lake.registry import default_registry
from cdp_spark.ops.ledger import Ledger
from cdp_spark.ops.lock import read_leases
from cdp_spark.ops.maintain import checkpoints, maintain
from tests.lake_fixtures import EVENTS, PROFILES, events_df

D1, D2 = dt.date(2026, 10, 1), dt.date(2026, 10, 2)


def _data_files(path: str) -> set[str]:
    return {os.path.join(d, f) for d, _, fs in os.walk(path) if "_delta_log" not in d for f in fs
            if f.endswith(".parquet")}


def test_maintain_compacts_vacuums_and_checkpoints_while_readers_read(make_lake, spark, tmp_path):
    config = CdpConfig.model_validate({"lake": {"root": str(tmp_path / "lake"), "vacuum_retention_hours": 24}})
    lake = make_lake(config.lake.root, default_registry().with_tables([EVENTS, PROFILES]),
                     vacuum_retention_hours=config.lake.vacuum_retention_hours)
    for i, day in enumerate([D1, D2, D1, D2]):
        lake.append("test.events", events_df(spark, 5, day, prefix=f"b{i}-"))
    path = lake.path("test.events")
    pinned_version = lake.version("test.events")
    files_before = lake.info("test.events").files
    assert files_before >= 4  # at least one file per append
    in_flight = lake.read("test.events")  # planned now (file list fixed), evaluated after maintenance
    before_files = _data_files(path)
    orphan = os.path.join(path, "part-orphan-of-a-killed-write.parquet")
    with open(orphan, "wb") as handle:
        handle.write(b"PAR1 not really")
    two_days_ago = time.time() - 48 * 3600
    os.utime(orphan, (two_days_ago, two_days_ago))

    counts: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                counts.append(DeltaTable(path).to_pyarrow_table().num_rows)
            except BaseException as exc:  # recorded: the test fails on any reader error
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        result = maintain(lake, config, tables=["test.events", "test.profiles", "ops.job_runs"])
    finally:
        done.set()
        thread.join()

    assert errors == [] and counts and set(counts) == {20}
    assert result.ok, result.errors
    events = result.tables["test.events"]
    assert events["files_before"] == files_before and events["files_after"] == 2  # one file per partition
    assert events["files_removed"] == files_before and events["rows"] == 20
    assert "test.profiles" not in result.tables  # never created: skipped, not an error
    # Vacuum deleted only what is older than the retention: the old orphan, not the files compaction just removed.
    assert events["vacuumed"] == 1 and not os.path.exists(orphan)
    assert before_files <= _data_files(path)
    assert in_flight.count() == 20
    assert DeltaTable(path, version=pinned_version).to_pyarrow_table().num_rows == 20
    assert checkpoints(lake, "test.events") and os.path.exists(os.path.join(path, "_delta_log", "_last_checkpoint"))
    assert sorted(r.event_id for r in lake.read("test.events").collect()) == sorted(
        f"b{i}-{j}" for i in range(4) for j in range(5))

    [row] = [r for r in Ledger(lake).runs() if r["job"] == "maintain"]
    assert row["status"] == "succeeded" and row["run_id"] == result.run_id
    assert json.loads(row["metrics"])["tables"]["test.events"]["files_after"] == 2
    assert all(lease["state"] == "free" for lease in read_leases(lake))

    # Maintenance of a maintained table is a no-op for the data: same rows, nothing more to compact.
    again = maintain(lake, config, tables=["test.events"])
    assert again.tables["test.events"]["files_after"] == 2 and again.tables["test.events"]["files_removed"] == 0


def test_log_retention_days_sets_the_table_property_and_deletes_expired_log_files(make_lake, spark, tmp_path):
    def log_files():
        return sorted(f for f in os.listdir(log_dir) if f.endswith((".json", ".parquet")))

    def run(days):
        config = CdpConfig.model_validate({"lake": {"root": str(tmp_path / "lake"), "log_retention_days": days}})
        return maintain(lake, config, tables=["test.events"]).tables["test.events"]

    lake = make_lake(str(tmp_path / "lake"), default_registry().with_tables([EVENTS]))
    for i in range(4):
        lake.append("test.events", events_df(spark, 2, D1, prefix=f"b{i}-"))
    DeltaTable(lake.path("test.events")).create_checkpoint()
    log_dir = os.path.join(lake.path("test.events"), "_delta_log")
    ten_days_ago = time.time() - 10 * 86400
    for name in log_files():  # versions 0-4 and a checkpoint of version 4, written ten days ago
        os.utime(os.path.join(log_dir, name), (ten_days_ago, ten_days_ago))
    lake.append("test.events", events_df(spark, 2, D1, prefix="b4-"))
    aged = log_files()

    kept = run(30)  # the default: ten days is within the retention, nothing goes
    assert kept["log_files_deleted"] == 0 and set(aged) <= set(log_files())
    assert DeltaTable(lake.path("test.events")).metadata().configuration["delta.logRetentionDuration"] == \
        "interval 30 days"

    cleaned = run(3)
    # Delta's rule: commits before the newest checkpoint older than the retention go (versions 0-3); version 4 and
    # its checkpoint stay, so every version within the retention can still be read.
    assert cleaned["log_retention_days"] == 3 and cleaned["log_files_deleted"] == 4
    assert [f for f in aged if f not in log_files()] == [f"{v:020d}.json" for v in range(4)]
    assert DeltaTable(lake.path("test.events")).metadata().configuration["delta.logRetentionDuration"] == \
        "interval 3 days"
    assert lake.read("test.events").count() == 10
    run(3)  # already set: no further property commit
    operations = [h["operation"] for h in DeltaTable(lake.path("test.events")).history()]
    assert operations.count("SET TBLPROPERTIES") == 2
