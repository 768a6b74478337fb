"""Connected components against networkx: random, adversarial (chains, stars), isolated, string and extreme ids."""
from __future__ import annotations

import random

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp_spark.identity import CCStats, connected_components


def expected(edges, isolated=()):
    g = nx.Graph()
    g.add_nodes_from(isolated)
    g.add_edges_from(edges)
    return {v: min(c) for c in nx.connected_components(g) for v in c}


def run(spark, edges, isolated=(), schema="src long, dst long", vtype="long", **kw):
    df = spark.createDataFrame(edges, schema)
    vertices = spark.createDataFrame([(v,) for v in isolated], f"id {vtype}") if isolated else None
    stats = CCStats()
    got = connected_components(df, vertices, stats=stats, **kw).collect()
    ids = [r.id for r in got]
    assert len(ids) == len(set(ids)), "each vertex appears once"
    return {r.id: r.component for r in got}, stats


def test_random_graphs_match_networkx(spark):
    # Several random graphs (sparse, near the giant-component threshold, dense) as one disjoint union: one run.
    rnd = random.Random(7)
    edges = []
    for k, (n, m) in enumerate([(60, 40), (200, 100), (200, 150), (300, 600)]):
        base = k * 1000
        edges += [(base + rnd.randrange(n), base + rnd.randrange(n)) for _ in range(m)]
    got, _ = run(spark, edges, checkpoint_every=3)  # local checkpoints between reliable ones: same result, faster
    assert got == expected(edges)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(-2**63, 2**63 - 1), st.integers(-2**63, 2**63 - 1)), min_size=1, max_size=30)
       | st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=1, max_size=30))
def test_hypothesis_graphs_including_64_bit_extremes(spark, edges):
    got, _ = run(spark, edges)
    assert got == expected(edges)


def test_round_convergence_test_agrees_with_the_degree_test(spark):
    # The per-round test counts edges and distinct dsts against the node count taken once; it must agree with the
    # full degree check on every round's edges, and neither step may add or lose a node.
    from cdp_spark.identity.components import (canonical_edges, is_star_forest, large_star, small_star,
                                               star_forest_check)

    rnd = random.Random(11)
    raw = [(rnd.randrange(150), rnd.randrange(150)) for _ in range(160)] + [(1000 + i, 1001 + i) for i in range(40)]
    current = canonical_edges(spark.createDataFrame(raw, "src long, dst long")).localCheckpoint()
    star, nodes = star_forest_check(current)
    assert nodes == len({v for e in raw for v in e if e[0] != e[1]})
    verdicts = []
    while not star:
        current = small_star(large_star(current)).localCheckpoint()
        star, n = star_forest_check(current)
        assert n == nodes
        verdicts.append((is_star_forest(current, nodes), star))
    assert len(verdicts) >= 2 and all(cheap == full for cheap, full in verdicts)
    assert verdicts[-1] == (True, True) and verdicts[0] == (False, False)


def test_long_chain_needs_logarithmic_rounds(spark):
    n = 10_000
    order = list(range(n))
    random.Random(3).shuffle(order)  # a chain whose ids are not in path order (harder than 0-1-2-...)
    edges = [(order[i], order[i + 1]) for i in range(n - 1)]
    got, stats = run(spark, edges, checkpoint_every=4)
    assert got == expected(edges)
    assert set(got.values()) == {0}
    assert stats.iterations <= 2 * 14 + 4  # 2*log2(n)+4


def test_stars_many_small_components_duplicates_self_loops_and_isolated(spark):
    star = [(0, i) for i in range(1, 300)] + [(1000 + i, 1000) for i in range(1, 200)]
    pairs = [(5000 + 2 * i, 5001 + 2 * i) for i in range(300)]
    dup = [(1, 0), (0, 1), (0, 1), (7000, 7000), (7001, 7001), (7001, 7002)]
    edges = star + pairs + dup
    isolated = [9000, 9001, 7000, 0]
    got, _ = run(spark, edges, isolated)
    assert got == expected(edges, isolated)
    assert got[9000] == 9000 and got[7000] == 7000


def test_extreme_64_bit_ids(spark):
    lo, hi = -2**63, 2**63 - 1
    edges = [(hi, hi - 1), (hi - 1, lo), (lo + 1, 0), (0, hi - 5)]
    got, _ = run(spark, edges)
    assert got == expected(edges)


def test_string_ids_component_is_smallest_member(spark):
    edges = [("b@x", "zz"), ("zz", "a@x"), ("m", "n"), ("é", "z")]
    got, _ = run(spark, edges, isolated=["lonely"], schema="src string, dst string", vtype="string")
    assert got == expected(edges, ["lonely"])
    assert got["zz"] == "a@x"


def test_empty_graph(spark):
    got, stats = run(spark, [])
    assert got == {} and stats.iterations == 0


def test_graphx_engine_agrees_with_ours_and_networkx_on_adversarial_graphs(spark):
    # Spark GraphX (the JVM's own implementation, and GraphFrames' `graphx` algorithm) as a second, independent
    # reference: random components, stars, duplicates both ways, self loops, isolated vertices, 64-bit extremes and a
    # short chain (GraphX needs one superstep per link of it).
    rnd = random.Random(11)
    edges = [(rnd.randrange(500), rnd.randrange(500)) for _ in range(400)]
    edges += [(10_000, 10_000 + i) for i in range(1, 60)] + [(1, 0), (0, 1), (0, 1), (7000, 7000)]
    edges += [(2**63 - 1, 2**63 - 2), (2**63 - 2, -2**63)] + [(20_000 + i, 20_001 + i) for i in range(12)]
    isolated = [9000, 7000, 0]
    native, _ = run(spark, edges, isolated, engine="native")
    graphx, stats = run(spark, edges, isolated, engine="graphx")
    assert stats.engine == "graphx" and graphx == native == expected(edges, isolated)
    strings = [("b@x", "zz"), ("zz", "a@x"), ("m", "n")]
    got, _ = run(spark, strings, schema="src string, dst string", vtype="string", engine="graphx")
    assert got == expected(strings)


@pytest.mark.graphframes
def test_graphframes_engine_gives_identical_output(spark, requires_graphframes_jvm):
    rnd = random.Random(11)
    edges = [(rnd.randrange(500), rnd.randrange(500)) for _ in range(400)]
    native, _ = run(spark, edges, engine="native")
    gf, stats = run(spark, edges, engine="graphframes")
    assert stats.engine == "graphframes" and gf == native
