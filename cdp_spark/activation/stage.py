"""The `activation` stage and `cdp activate <destination>`: send audience members to every destination.

Per destination: members of the linked audiences/variants (holdouts never) are joined with the profile view,
prepared (identifiers, consent, format), compared with what the destination holds (``gold.activation_state``)
and the adds/removes (or the snapshot) are sent. Every acknowledged batch updates the held state, so a delivery
that fails is resumed by the next run from the last acknowledged batch without sending anything twice.
Counts go to the ledger (stage metrics) and to ``ops.deliveries``. In a sandbox org, webhooks are never called.

Example:
    >>> result = run(spark, config, lake, date(2026, 11, 1))              # doctest: +SKIP
    >>> result.metrics["destinations"]["crm_file_drop"]["records_sent"]   # doctest: +SKIP
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp_spark.activation.config import AudienceLink, Destination
from cdp_spark.activation.records import (Item, Member, StateRow, apply_sent, columns, delivery_id, erasure_payload,
                                          plan_items, prepare)
from cdp_spark.activation.tables import ACTIVATION_RECORDS, ACTIVATION_STATE, log_deliveries
from cdp_spark.activation.transports import DeliveryError, Stats, WebhookSender, file_drop
from cdp_spark.lake import Txn, utc_now
from cdp_spark.pipeline import StageResult

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    """The counts of one destination's delivery (what the ledger and ops.deliveries record)."""

    destination: str
    status: str = "succeeded"
    delivery_id: Optional[str] = None
    profiles_considered: int = 0
    skipped_consent: int = 0
    skipped_no_identifier: int = 0
    adds: int = 0
    removes: int = 0
    records_sent: int = 0
    batches: int = 0
    retries: int = 0
    failures: int = 0
    location: Optional[str] = None
    error: Optional[str] = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def deliver(d: Destination, members: Iterable[Member], state: dict[tuple[str, str], StateRow], *, as_of: dt.date,
            export_root: str, sender: Optional[WebhookSender] = None, delta_sink: Any = None,
            run_id: str = "", storage_options: Optional[dict[str, str]] = None) -> DeliveryReport:
    """Prepare, plan and send one destination's records; ``state`` is updated in place with what was
    acknowledged (also on failure). Pure Python apart from the transport.
    """
    report = DeliveryReport(d.name)
    prepared = []
    for m in members:
        report.profiles_considered += 1
        p = prepare(m, d)
        if p.skipped == "consent":
            report.skipped_consent += 1
        elif p.skipped == "no_identifier":
            report.skipped_no_identifier += 1
        prepared.append(p)
    snapshot_id = f"{d.name}-snapshot-{as_of:%Y%m%d}" if d.mode == "snapshot" else None
    items = plan_items(d, prepared, state, snapshot_id)
    report.adds = sum(i.action == "add" for i in items)
    report.removes = sum(i.action == "remove" for i in items)
    if d.mode == "snapshot":
        wanted = {p.key for p in prepared if p.skipped is None}
        for k in [k for k in state if k not in wanted]:
            state.pop(k)  # a snapshot replaces the list: what is not in it is not held any more
    if not items:
        report.status = "empty"
        return report
    return _send(d, items, snapshot_id or delivery_id(d.name, items), report, state, as_of=as_of,
                 export_root=export_root, sender=sender, delta_sink=delta_sink, run_id=run_id,
                 storage_options=storage_options)


