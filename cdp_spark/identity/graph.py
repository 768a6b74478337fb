"""Identity graph transforms: records -> identifier occurrences -> nodes and star edges, with the rule filters.

Every function is a pure ``DataFrame -> DataFrame`` builder. Vertex ids are ``xxhash64(id_type, value)``, derived
deterministically (never ``monotonically_increasing_id``); :func:`check_vertex_ids` refuses a hash collision.

Example:
    >>> occ = occurrences(events, profile_records, cfg, as_of)          # doctest: +SKIP
    >>> links = star_edges(occ)                                          # doctest: +SKIP
"""
from __future__ import annotations

import datetime as dt
from functools import reduce
from typing import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from cdp_spark.identity.config import IdentityConfig

OCCURRENCE_COLUMNS = ["record_id", "source", "seen_at", "id_type", "value"]


class VertexIdCollision(RuntimeError):
    """Two different identifiers hashed to the same 64-bit vertex id."""


def vertex_id(id_type: Column | str, value: Column | str) -> Column:
    """The deterministic 64-bit vertex id of an identifier."""
    return F.xxhash64(F.col(id_type) if isinstance(id_type, str) else id_type, F.col(value) if isinstance(value, str) else value)


def end_of_day(as_of: dt.date) -> Column:
    return F.lit(dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time())).cast("timestamp")


def _type_map(cfg: IdentityConfig, attr: str) -> Column:
    pairs = []
    for t, rule in cfg.id_types.items():
        pairs += [F.lit(t), F.lit(getattr(rule, attr))]
    return F.create_map(*pairs)


def records_from_bronze(events: DataFrame | None, profile_records: DataFrame | None, as_of: dt.date,
                        sources: list[str] | None = None, exclude_streams: Sequence[str] = ()) -> DataFrame:
    """One row per bronze record up to the end of ``as_of``: record_id, source, seen_at, identifiers (map), run_id,
    record_date (the day the record counts from).

    A record id names one bronze row (its ingest run is part of it), so a record never spans two ingest runs: the
    incremental mode can take whole runs as batches and still build the same stars as a full run. Rows routed to
    ``exclude_streams`` (diverted QA or test traffic) are left out.
    """
    from cdp_spark.ingest.routes import without_diverted

    events = without_diverted(events, exclude_streams) if events is not None else None
    profile_records = without_diverted(profile_records, exclude_streams) if profile_records is not None else None
    parts = []
    if events is not None:
        parts.append(events.where(F.col("event_date") <= F.lit(as_of)).select(
            F.concat_ws("|", F.lit("e"), "source", "event_id", "run_id", "ingest_file",
                        F.col("ingest_line").cast("string")).alias("record_id"), "source",
            F.col("event_time").alias("seen_at"), "identifiers", "run_id", F.col("event_date").alias("record_date")))
    if profile_records is not None:
        seen = F.coalesce("record_time", "received_at")
        parts.append(profile_records.where((F.col("change_type") != "delete") & (seen < end_of_day(as_of))).select(
            F.concat_ws("|", F.lit("p"), "source", "record_key", "run_id", "ingest_file",
                        F.col("ingest_line").cast("string")).alias("record_id"),
            "source", seen.alias("seen_at"), "identifiers", "run_id", F.to_date(seen).alias("record_date")))
    if not parts:
        raise ValueError("no bronze input")
    records = reduce(DataFrame.unionByName, parts)
    if sources:
        records = records.where(F.col("source").isin(sources))
    return records


def explode_identifiers(records: DataFrame, cfg: IdentityConfig) -> DataFrame:
    """(record_id, source, seen_at, id_type, value) for each configured identifier type with a value."""
    return (records.select("record_id", "source", "seen_at", F.explode("identifiers").alias("id_type", "value"))
            .where(F.col("id_type").isin(list(cfg.id_types)) & F.col("value").isNotNull())
            .select(*OCCURRENCE_COLUMNS))


def blocked(cfg: IdentityConfig) -> Column:
    """True for a blocked (id_type, value): built-in and configured values and regexes, per type."""
    cases = None
    for t in cfg.id_types:
        values = [v.lower() for v in cfg.blocked_values_for(t)]
        cond = F.lower(F.trim(F.col("value"))).isin(values)
        for p in cfg.blocked_patterns_for(t):
            cond = cond | F.col("value").rlike(p)
        cases = (F.when(F.col("id_type") == t, cond) if cases is None else cases.when(F.col("id_type") == t, cond))
    return cases.otherwise(F.lit(False)) if cases is not None else F.lit(False)


