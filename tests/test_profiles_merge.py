"""Trait merge rules, consent (latest wins) and identifiers, on hand-built records; most_frequent is checked
against a pandas reference with ties."""
from __future__ import annotations

import datetime as dt
import random

import pandas as pd
import pytest
from pyspark.sql import functions as F

from cdp_spark.profiles import merge as M
from cdp_spark.profiles.config import ProfilesConfig

TYPES = {"first_name": "string", "country": "string", "signup_date": "date", "loyalty_points": "long",
         "city": "string"}
T0 = dt.datetime(2026, 10, 1, 12, 0)


def ts(day: int, hour: int = 0) -> dt.datetime:
    return T0 + dt.timedelta(days=day, hours=hour)


def rows_df(spark, rows):
    return spark.createDataFrame(rows, "profile_id string, source string, ts timestamp, trait string, value string")


def merged(spark, rows, cfg: dict) -> dict:
    out = M.merge_traits(rows_df(spark, rows), ProfilesConfig.model_validate(cfg), TYPES)
    return {r.profile_id: (dict(r.traits), dict(r.trait_sources)) for r in out.collect()}


ROWS = [
    # p1: the web form is newer, the CRM older; country seen GB twice, FR twice -> tie, alphabetical: FR
    ("p1", "crm", ts(1), "first_name", "Robert"), ("p1", "web", ts(5), "first_name", "Bob"),
    ("p1", "app", ts(3), "first_name", "Bobby"),
    ("p1", "web", ts(1), "country", "GB"), ("p1", "web", ts(2), "country", "GB"),
    ("p1", "crm", ts(3), "country", "FR"), ("p1", "app", ts(4), "country", "FR"), ("p1", "app", ts(5), "country", "DE"),
    # dates compare as dates, numbers as numbers (as text "9" > "10")
    ("p1", "crm", ts(1), "signup_date", "2024-05-01"), ("p1", "web", ts(2), "signup_date", "2023-12-31"),
    ("p1", "web", ts(3), "signup_date", "not a date"),
    ("p1", "crm", ts(1), "loyalty_points", "9"), ("p1", "app", ts(2), "loyalty_points", "10"),
    ("p1", "app", ts(3), "loyalty_points", "oops"),
    # p2: only a web value: source priority falls back to unlisted sources
    ("p2", "web", ts(2), "first_name", "Ann"), ("p2", "shop", ts(9), "first_name", "Annie"),
]


def test_latest_and_first_by_record_time(spark):
    out = merged(spark, ROWS, {"traits": {"first_name": {"rule": "first"}, "country": {"rule": "latest"}}})
    traits, sources = out["p1"]
    assert traits["first_name"] == "Robert" and sources["first_name"] == "crm"
    assert traits["country"] == "DE" and sources["country"] == "app"
    # the default rule is latest
    assert merged(spark, ROWS, {})["p1"][0]["first_name"] == "Bob"


def test_source_priority_crm_beats_web(spark):
    out = merged(spark, ROWS, {"source_priority": ["crm", "web"], "traits": {"first_name": {"rule": "source_priority"}}})
    assert out["p1"][0]["first_name"] == "Robert"
    # nothing from crm: web outranks the unlisted shop even though the shop's value is newer
    assert out["p2"][0]["first_name"] == "Ann"
    # a per-trait list overrides the profiles-level one
    out = merged(spark, ROWS, {"source_priority": ["crm", "web"],
                               "traits": {"first_name": {"rule": "source_priority", "sources": ["app"]}}})
    assert out["p1"][0]["first_name"] == "Bobby"


def test_max_min_sum_use_the_catalogue_type(spark):
    cfg = {"traits": {"signup_date": {"rule": "min"}, "loyalty_points": {"rule": "max"}, "country": {"rule": "max"}}}
    traits = merged(spark, ROWS, cfg)["p1"][0]
    assert traits["signup_date"] == "2023-12-31"     # the unparseable value is ignored, not compared as text
    assert traits["loyalty_points"] == "10"           # numerically, "10" > "9"
    assert traits["country"] == "GB"
    traits = merged(spark, ROWS, {"traits": {"loyalty_points": {"rule": "sum"}, "signup_date": {"rule": "max"}}})["p1"][0]
    assert traits["loyalty_points"] == "19" and traits["signup_date"] == "2024-05-01"


