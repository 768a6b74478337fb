"""Event -> profile assignment, computed once by identity and written as ``gold.event_profiles``.

The rule is the one of `cdp_spark.identity.lookup`: a bronze event row belongs to the profile of its
**highest-priority identifier that resolves** in ``gold.id_graph`` (ties between types of equal priority: by type
name). Each row keeps the vertex ids of its identifiers, so that when identities change, the rows to reassign are
found in this narrow table alone, without reading bronze again:

- a **full** assignment (:func:`assign`) reads every bronze event row up to the as-of date;
- an **incremental** one (:func:`reassign`) takes the new rows, plus the stored rows that hold an identifier whose
  ``gold.id_graph`` row changed (profile id changed, appeared or went away), plus the other rows of the same
  event ids; every other stored row is kept.

Why that equals a full assignment: a row's profile depends only on the graph rows of its own vertex ids, and which
row of an event id is ``kept`` depends only on the rows of that event id; a row none of whose vertex ids changed,
in an event id with no new or changed row, has the same inputs as before.

Example:
    >>> rows = assign(event_rows(lake.read("bronze.events"), cfg, as_of), lake.read("gold.id_graph"), cfg)  # doctest: +SKIP
    >>> rows.where("kept AND profile_id IS NOT NULL").count()                                              # doctest: +SKIP
"""
from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from cdp_spark.identity.config import IdentityConfig
from cdp_spark.identity.graph import end_of_day, vertex_id

COLUMNS = ["event_date", "event_id", "record_key", "vertex_ids", "profile_id", "kept"]


def record_key() -> Column:
    """The key of one bronze.events row (a re-delivered event has the same event_id in another row).

    Example:
        >>> lake.read("bronze.events").select(record_key().alias("record_key"))   # doctest: +SKIP
    """
    return F.xxhash64("source", "event_id", "run_id", "ingest_file", F.col("ingest_line").cast("string"))


def priority_rank(cfg: IdentityConfig) -> Column:
    """id_type -> position in priority order (0 is the highest); unknown types get null and never resolve."""
    pairs = []
    for i, t in enumerate(cfg.by_priority()):
        pairs += [F.lit(t), F.lit(i)]
    return F.create_map(*pairs)


def in_as_of(events: DataFrame, as_of: dt.date) -> DataFrame:
    """Event rows that happened up to the end of ``as_of``."""
    return events.where((F.col("event_date") <= F.lit(as_of)) & (F.col("event_time") < end_of_day(as_of)))


def event_rows(events: DataFrame, cfg: IdentityConfig) -> DataFrame:
    """bronze.events rows -> (event_date, event_id, record_key, vertex_ids): the identifiers of configured types.

    Example:
        >>> event_rows(in_as_of(lake.read("bronze.events"), as_of), config.identity)   # doctest: +SKIP
    """
    types = F.array(*[F.lit(t) for t in cfg.id_types]) if cfg.id_types else F.array().cast("array<string>")
    kept = F.map_filter("identifiers", lambda k, v: F.array_contains(types, k) & v.isNotNull())
    vids = F.transform(F.map_entries(kept), lambda e: vertex_id(e["key"], e["value"]))
    return events.select("event_date", "event_id", record_key().alias("record_key"),
                         F.array_sort(F.coalesce(vids, F.array().cast("array<long>"))).alias("vertex_ids"))


def assign(rows: DataFrame, graph: DataFrame, cfg: IdentityConfig) -> DataFrame:
    """Rows from :func:`event_rows` (every row of each event id they hold) + ``gold.id_graph`` -> the
    ``gold.event_profiles`` rows: each row's profile and, per event id, the one ``kept`` row.

    Example:
        >>> assign(event_rows(events, cfg), lake.read("gold.id_graph"), cfg).show(3)   # doctest: +SKIP
    """
    resolved = graph.where(F.col("profile_id").isNotNull()).select(
        F.col("vertex_id").alias("_vid"),
        F.struct(priority_rank(cfg)[F.col("id_type")].alias("rank"), "id_type", "profile_id").alias("_best"))
    best = (rows.select("event_id", "record_key", F.explode("vertex_ids").alias("_vid")).join(resolved, "_vid")
            .groupBy("event_id", "record_key").agg(F.min("_best").alias("_best")))
    out = rows.join(best, ["event_id", "record_key"], "left")
    first = Window.partitionBy("event_id").orderBy(F.col("_best").asc_nulls_last(), "record_key")
    return out.select("event_date", "event_id", "record_key", "vertex_ids",
                      F.col("_best.profile_id").alias("profile_id"),
                      (F.row_number().over(first) == 1).alias("kept"))


def changed_vertices(previous: DataFrame, current: DataFrame) -> DataFrame:
    """Vertex ids whose profile id differs between two versions of ``gold.id_graph`` (appeared or went away too)."""
    old = previous.select("vertex_id", F.col("profile_id").alias("_old"))
    new = current.select("vertex_id", F.col("profile_id").alias("_new"))
    return (old.join(new, "vertex_id", "full_outer").where(~F.col("_old").eqNullSafe(F.col("_new")))
            .select("vertex_id").distinct())


def reassign(stored: DataFrame, new_rows: DataFrame, changed: DataFrame, graph: DataFrame,
             cfg: IdentityConfig) -> DataFrame:
    """The rows an incremental run rewrites: ``new_rows`` (from :func:`event_rows`) and every stored row of an event
    id that has a new row or a row holding a ``changed`` vertex id, assigned against the new ``graph``.

    Example:
        >>> reassign(lake.read("gold.event_profiles"), event_rows(batch, cfg),
        ...          changed_vertices(old_graph, new_graph), new_graph, cfg)              # doctest: +SKIP
    """
    hit = (stored.select("event_id", F.explode("vertex_ids").alias("vertex_id"))
           .join(changed, "vertex_id", "left_semi").select("event_id"))
    touched = hit.unionByName(new_rows.select("event_id")).distinct()
    again = (stored.join(touched, "event_id", "left_semi")
             .join(new_rows.select("event_id", "record_key"), ["event_id", "record_key"], "left_anti")
             .select("event_date", "event_id", "record_key", "vertex_ids"))
    return assign(again.unionByName(new_rows.select(*again.columns)), graph, cfg)
