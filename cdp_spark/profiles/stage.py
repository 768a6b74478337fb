"""The `profiles` stage: gold.id_graph + bronze events and profile records -> gold.profiles and
gold.profile_attributes, as of the run's date.

One pass over the events computes each profile's event facts, consent and every calculated attribute; the profile
records give the merged traits. gold.profiles is merged: only profiles whose content hash changed are rewritten
(and get a new ``updated_at``), and profiles that no longer exist (merged away, see gold.profile_id_history, or
with every identifier expired) are deleted, in the same commit. gold.profile_attributes replaces the as-of
partition under an idempotency token of the inputs' versions and the definitions, so re-running the same as-of
on the same inputs changes nothing.

Two modes give the same tables (`tests/test_daily_exactness.py`):

- **full**: every profile from all its events and records;
- **incremental** (the default once a previous run exists): only the profiles the day touched
  (`cdp_spark.profiles.incremental`) are computed from their events and records, reading only the days those
  profiles have events on; every other profile keeps its row, and its attributes are carried from the previous
  as-of (day counts moved on, formulas evaluated again). A rules change, an as-of before the previous run's, or
  bronze rewritten (erasure) rebuilds in full; ``full=True`` (`cdp run daily --full`) forces it.

Example:
    >>> result = run(spark, config, lake, date(2026, 11, 1))      # doctest: +SKIP
    >>> result.rows_out["gold.profiles"]                           # doctest: +SKIP
    1874
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdp_spark.identity.assign import in_as_of
from cdp_spark.identity.components import materialise
from cdp_spark.identity.graph import end_of_day
from cdp_spark.identity.lookup import attach_profile_ids, profile_events, profile_records
from cdp_spark.incremental import BRONZE_VERSIONS, latest_run, run_mode
from cdp_spark.identity.tables import EVENT_PROFILES, ID_GRAPH, IDENTITY_RUNS, PROFILE_ID_HISTORY
from cdp_spark.ingest.tables import EVENTS, PROFILE_RECORDS
from cdp_spark.lake import utc_now
from cdp_spark.pipeline import StageResult, stage_token
from cdp_spark.profiles import STAGE
from cdp_spark.profiles import attributes as A
from cdp_spark.profiles import incremental as I
from cdp_spark.profiles import merge as M
from cdp_spark.profiles.config import AttributesConfig, ProfilesConfig
from cdp_spark.profiles.tables import PROFILE_ATTRIBUTES, PROFILE_RUNS, PROFILES
from cdp_spark.profiles.view import attributes_type, consent_purposes, trait_fields, typed_traits

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


def _as_json(value: object) -> object:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")  # type: ignore[attr-defined]
    return [_as_json(v) for v in value] if isinstance(value, (list, tuple)) else value


def rules_fingerprint(config: "CdpConfig") -> str:
    """Hash of the config sections the profiles depend on: a change rebuilds every profile."""
    rules = {name: _as_json(getattr(config, name, None)) for name in STAGE.rules}
    return hashlib.sha256(json.dumps(rules, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _run_ids(df: DataFrame) -> list[str]:
    return sorted(r[0] for r in df.select(F.coalesce("run_id", F.lit(""))).distinct().collect())


def _new_rows(df: DataFrame, runs: list[str], day: F.Column, previous: dt.date) -> DataFrame:
    """Rows not read by the run as of ``previous``: of another ingest run, or dated after ``previous``."""
    done = F.coalesce(F.col("run_id"), F.lit("")).isin(runs)
    return df.where(~(done & (day <= F.lit(previous))))


def run(spark: SparkSession, config: "CdpConfig", lake: "Lake", as_of: dt.date, *, full: bool = False) -> StageResult:
    """Build profiles and attributes as of ``as_of``: incremental when possible, ``full=True`` to rebuild every
    profile; a no-op when already done on the same inputs and rules."""
    if not lake.exists(ID_GRAPH.name):
        return StageResult(metrics={"skipped": "no identity graph yet"})
    versions = {t: lake.version(t) for t in (EVENTS.name, PROFILE_RECORDS.name, ID_GRAPH.name)}
    identity = latest_run(lake, IDENTITY_RUNS.name)
    if identity is not None:  # the events identity assigned: later ones wait for its next run
        versions[EVENTS.name] = identity["events_version"]
    txn = stage_token(STAGE, config, lake, as_of)
    if full:  # a requested rebuild is its own write, not a re-run of the day's incremental one
        txn = txn._replace(app_id=f"{txn.app_id}.full")
    if lake.committed(PROFILE_ATTRIBUTES.name, txn):
        log.info("profiles for %s on these inputs are already built; nothing to do", as_of)
        return StageResult(metrics={"skipped": "already committed"})
    fingerprint = rules_fingerprint(config)
    state = latest_run(lake, PROFILE_RUNS.name)
    mode, reason = run_mode(lake, state, fingerprint, as_of, full,
                            needed=(PROFILES.name, PROFILE_ATTRIBUTES.name, EVENT_PROFILES.name),
                            appended_only=BRONZE_VERSIONS)
    if mode == "incremental" and (identity is None or identity["as_of"] < as_of):
        mode, reason = "full", "identity has not run for this as-of"
    graph = materialise(lake.read(ID_GRAPH.name, version=versions[ID_GRAPH.name]))
    have_events, have_records = lake.exists(EVENTS.name), lake.exists(PROFILE_RECORDS.name)
    touched = None
    if mode == "incremental":
        assert state is not None
        touched = _touched(spark, config, lake, as_of, state, graph, versions)
        if touched is None:
            mode, reason = "full", "previous graph version no longer readable"
    events = (profile_events(spark, config, lake, as_of, stage="profiles", profiles=touched) if have_events
              else _no_events(spark))
    records = profile_records(spark, config, lake, as_of, stage="profiles") if have_records else _no_records(spark)
    current = materialise(lake.read(PROFILES.name).select("profile_id", "content_hash")) if lake.exists(PROFILES.name) \
        else None
    if touched is not None:
        graph_in, records = (df.join(touched, "profile_id", "left_semi") for df in (graph, records))
        current = current.join(touched, "profile_id", "left_semi") if current is not None else None
    else:
        graph_in = graph
    out = build(graph_in, events, records, config, as_of)

    upserts, gone = changes(out.profiles, current, F.current_timestamp())
    upserts = upserts.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in PROFILES.schema.fields])
    upserts = materialise(upserts)
    n_up = upserts.count()
    n_built = out.profiles.count()
    metrics: dict = {"mode": mode, "mode_reason": reason, "profiles_rebuilt": n_built, "profiles_changed": n_up,
                     "profiles_removed": len(gone)}
    if gone and lake.exists(PROFILE_ID_HISTORY.name):
        merged = {r.old_profile_id for r in lake.read(PROFILE_ID_HISTORY.name).where("reason = 'merge'")
                  .select("old_profile_id").distinct().collect()}
        metrics["profiles_merged_away"] = sum(1 for g in gone if g in merged)

    names = list(config.attributes.attributes)
    attrs = out.attributes
    if touched is not None:
        assert state is not None
        attrs = attrs.unionByName(_carried(config, lake, state["as_of"], as_of, touched, gone))
    rows = attrs.select("profile_id", F.lit(as_of).alias("as_of"), A.attributes_json(attrs, names).alias("attributes"),
                        F.lit(A.definitions_hash(config.attributes)).alias("definitions_hash"))
    rows = materialise(rows)  # before the writes: the carried rows are read from the table they replace
    n_attr = rows.count()

    if not lake.create_if_missing(PROFILES.name):
        _add_new_columns(spark, lake)
    if n_up or gone:
        lake.merge(PROFILES.name, upserts, keys=["profile_id"], delete_unmatched=bool(gone),
                   delete_where=f"t.profile_id IN ({_in_list(gone)})" if gone else None)
    lake.overwrite(PROFILE_ATTRIBUTES.name, rows, where=f"as_of = '{as_of.isoformat()}'", txn=txn)
    metrics["profiles"] = lake.info(PROFILES.name).rows
    metrics["attributes"] = len(names)
    state_row = {
        "as_of": as_of, "mode": mode, "reason": reason, "rules_fingerprint": fingerprint,
        "event_runs": _run_ids(lake.read(EVENTS.name, version=versions[EVENTS.name])) if have_events else [],
        "record_runs": (_run_ids(lake.read(PROFILE_RECORDS.name, version=versions[PROFILE_RECORDS.name]))
                        if have_records else []),
        "events_version": versions[EVENTS.name], "profile_records_version": versions[PROFILE_RECORDS.name],
        "graph_version": versions[ID_GRAPH.name], "profiles_rebuilt": n_built, "finished_at": utc_now()}
    lake.append(PROFILE_RUNS.name, spark.createDataFrame(
        [tuple(state_row[f] for f in PROFILE_RUNS.schema.fieldNames())], PROFILE_RUNS.schema), txn=txn)
    return StageResult(rows_in={}, rows_out={PROFILES.name: n_up, PROFILE_ATTRIBUTES.name: n_attr},
                       metrics=metrics)


def run_full(spark: SparkSession, config: "CdpConfig", lake: "Lake", as_of: dt.date) -> StageResult:
    """The stage function of `cdp run daily --full`: every profile rebuilt from all its events and records."""
    return run(spark, config, lake, as_of, full=True)


def _touched(spark: SparkSession, config: "CdpConfig", lake: "Lake", as_of: dt.date, state: dict,
             graph: DataFrame, versions: dict) -> DataFrame | None:
    """The profiles this run rebuilds (materialised), or None when the previous graph cannot be read."""
    previous: dt.date = state["as_of"]
    try:
        graph_before = lake.read(ID_GRAPH.name, version=state["graph_version"])
    except Exception:  # vacuumed away: rebuild in full
        return None
    empty = spark.createDataFrame([], "profile_id string")
    new_events = empty.select(F.lit(None).cast("string").alias("event_id")).limit(0)
    if lake.exists(EVENTS.name):
        bronze = in_as_of(lake.read(EVENTS.name, version=versions[EVENTS.name]), as_of)
        new_events = _new_rows(bronze, list(state["event_runs"]), F.col("event_date"), previous).select("event_id")
    new_records = empty
    if lake.exists(PROFILE_RECORDS.name):
        seen = F.coalesce("record_time", "received_at")
        recs = lake.read(PROFILE_RECORDS.name, version=versions[PROFILE_RECORDS.name]).where(seen < end_of_day(as_of))
        recs = _new_rows(recs, list(state["record_runs"]), F.to_date(seen), previous).withColumn(
            "_record", F.xxhash64("source", "record_key", "run_id", "ingest_file", "ingest_line", "change_type"))
        new_records = attach_profile_ids(recs, graph, config.identity, ["_record"]).select("profile_id")
    windows = [a.window_days for a in config.attributes.attributes.values() if a.window_days]
    touched = I.touched_profiles(graph_before, graph, new_events, lake.read(EVENT_PROFILES.name), new_records,
                                 windows, previous, as_of)
    return materialise(touched)


def _carried(config: "CdpConfig", lake: "Lake", previous: dt.date, as_of: dt.date, touched: DataFrame,
             gone: list[str]) -> DataFrame:
    """Attributes of the profiles the run did not touch, carried from the previous as-of."""
    prev = (lake.read(PROFILE_ATTRIBUTES.name).where(F.col("as_of") == F.lit(previous))
            .join(touched, "profile_id", "left_anti"))
    if gone:
        prev = prev.where(~F.col("profile_id").isin(gone))
    typed = (lake.read(PROFILES.name).join(prev.select("profile_id"), "profile_id", "left_semi")
             .select("profile_id", typed_traits("traits", config).alias("_t")).select("profile_id", "_t.*"))
    return I.carried_attributes(prev, typed, config.attributes, attributes_type(config), (as_of - previous).days)


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
