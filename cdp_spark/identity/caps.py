"""Graph caps and compaction: bounds on how far the identity graph links, and on how many values a profile keeps.

- **Neighbour cap** (``max_neighbours``, Lytics' default 50): an identifier uses at most its N strongest links
  (most co-occurrences, then the most recent, then the other end's priority, type and value). A link is used only
  when it is among the N strongest at *both* ends; the others get the link status ``capped`` and join nothing.
- **Traversal cap** (``max_hops``, default 50): a profile holds only identifiers within N links of its root, the
  component's highest-priority identifier (smallest priority, type, value). Identifiers further away are cut off
  with the links that reach them; among themselves they form new components (each again capped from its own root)
  and get ``split_reason = hop_cap``. Only a component of more than N + 1 identifiers can be cut, so the cap costs
  nothing unless such components exist.
- **Compaction** (per type, off by default), after limits: by size (``compact_after_values``: a profile keeps the N
  most recently seen values of the type) and by time (``compact_after_days``: values last seen more than N days
  before the as-of date leave the profile, except the profile's most recent value of the type). A compacted
  identifier leaves ``gold.id_graph`` (status ``compacted`` in ``silver.identifiers``) but its links stay: the
  identifiers kept in a profile are exactly those that would be there without compaction, so compaction never
  splits or merges a profile. A record carrying only compacted identifiers belongs to no profile; seen again, an
  identifier is ranked anew and may come back.

Every rule orders by total orders only, so results do not depend on input order or partitioning.

Example:
    >>> edges = neighbour_cap(edges, 50)                        # doctest: +SKIP
    >>> nodes, stats = hop_cap(with_components, active_edges, 50) # doctest: +SKIP
"""
from __future__ import annotations

import datetime as dt
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from cdp_spark.identity.components import connected_components, materialise
from cdp_spark.identity.config import IdentityConfig
from cdp_spark.identity.graph import end_of_day


def _ends(edges: DataFrame) -> DataFrame:
    """Each link twice, once from each end: node, the link (src, dst), its evidence and the other end's key."""
    ev = ["src", "dst", "times_seen", "last_seen"]
    return edges.select(F.col("src").alias("node"), *ev, F.struct(F.col("dst_priority").alias("p"),
                        F.col("dst_type").alias("t"), F.col("dst_value").alias("v")).alias("other")).unionByName(
        edges.select(F.col("dst").alias("node"), *ev, F.struct(F.col("src_priority").alias("p"),
                     F.col("src_type").alias("t"), F.col("src_value").alias("v")).alias("other")))


def neighbour_cap(edges: DataFrame, max_neighbours: int | None) -> DataFrame:
    """Edges with a ``status`` (see `graph.with_edge_status`): active links beyond the cap at either end become
    ``capped``. Unchanged (no extra join) when no identifier has more than ``max_neighbours`` active links.

    Example:
        >>> neighbour_cap(G.with_edge_status(edges, hub, cfg, as_of), 50).groupBy("status").count()  # doctest: +SKIP
    """
    if max_neighbours is None:
        return edges
    ends = _ends(edges.where(F.col("status") == "active"))
    busy = materialise(ends.groupBy("node").agg(F.count(F.lit(1)).alias("n")).where(F.col("n") > max_neighbours)
                       .select("node"))
    if busy.limit(1).count() == 0:
        return edges
    rank = Window.partitionBy("node").orderBy(F.desc("times_seen"), F.desc("last_seen"), F.asc("other"))
    over = (ends.join(F.broadcast(busy), "node", "left_semi").withColumn("_r", F.row_number().over(rank))
            .where(F.col("_r") > max_neighbours).select("src", "dst").distinct().withColumn("_capped", F.lit(True)))
    return (edges.join(F.broadcast(materialise(over)), ["src", "dst"], "left")
            .withColumn("status", F.when(F.col("_capped") & (F.col("status") == "active"), "capped")
                        .otherwise(F.col("status"))).drop("_capped"))


