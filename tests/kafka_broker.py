"""A single-node KRaft Kafka broker for the tests, from the Maven-resolved jars (`cdp jars fetch kafka-broker`),
in a JVM of its own on loopback.

Example:
    >>> with KafkaBroker(tmp_path) as broker:        # doctest: +SKIP
    ...     broker.bootstrap                          # '127.0.0.1:41234'
"""
from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from cdp_spark import jars
from tests.spark_cluster import free_port


class KafkaBroker:
    """Format the storage, start the broker (broker and controller in one process), wait until it serves metadata."""

    def __init__(self, root: Path, *, partitions: int = 2):
        self.root = Path(root)
        self.port, self.controller_port = free_port(), free_port()
        self.partitions = partitions
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, *args: str, log: Path | None = None) -> list[str]:
        java = shutil.which("java", path=os.path.join(os.environ.get("JAVA_HOME", ""), "bin") + os.pathsep
                            + os.environ.get("PATH", "")) or "java"
        return [java, "-Xms128m", "-Xmx512m", "-cp", jars.classpath("kafka-broker"), *args]

    def __enter__(self) -> "KafkaBroker":
        self.root.mkdir(parents=True, exist_ok=True)
        props = self.root / "server.properties"
        props.write_text("\n".join([
            "process.roles=broker,controller", "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER", "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={self.root / 'data'}", f"num.partitions={self.partitions}",
            "offsets.topic.replication.factor=1", "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1", "group.initial.rebalance.delay.ms=0", "auto.create.topics.enable=true",
        ]) + "\n")
        cluster_id = "-"
        while cluster_id.startswith("-"):  # as Kafka's own ids: a leading "-" would read as an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        formatted = subprocess.run(self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)),
                                   capture_output=True, text=True, timeout=120)
        if formatted.returncode != 0:
            raise RuntimeError(f"formatting the Kafka storage failed: {formatted.stderr[-2000:]}")
        log = open(self.root / "broker.log", "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(self._java("kafka.Kafka", str(props)), stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        admin = self.admin()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                admin.list_topics(timeout=2)
                return self
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.5)
        self.__exit__(None, None, None)
        raise RuntimeError(f"the Kafka broker did not start:\n{(self.root / 'broker.log').read_text()[-3000:]}")

    def admin(self):  # type: ignore[no-untyped-def]
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap}, logger=logging.getLogger("tests.kafka"))

    def create_topic(self, name: str, partitions: int | None = None) -> None:
        from confluent_kafka.admin import NewTopic

        admin = self.admin()  # kept alive until the result: a destroyed client cancels its requests
        admin.create_topics([NewTopic(name, partitions or self.partitions, 1)])[name].result(timeout=60)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