def with_rules(occ: DataFrame, cfg: IdentityConfig) -> DataFrame:
    """Add priority, ttl_days and vertex id columns."""
    return occ.select(*occ.columns, _type_map(cfg, "priority")[F.col("id_type")].alias("priority"),
                      _type_map(cfg, "ttl_days")[F.col("id_type")].alias("ttl_days"),
                      vertex_id("id_type", "value").alias("vid"))


def source_names(occ: DataFrame) -> list[str]:
    """The distinct sources of (materialised) occurrences, for :func:`identifiers` and :func:`star_edges`."""
    return sorted(r[0] for r in occ.select("source").distinct().collect())


def _group_with_sources(df: DataFrame, keys: list[Column | str], aggs: list[Column],
                        sources: list[str] | None) -> DataFrame:
    """``df.groupBy(keys).agg(*aggs)`` plus ``sources``: the sorted distinct source names of each group.

    With the source names known (at most 62), each group ORs one bit per source: a plain hash aggregate, two to
    three times cheaper than collect_set, whose object aggregate falls back to sorting beyond 128 groups.
    """
    if not sources or len(sources) > 62:
        return df.groupBy(*keys).agg(*aggs, F.array_sort(F.collect_set("source")).alias("sources"))
    names = F.array(*[F.lit(s) for s in sorted(sources)])
    bit = F.pow(F.lit(2), F.array_position(names, F.col("source")) - 1).cast("long")  # powers of 2 are exact
    grouped = df.groupBy(*keys).agg(*aggs, F.bit_or(bit).alias("_mask"))
    return grouped.withColumn("sources", F.filter(
        names, lambda _, i: F.col("_mask").bitwiseAND(F.pow(F.lit(2), i).cast("long")) != 0)).drop("_mask")


def identifiers(occ: DataFrame, sources: list[str] | None = None) -> DataFrame:
    """Nodes with evidence: vid, id_type, value, first_seen, last_seen, times_seen, sources (+ ``blocked`` when the
    occurrences carry it). ``sources``: the occurrences' source names when known (faster; see source_names).

    ``times_seen`` counts record rows (a re-delivered record counts again), so evidence from two batches adds up
    exactly: incremental runs sum it, full runs count it, and both agree.
    """
    keys: list[Column | str] = ["vid", "id_type", "value"] + (["blocked"] if "blocked" in occ.columns else [])
    return _group_with_sources(occ, keys, [F.min("seen_at").alias("first_seen"), F.max("seen_at").alias("last_seen"),
                                           F.count("*").alias("times_seen")], sources)


def _merged(df: DataFrame, keys: list[str]) -> DataFrame:
    return df.groupBy(*keys).agg(
        F.min("first_seen").alias("first_seen"), F.max("last_seen").alias("last_seen"),
        F.sum("times_seen").alias("times_seen"),
        F.array_sort(F.array_distinct(F.flatten(F.collect_list("sources")))).alias("sources"))


NODE_KEYS = ["vid", "id_type", "value", "blocked"]
EDGE_KEYS = ["src", "dst", "src_type", "src_value", "dst_type", "dst_value"]


def merge_identifiers(old: DataFrame, new: DataFrame) -> DataFrame:
    """Node evidence of two batches (NODE_KEYS + first_seen, last_seen, times_seen, sources) added up."""
    cols = NODE_KEYS + ["first_seen", "last_seen", "times_seen", "sources"]
    return _merged(old.select(*cols).unionByName(new.select(*cols)), NODE_KEYS)


def merge_links(old: DataFrame, new: DataFrame) -> DataFrame:
    """Edge evidence of two batches (EDGE_KEYS + first_seen, last_seen, times_seen, sources) added up."""
    cols = EDGE_KEYS + ["first_seen", "last_seen", "times_seen", "sources"]
    return _merged(old.select(*cols).unionByName(new.select(*cols)), EDGE_KEYS)


def with_priorities(edges: DataFrame, cfg: IdentityConfig) -> DataFrame:
    """Add src_priority and dst_priority from the rules (stored links keep only the types)."""
    prio = _type_map(cfg, "priority")
    return edges.withColumn("src_priority", prio[F.col("src_type")]).withColumn("dst_priority", prio[F.col("dst_type")])


