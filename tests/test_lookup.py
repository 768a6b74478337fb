"""attach_profile_ids: each record goes to the profile of its highest-priority identifier that resolves."""
from __future__ import annotations

from cdp_spark.identity.config import IdentityConfig
from cdp_spark.identity.lookup import attach_profile_ids

GRAPH = [("customer_id", "c1", "p_A"), ("email", "a@x.com", "p_A"), ("cookie_id", "k1", "p_A"),
         # a limit split left this email in its own profile, apart from the cookie it was seen with
         ("email", "b@x.com", "p_B"), ("cookie_id", "k2", "p_C"), ("idfa", "i1", "p_D"), ("gaid", "g1", "p_E")]


def test_highest_priority_resolving_identifier_wins_and_unresolvable_records_drop(spark):
    records = spark.createDataFrame([
        ("e1", {"cookie_id": "k1"}),                                    # only a cookie: its profile
        ("e2", {"cookie_id": "k2", "email": "b@x.com"}),                # email outranks cookie
        ("e3", {"cookie_id": "k2", "customer_id": "unknown"}),          # customer_id did not resolve (blocked): cookie
        ("e4", {"idfa": "00000000-0000-0000-0000-000000000000"}),       # nothing resolves: left out
        ("e5", {"idfa": "i1", "gaid": "g1"}),                           # equal priority: by type name (gaid < idfa)
        ("e6", {"mystery": "k1"}),                                      # unknown id type never resolves
        ("e2", {"cookie_id": "k2", "email": "b@x.com"}),                # a duplicate delivery: one row out
    ], "event_id string, identifiers map<string,string>")
    graph = spark.createDataFrame(GRAPH, "id_type string, value string, profile_id string")

    out = attach_profile_ids(records, graph, IdentityConfig(), ["event_id"])

    assert out.columns == ["event_id", "identifiers", "profile_id"]
    assert sorted((r.event_id, r.profile_id) for r in out.collect()) == [
        ("e1", "p_A"), ("e2", "p_B"), ("e3", "p_C"), ("e5", "p_E")]


def test_priority_comes_from_config(spark):
    cfg = IdentityConfig.model_validate({"id_types": {"cookie_id": {"priority": 1}, "email": {"priority": 2}}})
    records = spark.createDataFrame([("e2", {"cookie_id": "k2", "email": "b@x.com"})],
                                    "event_id string, identifiers map<string,string>")
    graph = spark.createDataFrame(GRAPH, "id_type string, value string, profile_id string")
    assert [r.profile_id for r in attach_profile_ids(records, graph, cfg, ["event_id"]).collect()] == ["p_C"]
