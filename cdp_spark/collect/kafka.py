"""Kafka as the collector's landing: the same contract as the spool (durable before the acknowledgement), with the
brokers holding the messages instead of local files.

A request's messages are produced to the source's topic by an idempotent producer with ``acks=all`` and the request
waits for every delivery report: 200 only when the brokers have all of them, 503 (clients retry) otherwise. A retry
may land a message twice; the stream drops repeated messageIds, as it does for the spool.

Example:
    >>> sink = KafkaSink(KafkaConfig(bootstrap_servers="127.0.0.1:9092"))   # doctest: +SKIP
    >>> sink.append("web", [b'{"messageId":"m1"}'])                          # doctest: +SKIP
    >>> sink.close()                                                          # doctest: +SKIP
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Sequence

from cdp_spark.collect.config import KafkaConfig

log = logging.getLogger(__name__)


class KafkaUnavailable(OSError):
    """The brokers did not acknowledge a request's messages in time (an OSError, like a failed spool write)."""


class KafkaSink:
    """Durable appends to Kafka topics per source (thread-safe; one producer per collector process)."""

    def __init__(self, config: KafkaConfig):
        try:
            from confluent_kafka import Producer
        except ImportError as exc:  # an optional dependency: `pip install "cdp-spark[kafka]"`
            raise RuntimeError("collector.sink is kafka but confluent-kafka is not installed: "
                               'pip install "cdp-spark[kafka]"') from exc
        self.config = config
        settings = {"bootstrap.servers": config.bootstrap_servers, "enable.idempotence": True, "acks": "all",
                    "linger.ms": 5, "compression.type": "lz4",
                    "message.timeout.ms": int(config.delivery_timeout_seconds * 1000), **config.producer}
        # librdkafka's own messages (connection failures, retries) go to our log, not straight to stderr.
        self._producer = Producer(settings, logger=logging.getLogger("cdp_spark.collect.kafka.client"))
        self._stop = threading.Event()
        # Delivery reports are served here, so request threads only wait on their own events.
        self._poller = threading.Thread(target=self._poll, name="kafka-delivery-reports", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def append(self, source: str, lines: Sequence[bytes]) -> None:
        """Produce the lines to the source's topic; returns once the brokers acknowledged all of them."""
        if not lines:
            return
        topic = self.config.topic_of(source)
        done = threading.Event()
        state: dict[str, Any] = {"left": len(lines), "error": None}
        lock = threading.Lock()

        def delivered(err: Any, _msg: Any) -> None:
            with lock:
                if err is not None and state["error"] is None:
                    state["error"] = err
                state["left"] -= 1
                if state["left"] == 0 or err is not None:
                    done.set()

        for line in lines:
            while True:
                try:
                    self._producer.produce(topic, value=line, on_delivery=delivered)
                    break
                except BufferError:  # the local queue is full: let delivery reports drain it
                    time.sleep(0.01)
        deadline = self.config.delivery_timeout_seconds + 5
        if not done.wait(deadline) or state["error"] is not None:
            raise KafkaUnavailable(f"Kafka did not acknowledge {len(lines)} message(s) for topic {topic}: "
                                   f"{state['error'] or 'timed out'}")

    def ready(self) -> bool:
        """True when the brokers answer a metadata request."""
        try:
            self._producer.list_topics(timeout=5)
        except Exception:  # noqa: BLE001 - any failure means not ready
            return False
        return True

    def close(self) -> None:
        self._producer.flush(self.config.delivery_timeout_seconds)
        self._stop.set()
        self._poller.join(timeout=5)