def test_most_frequent_ties_break_alphabetically_like_pandas(spark):
    rng = random.Random(7)
    rows = []
    for p in range(40):
        for i in range(rng.randint(1, 7)):
            rows.append((f"p{p}", rng.choice(["web", "crm"]), ts(i), "city", rng.choice(["Leeds", "York", "Bath", "Ayr"])))
    got = {p: t["city"] for p, (t, _) in merged(spark, rows, {"traits": {"city": {"rule": "most_frequent"}}}).items()}
    frame = pd.DataFrame(rows, columns=["profile_id", "source", "ts", "trait", "value"])
    counts = frame.groupby(["profile_id", "value"]).size().reset_index(name="n")
    expected = (counts.sort_values(["profile_id", "n", "value"], ascending=[True, False, True])
                .groupby("profile_id").head(1).set_index("profile_id")["value"].to_dict())
    assert got == expected
    assert merged(spark, ROWS, {"traits": {"country": {"rule": "most_frequent"}}})["p1"][0]["country"] == "FR"


def test_deleted_snapshot_rows_no_longer_contribute(spark):
    records = spark.createDataFrame([
        ("p1", "crm", "k1", "insert", {"first_name": "Old"}, ts(1)),
        ("p1", "crm", "k1", "delete", {}, ts(2)),
        ("p1", "crm", "k2", "insert", {"first_name": "Kept"}, ts(0)),
        ("p1", "crm", "k1", "insert", {"first_name": "Back"}, ts(3)),   # re-inserted after the delete: counts again
    ], "profile_id string, source string, record_key string, change_type string, traits map<string,string>, "
       "record_time timestamp").withColumn("received_at", F.col("record_time"))
    live = M.live_records(records)
    assert sorted(r.traits["first_name"] for r in live.collect()) == ["Back", "Kept"]
    rows = M.trait_rows(live, ["first_name"])
    assert rows.count() == 2


CONSENT = "array<struct<purpose:string,channel:string,status:string,timestamp:timestamp>>"


@pytest.mark.parametrize("ignore_unknown, expected", [(True, "denied"), (False, "unknown")])
def test_consent_latest_timestamp_wins_across_events_and_records(spark, ignore_unknown, expected):
    events = spark.createDataFrame([
        ("p1", ts(1), [("email_marketing", "email", "granted", ts(1)), ("analytics", "web", "granted", ts(1))]),
        ("p1", ts(6), [("email_marketing", "email", "denied", None)]),   # no own timestamp: the event time
        ("p2", ts(1), [("analytics", "web", "granted", ts(1))]),
    ], f"profile_id string, event_time timestamp, consent {CONSENT}")
    records = spark.createDataFrame([
        ("p1", ts(4), [("email_marketing", "email", "granted", ts(4)), ("analytics", "web", "denied", ts(2))]),
        ("p2", ts(3), [("analytics", "web", "unknown", ts(3))]),
        ("p2", ts(1), [("analytics", "web", "denied", ts(1))]),            # same time as the event: denied wins
    ], f"profile_id string, record_time timestamp, consent {CONSENT}")
    purposes = ["email_marketing", "analytics", "ads_personalisation"]
    ev = events.groupBy("profile_id").agg(*M.consent_aggregates(events, purposes, F.col("event_time"),
                                                                  ignore_unknown=ignore_unknown))
    rec = records.groupBy("profile_id").agg(*M.consent_aggregates(records, purposes, F.col("record_time"),
                                                                    ignore_unknown=ignore_unknown))
    ev = ev.withColumnsRenamed({f"_consent_{p}": f"ev_consent_{p}" for p in purposes})
    rec = rec.withColumnsRenamed({f"_consent_{p}": f"rec_consent_{p}" for p in purposes})
    consent, at, _ = M.consent_maps(purposes, ["ev", "rec"])
    out = {r.profile_id: (r.c, r.a) for r in ev.join(rec, "profile_id").select("profile_id", consent.alias("c"),
                                                                                  at.alias("a")).collect()}
    assert out["p1"][0] == {"email_marketing": "denied", "analytics": "denied"}
    assert out["p1"][1]["email_marketing"] == ts(6)
    # ignored, the `unknown` at ts(3) leaves the event's grant and the record's denial tied at ts(1): denied wins
    assert out["p2"][0] == {"analytics": expected}


def _sources(**purposes_by_source):
    """Source configs as ConsentBasis.of reads them: name and the purposes each maps."""
    from types import SimpleNamespace

    return [SimpleNamespace(name=n, consent=SimpleNamespace(purposes=dict.fromkeys(ps))) for n, ps in
            purposes_by_source.items()]


