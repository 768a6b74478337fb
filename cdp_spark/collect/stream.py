"""The collector's Structured Streaming job: landing zone → the batch ingestion chain → bronze, exactly once.

One code path for batch and stream: the stream only decides *which landed files* make up micro-batch N (the file
source and its checkpoint), then each micro-batch is read with `cdp_spark.ingest.readers.read_files` and written
by the ingest stage's own processing (`chain.prepare` → expectations → routes → `bronze.events`,
`bronze.profile_records`, `bronze.quarantine`, `bronze.raw_keys`), exactly as `cdp run ingest` would write them.

Exactly once: every write of micro-batch N carries ``Txn("collect.<source>.<query id>", N)``. Spark replays an
unfinished batch with the same id and the same files after a crash, so the writes that had already committed
are skipped (`WriteResult.skipped`) and the rest happen once. The query id is persisted in the checkpoint, so a
new checkpoint (a new query) never collides with an old one's tokens.

The landed messages are parsed by an explicit schema (`SEGMENT_SCHEMA`, the Segment spec's fields as text; then the
free-form `properties`, `traits` and `integrations` as maps of text and `context` by the fields Segment documents),
never by inference over what clients sent:
a message nested deeper than the source's `max_nesting_depth` is quarantined as ``too_deep`` and the stream
moves on. The keys the maps carry are collected in the counting pass that runs anyway, for `bronze.raw_keys`.

Deduplication by ``messageId``: within a micro-batch, and against `bronze.events` rows of the same source
received within `collector.stream.dedup_hours`. Dead-lettered messages (``_cdp_reject``) and malformed lines
are quarantined with their reason, and records of erased people are suppressed (counted, written nowhere), so
``read = accepted + quarantined + suppressed + duplicates`` per batch.

Key stats (`bronze.raw_keys`) are not merged per micro-batch (a MERGE took seconds of every batch): each batch's
stats are kept durably pending in ``<checkpoint>/key_stats`` and folded with one MERGE every
`collector.stream.key_stats_flush_seconds` and when the stream stops (`keystats.PendingKeyStats`: exactly once
across replays and crashes). Until a fold, `cdp keys` does not show the newest batches' keys.

Example:
    >>> metrics = run_stream(spark, config, lake, available_now=True)      # doctest: +SKIP
    >>> metrics["sources"]["web"]["accepted"]                              # doctest: +SKIP
    42
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_spark.collect.config import CollectorConfig
from cdp_spark.collect.spool import recover
from cdp_spark.connections.stage import connections_for, forward_micro_batch
from cdp_spark.ingest import keystats, readers, stage
from cdp_spark.ingest.sources import Source
from cdp_spark.ingest.tables import EVENTS, INGESTED_FILES
from cdp_spark.lake import Txn, utc_now
from cdp_spark.ops import progress

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake

log = logging.getLogger(__name__)
REJECT = "_cdp_reject"
REJECT_RAW = "_cdp_raw"
# Micro-batches up to this many lines are processed as one partition (see `BatchWriter.process`); larger ones
# (a backlog after downtime, a Kafka trigger of many offsets) keep the read's parallelism.
SINGLE_TASK_ROWS = 100_000
SINGLE_TASK_BYTES = 64 << 20   # landed files up to this size are read in one task (about 100,000 web events)


# Keys of each free-form map (`properties`, `traits`, `integrations`) given their own key statistics per micro-batch
# (the alphabetically first); a batch's further keys get none, and a warning says how many there were.
MAX_MAP_KEYS = 200


def _struct(*names: str, **nested: T.DataType) -> T.StructType:
    return T.StructType([T.StructField(n, T.StringType()) for n in names]
                        + [T.StructField(n, t) for n, t in nested.items()])


_TEXT_MAP = T.MapType(T.StringType(), T.StringType())
# The Segment spec's common, track, page, screen, identify, group and alias fields (and the collector's dead-letter
# fields), every one as text: a value of another JSON type arrives as its JSON text, so no client's choice of type
# can make the record unreadable. The free-form objects are then read from that text (`segment_columns`).
SEGMENT_SCHEMA = _struct(
    "type", "event", "name", "category", "messageId", "userId", "anonymousId", "previousId", "groupId",
    "timestamp", "originalTimestamp", "sentAt", "receivedAt", "version", "channel", REJECT, REJECT_RAW,
    "properties", "traits", "integrations", "context")
# The context fields Segment documents; a field of another shape (`"library": "analytics.js"`) is null, the rest
# of the context is kept (Spark's partial results).
CONTEXT_SCHEMA = _struct(
    "active", "ip", "locale", "timezone", "userAgent", "groupId", "userAgentData", "instanceId",
    app=_struct("name", "version", "build", "namespace"),
    campaign=_struct("name", "source", "medium", "term", "content"),
    device=_struct("id", "advertisingId", "adTrackingEnabled", "manufacturer", "model", "name", "type", "token"),
    library=_struct("name", "version"),
    location=_struct("city", "country", "latitude", "longitude", "region", "speed"),
    network=_struct("bluetooth", "carrier", "cellular", "wifi"),
    os=_struct("name", "version"),
    page=_struct("path", "referrer", "search", "title", "url"),
    referrer=_struct("id", "type", "name", "url", "link"),
    screen=_struct("width", "height", "density"),
    traits=_TEXT_MAP,
)
FREE_FORM = {"properties": _TEXT_MAP, "traits": _TEXT_MAP, "integrations": _TEXT_MAP, "context": CONTEXT_SCHEMA}


def segment_columns(raw: DataFrame) -> DataFrame:
    """The free-form objects of messages read by `SEGMENT_SCHEMA`, from their JSON text: `properties`, `traits` and
    `integrations` as maps of text (a value that is no object gives null), `context` as `CONTEXT_SCHEMA`.

    Example:
        >>> segment_columns(readers.read_files(spark, source, files, SEGMENT_SCHEMA)).schema["properties"]   # doctest: +SKIP
    """
    return raw.withColumns({name: F.from_json(F.col(name), schema) for name, schema in FREE_FORM.items()
                            if name in raw.columns})


class StreamError(RuntimeError):
    """The streaming job cannot run (configuration or environment); the message says why."""


def source_config(config: "CdpConfig", name: str) -> Source:
    for s in config.sources:
        if s.name == name:
            return s
    raise StreamError(f"collector.sources.{name}: no source named {name!r} in conf/sources/ (add one, e.g. like web.yaml)")


def checkpoint_path(config: "CdpConfig", name: str) -> str:
    c: CollectorConfig = config.collector  # type: ignore[attr-defined]
    base = c.stream.checkpoint or str(config.lake.checkpoint_dir)
    return f"{base.rstrip('/')}/collect_{name}"


def kafka_available(spark: SparkSession) -> bool:
    from cdp_spark.spark import capabilities

    return capabilities(spark).kafka_jvm


def brief(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 200 characters of it), for errors kept in the ledger.

    Example:
        >>> brief(ValueError("bad value\\nstack detail"))
        'ValueError: bad value'
    """
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}"


