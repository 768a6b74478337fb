"""Limits and conflicts: split components that break a per-type limit, deterministically.

In a component that holds more identifiers of a type than its limit allows (two customer_ids, six emails):

1. the identifiers of the highest-priority type that may anchor (else the highest-priority type present) are the
   anchors; each anchor is one profile;
2. in rounds, every unattached identifier linked to attached ones attaches to the anchor it is most strongly
   linked to: most co-occurrences (summed over its links into that anchor's profile), then most recent link,
   then the smallest anchor value;
3. within a profile, identifiers of a type past the limit (counting only values seen within the type's
   ``limit_window_days``; strongest, most recent, smallest value first) are not attached and become their own
   profile (reason ``over_limit``); identifiers that no attached identifier reaches do too (``unreachable``).

Only aggregates with total orders are used, so the result does not depend on input order.
"""
from __future__ import annotations

import datetime as dt
import itertools

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from cdp_spark.identity.components import materialise
from cdp_spark.identity.config import IdentityConfig
from cdp_spark.identity.graph import end_of_day


def _map(cfg: IdentityConfig, fn) -> Column:  # type: ignore[no-untyped-def]
    pairs = []
    for t, rule in cfg.id_types.items():
        pairs += [F.lit(t), F.lit(fn(rule))]
    return F.create_map(*pairs)


def in_window(cfg: IdentityConfig, as_of: dt.date) -> Column:
    """True when a node counts towards its type's limit (no window, or last seen within it)."""
    days = _map(cfg, lambda r: r.limit_window_days)[F.col("id_type")]
    return days.isNull() | (F.col("last_seen") >= F.date_sub(end_of_day(as_of), days.cast("int")).cast("timestamp"))


# A one-column id frame of up to this many rows is broadcast: ~8 MB of longs, ~24 MB as a hash relation.
BROADCAST_IDS = 1_000_000


def _broadcast_if_small(ids: DataFrame, rows: int) -> DataFrame:
    """``ids`` (materialised, ``rows`` counted) hinted for broadcast when small. Its checkpoint keeps the estimate of
    the plan that made it, usually far above the real size, so Spark would otherwise shuffle the large side too."""
    return F.broadcast(ids) if rows <= BROADCAST_IDS else ids


def violating_components(nodes: DataFrame, cfg: IdentityConfig, as_of: dt.date) -> DataFrame:
    """Components (one column) where some type has more in-window identifiers than its limit."""
    limit = _map(cfg, lambda r: r.limit)[F.col("id_type")]
    counts = nodes.where(in_window(cfg, as_of)).groupBy("component", "id_type").count()
    return counts.where(F.col("count") > limit).select("component").distinct()


