"""Tables written by the identity stage (silver identifiers and links, gold identity graph and id history)."""
from __future__ import annotations

from pyspark.sql import types as T

from cdp_spark.lake.registry import Column, TableSpec

_S, _L, _TS, _D = T.StringType(), T.LongType(), T.TimestampType(), T.DateType()
_SOURCES = T.ArrayType(_S)

IDENTIFIERS = TableSpec(
    name="silver.identifiers",
    description="Every usable (not blocked) identifier with its evidence; rebuilt by each identity run.",
    columns=[
        Column("id_type", _S, "identifier type, e.g. email"),
        Column("value", _S, "normalised value", pii="pii"),
        Column("vertex_id", _L, "xxhash64(id_type, value): the graph vertex"),
        Column("first_seen", _TS, "earliest record time"),
        Column("last_seen", _TS, "latest record time"),
        Column("times_seen", _L, "records holding the identifier"),
        Column("sources", _SOURCES, "sources that delivered it"),
        Column("status", _S, "active, expired (TTL) or hub (shared, not used for stitching)"),
    ],
    keys=("id_type", "value"),
)

ID_LINKS = TableSpec(
    name="silver.id_links",
    description="Identifier pairs seen in one record (star to the record's highest-priority identifier), with evidence.",
    columns=[
        Column("src_type", _S, "type of the higher-priority end"),
        Column("src_value", _S, "value of the higher-priority end", pii="pii"),
        Column("dst_type", _S, "type of the other end"),
        Column("dst_value", _S, "value of the other end", pii="pii"),
        Column("src_id", _L, "vertex id of src"),
        Column("dst_id", _L, "vertex id of dst"),
        Column("times_seen", _L, "records linking the two"),
        Column("first_seen", _TS, "earliest such record"),
        Column("last_seen", _TS, "latest such record"),
        Column("sources", _SOURCES, "sources of those records"),
        Column("status", _S, "active, expired (TTL of an end) or hub (an end is a shared identifier)"),
    ],
    keys=("src_id", "dst_id"),
)

ID_GRAPH = TableSpec(
    name="gold.id_graph",
    description="One row per resolved identifier: the profile it belongs to. Profile ids are stable across rebuilds.",
    columns=[
        Column("id_type", _S, "identifier type"),
        Column("value", _S, "normalised value", pii="pii"),
        Column("vertex_id", _L, "xxhash64(id_type, value)"),
        Column("profile_id", _S, "stable profile id"),
        Column("profile_created_at", _D, "as-of date of the run that created the profile id"),
        Column("assigned_at", _TS, "start of the as-of date since which the identifier has had this profile id"),
        Column("split_reason", _S, "null, or limit_split / over_limit / unreachable when a limit split its component"),
    ],
    keys=("id_type", "value"),
)

PROFILE_ID_HISTORY = TableSpec(
    name="gold.profile_id_history",
    description="Profile id changes: merges (old id absorbed) and splits (identifiers moved to a new id).",
    columns=[
        Column("old_profile_id", _S, "the previous profile id of the moved identifiers"),
        Column("new_profile_id", _S, "their profile id now"),
        Column("reason", _S, "merge (old id no longer exists) or split (old id lives on elsewhere)"),
        Column("identifiers", _L, "identifiers that moved"),
        Column("as_of", _D, "as-of date of the run"),
        Column("run_id", _S, "identity run id"),
    ],
)

TABLES = [IDENTIFIERS, ID_LINKS, ID_GRAPH, PROFILE_ID_HISTORY]