class BatchWriter:
    """The foreachBatch function of one source: files of micro-batch N → bronze with Txn(..., N).

    `clock` gives a micro-batch's receipt time (``received_at``; tests pass a fixed sequence).
    """

    def __init__(self, spark: SparkSession, config: "CdpConfig", lake: "Lake", source: Source, checkpoint: str,
                 clock: Callable[[], dt.datetime] = utc_now):
        self.spark, self.config, self.lake, self.source, self.checkpoint = spark, config, lake, source, checkpoint
        self.clock = clock
        self.collector: CollectorConfig = config.collector  # type: ignore[attr-defined]
        self.batches: list[dict[str, Any]] = []
        self._query_id: str | None = None
        self._pending: keystats.PendingKeyStats | None = None
        self._flushed_at = time.monotonic()
        self.lock = threading.Lock()         # the batches list
        self._fold_lock = threading.Lock()   # one fold at a time: a timed one, or the one when the stream stops
        self._fold_thread: threading.Thread | None = None

    def query_id(self) -> str:
        """The query id persisted in the checkpoint's metadata file (stable across restarts of this checkpoint)."""
        if self._query_id is None:
            try:
                meta = self.spark.read.text(f"{self.checkpoint}/metadata").first()
            except AnalysisException:  # no checkpoint yet: the writer is used outside a started query
                meta = None
            self._query_id = json.loads(meta[0])["id"] if meta else "unknown"
        return self._query_id

    def pending(self) -> keystats.PendingKeyStats:
        """The key stats of this query's micro-batches not yet folded into bronze.raw_keys."""
        if self._pending is None:
            self._pending = keystats.PendingKeyStats(self.spark, self.source.name, f"{self.checkpoint}/key_stats",
                                                     f"collect-keys.{self.source.name}.{self.query_id()}",
                                                     storage_options=self.config.lake.storage_options)
        return self._pending

    def flush_key_stats(self) -> int:
        """Fold the pending key stats into bronze.raw_keys now (one MERGE); returns the number of batches folded.

        Example:
            >>> writer.flush_key_stats()      # doctest: +SKIP
            30
        """
        with self._fold_lock:
            folded = self.pending().flush(self.lake)
            self._flushed_at = time.monotonic()
        return folded

    def periodic_fold(self, stats: dict[str, Any]) -> None:
        """The timed fold during the stream. A failure does not stop the stream (the stats stay pending, safely):
        it is logged and retried one interval later; the fold when the stream stops reports it as an error."""
        try:
            stats["key_stats_folded"] = self.flush_key_stats()
        except Exception as exc:  # noqa: BLE001 - see the docstring
            self._flushed_at = time.monotonic()
            log.warning("source %s: folding key stats into bronze.raw_keys failed (%s); retrying in %.0fs",
                        self.source.name, type(exc).__name__, self.collector.stream.key_stats_flush_seconds)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        if self.collector.stream_format == "kafka":
            raw = kafka_raw(self.spark, batch, self.source)
            files: list[str] = []
        else:
            # One row per file (the source reads whole files): a plain collect, no distinct and its shuffle.
            files = sorted({r[0] for r in batch.select("file").collect()})
            if not files:
                return
            raw = segment_columns(readers.read_files(self.spark, self.source, files, schema=SEGMENT_SCHEMA))
        txn = Txn(f"collect.{self.source.name}.{self.query_id()}", int(batch_id))
        run_id = f"stream-{self.source.name}-{self.query_id()[:8]}-{batch_id}"
        forwarded: dict[str, Any] = {"forwarded": {}, "forward_s": 0.0}

        def forward(events: DataFrame, single_task: bool) -> None:
            # The rows just written, from the micro-batch's cache: forwarded without reading bronze back.
            began = time.perf_counter()
            forwarded["forwarded"] = forward_micro_batch(self.spark, self.config, self.lake, self.source.name, run_id,
                                                         txn, single_task=single_task, events=events)
            forwarded["forward_s"] = round(time.perf_counter() - began, 3)

        stats = self.process(raw, txn, run_id, files,
                             on_events=forward if connections_for(self.config, self.source.name) else None)
        stats.update(forwarded)
        interval = self.collector.stream.key_stats_flush_seconds
        if interval == 0:
            self.periodic_fold(stats)
        elif time.monotonic() - self._flushed_at >= interval and not (self._fold_thread and self._fold_thread.is_alive()):
            # The fold's MERGE takes seconds: run it beside the next micro-batches, which the query starts only when
            # this call returns. It only touches bronze.raw_keys and the pending files of batches already written,
            # and the fold when the stream stops waits for it.
            self._flushed_at = time.monotonic()
            self._fold_thread = threading.Thread(target=self.periodic_fold, args=(stats,), daemon=True,
                                                 name=f"key-stats-fold-{self.source.name}")
            self._fold_thread.start()
        stats["batch_id"] = int(batch_id)
        stats["duration_s"] = round(time.perf_counter() - started, 3)
        with self.lock:
            self.batches.append(stats)
            progress.advance(len(self.batches), None, "micro-batches")
        log.info("source %s batch %d: read %d, accepted %d, quarantined %d, duplicates %d in %.2fs",
                 self.source.name, batch_id, stats["read_lines"], stats["accepted"], stats["quarantined"],
                 stats["duplicates"], stats["duration_s"])

    def process(self, raw: DataFrame, txn: Txn, run_id: str, files: list[str],
                on_events: Callable[[DataFrame, bool], None] | None = None) -> dict[str, Any]:
        """Dead letters to quarantine, dedup, then the ingest stage's own processing and file ledger.
        ``on_events(events, single_task)`` gets the bronze.events rows once written (see `stage.process_batch`)."""
        source, lake = self.source, self.lake
        if REJECT in raw.columns:
            reason = F.concat(F.lit("collector:"), F.col(REJECT))
            raw = raw.withColumn("_error", F.coalesce(F.col("_error"), F.when(F.col(REJECT).isNotNull(), reason)))
        raw = raw.drop(*[c for c in (REJECT, REJECT_RAW) if c in raw.columns])
        received = self.clock()
        raw, received_at = with_received_at(self.spark, raw, received, self.source)
        landed = self.landed(files)  # looked up once: the size decides the read's tasks, the ledger records them
        if files and sum(int(st.getLen()) for st in landed.values() if st is not None) <= SINGLE_TASK_BYTES:
            # A few landed files of a steady stream: read and parse them in one task, so the counting pass and the
            # within-batch dedup below need no shuffle (see SINGLE_TASK_ROWS).
            raw = raw.coalesce(1)
        raw = raw.persist(stage.CACHE_LEVEL)
        try:
            lines_per_file, oldest, map_keys = self.count_and_oldest(raw)
            read_lines = sum(lines_per_file.values())
            # Read once, into the chain's cached checked rows (which also feed the key stats): the dedup (a shuffle
            # and a scan of bronze.events' recent rows) runs once per micro-batch without a cache of its own.
            deduped = self.dedup(raw, run_id, received)
            if read_lines <= SINGLE_TASK_ROWS:
                # A micro-batch of a few thousand rows: one partition, so every aggregation downstream (counts, key
                # stats) runs in one task without a shuffle (measured: fixed costs per task and stage dominate).
                deduped = deduped.coalesce(1)
            stats: dict[str, Any] = {"read": 0, "accepted": 0, "quarantined": 0, "warned": {}}
            # Key stats stay pending (replaced if this batch is replayed) until the next fold: no MERGE per batch.
            written, per_file = stage.process_batch(self.spark, self.config, lake, source, deduped, txn, run_id,
                                                    received_at, stage.template_paths(self.config), stats,
                                                    key_sink=lambda keys: self.pending().put(txn.version, keys, seen_at=received),
                                                    dedup=False, map_keys=map_keys,
                                                    events_sink=None if on_events is None else
                                                    lambda events: on_events(events, read_lines <= SINGLE_TASK_ROWS))
            kept = stats["read"]
        finally:
            raw.unpersist()
        now = utc_now()
        lag = round((now - oldest).total_seconds(), 3) if oldest is not None else None
        if files:
            self.record_files(landed, lines_per_file, per_file, txn, run_id)
        out = {"read_lines": read_lines, "duplicates": read_lines - kept, "accepted": stats["accepted"],
               "quarantined": stats["quarantined"], "suppressed": stats.get("suppressed", 0),
               "diverted": stats.get("diverted", 0), "quarantine_reasons": stats.get("quarantine_reasons", {}),
               "files_ingested": len(files), "written": written, "lag_s": lag}
        # suppressed: records of erased people (privacy tombstones), counted but written nowhere
        out["reconciled"] = read_lines == out["accepted"] + out["quarantined"] + out["suppressed"] + out["duplicates"]
        return out

    def dedup(self, raw: DataFrame, run_id: str, received: dt.datetime) -> DataFrame:
        """Drop repeated messageIds: within the batch, and those already in bronze.events received within the
        horizon before this batch's receipt time `received`.

        Rows this same micro-batch wrote before a crash (same `run_id`) are not repeats: the replay's writes are
        skipped by their Txn token, and its counts must describe the batch as the first attempt saw it."""
        if "messageId" not in raw.columns:
            return raw
        mid = F.col("messageId").cast("string")
        keyed = raw.where(mid.isNotNull() & F.col("_error").isNull())
        rest = raw.where(mid.isNull() | F.col("_error").isNotNull())
        keyed = keyed.dropDuplicates(["messageId"])
        if self.lake.exists(EVENTS.name):
            # Whole hours: the literal then stays the same from batch to batch, so Spark reuses the compiled code
            # instead of generating it again (the horizon is at most an hour longer).
            now = received.replace(minute=0, second=0, microsecond=0)
            since = now - dt.timedelta(hours=self.collector.stream.dedup_hours)
            seen = (self.lake.read(EVENTS.name)
                    .where((F.col("source") == self.source.name) & (F.col("received_at") >= F.lit(since))
                           & (F.col("run_id") != F.lit(run_id)))
                    .select(F.col("event_id").alias("_seen_id")))
            keyed = keyed.join(seen, F.trim(mid) == F.col("_seen_id"), "left_anti")
        return keyed.unionByName(rest)

    def landed(self, files: list[str]) -> dict[str, Any]:
        """Each landed file's Hadoop status (None for a file gone since the listing: the read skips it too)."""
        jvm = self.spark.sparkContext._jvm  # type: ignore[union-attr]
        hconf = self.spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
        out: dict[str, Any] = {}
        for f in files:
            p = jvm.org.apache.hadoop.fs.Path(f)
            fs = p.getFileSystem(hconf)
            out[f] = fs.getFileStatus(p) if fs.exists(p) else None
        return out

    @staticmethod
    def count_and_oldest(raw: DataFrame) -> tuple[dict[str, int], dt.datetime | None, dict[str, list[str]]]:
        """Lines per file of the batch (before deduplication: the ledger counts a file's lines), the oldest
        acknowledgement time (receivedAt) among them, and the keys of each top-level map column (at most
        `MAX_MAP_KEYS`, alphabetically first), in one pass."""
        oldest = (F.min(F.to_timestamp(F.col("receivedAt").cast("string"))) if "receivedAt" in raw.columns
                  else F.lit(None).cast("timestamp"))
        maps = [f.name for f in raw.schema.fields if isinstance(f.dataType, T.MapType) and not f.name.startswith("_")]
        # A set of each record's key list: records of one kind share it, so the set stays small.
        keys = [F.collect_set(F.array_sort(F.map_keys(f"`{m}`"))).alias(f"keys_{i}") for i, m in enumerate(maps)]
        rows = raw.groupBy("_file").agg(F.count(F.lit(1)).alias("n"), oldest.alias("oldest"), *keys).collect()
        seen: dict[str, set[str]] = {m: set() for m in maps}
        for r in rows:
            for i, m in enumerate(maps):
                seen[m].update(k for ks in r[f"keys_{i}"] for k in ks)
        capped = {m: sorted(ks)[:MAX_MAP_KEYS] for m, ks in seen.items()}
        for m, ks in seen.items():
            if len(ks) > MAX_MAP_KEYS:
                log.warning("map %s carried %d keys in one micro-batch; key statistics for the first %d", m, len(ks),
                            MAX_MAP_KEYS)
        return ({r["_file"]: int(r["n"]) for r in rows},
                min((r["oldest"] for r in rows if r["oldest"]), default=None), capped)

    def record_files(self, landed: dict[str, Any], lines: dict[str, int], per_file: dict[str, tuple[int, ...]],
                     txn: Txn, run_id: str) -> None:
        """The landed files of the batch (``landed``: path -> status) in bronze.ingested_files (same Txn), like the
        batch stage's file ledger: rows_read is the file's lines, rows_duplicate the repeated messageIds dropped,
        accepted and quarantined what the chain decided; paths relative to the source's landing folder. A file gone
        before it was read cannot be recorded: an error, as before."""
        now = utc_now()
        folder = f"{self.collector.landing(self.config.lake.root)}/{self.source.name}"
        hashes = stage.content_hashes([st.getPath().toString() for st in landed.values() if st is not None],
                                      storage_options=self.config.lake.storage_options)
        rows = []
        for f, st in landed.items():
            if st is None:
                raise FileNotFoundError(f"landed file {f} disappeared before the micro-batch read it")
            mtime = dt.datetime.fromtimestamp(st.getModificationTime() / 1000, dt.timezone.utc).replace(tzinfo=None)
            name = st.getPath().toString()
            kept, acc, quar, _ = per_file.get(f, per_file.get(name, (0, 0, 0, 0)))
            read = lines.get(f, lines.get(name, 0))
            rows.append((self.source.name, stage.relative_path(folder, name), int(st.getLen()), hashes.get(name),
                         mtime, 1, "ingested", None, read, acc, quar, read - kept, run_id, now))
        self.lake.append_rows(INGESTED_FILES.name, rows, txn=txn)


