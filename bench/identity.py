"""Benchmark: native connected components (large-star/small-star) vs Spark GraphX, scipy and naive min-label
propagation (and GraphFrames' two algorithms where its jars are cached).

Graphs: (a) a demo-like identity graph: people with a customer id, 2 emails, a phone, 4-5 cookies and 2 device
ids, in two-person households of which 8% share a device (as the demo generator draws them), each record a star
to its highest-priority identifier, ids hashed to 64 bits like the stage; (b) an adversarial chain
with shuffled ids. Baselines in the same process: scipy.sparse.csgraph.connected_components on the collected edges
(single-machine lower bound) and naive min-label propagation in Spark (on a shorter chain: it needs
diameter-many rounds). Besides connected components alone, the whole resolution (`identity.stage.resolve`:
blocklist, star edges, hub guard, TTL, components, limits, profile ids) runs on synthetic records of the largest
identity graph ("rules included").

The issue's scale is the default (``--scale 10m``: 1M, 2M and 10M edges, a 1M-node chain); ``--scale 1m`` runs
1M and 2M edges; ``--scale reduced`` is for a loaded or small machine. ``--edges`` / ``--chain`` override a preset.
The sizes actually run are recorded in the JSON.

Usage:
    python -m bench.identity                      # the issue's scale (10M edges)
    python -m bench.identity --scale 1m
    python -m bench.identity --scale reduced --minlabel-chain 300
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile

import numpy as np

from bench.common import Timer, write_result


BUNDLES_NOTE = ("`cdp jars fetch graphframes` could not resolve io.graphframes:graphframes-spark4_2.13 from the "
                "Maven Central these machines reach; GraphX, which GraphFrames' graphx algorithm runs, is measured")
SHARED_HOUSEHOLDS = 0.08  # as in cdp_spark.demo.model: 8% of two-person households share a device


def _people_links(spark, edges_target: int):  # type: ignore[no-untyped-def]
    """(person, k, owner, slot): ~10 links per person, the demo's identity shape.

    Per person a customer id with 2 emails, a phone, 4 cookies and 2 device ids of their own, plus one more link:
    in a household that shares a device (``SHARED_HOUSEHOLDS`` of the two-person households, as the demo
    generator draws them) it is the partner's first cookie, otherwise a fifth own cookie. So components hold one
    person or a household of two, and each shared household breaks the one-customer-id limit and is split.
    """
    from pyspark.sql import functions as F

    people = max(2, edges_target // 10)
    p = spark.range(people).withColumnRenamed("id", "person")
    household = F.col("person") - F.col("person") % 2
    shared = ((F.xxhash64(F.lit("share"), household) % 10_000 + 10_000) % 10_000 < SHARED_HOUSEHOLDS * 10_000) \
        & (household + 1 < people)
    partner = F.col("person") + 1 - 2 * (F.col("person") % 2)
    k = spark.range(10).withColumnRenamed("id", "k")
    last = F.col("k") == 9
    return p.crossJoin(k).select(
        "person", "k",
        F.when(last & shared, partner).otherwise(F.col("person")).alias("owner"),
        F.when(last & shared, F.lit(3)).otherwise(F.col("k")).cast("long").alias("slot"))


def identity_graph(spark, edges_target: int):  # type: ignore[no-untyped-def]
    """About ``edges_target`` star edges (customer id -> each other identifier); the shape of _people_links."""
    from pyspark.sql import functions as F

    return _people_links(spark, edges_target).select(
        F.xxhash64(F.lit("customer_id"), F.col("person")).alias("src"),
        F.xxhash64(F.lit("x"), F.col("owner"), F.col("slot")).alias("dst"))


def scipy_cc(src: np.ndarray, dst: np.ndarray) -> tuple[int, float]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    with Timer() as t:
        ids, inv = np.unique(np.concatenate([src, dst]), return_inverse=True)
        n = len(ids)
        m = coo_matrix((np.ones(len(src), dtype=np.int8), (inv[: len(src)], inv[len(src):])), shape=(n, n))
        count, _ = connected_components(m, directed=False)
    return int(count), t.seconds


def min_label(edges, max_rounds: int = 100000) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Naive min-label propagation: every round each node takes the smallest label among itself and neighbours."""
    from pyspark.sql import functions as F

    both = edges.select("src", "dst").unionByName(edges.select(F.col("dst").alias("src"), F.col("src").alias("dst")))
    labels = both.select(F.col("src").alias("id")).distinct().withColumn("label", F.col("id")).localCheckpoint()
    rounds = 0
    while rounds < max_rounds:
        rounds += 1
        nbr = both.join(labels.withColumnRenamed("id", "dst").withColumnRenamed("label", "nl"), "dst") \
            .groupBy(F.col("src").alias("id")).agg(F.min("nl").alias("nl"))
        new = labels.join(nbr, "id").select("id", F.least("label", "nl").alias("label")).localCheckpoint()
        changed = new.join(labels.withColumnRenamed("label", "old"), "id").where("label != old").limit(1).count()
        labels = new
        if not changed:
            break
    return labels.select("label").distinct().count(), rounds


