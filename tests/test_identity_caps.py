"""Graph caps and compaction: the neighbour cap and the traversal cap change profiles as documented (checked against
a plain-Python reading of the rules), compaction drops old values without splitting profiles, an incremental run
with caps and compaction equals a full one, and the default caps leave the demo's gold.id_graph unchanged."""
from __future__ import annotations

import datetime as dt
import networkx as nx
import pytest

from cdp_spark.identity.config import IdentityConfig
from cdp_spark.identity.stage import resolve, resolve_incremental

AS_OF = dt.date(2026, 11, 1)
DAY = dt.datetime(2026, 10, 31, 12)
SCHEMA = "record_id string, source string, seen_at timestamp, identifiers map<string,string>"
PRIORITY = {"customer_id": 1, "email": 3, "device_id": 5, "cookie_id": 6}


def rec(rid, ids, seen=DAY):
    return (rid, "web", seen, ids)


KIND = {"C": "customer_id", "e": "email", "k": "cookie_id"}


def cfg(**kw):
    types = {"customer_id": {"priority": 1, "limit": 1, "anchor": True}, "email": {"priority": 3, "limit": 5},
             "device_id": {"priority": 5, "limit": 10}, "cookie_id": {"priority": 6, "limit": 50}}
    for t, rule in kw.pop("types", {}).items():
        types[t] = {**types[t], **rule}
    return IdentityConfig(id_types=types, checkpoint_every=50, **kw)


def chain():
    """C1 - e1 - k1 - e2 - k2 - e3 - k3 - e4: each link its own record (a star centre is the higher priority)."""
    names = ["C1", "e1", "k1", "e2", "k2", "e3", "k3", "e4"]
    return [rec(f"ch{i}", {KIND[a[0]]: a, KIND[b[0]]: b}) for i, (a, b) in enumerate(zip(names, names[1:]))]


def groups(res):
    """Profiles as sets of values, e.g. {frozenset({'C1', 'e1'}), ...}."""
    out: dict[str, set[str]] = {}
    for r in res.graph.collect():
        out.setdefault(r.profile_id, set()).add(r.value)
    return {frozenset(v) for v in out.values()}


def hop_pieces(nodes: dict[str, int], links: list[tuple[str, str]], max_hops: int) -> set[frozenset[str]]:
    """The traversal cap as docs/identity.md states it, computed with networkx: in each component, what lies within
    max_hops links of the root (smallest (priority, value)) is one piece; the rest is capped again on its own."""
    graph = nx.Graph(links)
    graph.add_nodes_from(nodes)
    pieces, todo = set(), [graph]
    while todo:
        part = todo.pop()
        for comp in nx.connected_components(part):
            root = min(comp, key=lambda n: (nodes[n], n))
            near = set(nx.single_source_shortest_path_length(part.subgraph(comp), root, cutoff=max_hops))
            pieces.add(frozenset(near))
            if comp - near:
                todo.append(part.subgraph(comp - near))
    return pieces


def branches():
    """A customer C with three branches of 1, 3 and 5 links (email, cookie, email, ...), their ends joined by kz."""
    nodes, links = {"C": 1, "kz": 6}, []
    for b, depth in enumerate((1, 3, 5)):
        prev = "C"
        for d in range(depth):
            name = f"e{b}{d}" if d % 2 == 0 else f"k{b}{d}"
            nodes[name] = PRIORITY[KIND[name[0]]]
            links.append((prev, name))
            prev = name
        links.append((prev, "kz"))
    return nodes, links


