"""The `identity` stage: bronze records -> silver identifiers and links -> gold identity graph with stable ids.

Two modes give the same tables:

- **full** (:func:`resolve`): evidence from every bronze record up to the as-of date, then connected components,
  limits and stable ids over the whole graph;
- **incremental** (:func:`resolve_incremental`, the default once a previous run exists): the evidence of the new
  records only is added to the stored evidence (``silver.identifiers`` / ``silver.id_links``); the statuses are
  re-derived for the new as-of date (TTL, hubs, limit windows); only the components that hold an identifier whose
  evidence or status changed are recomputed, and every other row of ``gold.id_graph`` is kept as it was.

Why that equals a full rebuild: a component none of whose identifiers or links changed has the same nodes, edges,
statuses and limit windows as before, so the same groups and (by the stability rules) the same profile ids; and a
link that is new or changed status has both ends among the changed identifiers, so the recomputed region is closed
under the active links. `tests/test_identity_demo.py` checks the equality on two days of demo data.

`run` picks the mode (full when asked, on the first run, after a rule or org change, when the as-of date goes back,
or when bronze was rewritten rather than appended to), writes the tables with one idempotency token and records
the run in ``silver.identity_runs`` last, so a run that died half-way is simply redone.

Example:
    >>> result = run(spark, config, lake, date(2026, 11, 1))        # doctest: +SKIP
    >>> result.metrics["mode"], result.metrics["iterations"]         # doctest: +SKIP
    ('incremental', 4)
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_spark.identity import STAGE
from cdp_spark.identity import assign as A
from cdp_spark.identity import graph as G
from cdp_spark.identity.caps import compaction, compacts, hop_cap, neighbour_cap, stale
from cdp_spark.identity.components import CCStats, connected_components, materialise
from cdp_spark.identity.config import IdentityConfig
from cdp_spark.identity.profiles import DEFAULT_ORG, assign_profile_ids
from cdp_spark.identity.rules import apply_limits, in_window
from cdp_spark.incremental import BRONZE_VERSIONS, latest_run, run_mode
from cdp_spark.identity.tables import (EVENT_PROFILES, ID_GRAPH, ID_LINKS, IDENTIFIERS, IDENTITY_RUNS,
                                       PROFILE_ID_HISTORY)
from cdp_spark.ingest.routes import diverted_streams
from cdp_spark.ingest.tables import EVENTS, PROFILE_RECORDS
from cdp_spark.lake import utc_now
from cdp_spark.pipeline import StageResult, stage_token

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake

log = logging.getLogger(__name__)

SIZE_BUCKETS = [(1, 1), (2, 2), (3, 5), (6, 10), (11, 50), (51, 100), (101, None)]
USED = ("active", "hub")  # node statuses that are resolved (hubs as their own profiles)


@dataclass
class Resolution:
    """The outputs of one resolution, as DataFrames, plus its statistics."""

    identifiers: DataFrame
    links: DataFrame
    graph: DataFrame
    history: DataFrame
    stats: dict[str, Any] = field(default_factory=dict)


# ---- building blocks -------------------------------------------------------------------------------------------

def evidence(records: DataFrame, cfg: IdentityConfig) -> tuple[DataFrame, DataFrame]:
    """records -> (node evidence incl. blocked identifiers, edge evidence of the kept ones); nothing as-of dependent."""
    occ = materialise(G.with_rules(G.explode_identifiers(records, cfg), cfg).withColumn("blocked", G.blocked(cfg)))
    sources = G.source_names(occ)
    nodes = G.identifiers(occ, sources)
    edges = G.star_edges(occ.where(~F.col("blocked")), sources).drop("src_priority", "dst_priority")
    return nodes, edges


def classify(nodes_ev: DataFrame, edges_ev: DataFrame, cfg: IdentityConfig, as_of: dt.date) -> tuple[DataFrame, DataFrame]:
    """Evidence -> (nodes, edges) with the as-of dependent ``status`` (and priorities, TTLs)."""
    # The edges are materialised once: the hub guard and the classification both read them. The classified edges
    # are not: they are those edges plus map-side lookups in the broadcast hubs.
    edges = materialise(G.with_priorities(edges_ev, cfg))
    hub = materialise(G.hubs(edges.where(~G.expired_edges(edges, cfg, as_of)), cfg.max_links))
    edges = neighbour_cap(G.with_edge_status(edges, hub, cfg, as_of), cfg.max_neighbours)
    nodes = G.with_ttl(nodes_ev, cfg).join(F.broadcast(hub.select("vid", F.lit(True).alias("_hub"))), "vid", "left")
    status = (F.when(F.col("blocked"), "blocked").when(G.expired_nodes(nodes, as_of), "expired")
              .when(F.col("_hub"), "hub").otherwise("active"))
    return materialise(nodes.withColumn("status", status).drop("_hub")), edges


def resolve_components(nodes: DataFrame, edges: DataFrame, cfg: IdentityConfig, as_of: dt.date,
                       previous: DataFrame | None, *, engine: str | None = None, org: str = DEFAULT_ORG
                       ) -> tuple[DataFrame, DataFrame, DataFrame, CCStats]:
    """Classified nodes/edges (a whole graph or a closed region of it) -> (the resolved nodes with their component,
    graph rows with component and split_reason, history, connected-components stats)."""
    active_nodes = nodes.where(F.col("status").isin(*USED))
    active_edges = edges.where(F.col("status") == "active")
    cc_stats = CCStats()
    cc = connected_components(active_edges.select("src", "dst"), engine=engine or cfg.engine,
                              max_iterations=cfg.max_iterations, checkpoint_every=cfg.checkpoint_every, stats=cc_stats)
    # An identifier without active links is its own component: one outer join instead of a vertex list for the CC.
    with_cc = materialise(active_nodes.join(cc.select(F.col("id").alias("vid"), "component"), "vid", "left")
                          .withColumn("component", F.coalesce("component", "vid")))
    pieces, _ = hop_cap(with_cc, active_edges, cfg.max_hops)
    if pieces is None:
        groups, _ = apply_limits(with_cc, active_edges, cfg, as_of)
    else:
        # Limits apply within each piece the traversal cap left, over the links inside it; the stored component
        # stays the connected component (the incremental region is built from those).
        piece_of = pieces.select("vid", F.col("component").alias("_piece"))
        inside = (active_edges.join(piece_of.withColumnRenamed("vid", "src"), "src")
                  .join(piece_of.withColumnRenamed("vid", "dst").withColumnRenamed("_piece", "_dst_piece"), "dst")
                  .where(F.col("_piece") == F.col("_dst_piece")).drop("_piece", "_dst_piece"))
        groups, _ = apply_limits(pieces, inside, cfg, as_of)
        groups = (groups.drop("component").join(pieces.select("vid", "hop_capped"), "vid")
                  .join(with_cc.select("vid", "component"), "vid")
                  .withColumn("reason", F.coalesce("reason", F.when(F.col("hop_capped"), F.lit("hop_cap"))))
                  .drop("hop_capped"))
    groups = compaction(groups, with_cc, cfg, as_of)
    prev = None
    if previous is not None:
        prev = previous.select(F.col("vertex_id").alias("vid"), "profile_id", "profile_created_at", "assigned_at")
        groups = materialise(groups)  # read twice when there are previous ids to match (a projection otherwise)
    kept = groups.where(~F.col("compacted")) if compacts(cfg) else groups
    graph, history = assign_profile_ids(kept.withColumnRenamed("reason", "split_reason"), prev, as_of, org)
    if compacts(cfg):  # compacted identifiers stay in the internal graph (for their component), without a profile
        dropped = groups.where(F.col("compacted")).withColumnRenamed("reason", "split_reason")
        graph = graph.unionByName(dropped.select(
            *dropped.columns, F.lit(None).cast("string").alias("profile_id"),
            F.lit(None).cast("date").alias("profile_created_at"), F.lit(None).cast("timestamp").alias("assigned_at")))
    graph = materialise(graph.drop("group"))
    return with_cc, graph, materialise(history), cc_stats


def _outputs(nodes: DataFrame, edges: DataFrame, graph: DataFrame, history: DataFrame, stats: dict[str, Any]
             ) -> Resolution:
    """``nodes``: every classified node with its ``component`` (null when unresolved), cheap to read twice (the
    statistics and the write): a union of checkpoints, or a checkpoint."""
    _sources = F.col("sources").cast(T.ArrayType(T.StringType(), True)).alias("sources")  # table: nullable elements
    status = (F.when(F.coalesce(F.col("compacted"), F.lit(False)), F.lit("compacted")).otherwise(F.col("status"))
              if "compacted" in nodes.columns else F.col("status"))
    identifiers_out = nodes.select(
        "id_type", "value", F.col("vid").alias("vertex_id"), "first_seen", "last_seen",
        F.col("times_seen").cast("long"), _sources, status.alias("status"), F.col("component").cast("long"))
    links_out = edges.select("src_type", "src_value", "dst_type", "dst_value", F.col("src").alias("src_id"),
                             F.col("dst").alias("dst_id"), F.col("times_seen").cast("long"), "first_seen", "last_seen",
                             _sources, "status")
    graph = graph.where(~F.col("compacted"))
    graph_out = graph.select("id_type", "value", F.col("vid").alias("vertex_id"), "profile_id", "profile_created_at",
                             "assigned_at", "split_reason")
    stats.update(graph_stats(identifiers_out, links_out, graph))
    return Resolution(identifiers_out, links_out, graph_out, history, stats)


# ---- the two modes ---------------------------------------------------------------------------------------------

def resolve(records: DataFrame, cfg: IdentityConfig, as_of: dt.date, previous: DataFrame | None = None,
            *, engine: str | None = None, org: str = DEFAULT_ORG) -> Resolution:
    """Full mode: records (record_id, source, seen_at, identifiers map) [+ previous gold.id_graph] -> Resolution.

    Example:
        >>> res = resolve(records, IdentityConfig(), date(2026, 11, 1))   # doctest: +SKIP
        >>> res.graph.select("id_type", "profile_id").show()             # doctest: +SKIP
    """
    nodes, edges = classify(*evidence(records, cfg), cfg, as_of)
    G.check_vertex_ids(nodes)
    resolved, graph, history, cc_stats = resolve_components(nodes, edges, cfg, as_of, previous, engine=engine, org=org)
    stats = {"mode": "full", "iterations": cc_stats.iterations, "engine": cc_stats.engine}
    # The resolved nodes already carry their component: the others are added without one (no join with the graph).
    unresolved = nodes.where(~F.col("status").isin(*USED)).withColumn("component", F.lit(None).cast("long"))
    if compacts(cfg):
        resolved = resolved.join(graph.where(F.col("compacted")).select("vid", "compacted"), "vid", "left")
        unresolved = unresolved.withColumn("compacted", F.lit(None).cast("boolean"))
    res = _outputs(resolved.unionByName(unresolved), edges, graph, history, stats)
    res.stats["vertices_resolved"] = sum(res.stats["identifiers"].get(s, 0) for s in USED)
    return res


def resolve_incremental(batch: DataFrame, cfg: IdentityConfig, as_of: dt.date, previous_as_of: dt.date,
                        identifiers: DataFrame, links: DataFrame, previous: DataFrame, *, engine: str | None = None,
                        org: str = DEFAULT_ORG) -> Resolution:
    """Incremental mode: the new records + the stored state (silver.identifiers, silver.id_links, gold.id_graph
    written by the run for ``previous_as_of`` with the same rules) -> the Resolution a full run would give.

    Example:
        >>> res = resolve_incremental(new_records, cfg, date(2026, 11, 2), date(2026, 11, 1),
        ...                           lake.read("silver.identifiers"), lake.read("silver.id_links"),
        ...                           lake.read("gold.id_graph"))          # doctest: +SKIP
    """
    new_nodes, new_edges = evidence(batch, cfg)
    old_nodes = materialise(identifiers.select(
        F.col("vertex_id").alias("vid"), "id_type", "value", (F.col("status") == "blocked").alias("blocked"),
        "first_seen", "last_seen", "times_seen", "sources",
        # compaction is decided after classification: a compacted identifier was classified active
        F.when(F.col("status") == "compacted", "active").otherwise(F.col("status")).alias("old_status"),
        (F.col("status") == "compacted").alias("old_compacted"), F.col("component").alias("old_component")))
    old_edges = links.select(F.col("src_id").alias("src"), F.col("dst_id").alias("dst"), "src_type", "src_value",
                             "dst_type", "dst_value", "first_seen", "last_seen", "times_seen", "sources",
                             F.col("status").alias("old_status"))
    nodes, edges = classify(G.merge_identifiers(old_nodes, new_nodes), G.merge_links(old_edges, new_edges), cfg, as_of)
    G.check_vertex_ids(nodes)

    # Changed identifiers: new evidence, a new status, a limit window crossed, or an end of a new/changed link.
    changed_links = edges.join(old_edges.select("src", "dst", "old_status"), ["src", "dst"], "left").where(
        ~F.col("status").eqNullSafe(F.col("old_status"))).select("src", "dst").unionByName(new_edges.select("src", "dst"))
    dirty = (new_nodes.select("vid")
             .unionByName(nodes.join(old_nodes.select("vid", "old_status"), "vid", "left")
                          .where(~F.col("status").eqNullSafe(F.col("old_status"))).select("vid"))
             .unionByName(nodes.where(in_window(cfg, as_of) != in_window(cfg, previous_as_of)).select("vid"))
             .unionByName(changed_links.select(F.col("src").alias("vid")))
             .unionByName(changed_links.select(F.col("dst").alias("vid"))))
    if compacts(cfg):  # a value crossing its type's compaction age changes its profile without new evidence
        dirty = dirty.unionByName(nodes.where(stale(cfg, as_of) != stale(cfg, previous_as_of)).select("vid"))
    dirty = dirty.distinct()
    # The region: every identifier of an old component holding a changed identifier, plus the changed ones.
    old_comp = old_nodes.where(F.col("old_component").isNotNull()).select("vid", "old_component")
    touched = dirty.join(old_comp, "vid").select("old_component").distinct()
    region = materialise(old_comp.join(touched, "old_component", "left_semi").select("vid").unionByName(dirty).distinct())
    region_nodes = nodes.join(region, "vid", "left_semi")
    region_edges = edges.join(region.select(F.col("vid").alias("src")), "src", "left_semi")
    region_prev = previous.join(region.select(F.col("vid").alias("vertex_id")), "vertex_id", "left_semi")
    _, graph_r, history, cc_stats = resolve_components(region_nodes, region_edges, cfg, as_of, region_prev,
                                                       engine=engine, org=org)
    kept = (previous.join(region.select(F.col("vid").alias("vertex_id")), "vertex_id", "left_anti")
            .join(old_comp.select(F.col("vid").alias("vertex_id"), F.col("old_component").alias("component")),
                  "vertex_id", "left")
            .select(F.col("vertex_id").alias("vid"), "id_type", "value", "profile_id", "profile_created_at",
                    "assigned_at", "split_reason", "component", F.lit(False).alias("compacted")))
    # Compacted identifiers outside the region are not in gold.id_graph: they come back from the stored state.
    kept = kept.unionByName(old_nodes.where(F.col("old_compacted")).join(region, "vid", "left_anti").select(
        "vid", "id_type", "value", F.lit(None).cast("string").alias("profile_id"),
        F.lit(None).cast("date").alias("profile_created_at"), F.lit(None).cast("timestamp").alias("assigned_at"),
        F.lit(None).cast("string").alias("split_reason"), F.col("old_component").alias("component"),
        F.lit(True).alias("compacted")))
    graph = materialise(graph_r.select(*kept.columns).unionByName(kept))
    stats = {"mode": "incremental", "iterations": cc_stats.iterations, "engine": cc_stats.engine,
             "vertices_resolved": region_nodes.where(F.col("status").isin(*USED)).count()}
    labelled = materialise(nodes.join(graph.select("vid", "component", "compacted"), "vid", "left"))
    return _outputs(labelled, edges, graph, history, stats)


# ---- statistics ------------------------------------------------------------------------------------------------

def mask(profile_id: str) -> str:
    """A profile id shortened for stats and logs: enough to tell profiles apart, not to join on."""
    return profile_id[:8] + "…" if len(profile_id) > 8 else profile_id


def graph_stats(identifiers: DataFrame, links: DataFrame, graph: DataFrame) -> dict[str, Any]:
    """Statistics from the resolved tables (so full and incremental runs report the same numbers)."""
    stats: dict[str, Any] = {}
    ident = {(r.id_type, r.status): (r.n, r.occ) for r in identifiers.groupBy("id_type", "status").agg(
        F.count("*").alias("n"), F.sum("times_seen").alias("occ")).collect()}
    stats["blocked_values_hit"] = {t: {"occurrences": int(occ), "distinct_values": n}
                                   for (t, s), (n, occ) in sorted(ident.items()) if s == "blocked"}
    stats["identifiers"] = {s: sum(n for (_, s2), (n, _) in ident.items() if s2 == s)
                            for s in sorted({s for _, s in ident})}
    stats["hubs_dropped"] = stats["identifiers"].get("hub", 0)
    stats["identifiers_expired"] = stats["identifiers"].get("expired", 0)
    status_counts = {r.status: r["count"] for r in links.groupBy("status").count().collect()}
    stats["links"] = status_counts
    stats["links_expired"] = status_counts.get("expired", 0)
    split = graph.where(F.col("split_reason").isNotNull()).agg(
        F.countDistinct(F.when(F.col("split_reason") != "hop_cap", F.col("component"))).alias("c"),
        F.count(F.when(F.col("split_reason") == "over_limit", 1)).alias("o"),
        F.count(F.when(F.col("split_reason") == "unreachable", 1)).alias("u"),
        F.count(F.when(F.col("split_reason") == "hop_cap", 1)).alias("h")).first()
    stats["limit_splits"] = {"components_split": split.c, "over_limit": split.o, "unreachable": split.u}
    stats["caps"] = {"links_capped": status_counts.get("capped", 0), "identifiers_hop_capped": split.h,
                     "identifiers_compacted": stats["identifiers"].get("compacted", 0)}
    stats.update(profile_stats(graph))
    return stats


def profile_stats(graph: DataFrame) -> dict[str, Any]:
    """Component size histogram and the 20 largest profiles (masked ids and sizes only: no identifier values)."""
    sizes = materialise(graph.groupBy("profile_id").agg(F.count("*").alias("size")))
    by_size = {r.size: r["count"] for r in sizes.groupBy("size").count().collect()}
    hist = {}
    for lo, hi in SIZE_BUCKETS:
        label = f"{lo}+" if hi is None else (str(lo) if lo == hi else f"{lo}-{hi}")
        hist[label] = sum(n for s, n in by_size.items() if s >= lo and (hi is None or s <= hi))
    top = sizes.orderBy(F.desc("size"), F.asc("profile_id")).limit(20).collect()
    return {"profiles": sum(by_size.values()), "size_histogram": hist,
            "largest_profiles": [{"profile_id": mask(r.profile_id), "size": r.size} for r in top]}


# ---- the stage -------------------------------------------------------------------------------------------------

def rules_fingerprint(cfg: IdentityConfig, org: str) -> str:
    """Hash of the rules and org: a change forces a full rebuild (incremental state was built under other rules)."""
    return hashlib.sha256(f"{org}|{cfg.model_dump_json()}".encode()).hexdigest()[:16]


def run(spark: SparkSession, config: "CdpConfig", lake: "Lake", as_of: dt.date, *, full: bool = False) -> StageResult:
    """Resolve identities up to ``as_of``: incremental when possible, ``full=True`` to rebuild from all of bronze.

    Idempotent: the same inputs, rules and as-of change nothing on a re-run.
    """
    cfg: IdentityConfig = getattr(config, "identity", None) or IdentityConfig()
    org_cfg = getattr(config, "org", None)
    org = org_cfg.id if org_cfg is not None else DEFAULT_ORG
    versions = {t: lake.version(t) for t in (EVENTS.name, PROFILE_RECORDS.name)}
    if all(v is None for v in versions.values()):
        return StageResult(metrics={"skipped": "no bronze tables yet"})
    # Bronze is read at the versions fingerprinted here, so a concurrent ingest cannot slip half in.
    events = lake.read(EVENTS.name, version=versions[EVENTS.name]) if versions[EVENTS.name] is not None else None
    profile_records = (lake.read(PROFILE_RECORDS.name, version=versions[PROFILE_RECORDS.name])
                       if versions[PROFILE_RECORDS.name] is not None else None)
    # Diverted streams (QA, test traffic) are left out unless identity opts in; a change of them rebuilds in full.
    excluded = diverted_streams(getattr(config, "routes", None) or [], "identity")
    fingerprint = rules_fingerprint(cfg, org) + (f"|diverted:{','.join(excluded)}" if excluded else "")
    txn = stage_token(STAGE, config, lake, as_of, versions=versions)
    if full:  # a requested rebuild is its own write, not a re-run of the day's incremental one
        txn = txn._replace(app_id=f"{txn.app_id}.full")
    run_id = f"identity-{as_of:%Y%m%d}-{txn.app_id.partition('.')[2][:8]}"
    if lake.committed(IDENTITY_RUNS.name, txn):
        log.info("identity for %s on these inputs is already committed; nothing to do", as_of)
        return StageResult(metrics={"skipped": "already committed", "run_id": run_id})
    state = latest_run(lake, IDENTITY_RUNS.name)
    mode, reason = run_mode(lake, state, fingerprint, as_of, full,
                            needed=(IDENTIFIERS.name, ID_LINKS.name, ID_GRAPH.name), appended_only=BRONZE_VERSIONS)
    records = G.records_from_bronze(events, profile_records, as_of, cfg.sources, exclude_streams=excluded)
    if mode == "full":
        previous = materialise(lake.read(ID_GRAPH.name)) if lake.exists(ID_GRAPH.name) else None
        batch = materialise(records.drop("identifiers").select("run_id"))  # for the run-id list below
        records_read = batch.count()
        res = resolve(records, cfg, as_of, previous, org=org)
        ingest_runs = {r[0] for r in batch.select(F.coalesce("run_id", F.lit(""))).distinct().collect()}
    else:
        assert state is not None
        done = F.coalesce(F.col("run_id"), F.lit("")).isin(list(state["ingest_runs"]))
        batch = materialise(records.where(~(done & (F.col("record_date") <= F.lit(state["as_of"])))))
        records_read = batch.count()
        # The stored state is read at the versions the previous run recorded; the writes below replace its files.
        identifiers = materialise(lake.read(IDENTIFIERS.name, version=state["identifiers_version"]))
        links = materialise(lake.read(ID_LINKS.name, version=state["links_version"]))
        previous = materialise(lake.read(ID_GRAPH.name, version=state["graph_version"]))
        res = resolve_incremental(batch, cfg, as_of, state["as_of"], identifiers, links, previous, org=org)
        ingest_runs = set(state["ingest_runs"]) | {
            r[0] for r in batch.select(F.coalesce("run_id", F.lit(""))).distinct().collect()}
    log.info("identity %s for %s (%s): %d records", mode, as_of, reason, records_read)
    history = res.history.select("*", F.lit(as_of).alias("as_of"), F.lit(run_id).alias("run_id"))
    metrics = {**res.stats, "run_id": run_id, "mode_reason": reason, "records_read": records_read}
    out = StageResult(metrics=metrics)
    out.rows_in = {t: lake.info(t).rows for t in (EVENTS.name, PROFILE_RECORDS.name) if lake.exists(t)}
    # No checkpoint before the overwrites: every output is computed from checkpointed data (the stored state was
    # materialised above), so none reads the files it replaces.
    for table, df, how in ((IDENTIFIERS.name, res.identifiers, "overwrite"), (ID_LINKS.name, res.links, "overwrite"),
                           (PROFILE_ID_HISTORY.name, history, "append"), (ID_GRAPH.name, res.graph, "overwrite")):
        result = lake.overwrite(table, df, txn=txn) if how == "overwrite" else lake.append(table, df, txn=txn)
        out.rows_out[table] = 0 if result.skipped else df.count()
    if events is not None:
        out.rows_out[EVENT_PROFILES.name] = _write_event_profiles(
            lake, events, res.graph, cfg, as_of, txn, previous if mode == "incremental" else None,
            state if mode == "incremental" else None)
    state_row = {
        "run_id": run_id, "as_of": as_of, "mode": mode, "reason": reason, "rules_fingerprint": fingerprint,
        "ingest_runs": sorted(ingest_runs), "events_version": versions[EVENTS.name],
        "profile_records_version": versions[PROFILE_RECORDS.name],
        "identifiers_version": lake.version(IDENTIFIERS.name), "links_version": lake.version(ID_LINKS.name),
        "graph_version": lake.version(ID_GRAPH.name), "records_read": records_read,
        "vertices_resolved": res.stats.get("vertices_resolved"), "stats": json.dumps(metrics, default=str),
        "finished_at": utc_now()}
    row = tuple(state_row[f] for f in IDENTITY_RUNS.schema.fieldNames())
    lake.append(IDENTITY_RUNS.name, spark.createDataFrame([row], IDENTITY_RUNS.schema), txn=txn)
    return out


def _write_event_profiles(lake: "Lake", events: DataFrame, graph: DataFrame, cfg: IdentityConfig, as_of: dt.date,
                          txn: Any, previous: DataFrame | None, state: dict[str, Any] | None) -> int:
    """Write gold.event_profiles for ``as_of``: in full (every event row) after a full resolution or when the table
    is missing, else only the new rows and those of event ids holding an identifier whose profile changed.
    Returns the rows written."""
    events = A.in_as_of(events, as_of)
    if previous is None or state is None or not lake.exists(EVENT_PROFILES.name):
        rows = materialise(A.assign(A.event_rows(events, cfg), graph, cfg))
        result = lake.overwrite(EVENT_PROFILES.name, rows, txn=txn)
        return 0 if result.skipped else rows.count()
    done = F.coalesce(F.col("run_id"), F.lit("")).isin(list(state["ingest_runs"]))
    new_rows = materialise(A.event_rows(events.where(~(done & (F.col("event_date") <= F.lit(state["as_of"])))), cfg))
    changed = materialise(A.changed_vertices(previous, graph))
    rows = materialise(A.reassign(lake.read(EVENT_PROFILES.name), new_rows, changed, graph, cfg))
    n = rows.count()
    if n == 0:
        return 0
    result = lake.merge(EVENT_PROFILES.name, rows.select(*A.COLUMNS), txn=txn)
    return 0 if result.skipped else n


def run_full(spark: SparkSession, config: "CdpConfig", lake: "Lake", as_of: dt.date) -> StageResult:
    """The stage function of `cdp identity run --full`: rebuild from all of bronze, keeping profile ids."""
    return run(spark, config, lake, as_of, full=True)
