"""The `profiles` stage: gold.id_graph + bronze events and profile records -> gold.profiles and
gold.profile_attributes, as of the run's date.

One pass over the events computes each profile's event facts, consent and every calculated attribute; the profile
records give the merged traits. gold.profiles is merged: only profiles whose content hash changed are rewritten
(and get a new ``updated_at``), and profiles that no longer exist (merged away, see gold.profile_id_history, or
with every identifier expired) are deleted, in the same commit. gold.profile_attributes replaces the as-of
partition under an idempotency token of the inputs' versions and the definitions, so re-running the same as-of
on the same inputs changes nothing.

Example:
    >>> result = run(spark, config, lake, date(2026, 11, 1))      # doctest: +SKIP
    >>> result.rows_out["gold.profiles"]                           # doctest: +SKIP
    1874
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp_spark.identity.components import materialise
from cdp_spark.identity.lookup import profile_events, profile_records
from cdp_spark.identity.tables import ID_GRAPH, PROFILE_ID_HISTORY
from cdp_spark.ingest.tables import EVENTS, PROFILE_RECORDS
from cdp_spark.pipeline import StageResult, stage_token
from cdp_spark.profiles import STAGE
from cdp_spark.profiles import attributes as A
from cdp_spark.profiles import merge as M
from cdp_spark.profiles.config import AttributesConfig, ProfilesConfig
from cdp_spark.profiles.tables import PROFILE_ATTRIBUTES, PROFILES
from cdp_spark.profiles.view import consent_purposes, trait_fields, typed_traits

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake

log = logging.getLogger(__name__)

CONTENT = ["identifiers", "traits", "trait_sources", "consent", "consent_at", "consent_source", "first_seen",
           "last_seen", "sources", "events"]


@dataclass
class Build:
    """The outputs of one build, as DataFrames (no I/O)."""

    profiles: DataFrame      # gold.profiles columns minus updated_at
    attributes: DataFrame    # profile_id + one typed column per attribute


def build(graph: DataFrame, events: DataFrame, records: DataFrame, config: "CdpConfig", as_of: dt.date) -> Build:
    """Everything the stage writes, from the id graph and the profile-attached events and records.

    Example:
        >>> b = build(lake.read("gold.id_graph"), events, records, config, date(2026, 11, 1))   # doctest: +SKIP
    """
    pcfg: ProfilesConfig = config.profiles
    acfg: AttributesConfig = config.attributes
    purposes = consent_purposes(config)
    traits = dict(trait_fields(config))
    limits = {t: r.limit for t, r in config.identity.id_types.items()}

    basis = M.ConsentBasis.of(config.sources, purposes)
    ev = materialise(A.event_pass(events, purposes, acfg, as_of, ignore_unknown_consent=pcfg.ignore_unknown_consent,
                                  consent_basis=basis))
    live = M.live_records(records)
    rec_ts = F.coalesce("record_time", "received_at")
    rec = live.groupBy("profile_id").agg(
        F.min(rec_ts).alias("rec_first_seen"), F.max(rec_ts).alias("rec_last_seen"),
        F.array_sort(F.collect_set("source")).alias("rec_sources"))
    # Consent from every record, also those a snapshot has since deleted: a decision is history, not state.
    history = M.consent_history(records)
    decided = history.groupBy("profile_id").agg(
        *M.consent_aggregates(history, purposes, rec_ts, ignore_unknown=pcfg.ignore_unknown_consent, basis=basis),
    ).withColumnsRenamed({f"_consent_{p}": f"rec_consent_{p}" for p in purposes})
    merged = M.merge_traits(M.trait_rows(live, list(traits)), pcfg, traits)
    ids = M.identifiers_by_type(graph, limits)

    df = (ids.join(ev.select("profile_id", *[c for c in ev.columns if c.startswith("ev_")]), "profile_id", "left")
          .join(rec, "profile_id", "left").join(merged, "profile_id", "left"))
    if purposes:
        df = df.join(decided, "profile_id", "left")
    for p in purposes:  # inputs without a side still need its columns for consent_maps
        for side in ("ev", "rec"):
            if f"{side}_consent_{p}" not in df.columns:
                df = df.withColumn(f"{side}_consent_{p}", F.lit(None))
    consent, consent_at, consent_source = M.consent_maps(purposes, ["ev", "rec"])
    empty = F.create_map().cast("map<string,string>")
    profiles = df.select(
        "profile_id", "identifiers",
        F.coalesce("traits", empty).alias("traits"), F.coalesce("trait_sources", empty).alias("trait_sources"),
        consent.alias("consent"), consent_at.alias("consent_at"), consent_source.alias("consent_source"),
        F.least("ev_first_seen", "rec_first_seen").alias("first_seen"),
        F.greatest("ev_last_seen", "rec_last_seen").alias("last_seen"),
        F.array_sort(F.array_distinct(F.concat(F.coalesce("ev_sources", F.array().cast("array<string>")),
                                               F.coalesce("rec_sources", F.array().cast("array<string>"))))
                     ).alias("sources"),
        F.coalesce("ev_events", F.lit(0)).cast("long").alias("events"),
    )
    profiles = profiles.withColumn("content_hash", F.sha2(F.to_json(F.struct(*CONTENT)), 256))
    profiles = materialise(profiles)
    typed = profiles.select("profile_id", typed_traits("traits", config).alias("_t")).select("profile_id", "_t.*")
    attrs = A.finish_attributes(typed, ev, acfg, as_of)
    return Build(profiles, attrs)


def changes(new: DataFrame, current: DataFrame | None, now: F.Column) -> tuple[DataFrame, list[str]]:
    """Rows to upsert (new or changed content, stamped ``updated_at = now``) and profile ids to delete."""
    if current is None:
        return new.withColumn("updated_at", now), []
    old = current.select("profile_id", F.col("content_hash").alias("_old"))
    upserts = (new.join(old, "profile_id", "left")
               .where(F.col("_old").isNull() | (F.col("_old") != F.col("content_hash"))).drop("_old")
               .withColumn("updated_at", now))
    gone = [r.profile_id for r in current.select("profile_id").join(new.select("profile_id"), "profile_id",
                                                                     "left_anti").collect()]
    return upserts, sorted(gone)


def _in_list(ids: list[str]) -> str:
    return ", ".join("'" + i.replace("'", "''") + "'" for i in ids)


def run(spark: SparkSession, config: "CdpConfig", lake: "Lake", as_of: dt.date) -> StageResult:
    """Rebuild profiles and attributes as of ``as_of``; a no-op when already done on the same inputs and rules."""
    if not lake.exists(ID_GRAPH.name):
        return StageResult(metrics={"skipped": "no identity graph yet"})
    txn = stage_token(STAGE, config, lake, as_of)
    if lake.committed(PROFILE_ATTRIBUTES.name, txn):
        log.info("profiles for %s on these inputs are already built; nothing to do", as_of)
        return StageResult(metrics={"skipped": "already committed"})
    graph = materialise(lake.read(ID_GRAPH.name))
    events = profile_events(spark, config, lake, as_of, stage="profiles") if lake.exists(EVENTS.name) else _no_events(spark)
    records = (profile_records(spark, config, lake, as_of, stage="profiles") if lake.exists(PROFILE_RECORDS.name)
               else _no_records(spark))
    out = build(graph, events, records, config, as_of)

    current = materialise(lake.read(PROFILES.name).select("profile_id", "content_hash")) if lake.exists(PROFILES.name) \
        else None
    upserts, gone = changes(out.profiles, current, F.current_timestamp())
    upserts = upserts.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in PROFILES.schema.fields])
    upserts = materialise(upserts)
    n_up = upserts.count()
    metrics: dict = {"profiles": out.profiles.count(), "profiles_changed": n_up, "profiles_removed": len(gone)}
    if gone and lake.exists(PROFILE_ID_HISTORY.name):
        merged = {r.old_profile_id for r in lake.read(PROFILE_ID_HISTORY.name).where("reason = 'merge'")
                  .select("old_profile_id").distinct().collect()}
        metrics["profiles_merged_away"] = sum(1 for g in gone if g in merged)
    if not lake.create_if_missing(PROFILES.name):
        _add_new_columns(spark, lake)
    if n_up or gone:
        lake.merge(PROFILES.name, upserts, keys=["profile_id"], delete_unmatched=bool(gone),
                   delete_where=f"t.profile_id IN ({_in_list(gone)})" if gone else None)

    names = list(config.attributes.attributes)
    rows = out.attributes.select("profile_id", F.lit(as_of).alias("as_of"),
                                 A.attributes_json(out.attributes, names).alias("attributes"),
                                 F.lit(A.definitions_hash(config.attributes)).alias("definitions_hash"))
    rows = materialise(rows)
    lake.overwrite(PROFILE_ATTRIBUTES.name, rows, where=f"as_of = '{as_of.isoformat()}'", txn=txn)
    n_attr = rows.count()
    metrics["attributes"] = len(names)
    return StageResult(rows_in={}, rows_out={PROFILES.name: n_up, PROFILE_ATTRIBUTES.name: n_attr},
                       metrics=metrics)


def _add_new_columns(spark: SparkSession, lake: "Lake") -> None:
    """Give a gold.profiles written before a column was declared that column (nullable; the content hash covers
    it, so every row is rewritten with its value by this run's merge)."""
    have = set(lake.table_schema(PROFILES.name).fieldNames())
    if any(f.name not in have for f in PROFILES.schema.fields):
        lake.append(PROFILES.name, spark.createDataFrame([], PROFILES.schema), evolve=True)


def _no_events(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame([], EVENTS.schema).withColumn("profile_id", F.lit(None).cast("string"))


def _no_records(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame([], PROFILE_RECORDS.schema).withColumn("profile_id", F.lit(None).cast("string"))