def hop_cap(nodes: DataFrame, edges: DataFrame, max_hops: int | None) -> tuple[DataFrame | None, dict[str, int]]:
    """nodes (vid, id_type, value, priority, component, ...) + their active edges (src, dst) -> the nodes with
    ``component`` replaced by the capped piece (a member vid) and ``hop_capped`` (cut off from the root's piece),
    or None when no component is cut (then nothing changes), and counts.

    Example:
        >>> capped, stats = hop_cap(with_cc, active_edges, 2)     # doctest: +SKIP
    """
    stats = {"components_cut": 0, "identifiers_cut": 0}
    if max_hops is None:
        return None, stats
    sizes = nodes.groupBy("component").agg(F.count(F.lit(1)).alias("n"))
    big = materialise(sizes.where(F.col("n") > max_hops + 1).select("component"))
    if big.limit(1).count() == 0:
        return None, stats
    both = materialise(edges.select(F.col("src").alias("u"), F.col("dst").alias("w")).unionByName(
        edges.select(F.col("dst").alias("u"), F.col("src").alias("w"))))
    # One row per identifier of a large component: its current piece, whether it is settled, whether it was cut.
    # Updated by joins, never by unions of checkpoints (Spark fails to carry such a union's constraints into a
    # checkpoint: "key not found").
    state = materialise(nodes.join(F.broadcast(big), "component", "left_semi").select(
        "vid", "id_type", "value", "priority", F.col("component").alias("piece"), F.lit(False).alias("done"),
        F.lit(False).alias("cut")))
    while True:
        open_ = state.where(~F.col("done"))
        root = F.min(F.struct("priority", "id_type", "value", "vid")).over(Window.partitionBy("piece"))
        roots = materialise(open_.withColumn("_root", root).where(F.col("vid") == F.col("_root.vid"))
                            .select("vid", "piece"))
        frontier = roots
        reach = materialise(open_.select("vid", "piece").join(frontier.withColumn("_hit", F.lit(True)),
                                                              ["vid", "piece"], "left")
                            .select("vid", "piece", F.coalesce("_hit", F.lit(False)).alias("reached")))
        for _ in range(max_hops):
            step = (frontier.join(both, frontier.vid == both.u).select(F.col("w").alias("vid"), "piece").distinct()
                    .join(reach.where(~F.col("reached")).select("vid", "piece"), ["vid", "piece"], "left_semi"))
            frontier = materialise(step)
            if frontier.limit(1).count() == 0:
                break
            reach = materialise(reach.join(frontier.withColumn("_hit", F.lit(True)), ["vid", "piece"], "left")
                                .select("vid", "piece", (F.col("reached") | F.coalesce("_hit", F.lit(False)))
                                        .alias("reached")))
        far = reach.where(~F.col("reached")).select("vid")
        if far.limit(1).count() == 0:
            state = materialise(state.withColumn("done", F.lit(True)))
            break
        # The cut-off identifiers form components among themselves; each is capped again from its own root.
        inner = both.join(far.withColumnRenamed("vid", "u"), "u", "left_semi").join(
            far.withColumnRenamed("vid", "w"), "w", "left_semi")
        cc = connected_components(inner.select(F.col("u").alias("src"), F.col("w").alias("dst")),
                                  far.withColumnRenamed("vid", "id"))
        relabel = cc.select(F.col("id").alias("vid"), F.col("component").alias("_new"))
        small = (relabel.groupBy("_new").agg(F.count(F.lit(1)).alias("_n"))
                 .where(F.col("_n") <= max_hops + 1).select("_new", F.lit(True).alias("_small")))
        # What the root reached is one piece, named after the root (the component's smallest vid, its old name,
        # may now belong to a cut-off piece); a cut-off piece is named after its smallest vid.
        update = (reach.join(roots.select("piece", F.col("vid").alias("_root")), "piece", "left")
                  .join(relabel, "vid", "left").join(small, "_new", "left")
                  .select("vid", F.coalesce("_new", "_root").alias("_piece"),
                          (F.col("reached") | F.coalesce("_small", F.lit(False))).alias("_done"),
                          (~F.col("reached")).alias("_cut")))
        state = materialise(state.join(update, "vid", "left").select(
            "vid", "id_type", "value", "priority", F.coalesce("_piece", "piece").alias("piece"),
            (F.col("done") | F.coalesce("_done", F.lit(False))).alias("done"),
            (F.col("cut") | F.coalesce("_cut", F.lit(False))).alias("cut")))
        if state.where(~F.col("done")).limit(1).count() == 0:
            break
    cut = state.where(F.col("cut")).select("vid")
    n_cut = cut.count()
    if n_cut == 0:   # every large component is within the cap
        return None, stats
    stats["components_cut"] = nodes.join(cut, "vid", "left_semi").select("component").distinct().count()
    stats["identifiers_cut"] = n_cut
    out = nodes.join(state.select("vid", F.col("piece").alias("_piece"), F.col("cut").alias("hop_capped")), "vid",
                     "left")
    out = out.withColumn("component", F.coalesce("_piece", "component")).withColumn(
        "hop_capped", F.coalesce("hop_capped", F.lit(False))).drop("_piece")
    return materialise(out), stats


def _map(cfg: IdentityConfig, attr: str) -> Column:
    pairs: list[Column] = []
    for t, rule in cfg.id_types.items():
        pairs += [F.lit(t), F.lit(getattr(rule, attr))]
    return F.create_map(*pairs)


def compacts(cfg: IdentityConfig) -> bool:
    """Whether any type is compacted."""
    return any(r.compact_after_values or r.compact_after_days for r in cfg.id_types.values())


def stale(cfg: IdentityConfig, as_of: dt.date) -> Column:
    """True for a node last seen before its type's ``compact_after_days`` window (null without one)."""
    days = _map(cfg, "compact_after_days")[F.col("id_type")]
    return days.isNotNull() & (F.col("last_seen") < F.date_sub(end_of_day(as_of), days.cast("int")).cast("timestamp"))


def compaction(groups: DataFrame, evidence: DataFrame, cfg: IdentityConfig, as_of: dt.date) -> DataFrame:
    """groups (vid, id_type, value, group, ...) + node evidence (vid, last_seen, times_seen) -> groups with
    ``compacted``: beyond the type's ``compact_after_values`` most recent values of the group, or (not the group's
    most recent value of the type) last seen before ``compact_after_days``.

    Example:
        >>> compaction(groups, nodes, IdentityConfig(id_types={"cookie_id": {"priority": 1,
        ...     "compact_after_values": 3}}), date(2026, 11, 1))          # doctest: +SKIP
    """
    if not compacts(cfg):
        return groups.withColumn("compacted", F.lit(False))
    ranked = groups.join(evidence.select("vid", "last_seen", "times_seen"), "vid").withColumn(
        "_r", F.row_number().over(Window.partitionBy("group", "id_type").orderBy(
            F.desc("last_seen"), F.desc("times_seen"), F.asc("value"))))
    size = _map(cfg, "compact_after_values")[F.col("id_type")]
    out = ranked.withColumn("compacted", F.coalesce(
        (size.isNotNull() & (F.col("_r") > size)) | ((F.col("_r") > 1) & stale(cfg, as_of)), F.lit(False)))
    return out.drop("_r", "last_seen", "times_seen")