def with_received_at(spark: SparkSession, raw: DataFrame, received: dt.datetime,
                     source: Source) -> tuple[DataFrame, Any]:
    """The micro-batch's receipt time as a column of `raw` (``_received_at``, carried by `chain.prepare`) and the
    Column that the chain's outputs take as ``received_at``.

    Why a column and not ``F.lit(received)``: Spark inlines a timestamp literal into the generated Java code, so
    every micro-batch's plans were new code, compiled again (5 classes per micro-batch of the web source).
    A value joined in from a one-row frame is data, so the next micro-batch reuses the compiled code.
    A snapshot source's deletions are built from the stored state, not from these rows: it keeps the literal.

    Example:
        >>> raw, received_at = with_received_at(spark, raw, dt.datetime(2026, 11, 1, 10), source)  # doctest: +SKIP
        >>> raw.select("_received_at").first()[0]                                                  # doctest: +SKIP
        datetime.datetime(2026, 11, 1, 10, 0)
    """
    if source.load_mode == "snapshot":
        return raw, F.lit(received).cast("timestamp")
    stamp = spark.createDataFrame([(received,)], "_received_at timestamp")
    return raw.crossJoin(F.broadcast(stamp)), F.col("_received_at")


def kafka_raw(spark: SparkSession, batch: DataFrame, source: Source) -> DataFrame:
    """A Kafka micro-batch in the chain's raw shape: one JSON message per record value, read by `SEGMENT_SCHEMA`."""
    text = batch.select(
        F.concat(F.lit("kafka:"), F.col("topic"), F.lit("/"), F.col("partition").cast("string")).alias("_file"),
        F.col("offset").cast("long").alias("_line"), F.col("value").cast("string").alias("_raw"),
        F.lit(None).cast("string").alias("_error"))
    return segment_columns(readers.parse_json(spark, source, text, [], SEGMENT_SCHEMA))


