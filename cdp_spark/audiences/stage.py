"""The `audiences` stage: evaluate every audience for the as-of date, record members, changes and sizes.

Inputs: the profile view (``cdp_spark.profiles.view.profile_view``), events by profile (one scan for all event
conditions), ``gold.affinities`` and ``gold.topic_affinities`` (dimension ``topic``) when they exist, identity's
``gold.profile_id_history`` for merged-away ids.
Writes use one idempotency token per (definitions + input versions, as-of), in the order changes -> members ->
sizes, so a re-run (also after a crash between writes) adds no duplicate changes.

Conditions on scores or affinities before those tables exist match nobody; the stage reports which audiences are
affected under ``metrics["unavailable"]`` (documented choice: other audiences still run).

Example:
    >>> result = run(spark, config, lake, date(2026, 11, 1))        # doctest: +SKIP
    >>> result.metrics["sizes"]["cart_abandoners"]                   # doctest: +SKIP
    42
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp_spark.audiences import STAGE
from cdp_spark.audiences import compiler as C
from cdp_spark.audiences.config import Audience
from cdp_spark.audiences.membership import diff_members, sizes
from cdp_spark.audiences.tables import AUDIENCE_CHANGES, AUDIENCE_MEMBERS, AUDIENCE_SIZES
from cdp_spark.pipeline import StageResult, stage_token
from cdp_spark.profiles.view import profile_view

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake

log = logging.getLogger(__name__)


def _exists(lake: "Lake", name: str) -> bool:
    try:
        return lake.exists(name)
    except Exception:  # noqa: BLE001 - a table of a stage that has not landed is not registered
        return False


def profiles_frame(spark: SparkSession, config: "CdpConfig", lake: "Lake") -> DataFrame:
    """The profile view the audiences are evaluated on (with ``scores`` once gold.profile_scores exists).

    Example:
        >>> profiles_frame(spark, config, lake).select("profile_id", "scores").show(3)   # doctest: +SKIP
    """
    return profile_view(spark, config, lake)


def raw_property_keys(config: "CdpConfig", lake: "Lake") -> dict[str, str] | None:
    """``properties.<key>`` -> predicted type, from bronze.raw_keys (None when there are no key stats yet)."""
    if not _exists(lake, "bronze.raw_keys"):
        return None
    prefixes = {s.name: s.properties_prefix for s in config.sources if getattr(s, "properties_prefix", None)}
    out: dict[str, str] = {}
    for r in lake.read("bronze.raw_keys").select("source", "key", "predicted_type").collect():
        p = prefixes.get(r.source)
        if p and r.key.startswith(p):
            out["properties." + r.key[len(p):]] = r.predicted_type
    return out


def merged_away(lake: "Lake") -> DataFrame | None:
    """Profile ids that identity merged into another and that no longer exist in the graph."""
    if not _exists(lake, "gold.profile_id_history"):
        return None
    old = lake.read("gold.profile_id_history").where(F.col("reason") == "merge").select(
        F.col("old_profile_id").alias("profile_id")).distinct()
    if _exists(lake, "gold.id_graph"):
        old = old.join(lake.read("gold.id_graph").select("profile_id").distinct(), "profile_id", "left_anti")
    return old


def affinities_frame(lake: "Lake") -> DataFrame | None:
    """``gold.affinities`` and the content stage's topic affinities (dimension ``topic``), None when neither exists."""
    from cdp_spark.content.affinity import as_affinities

    parts = [lake.read("gold.affinities")] if _exists(lake, "gold.affinities") else []
    if _exists(lake, "gold.topic_affinities"):
        parts.append(as_affinities(lake.read("gold.topic_affinities")))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])


def events_frame(spark: SparkSession, config: "CdpConfig", lake: "Lake", as_of: dt.date,
                 since: dt.date | None) -> DataFrame | None:
    """Events by profile up to the end of ``as_of`` from ``since`` (None before any events were ingested)."""
    from cdp_spark.identity.lookup import profile_events

    if not _exists(lake, "bronze.events"):
        return None
    return profile_events(spark, config, lake, as_of, since=since, stage="audiences")


def current_members(spark: SparkSession, config: "CdpConfig", lake: "Lake", as_of: dt.date,
                    audiences: list[Audience] | None = None) -> tuple[DataFrame, C.Plan, dict[str, Any]]:
    """(members, plan, info): every enabled audience evaluated for ``as_of``; nothing is written."""
    plan = C.compile_audiences(audiences if audiences is not None else config.audiences, as_of)
    profiles = profiles_frame(spark, config, lake)
    C.check_against(plan, profiles.schema, raw_property_keys(config, lake))
    events = events_frame(spark, config, lake, as_of, plan.since) if plan.event_conditions else None
    affinities = affinities_frame(lake) if plan.affinity_keys else None
    available = {"scores"} if "scores" in profiles.columns else set()
    if affinities is not None:
        available.add("affinities")
    members = C.evaluate(plan, profiles, events, affinities, excluded_ids=merged_away(lake))
    info = {"event_conditions": len(plan.event_conditions), "event_scans": 1 if plan.event_conditions else 0,
            "unavailable": C.unavailable(plan, available)}
    return members, plan, info


def run(spark: SparkSession, config: "CdpConfig", lake: "Lake", as_of: dt.date) -> StageResult:
    """Evaluate all audiences for ``as_of`` and record members, changes and sizes (idempotent per inputs)."""
    if not config.audiences:
        return StageResult(metrics={"skipped": "no audiences defined"})
    txn = stage_token(STAGE, config, lake, as_of)
    run_id = f"audiences-{as_of:%Y%m%d}-{txn.app_id.partition('.')[2][:8]}"
    if lake.committed(AUDIENCE_SIZES.name, txn):
        return StageResult(metrics={"skipped": "already committed", "run_id": run_id})
    current, plan, info = current_members(spark, config, lake, as_of)
    current = current.localCheckpoint(eager=True)  # used three times below
    if lake.exists(AUDIENCE_MEMBERS.name):
        previous = lake.read(AUDIENCE_MEMBERS.name).localCheckpoint(eager=True)  # its files are replaced below
    else:
        previous = spark.createDataFrame([], AUDIENCE_MEMBERS.schema)
    at = C.day_end(as_of)
    members, changes = diff_members(previous, current, run_id=run_id, at=at)
    members, changes = members.localCheckpoint(eager=True), changes.localCheckpoint(eager=True)
    names = [a.name for a in plan.audiences]
    size_rows = sizes(names, previous, members, changes, as_of).localCheckpoint(eager=True)
    out = StageResult(metrics={"run_id": run_id, "audiences": len(names), **info})
    out.rows_in = {"profiles": 0}
    lake.append(AUDIENCE_CHANGES.name, changes, txn=txn)
    lake.overwrite(AUDIENCE_MEMBERS.name, members, txn=txn)
    lake.merge(AUDIENCE_SIZES.name, size_rows, txn=txn)
    rows = size_rows.collect()
    out.metrics["sizes"] = {r.audience: r.size for r in rows}
    out.metrics["entered"] = {r.audience: r.entered for r in rows}
    out.metrics["exited"] = {r.audience: r.exited for r in rows}
    out.rows_in = {"gold.audience_members": previous.count()}
    out.rows_out = {AUDIENCE_CHANGES.name: sum(r.entered + r.exited for r in rows),
                    AUDIENCE_MEMBERS.name: sum(r.size for r in rows), AUDIENCE_SIZES.name: len(rows)}
    return out