def _send(d: Destination, items: list[Item], did: str, report: DeliveryReport,
          state: dict[tuple[str, str], StateRow], *, as_of: dt.date, export_root: str,
          sender: Optional[WebhookSender], delta_sink: Any, run_id: str,
          storage_options: Optional[dict[str, str]] = None) -> DeliveryReport:
    """Send planned items through the destination's transport; ``state`` follows every acknowledged batch."""
    report.delivery_id = did
    stats = Stats()

    def on_sent(batch: list) -> None:
        apply_sent(state, batch, did)

    kind = d.transport.type
    try:
        if kind == "file":
            meta = {"destination": d.name, "as_of": as_of.isoformat(), "format": d.format, "mode": d.mode,
                    "run_id": run_id, "columns": ["action", "audience", *columns(d)]}
            file_drop(d.transport, f"{export_root}/{d.name}", d.name, items, did, columns(d),
                      "ndjson" if d.format == "ndjson" else "csv", meta, on_sent, stats,
                      storage_options=storage_options)
        elif kind == "webhook":
            assert sender is not None
            sender.send(items, did, on_sent, stats)
        else:
            assert delta_sink is not None
            delta_sink(items, did)
            stats.batches, stats.records_sent, stats.location = 1, len(items), ACTIVATION_RECORDS.name
            on_sent(items)
    except DeliveryError as exc:
        report.status, report.error = "failed", str(exc)
    report.records_sent, report.batches, report.retries = stats.records_sent, stats.batches, stats.retries
    report.failures, report.location, report.notes = stats.failures, stats.location, stats.notes
    return report


# ---- Spark / lake wiring ----
def members_for(spark: SparkSession, config: "CdpConfig", lake: "Lake", membership: DataFrame, *,
                sort: bool = False) -> Iterator[Member]:
    """Activation records for membership rows (``audience, profile_id, variant``), joined to the profile view.

    Used by the stage (members of a destination's audiences), by `cdp audience export` (``sort``: by audience and
    profile id) and by notebooks that design an audience and send it to a test destination. Rows stream to the
    driver one partition at a time.

    Example:
        >>> rows = spark.createDataFrame([("vip", "p1", "all")], "audience string, profile_id string, variant string")
        >>> [m.profile_id for m in members_for(spark, config, lake, rows)]   # doctest: +SKIP
        ['p1']
    """
    from cdp_spark.audiences.stage import profiles_frame

    view = profiles_frame(spark, config, lake)
    traits = F.to_json("traits") if "traits" in view.columns else F.lit(None).cast("string")
    view = view.select("profile_id", "identifiers", traits.alias("traits"), "consent")
    entered = F.col("entered_at") if "entered_at" in membership.columns else F.lit(None).cast("timestamp")
    rows = membership.select("audience", "profile_id", "variant", entered.alias("entered_at"))
    joined = rows.join(view, "profile_id", "left")
    for r in (joined.orderBy("audience", "profile_id") if sort else joined).toLocalIterator():
        yield Member(r.audience, r.profile_id, r.variant, dict(r.identifiers or {}),
                     json.loads(r.traits) if r.traits else {}, dict(r.consent or {}), r.entered_at)


def linked_members(config: "CdpConfig", lake: "Lake", links: Iterable[AudienceLink]) -> Optional[DataFrame]:
    """The current ``gold.audience_members`` rows of the linked audiences (and variants, when a link names some),
    holdout variants never included; None before the first audiences run. Shared by activation and exports.

    Example:
        >>> linked_members(config, lake, [AudienceLink(name="cart_abandoners")]).count()   # doctest: +SKIP
    """
    if not lake.exists("gold.audience_members"):
        return None
    holdouts = {(a.name, v.name) for a in config.audiences for v in a.variants if v.holdout}
    cond = F.lit(False)
    for name, variants in ((x.name, x.variants) for x in links):
        c = F.col("audience") == F.lit(name)
        if variants:
            c = c & F.col("variant").isin(*variants)
        cond = cond | c
    members = lake.read("gold.audience_members").where(cond)
    for a, v in holdouts:
        members = members.where(~((F.col("audience") == a) & (F.col("variant") == v)))
    return members


def _members(spark: SparkSession, config: "CdpConfig", lake: "Lake", d: Destination) -> list[Member]:
    """The current members of the destination's linked audiences and variants, holdout variants left out."""
    members = linked_members(config, lake, d.audiences)
    return [] if members is None else list(members_for(spark, config, lake, members))