def start_query(spark: SparkSession, config: "CdpConfig", lake: "Lake", name: str, *, available_now: bool,
                checkpoint: str | None = None, writer: BatchWriter | None = None):  # type: ignore[no-untyped-def]
    """Start the streaming query of one collector source; returns (query, writer)."""
    c: CollectorConfig = config.collector  # type: ignore[attr-defined]
    source = source_config(config, name)
    checkpoint = checkpoint or checkpoint_path(config, name)
    for spec in (EVENTS.name, INGESTED_FILES.name):
        lake.create_if_missing(spec)
    if c.stream_format == "kafka":
        if not kafka_available(spark):
            raise StreamError("the collector's stream reads Kafka but the spark-sql-kafka connector is not on the "
                              "classpath: `cdp jars fetch kafka` and engine.jars: auto (or spark-submit --packages "
                              "org.apache.spark:spark-sql-kafka-0-10_2.13:<spark version>)")
        options = c.kafka_options(name)
        reader = spark.readStream.format("kafka").options(**options)
        if "maxOffsetsPerTrigger" not in options:
            reader = reader.option("maxOffsetsPerTrigger", str(c.stream.max_files_per_trigger * 10_000))
        stream = reader.load()
    else:
        landing = f"{c.landing(config.lake.root)}/{name}"
        if "://" not in landing:
            os.makedirs(landing, exist_ok=True)
            recover(c.landing(config.lake.root))  # in-progress files of dead collectors become visible
        # wholetext: the micro-batch frame is only used for its file names, so one row per file, not per line.
        stream = (spark.readStream.format("text").option("maxFilesPerTrigger", c.stream.max_files_per_trigger)
                  .option("pathGlobFilter", "*.json").option("wholetext", "true").load(landing)
                  .select(F.col("_metadata.file_path").alias("file")))
    writer = writer or BatchWriter(spark, config, lake, source, checkpoint)
    trigger = {"availableNow": True} if available_now else {"processingTime": f"{c.stream.trigger_seconds} seconds"}
    query = (stream.writeStream.queryName(f"collect_{name}").option("checkpointLocation", checkpoint)
             .foreachBatch(writer).trigger(**trigger).start())
    return query, writer


