"""Tables written by the profiles stage: the unified profile and the calculated attributes per as-of date.

Both are storage; the typed read API is `cdp_spark.profiles.view.profile_view`.
"""
from __future__ import annotations

from pyspark.sql import types as T

from cdp_spark.table_spec import Column, TableSpec

_S, _TS, _D, _L = T.StringType(), T.TimestampType(), T.DateType(), T.LongType()
_MAP = T.MapType(_S, _S)

PROFILES = TableSpec(
    name="gold.profiles",
    description="One row per profile: identifiers, merged traits, consent, first/last seen and sources. "
                "Merged daily: only changed profiles are rewritten, merged-away profiles are removed.",
    columns=[
        Column("profile_id", _S, "stable profile id (gold.id_graph)"),
        Column("identifiers", T.MapType(_S, T.ArrayType(_S)), "id type -> values (sorted, within the type's limit)",
               pii="pii"),
        Column("traits", _MAP, "catalogue trait -> merged value as text (rules in conf/profiles.yaml)", pii="pii"),
        Column("trait_sources", _MAP, "catalogue trait -> source the merged value came from"),
        Column("consent", _MAP, "consent purpose -> granted/denied: the latest explicit decision of any source, "
                                "else the latest source default (absent: unknown)"),
        Column("consent_at", T.MapType(_S, _TS), "consent purpose -> time of the deciding explicit decision (absent "
                                                 "when the status is a source's default)"),
        Column("consent_source", _MAP, "consent purpose -> source whose entry decided it"),
        Column("first_seen", _TS, "earliest event or record time"),
        Column("last_seen", _TS, "latest event or record time"),
        Column("sources", T.ArrayType(_S), "sources that delivered events or records (sorted)"),
        Column("events", T.LongType(), "events attributed to the profile"),
        Column("content_hash", _S, "hash of every column above: a rebuild rewrites the row only when it changes"),
        Column("updated_at", _TS, "when the profile's content last changed (UTC)"),
    ],
    keys=("profile_id",),
    change_data_feed=True,
)

PROFILE_ATTRIBUTES = TableSpec(
    name="gold.profile_attributes",
    description="Calculated attributes (conf/attributes.yaml) per profile, one partition per as-of date.",
    columns=[
        Column("profile_id", _S, "profile id"),
        Column("as_of", _D, "the as-of date the attributes were evaluated at (partition)"),
        Column("attributes", _S, "JSON object: attribute -> typed value (the view parses it into a struct)",
               pii="pii"),
        Column("definitions_hash", _S, "hash of the attribute definitions used"),
    ],
    keys=("profile_id", "as_of"),
    partition_by=("as_of",),
)

PROFILE_RUNS = TableSpec(
    name="silver.profile_runs",
    description="One row per profiles run: what it read, so that the next run rebuilds only the touched profiles.",
    columns=[
        Column("as_of", _D, "as-of date of the run"),
        Column("mode", _S, "full or incremental"),
        Column("reason", _S, "why this mode: requested, first run, rules changed, bronze rewritten, ..."),
        Column("rules_fingerprint", _S, "hash of the config sections the profiles depend on"),
        Column("event_runs", T.ArrayType(_S), "bronze.events ingest run ids present when the run read bronze"),
        Column("record_runs", T.ArrayType(_S), "bronze.profile_records ingest run ids present then"),
        Column("events_version", _L, "bronze.events version read"),
        Column("profile_records_version", _L, "bronze.profile_records version read"),
        Column("graph_version", _L, "gold.id_graph version read"),
        Column("profiles_rebuilt", _L, "profiles whose content and attributes were computed from their events"),
        Column("finished_at", _TS, "UTC"),
    ],
)

TABLES = [PROFILES, PROFILE_ATTRIBUTES, PROFILE_RUNS]
