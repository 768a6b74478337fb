"""Forward events to connection outputs: per micro-batch from the collector's stream (`forward_micro_batch`), and
as the `connections` stage after batch ingestion (`run`).

The unit of work is one *input batch*: the ``bronze.events`` rows one ingest run or one stream micro-batch wrote
for a source (``run_id``), cut into parts of ``delivery_size`` events (ordered by event time and id). Each part
is one delivery per output, with an id derived from (connection, output, source, run, part): a retry after a crash
has the same id, the same records and, through activation's transports, the same per-batch ``Idempotency-Key``.

Deliveries go through activation's transports (file drop, webhook with retries, backoff and rate limit) or into
``gold.forwarded_events`` (under a Delta idempotency token per delivery) or a Kafka topic (the collector's
idempotent producer), and are logged in activation's delivery ledger, ``ops.deliveries``.

- The stream delivers a micro-batch right after writing it; the ledger rows of each output carry the micro-batch's
  token, so a replayed micro-batch (after a crash) that was already delivered is recognised and not sent again.
  A failed delivery does not stop ingestion: it is logged as failed.
- The stage forwards every input batch received within ``lookback_hours`` that has an output part without an
  acknowledged (or empty) delivery: batch ingest runs, and stream micro-batches the stream could not deliver (left
  to the stream for ``retry_after_minutes`` first). Re-running it sends nothing twice.

Example:
    >>> result = run(spark, config, lake, date(2026, 11, 1))                     # doctest: +SKIP
    >>> result.metrics["connections"]["web_events"]["analytics"]["sent"]          # doctest: +SKIP
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp_spark.activation.records import Item
from cdp_spark.activation.stage import export_root
from cdp_spark.activation.tables import DELIVERIES, log_deliveries
from cdp_spark.activation.transports import DeliveryError, Stats, WebhookSender, file_drop
from cdp_spark.connections.config import Connection, DeltaOutput, KafkaOutput, Output
from cdp_spark.connections.forwarding import decide, pii_fields, rendered, with_profiles
from cdp_spark.connections.tables import FORWARDED_EVENTS
from cdp_spark.ingest.tables import EVENTS
from cdp_spark.lake import Txn, utc_now
from cdp_spark.pipeline import StageResult

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake

log = logging.getLogger(__name__)
DONE = ("succeeded", "empty", "skipped")   # ledger statuses after which a delivery is not attempted again
FORMAT = "events"                           # ops.deliveries.format of a forwarded delivery


@dataclass(frozen=True)
class EventItem(Item):
    """A forwarded event for activation's transports: its JSON ``text`` as Spark rendered it (`rendered`), which
    a webhook batch carries as is; ``body()`` parses it (file drops). ``record_hash`` is the text's SHA-256, so the
    transports' batch idempotency keys follow the content."""

    event_id: str = ""
    event_time: Optional[dt.datetime] = None
    text: str = "{}"

    def body(self) -> dict[str, Any]:
        return json.loads(self.text)

    def body_json(self) -> str:
        return self.text


@dataclass
class ForwardReport:
    """One delivery of one output: the input part's counts and the transport's outcome."""

    connection: str
    output: str
    delivery_id: str
    status: str = "succeeded"       # succeeded, failed, empty (nothing passed), skipped (sandbox webhook)
    events: int = 0                 # events of the input part
    filtered: int = 0               # left out by the data filter
    sampled_out: int = 0            # passed the filter, user not in the sample
    consent_withheld: int = 0       # passed and sampled, a required purpose not granted
    sent: int = 0                   # records acknowledged by the output
    batches: int = 0
    retries: int = 0
    failures: int = 0
    location: Optional[str] = None
    error: Optional[str] = None
    notes: list[str] = field(default_factory=list)

    @property
    def planned(self) -> int:
        return self.events - self.filtered - self.sampled_out - self.consent_withheld

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "planned": self.planned}


def delivery_id(label: str, source: str, run_id: str, part: int) -> str:
    """The id of one output's delivery of one input part: the same for every attempt.

    Example:
        >>> delivery_id("web_events.tool", "web", "stream-web-1a2b3c4d-7", 0)
        'web_events.tool-7b6994978984bf37'
    """
    digest = hashlib.sha256(f"{label}|{source}|{run_id}|{part}".encode()).hexdigest()[:16]
    return f"{label}-{digest}"


