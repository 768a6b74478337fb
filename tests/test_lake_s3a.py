"""The delta-spark backend on an S3 lake: Delta's JVM writer through S3A (hadoop-aws with the AWS SDK's S3 modules,
the `s3` jar bundle) on the local S3 server, and delta-rs on the same tables, each reading and changing what the
other wrote. See docs/operations.md, "Deploying on object storage"."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from cdp_spark import jars
from cdp_spark.lake.files import LakeFiles, delta_storage_options
from tests.conftest import unavailable
from tests.lake_fixtures import EVENTS, event_rows

pytestmark = pytest.mark.delta_spark
REPO = Path(__file__).resolve().parents[1]
DAY = dt.date(2026, 10, 1)  # the worker's day too


class Worker:
    """A `tests.s3a_worker` process: delta-spark on ``root``, driven one command at a time."""

    def __init__(self, root: str, options: dict[str, str], log: Path):
        self._log = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.s3a_worker", root, json.dumps(options)], cwd=REPO,
                                     env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.log = log
        assert self._answer() == {"ready": "delta-spark"}

    def _answer(self) -> dict:
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        assert line, f"the delta-spark worker ended: {self.log.read_text()[-3000:]}"
        return json.loads(line)

    def ask(self, command: str) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=120)
        self._log.close()


@pytest.fixture
def delta_spark_on_s3(s3_server, s3_root, tmp_path):
    missing = [name for name in ("delta", "s3") if jars.cached_bundle(name) is None]
    if missing:
        unavailable(f"jar bundle(s) {', '.join(missing)} are not cached: run `cdp jars fetch {' '.join(missing)}`")
    worker = Worker(s3_root.replace("s3://", "s3a://"), s3_server.storage_options, tmp_path / "worker.log")
    yield worker
    worker.close()


def _events(path: str, options: dict[str, str]) -> list[list]:
    table = DeltaTable(path, storage_options=options).to_pyarrow_table(columns=["event_id", "email", "amount"])
    return sorted([[r["event_id"], r["email"], r["amount"]] for r in table.to_pylist()])


def test_delta_spark_on_s3a_and_delta_rs_read_and_change_each_others_tables(delta_spark_on_s3, s3_server, s3_root):
    """delta-spark writes through s3a://; delta-rs (the embedded backend's committer, conditional puts) reads the same
    objects through s3://, appends and deletes; delta-spark reads both writers' rows and deletes; delta-rs sees it."""
    options = delta_storage_options(s3_root, s3_server.storage_options)
    events, profiles = f"{s3_root}/test/events", f"{s3_root}/test/profiles"
    expected = sorted([[r[0], r[1], r[2]] for r in event_rows(10, DAY, "s")])

    assert delta_spark_on_s3.ask("write s 10") == {"version": 1}          # created (0), then appended (1)
    assert _events(events, options) == expected
    assert sorted(DeltaTable(profiles, storage_options=options).to_pyarrow_table().column("profile_id").to_pylist()) \
        == ["s1", "s2"]

    schema = DeltaTable(events, storage_options=options).schema().to_arrow()
    rows = event_rows(3, DAY, "r")
    arrow = pa.Table.from_pylist([dict(zip(EVENTS.schema.fieldNames(), r)) for r in rows], schema=pa.schema(schema))
    write_deltalake(events, arrow, mode="append", storage_options=options)
    DeltaTable(events, storage_options=options).delete("event_id = 's0'")
    expected = sorted([e for e in expected if e[0] != "s0"] + [[r[0], r[1], r[2]] for r in rows])

    seen = delta_spark_on_s3.ask("read")
    assert sorted([e[0], e[1], float(e[2])] for e in seen["events"]) == expected
    assert seen["profiles"] == [["s1", "Ann", "1"], ["s2", "Bo", "2"]]

    assert delta_spark_on_s3.ask("delete event_id = 'r0'") == {"deleted": 1}
    assert _events(events, options) == [e for e in expected if e[0] != "r0"]
    assert DeltaTable(events, storage_options=options).version() == 4

    # Every log entry and data file is an object on the server, under the lake root.
    listed = [f for f, _ in LakeFiles(events, s3_server.storage_options).walk()]
    assert [f for f in listed if f.startswith("_delta_log/") and f.endswith(".json")] == \
        [f"_delta_log/{v:020d}.json" for v in range(5)]
    assert any(f.endswith(".parquet") and not f.startswith("_delta_log") for f in listed)
    assert not (REPO / "s3a:").exists() and not (REPO / "s3:").exists()
