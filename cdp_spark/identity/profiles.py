"""Stable profile ids across rebuilds, with a change log of merges and splits.

Given this run's groups (identifier -> group) and the previous ``gold.id_graph`` (identifier -> profile_id):

1. every previous profile id is claimed by the group holding most of its identifiers (ties: smallest group);
2. a group that claims several previous ids keeps the oldest (earliest ``profile_created_at``, then smallest id):
   when profiles merge, the oldest id survives;
3. a split leaves the old id with the part holding most of its identifiers; the other parts get new ids;
4. a group that claims nothing gets a fresh deterministic id: ``p_`` + the first 24 hex digits of the sha-256 of
   ``"<org>|<as-of date>|<group>"`` (for the org ``default``: of ``"<as-of date>|<group>"``, so ids made before
   orgs existed stay reproducible). The org salt makes the same identifiers in two orgs two unrelated ids.

Every identifier moving from one previous id to a different new id is summarised in the history:
(old_profile_id, new_profile_id, reason merge|split, identifiers).
"""
from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


DEFAULT_ORG = "default"


def fresh_id(as_of: dt.date, org: str = DEFAULT_ORG):  # type: ignore[no-untyped-def]
    """Column: a new profile id for the ``group`` column's value, salted with the org id.

    Example:
        >>> groups.select(fresh_id(date(2026, 11, 1), "acme").alias("profile_id"))   # doctest: +SKIP
    """
    salt = [] if org == DEFAULT_ORG else [F.lit(org)]
    text = F.concat_ws("|", *salt, F.lit(as_of.isoformat()), F.col("group").cast("string"))
    return F.concat(F.lit("p_"), F.substring(F.sha2(text, 256), 1, 24))


def assign_profile_ids(groups: DataFrame, previous: DataFrame | None, as_of: dt.date,
                       org: str = DEFAULT_ORG) -> tuple[DataFrame, DataFrame]:
    """groups (vid, id_type, value, group, any other columns) + previous (vid, profile_id, profile_created_at,
    assigned_at) -> (graph: the groups' columns + profile_id, profile_created_at, assigned_at;
     history: old_profile_id, new_profile_id, reason, identifiers)."""
    today = F.lit(dt.datetime.combine(as_of, dt.time())).cast("timestamp")
    if previous is None:
        graph = groups.select("*", fresh_id(as_of, org).alias("profile_id"), F.lit(as_of).alias("profile_created_at"),
                              today.alias("assigned_at"))
        empty = graph.limit(0).select(F.col("profile_id").alias("old_profile_id"), F.col("profile_id").alias("new_profile_id"),
                                      F.lit("merge").alias("reason"), F.lit(0).cast("long").alias("identifiers"))
        return graph, empty
    prev = previous.select("vid", F.col("profile_id").alias("old_id"), F.col("profile_created_at").alias("old_created"),
                           F.col("assigned_at").alias("old_assigned"))
    joined = groups.join(prev, "vid", "left")
    overlap = (joined.where(F.col("old_id").isNotNull()).groupBy("group", "old_id")
               .agg(F.count("*").alias("n"), F.min("old_created").alias("old_created")))
    claimed = overlap.withColumn("_r", F.row_number().over(
        Window.partitionBy("old_id").orderBy(F.desc("n"), F.asc("group")))).where(F.col("_r") == 1)
    kept = claimed.withColumn("_k", F.row_number().over(
        Window.partitionBy("group").orderBy(F.asc("old_created"), F.asc("old_id")))).where(F.col("_k") == 1).select(
        "group", F.col("old_id").alias("kept_id"), F.col("old_created").alias("kept_created"))
    ids = groups.select("group").distinct().join(kept, "group", "left").select(
        "group", F.coalesce("kept_id", fresh_id(as_of, org)).alias("profile_id"),
        F.coalesce("kept_created", F.lit(as_of)).alias("profile_created_at"))
    graph = joined.join(ids, "group").select(
        *groups.columns, "profile_id", "profile_created_at",
        F.when(F.col("old_id") == F.col("profile_id"), F.col("old_assigned")).otherwise(today).alias("assigned_at"))
    survivors = kept.select(F.col("kept_id").alias("old_id"), F.lit(True).alias("_survives"))
    history = (overlap.join(ids, "group").where(F.col("old_id") != F.col("profile_id"))
               .join(survivors, "old_id", "left")
               .select(F.col("old_id").alias("old_profile_id"), F.col("profile_id").alias("new_profile_id"),
                       F.when(F.col("_survives"), "split").otherwise("merge").alias("reason"),
                       F.col("n").cast("long").alias("identifiers")))
    return graph, history