def input_sources(config: "CdpConfig", connection: Connection) -> list[str]:
    """The source names a connection takes events from (``collector: true``: every enabled collector source)."""
    if connection.input.source is not None:
        return [connection.input.source]
    return sorted(n for n, s in config.collector.sources.items() if s.enabled)  # type: ignore[attr-defined]


def _profiles(config: "CdpConfig", lake: "Lake") -> DataFrame | None:
    """gold.profiles as `with_profiles` reads it (typed traits as JSON), None before the profiles stage ran."""
    from cdp_spark.profiles.tables import PROFILES
    from cdp_spark.profiles.view import typed_traits

    if not lake.exists(PROFILES.name):
        return None
    p = lake.read(PROFILES.name)
    def stored(name: str, kind: str) -> Any:
        return F.col(name) if name in p.columns else F.lit(None).cast(kind)
    return p.select("profile_id", F.to_json(typed_traits("traits", config)).alias("traits"), "consent",
                    stored("consent_at", "map<string,timestamp>").alias("consent_at"),
                    stored("consent_source", "map<string,string>").alias("consent_source"))


def _graph(spark: SparkSession, lake: "Lake") -> DataFrame:
    if lake.exists("gold.id_graph"):
        return lake.read("gold.id_graph")
    return spark.createDataFrame([], "id_type string, value string, profile_id string")


FLAGS = ("_passes", "_sampled", "_consented", "_send")


@dataclass
class Part:
    """One delivery's worth of an output's decided events (in event time and id order): the flags of every event,
    and each sent event's id, profile, time, JSON text and its SHA-256."""

    columns: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(self.columns["event_id"])

    def count(self, report: "ForwardReport") -> "ForwardReport":
        c = self.columns
        report.events = len(self)
        report.filtered = sum(not p for p in c["_passes"])
        report.sampled_out = sum(p and not s for p, s in zip(c["_passes"], c["_sampled"]))
        report.consent_withheld = sum(p and s and not k for p, s, k in zip(c["_passes"], c["_sampled"], c["_consented"]))
        return report

    def items(self, label: str) -> list[EventItem]:
        c = self.columns
        return [EventItem("event", label, c["profile_id"][i] or "", {}, c["_hash"][i], c["event_id"][i],
                          c["event_time"][i], c["_payload"][i]) for i, send in enumerate(c["_send"]) if send]


def parts(flagged: DataFrame, output: Output, pii: frozenset[str], size: int, *, small: bool = False) -> Iterator[Part]:
    """The `decide` rows of one output cut into parts of ``size`` events, by event time and id, each sent event
    rendered to JSON by Spark (`rendered`) with its SHA-256. ``small`` (a micro-batch): fetched as one Arrow table;
    otherwise streamed a partition at a time (a batch run's input may not fit the driver).

    Example:
        >>> [len(p) for p in parts(decide(base, c, c.outputs[0], config), c.outputs[0], pii, 50_000)]  # doctest: +SKIP
        [50000, 1234]
    """
    text = F.when(F.col("_send"), rendered(output, pii))
    ordered = (flagged.select("event_id", "profile_id", "event_time", *FLAGS, text.alias("_payload"))
               .withColumn("_hash", F.sha2("_payload", 256)).orderBy("event_time", "event_id"))
    names = ordered.columns
    if small:
        table = ordered.toArrow()
        for start in range(0, table.num_rows, size):
            yield Part(table.slice(start, size).to_pydict())
        return
    chunk: list[Any] = []
    for r in ordered.toLocalIterator():
        chunk.append(r)
        if len(chunk) == size:
            yield Part({n: [row[i] for row in chunk] for i, n in enumerate(names)})
            chunk = []
    if chunk:
        yield Part({n: [row[i] for row in chunk] for i, n in enumerate(names)})