@pytest.mark.slow
def test_the_traversal_cap_cuts_what_is_further_than_n_links_from_the_root(spark):
    names = ["C1", "e1", "k1", "e2", "k2", "e3", "k3", "e4"]
    nodes, links = branches()
    nodes.update({n: PRIORITY[KIND[n[0]]] for n in names})
    links += list(zip(names, names[1:]))
    records = spark.createDataFrame(
        [rec(f"l{i}", {KIND[a[0]]: a, KIND[b[0]]: b}) for i, (a, b) in enumerate(links)], SCHEMA)
    rules = {"types": {"email": {"limit": 10}}}
    capped = resolve(records, cfg(max_hops=2, **rules), AS_OF)
    got = groups(capped)
    assert got == hop_pieces(nodes, links, 2)
    assert {frozenset({"C1", "e1", "k1"}), frozenset({"e2", "k2", "e3"}), frozenset({"k3", "e4"})} <= got
    reasons = {r.value: r.split_reason for r in capped.graph.collect() if r.value in names}
    assert reasons == {"C1": None, "e1": None, "k1": None, "e2": "hop_cap", "k2": "hop_cap", "e3": "hop_cap",
                       "k3": "hop_cap", "e4": "hop_cap"}
    cut = len(nodes) - sum(len(p) for p in got if {"C", "C1"} & p)
    assert capped.stats["caps"]["identifiers_hop_capped"] == cut == 5 + 4
    # silver.identifiers keeps the connected component (the incremental region is built from it)
    assert len({r.component for r in capped.identifiers.collect()}) == 2
    for hops in (1, 3):  # 1: pieces cut off and capped again, twice over; 3: one identifier cut off a branch
        assert groups(resolve(records, cfg(max_hops=hops, **rules), AS_OF)) == hop_pieces(nodes, links, hops), hops


def test_the_neighbour_cap_keeps_each_identifiers_strongest_links(spark):
    rows = []
    # customer C with six cookies, cookie j seen j+1 times: a cap of 4 keeps k2..k5 with C
    for j in range(6):
        rows += [rec(f"n{j}-{t}", {"customer_id": "C", "cookie_id": f"k{j}"}) for t in range(j + 1)]
    # a shared cookie S seen with four emails (m_j j+1 times): S keeps its four links only under a cap of 4 or more
    for j in range(4):
        rows += [rec(f"s{j}-{t}", {"email": f"m{j}@x.com", "cookie_id": "S"}) for t in range(j + 1)]
    records = spark.createDataFrame(rows, SCHEMA)
    res = resolve(records, cfg(max_neighbours=4), AS_OF)
    got = groups(res)
    assert frozenset({"C", "k2", "k3", "k4", "k5"}) in got and {frozenset({"k0"}), frozenset({"k1"})} <= got
    assert frozenset({"S", "m0@x.com", "m1@x.com", "m2@x.com", "m3@x.com"}) in got
    capped = {(r.src_value, r.dst_value) for r in res.links.collect() if r.status == "capped"}
    assert capped == {("C", "k0"), ("C", "k1")} and res.stats["caps"]["links_capped"] == 2
    got = groups(resolve(records, cfg(max_neighbours=2), AS_OF))
    # S keeps m3 and m2 (most co-occurrences); m1 and m0 become profiles of their own
    assert frozenset({"S", "m2@x.com", "m3@x.com"}) in got and frozenset({"m0@x.com"}) in got
    assert frozenset({"C", "k4", "k5"}) in got


def test_compaction_drops_old_values_but_never_splits_a_profile(spark):
    old = dt.datetime(2026, 10, 1)
    rows = [rec("a1", {"email": "a@x.com", "cookie_id": "bridge"}, old),
            rec("a2", {"email": "b@x.com", "cookie_id": "bridge"}, old)]
    rows += [rec(f"c{j}", {"email": "a@x.com", "cookie_id": f"c{j}"}, DAY - dt.timedelta(days=j)) for j in range(4)]
    # a second person whose cookies are all old
    rows += [rec(f"o{j}", {"email": "o@x.com", "cookie_id": f"o{j}"}, old) for j in (1, 2)]
    records = spark.createDataFrame(rows, SCHEMA)
    by_size = resolve(records, cfg(types={"cookie_id": {"compact_after_values": 3}}), AS_OF)
    # without compaction: {a, b, bridge, c0..c3}. The three most recent cookies stay; the bridge and c3 leave the
    # profile, which still holds both emails (the bridge's links still count).
    assert groups(by_size) == {frozenset({"a@x.com", "b@x.com", "c0", "c1", "c2"}), frozenset({"o@x.com", "o1", "o2"})}
    status = {r.value: (r.status, r.component) for r in by_size.identifiers.collect()}
    assert status["bridge"][0] == status["c3"][0] == "compacted" and status["c0"][0] == "active"
    assert len({c for v, (_, c) in status.items() if v[0] != "o"}) == 1     # still one connected component
    assert by_size.stats["caps"]["identifiers_compacted"] == 2
    by_time = resolve(records, cfg(types={"cookie_id": {"compact_after_days": 2}}), AS_OF)
    # the two days up to the end of 1/11 start on 31/10 00:00: only c0 (seen 31/10 12:00) is recent enough; a
    # profile's most recent value of a type always stays (ties: the smaller value), so o1 does
    assert groups(by_time) == {frozenset({"a@x.com", "b@x.com", "c0"}), frozenset({"o@x.com", "o1"})}