def with_ttl(nodes: DataFrame, cfg: IdentityConfig) -> DataFrame:
    """Add priority and ttl_days from the rules."""
    return (nodes.withColumn("priority", _type_map(cfg, "priority")[F.col("id_type")])
            .withColumn("ttl_days", _type_map(cfg, "ttl_days")[F.col("id_type")]))


def check_vertex_ids(nodes: DataFrame) -> None:
    """Raise VertexIdCollision when two identifiers share a vertex id (astronomically rare, but never silent)."""
    if nodes.groupBy("vid").count().where(F.col("count") > 1).limit(1).count():
        raise VertexIdCollision("two identifiers hash to the same xxhash64 vertex id; rename a value or report it")


def star_edges(occ: DataFrame, sources: list[str] | None = None) -> DataFrame:
    """Each record's identifiers linked in a star to its highest-priority identifier, with evidence.

    The hub of a record is its smallest (priority, id_type, value); an edge is (src = hub side, dst = other side),
    so the same pair always has the same orientation. Columns: src, dst, src/dst type/value/priority, times_seen,
    first_seen, last_seen, sources. ``sources`` as in :func:`identifiers`.
    """
    key = F.struct("priority", "id_type", "value", "vid")
    w = Window.partitionBy("record_id")
    o = occ.select("*", F.min(key).over(w).alias("hub")).where(F.col("vid") != F.col("hub.vid"))
    keys = [F.col("hub.vid").alias("src"), F.col("vid").alias("dst"),
            F.col("hub.id_type").alias("src_type"), F.col("hub.value").alias("src_value"),
            F.col("hub.priority").alias("src_priority"),
            F.col("id_type").alias("dst_type"), F.col("value").alias("dst_value"), F.col("priority").alias("dst_priority")]
    return _group_with_sources(o, keys, [F.count("*").alias("times_seen"), F.min("seen_at").alias("first_seen"),
                                         F.max("seen_at").alias("last_seen")], sources)


def expired_edges(edges: DataFrame, cfg: IdentityConfig, as_of: dt.date) -> Column:
    """True for links last seen longer ago than the shorter TTL of their two ends."""
    ttl = _type_map(cfg, "ttl_days")
    days = F.least(ttl[F.col("src_type")], ttl[F.col("dst_type")])  # least ignores nulls (no TTL)
    return days.isNotNull() & (F.col("last_seen") < F.date_sub(end_of_day(as_of), days.cast("int")).cast("timestamp"))


def expired_nodes(nodes: DataFrame, as_of: dt.date) -> Column:
    return F.col("ttl_days").isNotNull() & (
        F.col("last_seen") < F.date_sub(end_of_day(as_of), F.col("ttl_days").cast("int")).cast("timestamp"))


def hubs(edges: DataFrame, max_links: int) -> DataFrame:
    """Identifiers (vid) linked to more than ``max_links`` distinct higher-priority identifiers: shared, unused."""
    higher = edges.where(F.col("src_priority") < F.col("dst_priority"))
    # (src, dst) pairs are unique in the edge evidence, so a count is a count of distinct srcs.
    return (higher.groupBy(F.col("dst").alias("vid")).agg(F.count("*").alias("higher_links"))
            .where(F.col("higher_links") > max_links))


def with_edge_status(edges: DataFrame, hub: DataFrame, cfg: IdentityConfig, as_of: dt.date) -> DataFrame:
    """Edges with a ``status``: active, expired (TTL) or hub (an end is one of the ``hub`` vids, see :func:`hubs`).

    Example:
        >>> hub = hubs(edges.where(~expired_edges(edges, cfg, as_of)), cfg.max_links)   # doctest: +SKIP
        >>> with_edge_status(edges, hub, cfg, as_of).groupBy("status").count()          # doctest: +SKIP
    """
    # Broadcast: a hub has more than max_links links, so there are fewer hubs than edges / max_links.
    hub_ids = F.broadcast(hub.select(F.col("vid").alias("_hub")))
    e = edges.join(hub_ids.withColumnRenamed("_hub", "_hs"), edges.src == F.col("_hs"), "left") \
             .join(hub_ids.withColumnRenamed("_hub", "_hd"), edges.dst == F.col("_hd"), "left")
    status = (F.when(expired_edges(edges, cfg, as_of), "expired")
              .when(F.col("_hs").isNotNull() | F.col("_hd").isNotNull(), "hub").otherwise("active"))
    return e.withColumn("status", status).drop("_hs", "_hd")