def apply_limits(nodes: DataFrame, edges: DataFrame, cfg: IdentityConfig, as_of: dt.date,
                 max_rounds: int | None = None) -> tuple[DataFrame, dict[str, int]]:
    """nodes (vid, id_type, value, priority, last_seen, component) + active edges (src, dst, times_seen,
    last_seen) -> (vid, id_type, value, group, reason, component) and split counts. ``group`` is a member vid.

    Each round attaches (or rejects) the open identifiers next to attached ones, one layer further from the anchors,
    until none is left next to them; ``max_rounds`` caps the rounds (by default none: every round settles at least
    one identifier, so the rounds end within the component's depth).
    """
    bad = materialise(violating_components(nodes, cfg, as_of))
    n_bad = bad.count()
    bad = _broadcast_if_small(bad, n_bad)
    base = nodes.select("vid", "id_type", "value", "component")
    ok = base.join(bad, "component", "left_anti").select("vid", "id_type", "value", F.col("component").alias("group"),
                                                          F.lit(None).cast("string").alias("reason"), "component")
    stats = {"components_split": n_bad, "over_limit": 0, "unreachable": 0}
    if n_bad == 0:
        return ok, stats
    anchor_flag = _map(cfg, lambda r: 0 if r.anchor else 1)[F.col("id_type")]
    v = materialise(nodes.join(bad, "component", "left_semi").select(
        "vid", "id_type", "value", "priority", "last_seen", "component", in_window(cfg, as_of).alias("counts"),
        F.min(F.struct(anchor_flag.alias("a"), F.col("priority"), F.col("id_type")))
        .over(Window.partitionBy("component")).alias("anchor_type")))
    anchors = v.where(F.col("id_type") == F.col("anchor_type.id_type"))
    anchor_values = anchors.select(F.col("vid").alias("group"), F.col("value").alias("anchor_value"))
    assigned = materialise(anchors.select("vid", "id_type", "counts", F.col("vid").alias("group")))
    rejected = None
    vids = _broadcast_if_small(v.select(F.col("vid").alias("_v")), v.count())
    e = edges.join(vids, edges.src == F.col("_v"), "left_semi")
    both = materialise(e.select(F.col("src").alias("u"), F.col("dst").alias("w"), "times_seen", "last_seen").unionByName(
        e.select(F.col("dst").alias("u"), F.col("src").alias("w"), "times_seen", "last_seen")))
    limit = _map(cfg, lambda r: r.limit)[F.col("id_type")]
    for _ in (range(max_rounds) if max_rounds is not None else itertools.count()):
        done = assigned.select("vid") if rejected is None else assigned.select("vid").unionByName(rejected.select("vid"))
        open_nodes = v.join(done, "vid", "left_anti")
        cand = (both.join(assigned.select(F.col("vid").alias("w"), "group"), "w")
                .join(open_nodes.select(F.col("vid").alias("u"), "id_type", "value", "counts"), "u")
                .groupBy("u", "id_type", "value", "counts", "group")
                .agg(F.sum("times_seen").alias("strength"), F.max("last_seen").alias("last"))
                .join(anchor_values, "group"))
        best = cand.withColumn("_r", F.row_number().over(Window.partitionBy("u").orderBy(
            F.desc("strength"), F.desc("last"), F.asc("anchor_value")))).where(F.col("_r") == 1)
        have = assigned.where("counts").groupBy("group", "id_type").agg(F.count("*").alias("have"))
        ranked = best.join(have, ["group", "id_type"], "left").withColumn("_k", F.row_number().over(
            Window.partitionBy("group", "id_type", "counts").orderBy(F.desc("strength"), F.desc("last"), F.asc("value"))))
        ranked = materialise(ranked.withColumn("accept", ~F.col("counts") | (F.coalesce("have", F.lit(0)) + F.col("_k") <= limit)))
        if ranked.count() == 0:
            break
        new = ranked.where("accept").select(F.col("u").alias("vid"), "id_type", "counts", "group")
        over = ranked.where(~F.col("accept")).select(F.col("u").alias("vid"))
        assigned = materialise(assigned.unionByName(new))
        rejected = materialise(over if rejected is None else rejected.unionByName(over))
    rejected_ids = rejected.select("vid") if rejected is not None else v.limit(0).select("vid")
    attached = v.join(assigned.select("vid", "group"), "vid").select("vid", "id_type", "value", "group",
                                                                     F.lit("limit_split").alias("reason"), "component")
    lone = v.join(assigned.select("vid"), "vid", "left_anti").join(
        rejected_ids.withColumn("_rej", F.lit(True)), "vid", "left")
    lone = materialise(lone.select("vid", "id_type", "value", F.col("vid").alias("group"),
                            F.when(F.col("_rej"), "over_limit").otherwise("unreachable").alias("reason"), "component"))
    counts = {r.reason: r["count"] for r in lone.groupBy("reason").count().collect()}
    stats["over_limit"], stats["unreachable"] = counts.get("over_limit", 0), counts.get("unreachable", 0)
    return ok.unionByName(attached).unionByName(lone), stats