def _rows(res):
    return (sorted((r.id_type, r.value, r.profile_id, r.split_reason, r.profile_created_at, r.assigned_at)
                   for r in res.graph.collect()),
            sorted((r.id_type, r.value, r.status, r.component, r.times_seen) for r in res.identifiers.collect()),
            sorted((r.src_value, r.dst_value, r.status) for r in res.links.collect()))


@pytest.mark.slow
def test_an_incremental_run_with_caps_and_compaction_equals_a_full_one(spark):
    rules = cfg(max_hops=2, max_neighbours=3, types={"cookie_id": {"compact_after_values": 2},
                                                     "device_id": {"compact_after_days": 5}})
    day1 = chain()
    day1 += [rec(f"n{j}", {"customer_id": "N", "email": f"n{j}@x.com"}) for j in range(3)]
    day1 += [rec(f"z{j}", {"customer_id": "Z", "cookie_id": f"z{j}"}, DAY - dt.timedelta(days=j)) for j in range(3)]
    day1 += [rec("d1", {"customer_id": "D", "device_id": "dnew"}), rec("d2", {"customer_id": "D", "device_id": "dmid"},
                                                                        dt.datetime(2026, 10, 29))]
    as_of2 = dt.date(2026, 11, 4)
    later = dt.datetime(2026, 11, 3)
    day2 = [rec("x1", {"customer_id": "C1", "email": "e3"}, later),             # e3 comes within reach of C1
            *[rec(f"n3-{t}", {"customer_id": "N", "email": "n3@x.com"}, later) for t in range(3)],   # a 4th, strong
            rec("z9", {"customer_id": "Z", "cookie_id": "z9"}, later)]          # a newer cookie: z1 now compacted
    # dmid (29/10) leaves D by age on day 2 without any new record of it
    first = resolve(spark.createDataFrame(day1, SCHEMA), rules, AS_OF)
    stored = [x.localCheckpoint() for x in (first.identifiers, first.links, first.graph)]
    full = resolve(spark.createDataFrame(day1 + day2, SCHEMA), rules, as_of2, stored[2])
    incremental = resolve_incremental(spark.createDataFrame(day2, SCHEMA), rules, as_of2, AS_OF, *stored)
    assert _rows(incremental) == _rows(full)
    g = groups(full)
    assert frozenset({"C1", "e1", "k1", "e3"}) <= max(g, key=lambda s: "C1" in s) and "dmid" not in set().union(*g)
    assert "z1" not in set().union(*g) and {"z0", "z9"} <= max(g, key=lambda s: "Z" in s)
    assert "dmid" in set().union(*groups(first))


def test_the_default_caps_leave_the_demo_unchanged(spark, demo_lake):
    """The caps only act where they bind (both return their input untouched otherwise): in the demo built with the
    defaults, no link is capped and no identifier is cut off, so gold.id_graph is what it was without caps."""
    from cdp_spark.lake import default_registry
    from cdp_spark.lake.embedded import EmbeddedLake

    lake = EmbeddedLake(spark, str(demo_lake.root), default_registry())
    links = lake.read("silver.id_links")
    assert links.where("status = 'active'").count() > 100
    assert links.where("status = 'capped'").count() == 0
    graph = lake.read("gold.id_graph")
    assert graph.count() > 300 and graph.where("split_reason = 'hop_cap'").count() == 0
    assert lake.read("silver.identifiers").where("status = 'compacted'").count() == 0