class Outputs:
    """The transports of one run, opened lazily and closed together (a webhook client, a Kafka producer)."""

    def __init__(self, spark: SparkSession, config: "CdpConfig", lake: "Lake"):
        self.spark, self.config, self.lake = spark, config, lake
        self._open: dict[str, Any] = {}

    def send(self, connection: Connection, output: Output, items: list[EventItem], did: str, source: str,
             report: ForwardReport) -> None:
        """Deliver ``items`` through the output's transport; the report gets the transport's counts."""
        label, t = connection.label(output), output.transport
        stats = Stats()

        def on_sent(batch: list[Item]) -> None:
            report.sent += len(batch)

        try:
            if t.type == "webhook":
                sender = self._open.get(label) or self._open.setdefault(label, WebhookSender(t, label))
                sender.send(items, did, on_sent, stats)
            elif t.type == "file":
                cols = list(dict.fromkeys(k for i in items for k in i.body()))
                meta = {"connection": connection.name, "output": output.name, "source": source, "format": "ndjson",
                        "columns": cols}
                file_drop(t, f"{export_root(self.config)}/connections/{label}", label, items, did, cols, "ndjson",
                          meta, on_sent, stats, lead=(), storage_options=self.config.lake.storage_options)
            elif isinstance(t, DeltaOutput):
                self._delta(connection, output, items, did)
                stats.batches, stats.location = 1, FORWARDED_EVENTS.name
                on_sent(list(items))
            else:
                assert isinstance(t, KafkaOutput)
                self._kafka(label, t).append(source, [i.text.encode() for i in items])
                stats.batches, stats.location = 1, t.topic_of(source)
                on_sent(list(items))
        except (DeliveryError, OSError, RuntimeError) as exc:
            report.status = "failed"
            report.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        report.batches, report.retries, report.failures = stats.batches, stats.retries, stats.failures
        report.location, report.notes = stats.location, stats.notes

    def _delta(self, connection: Connection, output: Output, items: list[EventItem], did: str) -> None:
        now = utc_now()
        rows = [(connection.name, output.name, did, i.event_id, i.profile_id or None, _naive_utc(i.event_time), i.text,
                 now) for i in items]
        self.lake.append_rows(FORWARDED_EVENTS.name, rows, txn=Txn(f"connections.{did}", 1))

    def _kafka(self, label: str, t: KafkaOutput) -> Any:
        from cdp_spark.collect.kafka import KafkaSink

        key = f"kafka:{label}"
        if key not in self._open:
            self._open[key] = KafkaSink(t)
        return self._open[key]

    def close(self) -> None:
        for transport in self._open.values():
            transport.close()
        self._open.clear()


def _naive_utc(t: Optional[dt.datetime]) -> Optional[dt.datetime]:
    """Arrow's timestamps carry UTC; Spark's rows are naive UTC."""
    return t.astimezone(dt.timezone.utc).replace(tzinfo=None) if t is not None and t.tzinfo is not None else t


def _ledger_row(r: ForwardReport, label: str, t: Any, *, run_id: str, as_of: dt.date, mode: str,
                started: dt.datetime) -> tuple[Any, ...]:
    """A row of ops.deliveries: the delivery ledger activation keeps (events in the profile columns). Every event
    is counted once: considered = skipped_filtered + skipped_sampled + skipped_consent + adds."""
    row = {"destination": label, "delivery_id": r.delivery_id, "run_id": run_id, "as_of": as_of,
           "transport": t.type, "format": FORMAT, "mode": mode, "status": r.status,
           "profiles_considered": r.events, "skipped_consent": r.consent_withheld, "skipped_no_identifier": 0,
           "skipped_filtered": r.filtered, "skipped_sampled": r.sampled_out, "adds": r.planned, "removes": 0,
           "records_sent": r.sent, "batches": r.batches, "retries": r.retries, "failures": r.failures,
           "location": r.location, "error": r.error, "started_at": started, "ended_at": utc_now()}
    return tuple(row[f] for f in DELIVERIES.schema.fieldNames())


