"""Typed configuration of the collector and its streaming job (`conf/collector.yaml`, the `collector` domain).

Example:
    >>> c = CollectorConfig(sources={"web": {"keys": [{"key": "key-0001"}]}})
    >>> c.key_index()["key-0001"].source
    'web'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, PositiveInt, SecretStr, model_validator

from cdp_spark.config_base import KeyedValueError, Strict


class WriteKey(Strict):
    """One write key of a source. Rotate by adding the new key, moving clients, then disabling the old one."""

    # SecretStr: never printed by `cdp config check`, repr() or logs, however the value was written.
    key: SecretStr = Field(min_length=8, description="the write key (a secret: use ${ENV_VAR})")
    enabled: bool = Field(True, description="a disabled key is refused with 401")


class CollectorSource(Strict):
    """A source (by name, from conf/sources/) fed by the collector, with its write keys."""

    enabled: bool = Field(True, description="a disabled source is refused with 404")
    keys: list[WriteKey] = Field(default_factory=list)


class Limits(Strict):
    """Request limits (Segment's defaults, plus nesting depth and compression ratio)."""

    max_message_bytes: PositiveInt = 32 * 1024
    max_batch_bytes: PositiveInt = 500 * 1024
    max_batch_messages: PositiveInt = 2500
    max_compression_ratio: PositiveInt = Field(
        100, description="a gzip/deflate body may inflate to at most this many times its compressed size (and never "
                         "past max_batch_bytes): 413 compression_ratio")
    # Bounded above: the JSON parser recurses once per level, and must stay clear of Python's recursion limit.
    max_nesting_depth: int = Field(
        400, ge=2, le=800, description="objects/arrays nested deeper in a message: a single call gets 400 too_deep, a "
                                       "message in a batch is dead-lettered (too_deep)")


class RateLimit(Strict):
    """Token bucket per write key and collector worker: `per_second` sustained requests, `burst` at once."""

    per_second: float = Field(1000.0, gt=0)
    burst: PositiveInt = 2000


class SpoolConfig(Strict):
    """The landing zone: NDJSON files, fsync'd before the ack, renamed into view when rotated."""

    path: str = Field("{lake_root}/landing/collector", description="folder or path; may use {lake_root}")
    rotate_bytes: PositiveInt = Field(8 * 1024 * 1024, description="rotate the open file at this size")
    rotate_seconds: float = Field(2.0, gt=0, description="rotate the open file at this age")
    fsync: bool = Field(True, description="fsync before acknowledging (turn off only for throwaway tests)")


class KafkaConfig(Strict):
    """Kafka as the collector's durable landing: a message is acknowledged once the brokers have it (acks=all,
    idempotent producer), and the stream reads the topics instead of the landing folder."""

    bootstrap_servers: str = Field(min_length=1, description="host:port[,host:port] of the brokers")
    topic: str = Field("cdp.{source}", description="the topic of a source; {source} is the source name")
    producer: dict[str, str] = Field(
        default_factory=dict, description="more librdkafka producer settings (security.protocol, sasl.*, ...); use "
                                          "${ENV_VAR} for secrets")
    delivery_timeout_seconds: float = Field(30.0, gt=0, description="a request whose messages the brokers have not "
                                                                    "acknowledged by then gets 503 (clients retry)")

    def topic_of(self, source: str) -> str:
        return self.topic.format(source=source)


class StreamConfig(Strict):
    """The Structured Streaming job reading the landing zone (or Kafka) into bronze."""

    source_format: Literal["auto", "files", "kafka"] = Field(
        "auto", description="files (the landing zone) or kafka; auto follows collector.sink")
    kafka_options: dict[str, str] = Field(
        default_factory=dict, description="spark-sql-kafka options; kafka.bootstrap.servers and subscribe default "
                                          "from collector.kafka")
    checkpoint: str | None = Field(None, description="defaults to <lake.checkpoint_dir>/collect_<source>")
    trigger_seconds: float = Field(2.0, gt=0)
    max_files_per_trigger: PositiveInt = 100
    dedup_hours: PositiveInt = Field(24, description="messageIds already in bronze.events this recently are dropped")
    key_stats_flush_seconds: float = Field(
        60.0, ge=0, description="fold the micro-batches' pending key stats into bronze.raw_keys at most this often "
                                "(one MERGE), and when the stream stops; 0 folds after every micro-batch")


class CollectorConfig(Strict):
    """The collector service and its stream."""

    host: str = "127.0.0.1"
    port: int = Field(8088, ge=0, le=65535)
    workers: PositiveInt = 1
    sources: dict[str, CollectorSource] = Field(default_factory=dict, description="source name -> keys")
    limits: Limits = Field(default_factory=Limits)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    sink: Literal["spool", "kafka"] = Field("spool", description="where acknowledged messages land: the spool "
                                                                 "folder, or Kafka topics (collector.kafka)")
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    kafka: KafkaConfig | None = Field(None, description="required when sink or stream.source_format is kafka")
    stream: StreamConfig = Field(default_factory=StreamConfig)

    @model_validator(mode="after")
    def _kafka_configured(self) -> "CollectorConfig":
        needs = self.sink == "kafka" or (self.stream_format == "kafka"
                                         and "kafka.bootstrap.servers" not in self.stream.kafka_options)
        if self.kafka is None and needs:
            key = ("sink",) if self.sink == "kafka" else ("stream", "source_format")
            raise KeyedValueError("needs a collector.kafka section (bootstrap_servers, topic)", key=key,
                                  value="kafka")
        return self

    @property
    def stream_format(self) -> str:
        """What the stream reads: files or kafka (``stream.source_format``, or the sink when that is auto)."""
        fmt = self.stream.source_format
        return ("kafka" if self.sink == "kafka" else "files") if fmt == "auto" else fmt

    def kafka_options(self, source: str) -> dict[str, str]:
        """spark-sql-kafka options of one source's stream: brokers and topic from ``kafka``, then the overrides."""
        base = {"startingOffsets": "earliest", "failOnDataLoss": "true"}
        if self.kafka is not None:
            base |= {"kafka.bootstrap.servers": self.kafka.bootstrap_servers, "subscribe": self.kafka.topic_of(source)}
        return base | self.stream.kafka_options

    @model_validator(mode="after")
    def _unique_keys(self) -> "CollectorConfig":
        # A write key says which source a message belongs to, so one key can serve one source only.
        seen: dict[str, str] = {}
        for name, src in self.sources.items():
            for i, k in enumerate(src.keys):
                first = seen.setdefault(k.key.get_secret_value(), f"sources.{name}.keys.{i}.key")
                if not first.startswith(f"sources.{name}."):
                    raise KeyedValueError(f"this write key is also {first}; a write key belongs to one source",
                                          key=("sources", name, "keys", i, "key"), value=k.key, secret=True)
        return self

    def key_index(self) -> dict[str, "KeyInfo"]:
        """write key -> (source, key enabled, source enabled)."""
        return {k.key.get_secret_value(): KeyInfo(name, k.enabled, src.enabled) for name, src in self.sources.items() for k in src.keys}

    def landing(self, lake_root: str) -> str:
        return self.spool.path.format(lake_root=lake_root.rstrip("/"))


@dataclass(frozen=True)
class KeyInfo:
    source: str
    key_enabled: bool
    source_enabled: bool