def held_records(lake: "Lake", profile_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """What every destination holds for these profiles (``gold.activation_state`` rows as plain dicts: audience,
    profile_id, payload, record_hash), per destination: the removes an erasure owes them.

    Example:
        >>> held_records(lake, ["p_1f3a"])        # doctest: +SKIP
        {'crm_file_drop': [{'audience': 'cart_abandoners', 'profile_id': 'p_1f3a', 'payload': {...}, ...}]}
    """
    ids = sorted(set(profile_ids))
    if not ids or not lake.exists(ACTIVATION_STATE.name):
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    for r in lake.read(ACTIVATION_STATE.name).where(F.col("profile_id").isin(ids)).collect():
        out.setdefault(r.destination, []).append({"audience": r.audience, "profile_id": r.profile_id,
                                                  "payload": json.loads(r.payload), "record_hash": r.record_hash})
    return out


def send_removes(spark: SparkSession, config: "CdpConfig", lake: "Lake", destination: str,
                 held: list[dict[str, Any]], *, as_of: dt.date, run_id: str) -> DeliveryReport:
    """Tell one destination to remove records it holds (an erased person's), through its own transport, and log
    the delivery in ``ops.deliveries``. Payloads are cut down by `records.erasure_payload` to what the destination
    needs to find the record. ``status`` is ``failed`` when the destination did not acknowledge every remove.

    Example:
        >>> send_removes(spark, config, lake, "crm_file_drop", held["crm_file_drop"], as_of=today, run_id="erasure-er_1").status   # doctest: +SKIP
        'succeeded'
    """
    started = utc_now()
    d = next((x for x in config.destinations if x.name == destination), None)
    if d is None:
        return DeliveryReport(destination, status="failed", error="the destination is no longer configured")
    if d.transport.type == "webhook" and config.org.sandbox:
        return DeliveryReport(d.name, status="skipped", notes=["sandbox org: webhook destinations are not called"])
    items = [Item("remove", h["audience"], h["profile_id"], erasure_payload(d, h["payload"]), h["record_hash"])
             for h in sorted(held, key=lambda h: (h["audience"], h["profile_id"]))]
    report = DeliveryReport(d.name, profiles_considered=len({i.profile_id for i in items}), removes=len(items))
    state: dict[tuple[str, str], StateRow] = {}
    sender = WebhookSender(d.transport, d.name) if d.transport.type == "webhook" else None
    try:
        report = _send(d, items, delivery_id(d.name, items), report, state, as_of=as_of,
                       export_root=export_root(config), sender=sender, delta_sink=_delta_sink(spark, lake, d),
                       run_id=run_id, storage_options=config.lake.storage_options)
    finally:
        if sender is not None:
            sender.close()
    if report.status != "failed" and report.records_sent < len(items):
        report.status, report.error = "failed", "not every remove was acknowledged"
    _log_delivery(spark, lake, d, report, as_of, run_id, started)
    return report


def _delta_sink(spark: SparkSession, lake: "Lake", d: Destination) -> Any:
    def sink(items: list, did: str) -> None:
        now = utc_now()
        rows = [(d.name, did, i.audience, i.profile_id, i.action, json.dumps(i.payload, sort_keys=True), now) for i in items]
        lake.append(ACTIVATION_RECORDS.name, spark.createDataFrame(rows, ACTIVATION_RECORDS.schema),
                    txn=Txn(f"activation.{did}", 1))

    return sink


def _state(lake: "Lake", name: str) -> dict[tuple[str, str], StateRow]:
    if not lake.exists(ACTIVATION_STATE.name):
        return {}
    rows = lake.read(ACTIVATION_STATE.name).where(F.col("destination") == name).collect()
    return {(r.audience, r.profile_id): StateRow(r.record_hash, json.loads(r.payload), r.delivery_id) for r in rows}


def _save_state(spark: SparkSession, lake: "Lake", name: str, state: dict[tuple[str, str], StateRow]) -> None:
    now = utc_now()
    rows = [(name, a, p, s.record_hash, json.dumps(s.payload, sort_keys=True), s.delivery_id, now)
            for (a, p), s in sorted(state.items())]
    df = spark.createDataFrame(rows, ACTIVATION_STATE.schema)
    lake.overwrite(ACTIVATION_STATE.name, df, where=f"destination = '{name}'")


def export_root(config: "CdpConfig") -> str:
    """``<lake.root>/exports``: where file destinations drop their deliveries by default."""
    import os

    root = config.lake.root
    return (root if "://" in root else os.path.abspath(root)).rstrip("/") + "/exports"


def activate(spark: SparkSession, config: "CdpConfig", lake: "Lake", d: Destination, as_of: dt.date,
             run_id: str) -> DeliveryReport:
    """Deliver one destination and record the outcome (state, ops.deliveries)."""
    started = utc_now()
    if d.transport.type == "webhook" and config.org.sandbox:
        report = DeliveryReport(d.name, status="skipped", notes=["sandbox org: webhook destinations are not called"])
        _log_delivery(spark, lake, d, report, as_of, run_id, started)
        return report
    members = _members(spark, config, lake, d)
    state = _state(lake, d.name)
    before = dict(state)
    sender = WebhookSender(d.transport, d.name) if d.transport.type == "webhook" else None
    try:
        report = deliver(d, members, state, as_of=as_of, export_root=export_root(config), sender=sender,
                         delta_sink=_delta_sink(spark, lake, d), run_id=run_id,
                         storage_options=config.lake.storage_options)
    finally:
        if sender is not None:
            sender.close()
    if state != before:
        _save_state(spark, lake, d.name, state)
    _log_delivery(spark, lake, d, report, as_of, run_id, started)
    return report


def _log_delivery(spark: SparkSession, lake: "Lake", d: Destination, r: DeliveryReport, as_of: dt.date, run_id: str,
                  started: dt.datetime) -> None:
    ended = utc_now()
    row = (d.name, r.delivery_id, run_id, as_of, d.transport.type, d.format, d.mode, r.status, r.profiles_considered,
           r.skipped_consent, r.skipped_no_identifier, 0, 0, r.adds, r.removes, r.records_sent, r.batches, r.retries,
           r.failures, r.location, r.error, started, ended)
    log_deliveries(spark, lake, [row])


def selected(config: "CdpConfig", only: Optional[str] = None) -> list[Destination]:
    """Enabled destinations (or the one named); raises ValueError for an unknown name or a link to an unknown
    audience."""
    known = {a.name for a in config.audiences}
    dests = [d for d in config.destinations if d.enabled and (only is None or d.name == only)]
    if only is not None and not dests:
        names = ", ".join(d.name for d in config.destinations) or "none"
        raise ValueError(f"unknown or disabled destination {only!r} (configured: {names})")
    for d in dests:
        for link in d.audiences:
            if link.name not in known:
                raise ValueError(f"destination {d.name}: audiences: unknown audience {link.name!r}")
    return dests


def run(spark: SparkSession, config: "CdpConfig", lake: "Lake", as_of: dt.date, *,
        only: Optional[str] = None) -> StageResult:
    """Deliver every enabled destination (or one); failures are recorded and retried by the next run."""
    from cdp_spark.ops.ledger import new_run_id

    dests = selected(config, only)
    if not dests:
        return StageResult(metrics={"skipped": "no destinations configured"})
    run_id = new_run_id("activation")
    out = StageResult(metrics={"run_id": run_id, "destinations": {}})
    if config.org.sandbox:
        out.metrics["sandbox"] = "webhook destinations are not called in a sandbox org (file and Delta only)"
    for d in dests:
        report = activate(spark, config, lake, d, as_of, run_id)
        out.metrics["destinations"][d.name] = {k: v for k, v in report.to_dict().items() if k != "destination"}
        out.rows_in[d.name] = report.profiles_considered
        out.rows_out[d.name] = report.records_sent
    failed = [n for n, m in out.metrics["destinations"].items() if m["status"] == "failed"]
    out.metrics["failed_destinations"] = failed
    return out