def forward_input(spark: SparkSession, config: "CdpConfig", lake: "Lake", connection: Connection, source: str,
                  run_id: str, *, mode: str, as_of: dt.date, forward_run_id: str, outputs: Outputs,
                  delivered: Optional[dict[str, set[str]]] = None,
                  token: Optional[Callable[[str], Txn]] = None, single_task: bool = False,
                  events: Optional[DataFrame] = None) -> list[ForwardReport]:
    """Forward one input batch (``source``'s bronze.events rows of ``run_id``) to every enabled output.

    ``delivered`` (label -> delivery ids already done) skips parts delivered before; ``token`` (label -> Txn) makes
    each output's ledger rows one commit under that token, and an output whose token is already committed is
    skipped whole (the stream's replay of a micro-batch it delivered). ``single_task``: the input batch is small
    (a steady stream's micro-batch), so it is read as one partition, as the stream reads it: the deduplication and
    the ordering then need no shuffle, and its rows come to the driver as one Arrow table. ``events``: the input
    batch's rows when the caller has them (the stream, right after writing them); otherwise read from bronze.events.
    """
    pending = [o for o in connection.outputs if o.enabled
               and not (token is not None and lake.committed(DELIVERIES.name, token(connection.label(o))))]
    if not pending:
        return []
    if events is None:
        events = lake.read(EVENTS.name).where((F.col("source") == source) & (F.col("run_id") == run_id))
    if single_task:
        events = events.coalesce(1)
    base = with_profiles(events, _graph(spark, lake), _profiles(config, lake), config.identity).persist()
    pii = pii_fields(config.catalogue)
    reports: list[ForwardReport] = []
    try:
        for output in pending:
            label = connection.label(output)
            rows_out: list[tuple[Any, ...]] = []
            flagged = decide(base, connection, output, config)
            for n, part in enumerate(parts(flagged, output, pii, connection.delivery_size, small=single_task)):
                did = delivery_id(label, source, run_id, n)
                if delivered is not None and did in delivered.get(label, set()):
                    continue
                started = utc_now()
                report = part.count(ForwardReport(connection.name, output.name, did))
                items = part.items(label)
                if not items:
                    report.status = "empty"
                elif output.transport.type == "webhook" and config.org.sandbox:
                    report.status, report.notes = "skipped", ["sandbox org: webhook outputs are not called"]
                else:
                    outputs.send(connection, output, items, did, source, report)
                if report.status == "failed":
                    log.warning("connection output %s: delivery %s failed (%s)", label, did, report.error)
                row = _ledger_row(report, label, output.transport, run_id=forward_run_id, as_of=as_of, mode=mode,
                                  started=started)
                if token is None:
                    log_deliveries(spark, lake, [row])   # progress is kept delivery by delivery
                else:
                    rows_out.append(row)
                reports.append(report)
            if token is not None and rows_out:
                log_deliveries(spark, lake, rows_out, txn=token(label))
    finally:
        base.unpersist()
    return reports


def _summary(reports: list[ForwardReport]) -> dict[str, dict[str, Any]]:
    """Totals per output (label): deliveries by status and the event counts."""
    out: dict[str, dict[str, Any]] = {}
    for r in reports:
        s = out.setdefault(f"{r.connection}.{r.output}", {"deliveries": {}, "events": 0, "filtered": 0,
                                                          "sampled_out": 0, "consent_withheld": 0, "sent": 0})
        s["deliveries"][r.status] = s["deliveries"].get(r.status, 0) + 1
        for k in ("events", "filtered", "sampled_out", "consent_withheld", "sent"):
            s[k] += getattr(r, k)
    return out


def connections_for(config: "CdpConfig", source: str) -> list[Connection]:
    """Enabled connections whose input includes ``source``."""
    return [c for c in getattr(config, "connections", []) if c.enabled and source in input_sources(config, c)]


def forward_micro_batch(spark: SparkSession, config: "CdpConfig", lake: "Lake", source: str, run_id: str,
                        txn: Txn, *, single_task: bool = False, events: Optional[DataFrame] = None) -> dict[str, Any]:
    """The stream's call after micro-batch ``txn.version`` of ``source`` is written (``run_id``): forward its events
    to every connection taking ``source``. Returns per-output totals (empty when no connection takes the source).
    Never raises for a failed output: ingestion goes on, the failure is in ops.deliveries and the stage retries it.
    ``single_task``: a small micro-batch, forwarded as one partition; ``events``: its rows as written (see
    `forward_input`).

    Example:
        >>> forward_micro_batch(spark, config, lake, "web", "stream-web-1a2b3c4d-7", Txn("collect.web.1a2b", 7))  # doctest: +SKIP
        {'web_events.analytics': {'deliveries': {'succeeded': 1}, 'events': 120, ...}}
    """
    connections = connections_for(config, source)
    if not connections:
        return {}
    lake.create_if_missing(DELIVERIES.name)
    outputs = Outputs(spark, config, lake)
    reports: list[ForwardReport] = []
    failed: dict[str, str] = {}
    try:
        for c in connections:
            try:
                reports += forward_input(spark, config, lake, c, source, run_id, mode="stream",
                                         as_of=utc_now().date(), forward_run_id=run_id, outputs=outputs,
                                         token=lambda label: Txn(f"forward.{label}.{txn.app_id}", txn.version),
                                         single_task=single_task, events=events)
            except Exception as exc:  # noqa: BLE001 - an output must not stop ingestion; the stage catches up
                failed[c.name] = type(exc).__name__
                log.warning("connection %s: forwarding micro-batch %d of %s failed (%s); the connections stage "
                            "retries it", c.name, txn.version, source, type(exc).__name__)
    finally:
        outputs.close()
    return {**_summary(reports), **({"errors": failed} if failed else {})}