def _decide(spark, events, records, purposes, basis):
    ev = events.groupBy("profile_id").agg(*M.consent_aggregates(events, purposes, F.col("event_time"),
                                                                  ignore_unknown=True, basis=basis))
    history = M.consent_history(records)
    rec = history.groupBy("profile_id").agg(*M.consent_aggregates(history, purposes, F.col("record_time"),
                                                                   ignore_unknown=True, basis=basis))
    ev = ev.withColumnsRenamed({f"_consent_{p}": f"ev_consent_{p}" for p in purposes})
    rec = rec.withColumnsRenamed({f"_consent_{p}": f"rec_consent_{p}" for p in purposes})
    consent, at, source = M.consent_maps(purposes, ["ev", "rec"])
    rows = ev.join(rec, "profile_id", "full").select("profile_id", consent.alias("c"), at.alias("a"),
                                                      source.alias("s")).collect()
    return {r.profile_id: (r.c, r.a, r.s) for r in rows}


EVENTS = f"profile_id string, source string, event_time timestamp, consent {CONSENT}"
RECORDS = (f"profile_id string, source string, record_key string, change_type string, record_time timestamp, "
           f"consent {CONSENT}")


def test_an_implicit_default_never_overrides_an_explicit_decision(spark):
    """web and orders map no consent column (their `granted` is `consent.unmapped`); the CRM maps email_marketing.
    Later web events must not re-grant what the CRM denied; only a later CRM decision changes it; a purpose nobody
    decided gets the default, with no decision time."""
    purposes = ["email_marketing", "analytics"]
    basis = M.ConsentBasis.of(_sources(crm=["email_marketing"], web=[], orders=[]), purposes)
    default = [("email_marketing", "email", "granted", None), ("analytics", "web", "granted", None)]
    events = spark.createDataFrame([
        ("p1", "web", ts(5), default), ("p1", "orders", ts(9), default),
        ("p2", "web", ts(5), default),
        ("p3", "web", ts(2), default),
        ("p4", "legacy", ts(7), [("email_marketing", "email", "granted", None)]),   # an unconfigured source
    ], EVENTS)
    records = spark.createDataFrame([
        ("p1", "crm", "k1", "insert", ts(1), [("email_marketing", "email", "denied", None)]),
        ("p2", "crm", "k2", "insert", ts(1), [("email_marketing", "email", "denied", None)]),
        ("p2", "crm", "k2", "update", ts(3), [("email_marketing", "email", "granted", None)]),  # a later decision
        ("p3", "crm", "k3", "insert", ts(1), [("email_marketing", "email", "denied", None)]),
        ("p3", "crm", "k3", "update", ts(4), [("email_marketing", "email", "unknown", None)]),  # no decision
        ("p4", "crm", "k4", "insert", ts(1), [("email_marketing", "email", "denied", None)]),
    ], RECORDS)
    out = _decide(spark, events, records, purposes, basis)
    assert out["p1"] == ({"email_marketing": "denied", "analytics": "granted"}, {"email_marketing": ts(1)},
                         {"email_marketing": "crm", "analytics": "orders"})
    assert out["p2"][0]["email_marketing"] == "granted" and out["p2"][1] == {"email_marketing": ts(3)}
    assert out["p3"][0]["email_marketing"] == "denied" and out["p3"][2]["email_marketing"] == "crm"
    # an unconfigured source's grant without its own timestamp is not taken for a decision
    assert out["p4"][0]["email_marketing"] == "denied"


def test_a_deleted_snapshot_row_keeps_its_consent_decision(spark):
    """A CRM opt-out whose row a later snapshot omitted (a delete record) still decides over later defaults."""
    purposes = ["email_marketing"]
    basis = M.ConsentBasis.of(_sources(crm=["email_marketing"], web=[]), purposes)
    events = spark.createDataFrame([("p1", "web", ts(5), [("email_marketing", "email", "granted", None)])], EVENTS)
    records = spark.createDataFrame([
        ("p1", "crm", "k1", "insert", ts(1), [("email_marketing", "email", "denied", None)]),
        ("p1", "crm", "k1", "delete", ts(2), []),
    ], RECORDS)
    assert _decide(spark, events, records, purposes, basis)["p1"][0] == {"email_marketing": "denied"}
    assert M.live_records(records.withColumn("received_at", F.col("record_time"))).count() == 0


def test_identifiers_grouped_sorted_and_capped(spark):
    graph = spark.createDataFrame([
        ("p1", "email", "b@x.com"), ("p1", "email", "a@x.com"), ("p1", "cookie_id", "c3"),
        ("p1", "cookie_id", "c1"), ("p1", "cookie_id", "c2"), ("p2", "customer_id", "42"),
    ], "profile_id string, id_type string, value string")
    out = {r.profile_id: r.identifiers for r in M.identifiers_by_type(graph, {"cookie_id": 2, "email": 5}).collect()}
    assert out == {"p1": {"cookie_id": ["c1", "c2"], "email": ["a@x.com", "b@x.com"]}, "p2": {"customer_id": ["42"]}}
