"""Tables written by the identity stage (silver identifiers and links, gold identity graph and id history)."""
from __future__ import annotations

from pyspark.sql import types as T

from cdp_spark.table_spec import Column, TableSpec

_S, _L, _TS, _D = T.StringType(), T.LongType(), T.TimestampType(), T.DateType()
_SOURCES = T.ArrayType(_S)

IDENTIFIERS = TableSpec(
    name="silver.identifiers",
    description="Every identifier seen, with its evidence and status: the identity graph's state, which incremental "
                "runs add new records to.",
    columns=[
        Column("id_type", _S, "identifier type, e.g. email"),
        Column("value", _S, "normalised value", pii="pii"),
        Column("vertex_id", _L, "xxhash64(id_type, value): the graph vertex"),
        Column("first_seen", _TS, "earliest record time"),
        Column("last_seen", _TS, "latest record time"),
        Column("times_seen", _L, "record rows holding the identifier (a re-delivered record counts again)"),
        Column("sources", _SOURCES, "sources that delivered it"),
        Column("status", _S, "active, expired (TTL), hub (shared, not used for stitching), blocked (blocklist) or "
                             "compacted (linked, but left out of its profile by compaction)"),
        Column("component", _L, "connected component before limit splits: its smallest vertex_id (null when "
                                "expired or blocked)"),
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
        Column("times_seen", _L, "record rows linking the two"),
        Column("first_seen", _TS, "earliest such record"),
        Column("last_seen", _TS, "latest such record"),
        Column("sources", _SOURCES, "sources of those records"),
        Column("status", _S, "active, expired (TTL of an end), hub (an end is a shared identifier) or capped "
                             "(beyond an end's neighbour cap)"),
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
        Column("split_reason", _S, "null, or limit_split / over_limit / unreachable when a limit split its "
                                   "component, or hop_cap when the traversal cap cut it off"),
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

IDENTITY_RUNS = TableSpec(
    name="silver.identity_runs",
    description="One row per identity run: what it read (so the next run can be incremental) and its statistics. "
                "No personal data: profile ids in the statistics are masked.",
    columns=[
        Column("run_id", _S, "identity run id"),
        Column("as_of", _D, "as-of date of the run"),
        Column("mode", _S, "full or incremental"),
        Column("reason", _S, "why this mode: requested, first run, rules changed, bronze rewritten, ..."),
        Column("rules_fingerprint", _S, "hash of the identity rules and org id the run used"),
        Column("ingest_runs", T.ArrayType(_S), "bronze ingest run ids present when the run read bronze"),
        Column("events_version", _L, "bronze.events version read"),
        Column("profile_records_version", _L, "bronze.profile_records version read"),
        Column("identifiers_version", _L, "silver.identifiers version written"),
        Column("links_version", _L, "silver.id_links version written"),
        Column("graph_version", _L, "gold.id_graph version written"),
        Column("records_read", _L, "bronze records the run processed (all of them in full mode, new ones otherwise)"),
        Column("vertices_resolved", _L, "identifiers whose components were recomputed"),
        Column("stats", _S, "statistics as JSON (cdp identity stats)"),
        Column("finished_at", _TS, "UTC"),
    ],
)

EVENT_PROFILES = TableSpec(
    name="gold.event_profiles",
    description="Which profile each bronze event row belongs to, written once by identity for every later stage: "
                "one row per bronze.events row up to the as-of date. Daily runs rewrite only the rows of new events "
                "and of events holding an identifier whose profile changed.",
    columns=[
        Column("event_date", _D, "bronze.events event_date (partition)"),
        Column("event_id", _S, "bronze.events event_id"),
        Column("record_key", _L, "xxhash64(source, event_id, run_id, ingest_file, ingest_line): the bronze row"),
        Column("vertex_ids", T.ArrayType(_L), "vertex ids of the row's identifiers of configured types (resolved "
                                              "or not), so a change of any of them finds the row again"),
        Column("profile_id", _S, "profile of the row's highest-priority identifier that resolves; null when none "
                                 "does"),
        Column("kept", T.BooleanType(), "the row that stands for its event_id (re-delivered rows share one): the "
                                        "best resolved one, ties by record_key"),
    ],
    keys=("event_date", "event_id", "record_key"),
    partition_by=("event_date",),
)

TABLES = [IDENTIFIERS, ID_LINKS, ID_GRAPH, PROFILE_ID_HISTORY, IDENTITY_RUNS, EVENT_PROFILES]