def run_stream(spark: SparkSession, config: "CdpConfig", lake: "Lake", *, sources: list[str] | None = None,
               available_now: bool = False, timeout: float | None = None,
               stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Run the stream of every enabled collector source (or `sources`) and return metrics for the ledger.

    `available_now` processes what has landed and stops; otherwise it runs until `timeout`, `stop()` or Ctrl-C.
    """
    c: CollectorConfig = config.collector  # type: ignore[attr-defined]
    names = sources or [n for n, s in c.sources.items() if s.enabled]
    if not names:
        raise StreamError("collector.sources is empty: nothing to stream")
    running = [start_query(spark, config, lake, n, available_now=available_now) for n in names]
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while any(q.isActive for q, _ in running):
            for q, _ in running:
                try:
                    q.awaitTermination(1)
                except Exception:  # the query failed: reported below from q.exception()
                    pass
            if (deadline is not None and time.monotonic() > deadline) or (stop is not None and stop()):
                break
    finally:
        for q, _ in running:
            if q.isActive:
                q.stop()
        unfolded = _fold_key_stats(running, names)
    metrics: dict[str, Any] = {"sources": {}}
    for (q, w), n in zip(running, names):
        if q.exception() is not None:  # every query was stopped above
            raise StreamError(f"stream of source {n} failed (restart it: the checkpoint replays the batch): "
                              f"{brief(q.exception())}")
        metrics["sources"][n] = summarise(w.batches, q.recentProgress)
    if unfolded:
        raise StreamError(f"the stream stopped but its key stats could not be folded into bronze.raw_keys "
                          f"({'; '.join(unfolded)}); they stay pending and are folded by the next run")
    return metrics


def _fold_key_stats(running: list[Any], names: list[str]) -> list[str]:
    """Fold every stopped query's pending key stats; returns the failures (they stay pending, nothing is lost)."""
    failures = []
    for (_, writer), name in zip(running, names):
        try:
            writer.flush_key_stats()
        except Exception as exc:  # noqa: BLE001 - reported after the queries' own errors, which matter more
            log.warning("source %s: pending key stats not folded (%s); the next run folds them", name, type(exc).__name__)
            failures.append(f"{name}: {brief(exc)}")
    return failures


def summarise(batches: list[dict[str, Any]], progress: list[Any]) -> dict[str, Any]:
    """Totals and progress metrics (input rows/s, batch duration, lag) of a run."""
    total: dict[str, Any] = {k: sum(b.get(k, 0) for b in batches)
                             for k in ("read_lines", "accepted", "quarantined", "suppressed", "duplicates", "diverted",
                                       "files_ingested")}
    written: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for b in batches:
        for reason, n in b.get("quarantine_reasons", {}).items():
            reasons[reason] = reasons.get(reason, 0) + n
        for table, rows in b.get("written", {}).items():
            written[table] = written.get(table, 0) + rows
    durations = [b["duration_s"] for b in batches]
    lags = [b["lag_s"] for b in batches if b.get("lag_s") is not None]
    rates = [p.get("processedRowsPerSecond") for p in (json.loads(p.json) if hasattr(p, "json") else p for p in progress)]
    rates = [r for r in rates if r]
    return {**total, "quarantine_reasons": reasons, "written": written, "batches": len(batches), "reconciled": all(b["reconciled"] for b in batches),
            "max_batch_duration_s": max(durations, default=0.0),
            "mean_batch_duration_s": round(sum(durations) / len(durations), 3) if durations else 0.0,
            "max_lag_s": max(lags, default=None),
            "input_rows_per_s": round(sum(rates) / len(rates), 1) if rates else None}


def run_with_ledger(spark: SparkSession, config: "CdpConfig", lake: "Lake", *, available_now: bool = False,
                    timeout: float | None = None, sources: list[str] | None = None) -> dict[str, Any]:
    """`run_stream` recorded in `ops.job_runs` (job ``collect_stream``) with rows and progress metrics."""
    from cdp_spark.ops.ledger import Ledger

    ledger = Ledger(lake, stale_after_minutes=config.pipeline.stale_after_minutes)
    entry = ledger.start("collect_stream", as_of=dt.datetime.now(dt.timezone.utc).date(),
                         params={"available_now": available_now, "sources": sources or "all"})
    try:
        metrics = run_stream(spark, config, lake, sources=sources, available_now=available_now, timeout=timeout)
    except BaseException as exc:
        ledger.finish(entry, "failed", error=brief(exc))
        raise
    rows_in = {f"collector.{n}": m["read_lines"] for n, m in metrics["sources"].items()}
    rows_out: dict[str, int] = {}
    for m in metrics["sources"].values():
        rows_out["bronze.events+records"] = rows_out.get("bronze.events+records", 0) + m["accepted"]
        rows_out["bronze.quarantine"] = rows_out.get("bronze.quarantine", 0) + m["quarantined"]
    ledger.finish(entry, "succeeded", rows_in=rows_in, rows_out=rows_out, metrics=metrics)
    return metrics