def run_engine(edges, engine: str = "native"):  # type: ignore[no-untyped-def]
    """Components, rounds and seconds of one connected-components engine on ``edges``."""
    from cdp_spark.identity import CCStats, connected_components

    stats = CCStats()
    with Timer() as t:
        cc = connected_components(edges, engine=engine, stats=stats)  # type: ignore[arg-type]
        comps = cc.select("component").distinct().count()
    return comps, stats.iterations, t.seconds


def graphframes_algorithms(edges) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Both of GraphFrames' connected-components algorithms, where its JVM classes load."""
    from graphframes import GraphFrame
    from pyspark.sql import functions as F

    vertices = edges.select(F.col("src").alias("id")).union(edges.select(F.col("dst").alias("id"))).distinct()
    out: dict[str, object] = {}
    for algorithm in ("graphframes", "graphx"):
        with Timer() as t:
            comps = (GraphFrame(vertices, edges).connectedComponents(algorithm=algorithm)
                     .select("component").distinct().count())
        out[f"graphframes_{algorithm}_seconds"] = round(t.seconds, 2)
        out[f"graphframes_{algorithm}_components"] = comps
    return out


def chain(spark, n: int):  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F

    # a path whose ids are scrambled (xxhash64 of the position), so id order says nothing about path order
    return spark.range(n - 1).select(F.xxhash64("id").alias("src"), F.xxhash64(F.col("id") + 1).alias("dst"))


def measure(name: str, edges, with_min_label: bool = False, jvm_engines: bool = False,  # type: ignore[no-untyped-def]
            graphframes: bool = False) -> dict[str, object]:
    edges = edges.localCheckpoint()
    m = edges.count()
    comps, iters, secs = run_engine(edges)
    pdf = edges.toPandas()
    sc_comps, sc_secs = scipy_cc(pdf["src"].to_numpy(), pdf["dst"].to_numpy())
    assert sc_comps == comps, (sc_comps, comps)
    out: dict[str, object] = {"graph": name, "edges": m, "components": comps, "native_iterations": iters,
                              "native_seconds": round(secs, 2), "scipy_seconds": round(sc_secs, 3),
                              "native_over_scipy": round(secs / max(sc_secs, 1e-9), 1)}
    if jvm_engines:
        # Spark GraphX's connected components (Pregel min-label propagation in the JVM; GraphFrames' `graphx`
        # algorithm calls it), on the same edges in the same session.
        gx_comps, _, gx_secs = run_engine(edges, "graphx")
        assert gx_comps == comps, (gx_comps, comps)
        out.update(graphx_seconds=round(gx_secs, 2), graphx_over_native=round(gx_secs / max(secs, 1e-9), 2))
    if graphframes:
        out.update(graphframes_algorithms(edges))
    if with_min_label:
        with Timer() as t:
            ml_comps, ml_rounds = min_label(edges)
        assert ml_comps == comps
        out.update(min_label_rounds=ml_rounds, min_label_seconds=round(t.seconds, 2),
                   min_label_over_native=round(t.seconds / max(secs, 1e-9), 1))
    print(out, flush=True)
    return out


def identity_records(spark, edges_target: int):  # type: ignore[no-untyped-def]
    """Records whose star edges are the identity graph above: per person 10 two-identifier records, each the
    customer id with one other identifier (see _people_links)."""
    import datetime as dt

    from pyspark.sql import functions as F

    kinds = ["email", "email", "phone", "cookie_id", "cookie_id", "cookie_id", "cookie_id", "device_id", "device_id",
             "cookie_id"]
    kind = F.element_at(F.array(*[F.lit(k) for k in kinds]), (F.col("slot") + 1).cast("int"))
    value = F.concat_ws("-", F.lit("v"), F.col("owner").cast("string"), F.col("slot").cast("string"))
    seen = dt.datetime(2026, 10, 30, 12)
    return (_people_links(spark, edges_target)
            .select(F.concat_ws("-", F.lit("r"), F.col("person").cast("string"), F.col("k").cast("string")).alias("record_id"),
                    F.lit("bench").alias("source"), F.lit(seen).alias("seen_at"),
                    F.create_map(F.lit("customer_id"), F.concat(F.lit("c"), F.col("person").cast("string")),
                                 kind, value).alias("identifiers")))


