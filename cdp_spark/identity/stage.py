"""The `identity` stage: bronze records -> silver identifiers and links -> gold identity graph with stable ids.

`resolve` is the whole algorithm as DataFrame transforms (no I/O); `run` reads bronze and the previous graph,
calls it and writes the four tables with one idempotency token, so re-running the same as-of on the same inputs
and rules changes nothing.

Example:
    >>> result = run(spark, config, lake, date(2026, 11, 1))        # doctest: +SKIP
    >>> result.metrics["iterations"]                                 # doctest: +SKIP
    4
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_spark.identity import graph as G
from cdp_spark.identity.components import CCStats, connected_components
from cdp_spark.identity.config import IdentityConfig
from cdp_spark.identity.profiles import assign_profile_ids
from cdp_spark.identity.rules import apply_limits
from cdp_spark.identity.tables import ID_GRAPH, ID_LINKS, IDENTIFIERS, PROFILE_ID_HISTORY
from cdp_spark.ingest.tables import EVENTS, PROFILE_RECORDS
from cdp_spark.lake import Txn
from cdp_spark.pipeline import StageResult

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake

log = logging.getLogger(__name__)

SIZE_BUCKETS = [(1, 1), (2, 2), (3, 5), (6, 10), (11, 50), (51, 100), (101, None)]


@dataclass
class Resolution:
    """The outputs of one resolution, as DataFrames, plus its statistics."""

    identifiers: DataFrame
    links: DataFrame
    graph: DataFrame
    history: DataFrame
    stats: dict[str, Any] = field(default_factory=dict)


def _cut(df: DataFrame) -> DataFrame:
    """Materialise and cut the lineage (a local checkpoint): for results used more than once (lazily cached
    plans were recomputed inside broadcasts), and for inputs whose files the stage is about to replace."""
    return df.localCheckpoint(eager=True)


def resolve(records: DataFrame, cfg: IdentityConfig, as_of: dt.date, previous: DataFrame | None = None,
            *, engine: str | None = None) -> Resolution:
    """records (record_id, source, seen_at, identifiers map) [+ previous gold.id_graph] -> Resolution."""
    stats: dict[str, Any] = {}
    occ = G.with_rules(G.explode_identifiers(records, cfg), cfg)
    kept, blocked_occ = G.split_blocked(occ, cfg)
    kept = _cut(kept)
    stats["blocked_values_hit"] = {r.id_type: {"occurrences": r.n, "distinct_values": r.d} for r in
                                   blocked_occ.groupBy("id_type").agg(F.count("*").alias("n"),
                                                                      F.countDistinct("value").alias("d")).collect()}
    nodes = _cut(G.identifiers(kept))
    G.check_vertex_ids(nodes)
    edges, hub = G.classify_edges(G.star_edges(kept), cfg, as_of)
    edges = _cut(edges)
    hub_ids = _cut(hub.select("vid"))
    status_counts = {r.status: r["count"] for r in edges.groupBy("status").count().collect()}
    stats["links"] = status_counts
    stats["links_expired"] = status_counts.get("expired", 0)
    stats["hubs_dropped"] = hub_ids.count()
    node_status = (F.when(G.expired_nodes(nodes, as_of), "expired").when(F.col("_hub"), "hub").otherwise("active"))
    nodes = _cut(nodes.join(hub_ids.withColumn("_hub", F.lit(True)), "vid", "left")
                 .withColumn("status", node_status).drop("_hub"))
    active_nodes = nodes.where(F.col("status") != "expired")  # hubs stay, as their own profiles
    active_edges = edges.where(F.col("status") == "active")

    cc_stats = CCStats()
    cc = connected_components(active_edges.select("src", "dst"), active_nodes.select(F.col("vid").alias("id")),
                              engine=engine or cfg.engine, max_iterations=cfg.max_iterations,
                              checkpoint_every=cfg.checkpoint_every, stats=cc_stats)
    stats["iterations"], stats["engine"] = cc_stats.iterations, cc_stats.engine
    with_cc = _cut(active_nodes.join(cc.select(F.col("id").alias("vid"), "component"), "vid"))
    groups, split_stats = apply_limits(with_cc, active_edges, cfg, as_of)
    stats["limit_splits"] = split_stats
    groups = _cut(groups)
    prev = None
    if previous is not None:
        prev = previous.select(F.col("vertex_id").alias("vid"), "profile_id", "profile_created_at", "assigned_at")
    graph, history = assign_profile_ids(groups.select("vid", "id_type", "value", "group"), prev, as_of)
    graph = _cut(graph.join(groups.select("vid", F.col("reason").alias("split_reason")), "vid"))
    history = _cut(history)
    stats.update(profile_stats(graph))
    _sources = F.col("sources").cast(T.ArrayType(T.StringType(), True)).alias("sources")  # table: nullable elements
    identifiers_out = nodes.select("id_type", "value", F.col("vid").alias("vertex_id"), "first_seen", "last_seen",
                                   F.col("times_seen").cast("long"), _sources, "status")
    links_out = edges.select("src_type", "src_value", "dst_type", "dst_value", F.col("src").alias("src_id"),
                             F.col("dst").alias("dst_id"), F.col("times_seen").cast("long"), "first_seen", "last_seen",
                             _sources, "status")
    graph_out = graph.select("id_type", "value", F.col("vid").alias("vertex_id"), "profile_id", "profile_created_at",
                             "assigned_at", "split_reason")
    return Resolution(identifiers_out, links_out, graph_out, history, stats)


def profile_stats(graph: DataFrame) -> dict[str, Any]:
    """Component size histogram and the 20 largest profiles (ids and sizes only: no identifier values)."""
    sizes = _cut(graph.groupBy("profile_id").agg(F.count("*").alias("size")))
    by_size = {r.size: r["count"] for r in sizes.groupBy("size").count().collect()}
    hist = {}
    for lo, hi in SIZE_BUCKETS:
        label = f"{lo}+" if hi is None else (str(lo) if lo == hi else f"{lo}-{hi}")
        hist[label] = sum(n for s, n in by_size.items() if s >= lo and (hi is None or s <= hi))
    top = sizes.orderBy(F.desc("size"), F.asc("profile_id")).limit(20).collect()
    return {"profiles": sum(by_size.values()), "size_histogram": hist,
            "largest_profiles": [{"profile_id": r.profile_id, "size": r.size} for r in top]}


def _fingerprint(lake: "Lake", cfg: IdentityConfig) -> str:
    h = hashlib.sha256(cfg.model_dump_json().encode())
    for name in (EVENTS.name, PROFILE_RECORDS.name):
        h.update(f"|{name}:{lake.version(name)}".encode())
    return h.hexdigest()[:16]


def run(spark: SparkSession, config: "CdpConfig", lake: "Lake", as_of: dt.date) -> StageResult:
    """Resolve identities over all of bronze up to ``as_of``; idempotent for the same inputs, rules and as-of."""
    cfg: IdentityConfig = getattr(config, "identity", None) or IdentityConfig()
    events = lake.read(EVENTS.name) if lake.exists(EVENTS.name) else None
    profile_records = lake.read(PROFILE_RECORDS.name) if lake.exists(PROFILE_RECORDS.name) else None
    if events is None and profile_records is None:
        return StageResult(metrics={"skipped": "no bronze tables yet"})
    fingerprint = _fingerprint(lake, cfg)
    txn = Txn(f"identity.{fingerprint}", int(as_of.strftime("%Y%m%d")))
    run_id = f"identity-{as_of:%Y%m%d}-{fingerprint[:8]}"
    if lake.committed(ID_GRAPH.name, txn):
        log.info("identity for %s on these inputs is already committed; nothing to do", as_of)
        return StageResult(metrics={"skipped": "already committed", "run_id": run_id})
    records = G.records_from_bronze(events, profile_records, as_of, cfg.sources)
    previous = lake.read(ID_GRAPH.name) if lake.exists(ID_GRAPH.name) else None
    if previous is not None:
        previous = _cut(previous)  # the overwrite below replaces the files this lineage would read
    res = resolve(records, cfg, as_of, previous)
    history = res.history.select("*", F.lit(as_of).alias("as_of"), F.lit(run_id).alias("run_id"))
    out = StageResult(metrics={**res.stats, "run_id": run_id})
    out.rows_in = {t: lake.info(t).rows for t in (EVENTS.name, PROFILE_RECORDS.name) if lake.exists(t)}
    for table, df, how in ((IDENTIFIERS.name, res.identifiers, "overwrite"), (ID_LINKS.name, res.links, "overwrite"),
                           (PROFILE_ID_HISTORY.name, history, "append"), (ID_GRAPH.name, res.graph, "overwrite")):
        df = _cut(df)
        result = lake.overwrite(table, df, txn=txn) if how == "overwrite" else lake.append(table, df, txn=txn)
        out.rows_out[table] = 0 if result.skipped else df.count()
    return out
