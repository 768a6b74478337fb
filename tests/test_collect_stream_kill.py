"""`kill -9` of a real streaming-job process in the middle of a micro-batch, then a restart: bronze ends with
exactly the landed events, none twice and none missing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from cdp_spark.collect.app import create_app
from cdp_spark.collect.stream import run_stream
from cdp_spark.config import load_config
from cdp_spark.lake import default_registry
from cdp_spark.lake.embedded import EmbeddedLake
from tests.ingest_fixtures import CATALOGUE, REPO

pytestmark = pytest.mark.slow  # starts a streaming job as a process and kills it mid-batch

KEY = "kill-test-write-key"
FILES, PER_FILE = 4, 30


def _conf(tmp_path: Path) -> Path:
    raw = {
        # The test session's settings (tests/conftest.py); the job's JVM lives for about one micro-batch, so C2
        # compilation would cost more CPU than it ever pays back.
        "engine": {"mode": "embedded", "cores": 1, "shuffle_partitions": 1,
                   "spark_conf": {"spark.sql.adaptive.enabled": "false",
                                  "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1"}},
        "lake": {"root": str(tmp_path / "lake")},
        "catalogue": CATALOGUE,
        "sources": [yaml.safe_load((REPO / "conf" / "sources" / "web.yaml").read_text())],
        "routes": yaml.safe_load((REPO / "conf" / "routes.yaml").read_text()),
        # one landed file per micro-batch, so the job is killed with batches still to come
        "collector": {"sources": {"web": {"keys": [{"key": KEY}]}}, "spool": {"rotate_seconds": 3600},
                      "stream": {"max_files_per_trigger": 1}},
    }
    path = tmp_path / "cdp.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _land(config) -> set[str]:
    """Each collector run lands one file when it stops; returns every acknowledged messageId."""
    ids = set()
    for f in range(FILES):
        batch = [{"type": "track", "messageId": f"m{f}-{i}", "event": "Product Viewed", "userId": f"u{i}",
                  "timestamp": "2026-11-01T10:00:00Z", "properties": {"product_id": f"p{i}"}} for i in range(PER_FILE)]
        with TestClient(create_app(config.collector, config.collector.landing(config.lake.root))) as client:
            assert client.post("/v1/batch", json={"batch": batch}, auth=(KEY, "")).status_code == 200
        ids |= {m["messageId"] for m in batch}
    return ids


def _stream_commits(log: Path) -> int:
    """Commits of bronze.events made by the stream (they carry a collect.* app transaction)."""
    if not log.exists():
        return 0
    return sum('"appId":"collect.' in p.read_text() for p in log.glob("*.json"))


def test_kill_9_mid_batch_then_restart_lands_every_event_exactly_once(spark, tmp_path):
    conf = _conf(tmp_path)
    config = load_config(conf)
    landed = _land(config)
    stderr = (tmp_path / "stream.log").open("w+")   # a file, not a pipe: Spark's chatter must never block the job
    proc = subprocess.Popen([sys.executable, "-m", "cdp_spark.cli", "collect", "stream", "--available-now",
                             "--conf", str(conf)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    log = Path(config.lake.root) / "bronze" / "events" / "_delta_log"
    deadline = time.monotonic() + 900
    # Kill the moment the first micro-batch has committed its events: its quarantine, key stats, file ledger and
    # checkpoint commit are still to come.
    while _stream_commits(log) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    committed = _stream_commits(log)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    stderr.seek(0)
    assert committed >= 1 and proc.returncode == -signal.SIGKILL, stderr.read()[-3000:]

    lake = EmbeddedLake(spark, config.lake.root, default_registry())
    before = lake.read("bronze.events").select("event_id").distinct().count()
    assert 0 < before < len(landed), "the kill should land between the first and the last micro-batch"

    metrics = run_stream(spark, config, lake, available_now=True)["sources"]["web"]   # restart from the checkpoint
    assert metrics["reconciled"]
    ids = [r.event_id for r in lake.read("bronze.events").select("event_id").collect()]
    assert len(ids) == len(set(ids)) and set(ids) == landed
    # every landed file is in the ledger once (the replayed batch's file counts only the lines that were not
    # already in bronze, so its rows_read is not asserted here)
    files = lake.read("bronze.ingested_files").collect()
    assert len(files) == len({r.path for r in files}) == FILES