def measure_resolve(spark, edges_target: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    import datetime as dt

    from cdp_spark.identity.config import IdentityConfig
    from cdp_spark.identity.stage import resolve

    records = identity_records(spark, edges_target).localCheckpoint()
    n = records.count()
    with Timer() as t:
        res = resolve(records, IdentityConfig(engine="native"), dt.date(2026, 11, 1))
    profiles = res.stats["profiles"]  # counted by the resolution's own statistics
    out = {"graph": f"resolve-{edges_target}", "records": n, "profiles": profiles,
           "iterations": res.stats["iterations"], "limit_splits": res.stats["limit_splits"],
           "hubs_dropped": res.stats["hubs_dropped"], "resolve_seconds": round(t.seconds, 2),
           "target_seconds_on_2_cores_at_10m": 300}
    print(out, flush=True)
    return out


SCALES = {  # edges of the identity graphs, chain length, min-label chain length
    "reduced": ([250_000, 500_000], 20_000, 500),
    "1m": ([1_000_000, 2_000_000], 1_000_000, 1_000),
    "10m": ([1_000_000, 2_000_000, 10_000_000], 1_000_000, 1_000),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", choices=sorted(SCALES), default="10m", help="preset sizes (default: the issue's)")
    parser.add_argument("--edges", type=int, nargs="+", default=None, help="identity graph sizes (overrides --scale)")
    parser.add_argument("--chain", type=int, default=None, help="chain length (overrides --scale)")
    parser.add_argument("--minlabel-chain", type=int, default=None, help="chain for the min-label baseline")
    parser.add_argument("--no-resolve", action="store_true", help="skip the rules-included resolution")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    edges, chain_n, ml_n = SCALES[args.scale]
    args.edges = args.edges or edges
    args.chain = args.chain or chain_n
    args.minlabel_chain = args.minlabel_chain or ml_n
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from cdp_spark.spark import build_session, embedded_conf

    from cdp_spark import jars
    from cdp_spark.spark import capabilities

    tmp = tempfile.mkdtemp(prefix="bench-identity-")
    # GraphFrames joins the comparison wherever its jars are cached (`cdp jars fetch graphframes`).
    extra, _ = jars.session_conf(["graphframes"])
    spark = build_session("bench-identity", embedded_conf(cores=args.cores, shuffle_partitions=2 * args.cores,
                                                          extra=extra), os.path.join(tmp, "checkpoints"))
    graphframes = capabilities(spark).graphframes_jvm
    results = [measure(f"identity-{n}", identity_graph(spark, n), jvm_engines=True, graphframes=graphframes)
               for n in args.edges]
    ch = measure(f"chain-{args.chain}", chain(spark, args.chain))
    ch["iteration_bound_2log2n_plus_4"] = round(2 * math.log2(args.chain) + 4, 1)
    short = measure(f"chain-{args.minlabel_chain}", chain(spark, args.minlabel_chain), with_min_label=True)
    growth = None
    if len(results) >= 2:
        growth = round(float(results[1]["native_seconds"]) / float(results[0]["native_seconds"]), 2)  # type: ignore[arg-type]
    resolved = None if args.no_resolve else measure_resolve(spark, max(args.edges))
    full_scale = args.edges == SCALES["10m"][0] and args.chain >= 1_000_000
    write_result("identity", {
        "scale": args.scale, "edges": args.edges, "chain": args.chain, "minlabel_chain": args.minlabel_chain,
        "note": "the issue's scale" if full_scale else
                "reduced scale on a shared, loaded machine; rerun `python -m bench.identity` (10M edges) on a quiet one",
        "graphs": results + [ch, short], "time_growth_when_edges_double": growth,
        "graphframes": "measured" if graphframes else
                       f"not measured: GraphFrames' JVM classes are not loadable ({BUNDLES_NOTE})",
        "targets": {"chain_iterations_at_most": ch["iteration_bound_2log2n_plus_4"],
                    "min_label_over_native_at_least": 5, "growth_at_most": 2.3, "resolve_10m_seconds_at_most": 300,
                    "jvm_engine_over_native_at_least": 1.5},
        "resolve_rules_included": resolved,
    })


if __name__ == "__main__":
    main()