def _delivered(lake: "Lake", labels: list[str]) -> dict[str, set[str]]:
    if not lake.exists(DELIVERIES.name):
        return {}
    rows = (lake.read(DELIVERIES.name).where(F.col("destination").isin(labels) & F.col("status").isin(*DONE))
            .select("destination", "delivery_id").collect())
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r.destination, set()).add(r.delivery_id)
    return out


def pending_inputs(lake: "Lake", config: "CdpConfig", connection: Connection, now: dt.datetime,
                   delivered: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(source, run_id) of the input batches received within the lookback that some enabled output has not had
    every part of; stream micro-batches only once ``retry_after_minutes`` old (until then they are the stream's).

    Example:
        >>> pending_inputs(lake, config, config.connections[0], utc_now(), {})     # doctest: +SKIP
        [('web', 'ingest-20261101-1a2b3c4d')]
    """
    since = now - dt.timedelta(hours=connection.lookback_hours)
    settled = now - dt.timedelta(minutes=connection.retry_after_minutes)
    runs = (lake.read(EVENTS.name)
            .where(F.col("source").isin(input_sources(config, connection)) & (F.col("received_at") >= F.lit(since)))
            .groupBy("source", "run_id")
            .agg(F.countDistinct("event_id").alias("n"), F.max("received_at").alias("last"))
            .collect())
    labels = [connection.label(o) for o in connection.outputs if o.enabled]
    out = []
    for r in sorted(runs, key=lambda r: (r["last"], r["source"], r["run_id"])):
        if str(r["run_id"]).startswith("stream-") and r["last"] > settled:
            continue
        n_parts = math.ceil(r["n"] / connection.delivery_size)
        if any(delivery_id(label, r["source"], r["run_id"], k) not in delivered.get(label, set())
               for label in labels for k in range(n_parts)):
            out.append((r["source"], r["run_id"]))
    return out


def run(spark: SparkSession, config: "CdpConfig", lake: "Lake", as_of: dt.date) -> StageResult:
    """The `connections` stage: forward every input batch some output has not had yet (see the module docstring).

    Example:
        >>> run(spark, config, lake, date(2026, 11, 1)).metrics["outputs"]     # doctest: +SKIP
    """
    from cdp_spark.ops.ledger import new_run_id

    connections = [c for c in getattr(config, "connections", []) if c.enabled and any(o.enabled for o in c.outputs)]
    if not connections:
        return StageResult(metrics={"skipped": "no connections configured"})
    if not lake.exists(EVENTS.name):
        return StageResult(metrics={"skipped": "no events yet"})
    lake.create_if_missing(DELIVERIES.name)
    run_id = new_run_id("connections")
    now = utc_now()
    outputs = Outputs(spark, config, lake)
    reports: list[ForwardReport] = []
    inputs: dict[str, int] = {}
    try:
        for c in connections:
            delivered = _delivered(lake, [c.label(o) for o in c.outputs])
            todo = pending_inputs(lake, config, c, now, delivered)
            inputs[c.name] = len(todo)
            for source, input_run in todo:
                reports += forward_input(spark, config, lake, c, source, input_run, mode="batch", as_of=as_of,
                                         forward_run_id=run_id, outputs=outputs, delivered=delivered)
    finally:
        outputs.close()
    summary = _summary(reports)
    failed = sorted(label for label, s in summary.items() if s["deliveries"].get("failed"))
    result = StageResult(metrics={"run_id": run_id, "input_batches": inputs, "outputs": summary,
                                  "failed_outputs": failed})
    result.rows_in = {label: s["events"] for label, s in summary.items()}
    result.rows_out = {label: s["sent"] for label, s in summary.items()}
    if config.org.sandbox:
        result.metrics["sandbox"] = "webhook outputs are not called in a sandbox org"
    return result
