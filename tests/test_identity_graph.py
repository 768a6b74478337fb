"""Identity graph builders: node and edge evidence, with the per-source bitmask against plain collect_set."""
from __future__ import annotations

import datetime as dt
import random

import pytest
from pyspark.sql import functions as F

from cdp_spark.identity import graph as G
from cdp_spark.identity.config import IdentityConfig

SCHEMA = "record_id string, source string, seen_at timestamp, identifiers map<string,string>"


def records(spark, n_sources: int):
    rnd = random.Random(n_sources)
    base = dt.datetime(2026, 10, 1)
    rows = []
    for i in range(400):
        ids = {"customer_id": f"c{rnd.randrange(60)}", "email": f"e{rnd.randrange(80)}@x.com"}
        if rnd.random() < 0.5:
            ids["cookie_id"] = f"k{rnd.randrange(90)}"
        rows.append((f"r{i}", f"src{rnd.randrange(n_sources):02d}", base + dt.timedelta(hours=rnd.randrange(500)), ids))
    return spark.createDataFrame(rows, SCHEMA)


def expected_sources(occ):
    """The reference: sorted distinct sources per identifier, in plain Python."""
    out: dict[tuple[str, str], set[str]] = {}
    for r in occ.collect():
        out.setdefault((r.id_type, r.value), set()).add(r.source)
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.parametrize("n_sources", [3, 70])  # 70 > 62 bits: the collect_set fallback
def test_identifier_sources_match_a_plain_python_reference(spark, n_sources):
    occ = G.with_rules(G.explode_identifiers(records(spark, n_sources), IdentityConfig()), IdentityConfig())
    names = G.source_names(occ)
    assert names == sorted(names) and (len(names) > 62) == (n_sources > 62)  # both paths really run
    got = {(r.id_type, r.value): list(r.sources) for r in G.identifiers(occ, names).collect()}
    assert got == expected_sources(occ)
    plain = {(r.id_type, r.value): list(r.sources) for r in G.identifiers(occ).collect()}
    assert got == plain


def test_star_edges_with_known_sources_equal_collect_set(spark):
    cfg = IdentityConfig()
    occ = G.with_rules(G.explode_identifiers(records(spark, 5), cfg), cfg).withColumn("blocked", G.blocked(cfg))
    cols = ["src", "dst", "times_seen", "first_seen", "last_seen", "sources"]
    fast = G.star_edges(occ, G.source_names(occ)).select(*cols)
    plain = G.star_edges(occ).select(*cols)
    assert fast.count() > 100
    assert sorted(map(tuple, fast.collect())) == sorted(map(tuple, plain.collect()))
    # every edge hangs off its record's customer id (the highest priority), never off an email or cookie
    assert fast.join(occ.where(F.col("id_type") == "customer_id").select(F.col("vid").alias("src")), "src",
                     "left_anti").count() == 0
