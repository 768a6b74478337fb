"""Identity rules end to end on small record sets: blocklist, hub guard, limits and priorities, TTL, order
independence and profile-id stability. Scenarios use disjoint identifiers so one resolution checks several rules."""
from __future__ import annotations

import datetime as dt
import random

import pytest

from cdp_spark.identity.config import IdentityConfig
from cdp_spark.identity.stage import resolve

AS_OF = dt.date(2026, 11, 1)
NOW = dt.datetime(2026, 10, 31, 12)
SCHEMA = "record_id string, source string, seen_at timestamp, identifiers map<string,string>"


def rec(rid, ids, seen=NOW, source="crm"):
    return (rid, source, seen, ids)


def scenario_records():
    r = []
    # 1. opted-out advertising id (all zeros) and a test email shared by 1000 customers: must merge nothing
    for i in range(1000):
        r.append(rec(f"z{i}", {"customer_id": f"zc{i}", "idfa": "00000000-0000-0000-0000-000000000000",
                               "email": "test@test.com" if i % 2 else "NULL"}))
    # 2. a junk email (not on any blocklist) shared by 30 customers: hub guard (max_links=20)
    for i in range(30):
        r.append(rec(f"h{i}", {"customer_id": f"hc{i}", "email": "shared@junk.example"}))
    # 3. two customer ids bridged by one email: never one profile; the email goes to the stronger link
    r += [rec("b1", {"customer_id": "bc1", "email": "bridge@x.com"}), rec("b2", {"customer_id": "bc1", "email": "bridge@x.com"}),
          rec("b3", {"customer_id": "bc2", "email": "bridge@x.com"}), rec("b4", {"customer_id": "bc2", "cookie_id": "bk2"})]
    # 4. one customer with 7 emails (limit 5): the 5 most co-occurring stay, 2 become their own profiles
    for k in range(7):
        for j in range(10 - k):
            r.append(rec(f"l{k}-{j}", {"customer_id": "lc", "email": f"e{k}@lim.com"}))
    # 5. TTL: a cookie seen with two emails only 120 days ago does not join them; a fresh cookie does
    old = dt.datetime(2026, 7, 1)
    r += [rec("t1", {"email": "t1@ttl.com", "cookie_id": "old"}, old), rec("t2", {"email": "t2@ttl.com", "cookie_id": "old"}, old),
          rec("t3", {"email": "t3@ttl.com", "cookie_id": "new"}), rec("t4", {"email": "t4@ttl.com", "cookie_id": "new"}),
          rec("t5", {"email": "t1@ttl.com"})]
    # 6. a chain of types: customer -> email -> phone -> cookie, all one person
    r += [rec("c1", {"customer_id": "cc", "email": "c@x.com"}), rec("c2", {"email": "c@x.com", "phone": "+441"}),
          rec("c3", {"phone": "+441", "cookie_id": "ck"})]
    # 7. two customer ids sharing a cookie at one end of a cookie-device chain ending in an email: every identifier
    #    is reachable from the anchors (the email 17 links deep), so all attach and none is left 'unreachable'
    r += [rec("d0", {"customer_id": "dA", "cookie_id": "dk1"}), rec("d1", {"customer_id": "dB", "cookie_id": "dk1"}),
          rec("d2", {"device_id": "dd8", "email": "deep@x.com"})]
    for i in range(1, 9):
        r.append(rec(f"dk{i}", {"cookie_id": f"dk{i}", "device_id": f"dd{i}"}))
        if i < 8:
            r.append(rec(f"dd{i}", {"device_id": f"dd{i}", "cookie_id": f"dk{i + 1}"}))
    return r


@pytest.fixture(scope="module")
def cfg():
    # local checkpoints between component rounds (reliable ones write to disk: slower, same result)
    return IdentityConfig(max_links=20, checkpoint_every=50)


@pytest.fixture(scope="module")
def resolved(spark, cfg):
    records = spark.createDataFrame(scenario_records(), SCHEMA)
    res = resolve(records, cfg, AS_OF)
    rows = res.graph.collect()
    return res, {(r.id_type, r.value): r for r in rows}


def profile(g, t, v):
    return g[(t, v)].profile_id


def test_blocked_values_merge_nothing(resolved):
    res, g = resolved
    assert len({profile(g, "customer_id", f"zc{i}") for i in range(1000)}) == 1000
    assert ("idfa", "00000000-0000-0000-0000-000000000000") not in g and ("email", "test@test.com") not in g
    assert ("email", "NULL") not in g
    hit = res.stats["blocked_values_hit"]
    assert hit["idfa"] == {"occurrences": 1000, "distinct_values": 1} and hit["email"]["occurrences"] == 1000


def test_hub_guard_keeps_shared_identifier_out_of_stitching(resolved):
    res, g = resolved
    assert len({profile(g, "customer_id", f"hc{i}") for i in range(30)}) == 30
    assert res.stats["hubs_dropped"] == 1
    hub_status = {(r.id_type, r.value): r.status for r in res.identifiers.where("status = 'hub'").collect()}
    assert hub_status == {("email", "shared@junk.example"): "hub"}


def test_two_customer_ids_never_share_a_profile(resolved):
    res, g = resolved
    assert profile(g, "customer_id", "bc1") != profile(g, "customer_id", "bc2")
    assert profile(g, "email", "bridge@x.com") == profile(g, "customer_id", "bc1")  # 2 records vs 1
    assert profile(g, "cookie_id", "bk2") == profile(g, "customer_id", "bc2")
    by_profile = {}
    for (t, v), r in g.items():
        if t == "customer_id":
            by_profile.setdefault(r.profile_id, []).append(v)
    assert all(len(v) == 1 for v in by_profile.values())


