"""Kafka end to end: the collector publishes to a real broker (a single-node KRaft broker from Maven-resolved jars)
and acknowledges only what the brokers have; the stream reads the topic into bronze.events exactly once, through a
`kill -9` mid-batch and a restart."""
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

from cdp_spark import jars
from cdp_spark.collect.app import create_app
from cdp_spark.collect.stream import kafka_available, run_stream
from cdp_spark.config import load_config
from cdp_spark.lake import default_registry
from cdp_spark.lake.embedded import EmbeddedLake
from tests.conftest import unavailable
from tests.ingest_fixtures import CATALOGUE, REPO
from tests.kafka_broker import KafkaBroker

pytestmark = pytest.mark.slow  # starts a Kafka broker and a streaming job

KEY = "kafka-test-write-key"
BATCHES, PER_BATCH = 4, 30


@pytest.fixture(scope="module")
def broker(spark, tmp_path_factory):
    if jars.cached_bundle("kafka-broker") is None:
        unavailable("the Kafka broker's jars are not cached: run `cdp jars fetch kafka-broker`")
    if not kafka_available(spark):
        unavailable("spark-sql-kafka is not on the classpath: run `cdp jars fetch kafka`")
    with KafkaBroker(tmp_path_factory.mktemp("kafka")) as b:
        yield b


def _conf(tmp_path: Path, bootstrap: str, **collector: object) -> Path:
    raw = {
        # The streaming job's own JVM loads the Kafka connector from the jar cache (engine.jars), as a user's would.
        "engine": {"mode": "embedded", "cores": 1, "shuffle_partitions": 1, "jars": "required", "jar_bundles": ["kafka"],
                   "spark_conf": {"spark.sql.adaptive.enabled": "false",
                                  "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1"}},
        "lake": {"root": str(tmp_path / "lake"), "backend": "embedded"},
        "catalogue": CATALOGUE,
        "sources": [yaml.safe_load((REPO / "conf" / "sources" / "web.yaml").read_text())],
        "routes": yaml.safe_load((REPO / "conf" / "routes.yaml").read_text()),
        "collector": {"sources": {"web": {"keys": [{"key": KEY}]}}, "sink": "kafka",
                      "kafka": {"bootstrap_servers": bootstrap, "topic": f"cdp.{tmp_path.name}.{{source}}"},
                      # one request's messages per micro-batch, so the job is killed with batches still to come
                      "stream": {"kafka_options": {"maxOffsetsPerTrigger": str(PER_BATCH)}}, **collector},
    }
    path = tmp_path / "cdp.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _publish(config) -> set[str]:
    ids = set()
    with TestClient(create_app(config.collector, config.collector.landing(config.lake.root))) as client:
        for b in range(BATCHES):
            batch = [{"type": "track", "messageId": f"k{b}-{i}", "event": "Product Viewed", "userId": f"u{i}",
                      "timestamp": "2026-11-01T10:00:00Z", "properties": {"product_id": f"p{i}"}}
                     for i in range(PER_BATCH)]
            assert client.post("/v1/batch", json={"batch": batch}, auth=(KEY, "")).status_code == 200
            ids |= {m["messageId"] for m in batch}
        # a re-delivered request (a client retry after a lost response) lands twice in Kafka, once in bronze
        assert client.post("/v1/batch", json={"batch": batch}, auth=(KEY, "")).status_code == 200
    return ids


def _stream_commits(log: Path) -> int:
    if not log.exists():
        return 0
    return sum('"appId":"collect.' in p.read_text() for p in log.glob("*.json"))


def test_collector_publishes_to_kafka_and_the_stream_lands_it_exactly_once_through_kill_9(spark, broker, tmp_path):
    conf = _conf(tmp_path, broker.bootstrap)
    config = load_config(conf)
    broker.create_topic(config.collector.kafka.topic_of("web"))
    landed = _publish(config)
    assert not Path(config.collector.landing(config.lake.root)).exists()  # Kafka, not the spool, holds them
    with open(tmp_path / "stream.log", "w+") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "cdp_spark.cli", "collect", "stream", "--available-now",
                                 "--conf", str(conf)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        log = Path(config.lake.root) / "bronze" / "events" / "_delta_log"
        deadline = time.monotonic() + 900
        # Kill the moment the first micro-batch has committed its events, with the rest of the batch to come.
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
    metrics = run_stream(spark, config, lake, available_now=True)["sources"]["web"]  # restart from the checkpoint
    assert metrics["reconciled"] and metrics["duplicates"] >= PER_BATCH  # the re-delivered request
    ids = [r.event_id for r in lake.read("bronze.events").select("event_id").collect()]
    assert len(ids) == len(set(ids)) and set(ids) == landed


def test_a_request_the_brokers_do_not_acknowledge_gets_503(tmp_path):
    from tests.spark_cluster import free_port

    config = load_config(_conf(tmp_path, f"127.0.0.1:{free_port()}", kafka={
        "bootstrap_servers": f"127.0.0.1:{free_port()}", "delivery_timeout_seconds": 1}))
    with TestClient(create_app(config.collector, config.collector.landing(config.lake.root))) as client:
        response = client.post("/v1/track", json={"event": "x", "userId": "u1"}, auth=(KEY, ""))
    assert response.status_code == 503 and response.json()["code"] == "spool_unavailable"
