"""Tables written by the profiles stage: the unified profile and the calculated attributes per as-of date.

Both are storage; the typed read API is `cdp_spark.profiles.view.profile_view`.
"""
from __future__ import annotations

from pyspark.sql import types as T

from cdp_spark.table_spec import Column, TableSpec

_S, _TS, _D = T.StringType(), T.TimestampType(), T.DateType()
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

TABLES = [PROFILES, PROFILE_ATTRIBUTES]