def test_limit_keeps_the_most_linked_emails(resolved):
    res, g = resolved
    lc = profile(g, "customer_id", "lc")
    kept = {k for k in range(7) if profile(g, "email", f"e{k}@lim.com") == lc}
    assert kept == {0, 1, 2, 3, 4}
    assert {g[("email", f"e{k}@lim.com")].split_reason for k in (5, 6)} == {"over_limit"}
    assert res.stats["limit_splits"]["over_limit"] == 2


def test_deep_identifiers_attach_to_an_anchor(resolved):
    _, g = resolved
    chain = [("cookie_id", f"dk{i}") for i in range(1, 9)] + [("device_id", f"dd{i}") for i in range(1, 9)]
    deep = chain + [("email", "deep@x.com")]
    assert {profile(g, t, v) for t, v in deep} == {profile(g, "customer_id", "dA")}  # tie on the shared cookie: dA
    assert profile(g, "customer_id", "dB") != profile(g, "customer_id", "dA")
    assert {g[k].split_reason for k in deep} == {"limit_split"}


def test_ttl_cuts_stale_cookie_links(resolved):
    res, g = resolved
    assert profile(g, "email", "t1@ttl.com") != profile(g, "email", "t2@ttl.com")
    assert ("cookie_id", "old") not in g  # expired identifiers are not resolved
    assert profile(g, "email", "t3@ttl.com") == profile(g, "email", "t4@ttl.com") == profile(g, "cookie_id", "new")
    assert res.stats["links_expired"] == 2


def test_priority_chain_is_one_profile(resolved):
    _, g = resolved
    assert len({profile(g, t, v) for t, v in [("customer_id", "cc"), ("email", "c@x.com"), ("phone", "+441"),
                                                ("cookie_id", "ck")]}) == 1


@pytest.mark.slow
def test_shuffled_input_gives_identical_output(spark, cfg, resolved):
    _, g = resolved
    rows = scenario_records()
    random.Random(5).shuffle(rows)
    records = spark.createDataFrame(rows, SCHEMA).repartition(3)
    again = {(r.id_type, r.value): r for r in resolve(records, cfg, AS_OF).graph.collect()}
    assert again == g


def test_profile_ids_survive_merge_and_split(spark, cfg):
    # The previous graph: A (oldest), B (newer), C (five identifiers, about to split 3 / 2).
    prev_rows = [("email", "a@x.com", "pA", dt.date(2026, 9, 1)), ("cookie_id", "ka", "pA", dt.date(2026, 9, 1)),
                 ("email", "b@x.com", "pB", dt.date(2026, 10, 1)), ("cookie_id", "kb", "pB", dt.date(2026, 10, 1)),
                 ("email", "c@x.com", "pC", dt.date(2026, 8, 1)), ("cookie_id", "c1", "pC", dt.date(2026, 8, 1)),
                 ("cookie_id", "c2", "pC", dt.date(2026, 8, 1)), ("email", "d@x.com", "pC", dt.date(2026, 8, 1)),
                 ("cookie_id", "d1", "pC", dt.date(2026, 8, 1))]
    previous = spark.createDataFrame(prev_rows, "id_type string, value string, profile_id string, profile_created_at date") \
        .selectExpr("id_type", "value", "xxhash64(id_type, value) AS vertex_id", "profile_id", "profile_created_at",
                    "CAST(profile_created_at AS timestamp) AS assigned_at")
    records = [rec("a", {"email": "a@x.com", "cookie_id": "ka"}), rec("b", {"email": "b@x.com", "cookie_id": "kb"}),
               rec("ab", {"email": "b@x.com", "cookie_id": "ka"}),                      # bridges A and B: merge
               rec("c1", {"email": "c@x.com", "cookie_id": "c1"}), rec("c2", {"email": "c@x.com", "cookie_id": "c2"}),
               rec("d1", {"email": "d@x.com", "cookie_id": "d1"}),                      # C lost its c-d link: split
               rec("n", {"email": "new@x.com"})]
    res = resolve(spark.createDataFrame(records, SCHEMA), cfg, AS_OF, previous=previous)
    g = {(r.id_type, r.value): r for r in res.graph.collect()}
    assert {profile(g, t, v) for t, v in [("email", "a@x.com"), ("email", "b@x.com"), ("cookie_id", "kb")]} == {"pA"}
    assert profile(g, "email", "c@x.com") == "pC" and profile(g, "cookie_id", "c2") == "pC"  # 3 of C's 5 keep pC
    d = profile(g, "email", "d@x.com")
    assert d not in {"pA", "pB", "pC"} and profile(g, "cookie_id", "d1") == d
    new = profile(g, "email", "new@x.com")
    assert new.startswith("p_") and new != d and g[("email", "new@x.com")].profile_created_at == AS_OF
    assert g[("email", "a@x.com")].assigned_at == dt.datetime(2026, 9, 1)       # unchanged assignment kept
    assert g[("email", "b@x.com")].assigned_at == dt.datetime(2026, 11, 1)      # moved today
    history = sorted((h.old_profile_id, h.new_profile_id, h.reason, h.identifiers) for h in res.history.collect())
    assert history == [("pB", "pA", "merge", 2), ("pC", d, "split", 2)]
    # rebuilding the next day from the same records changes no id and logs nothing
    again = resolve(spark.createDataFrame(records, SCHEMA), cfg, AS_OF + dt.timedelta(days=1), previous=res.graph)
    assert {k: r.profile_id for k, r in ((k2, r2) for k2, r2 in
            ((((r.id_type, r.value), r) for r in again.graph.collect())))} == {k: r.profile_id for k, r in g.items()}
    assert again.history.count() == 0
