"""The profiles stage on an embedded lake: traits/consent end to end, the typed view, idempotent re-runs, as-of
reproducibility, and a merged-away profile removed after an identity merge (checked with delta-rs too)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from deltalake import DeltaTable

from cdp_spark.config import load_config
from cdp_spark.identity.tables import ID_GRAPH, PROFILE_ID_HISTORY
from cdp_spark.ingest.tables import EVENTS, PROFILE_RECORDS
from cdp_spark.lake import default_registry
from cdp_spark.lake.embedded import EmbeddedLake
from cdp_spark.pipeline import stage_function
from cdp_spark.profiles import stage
from cdp_spark.profiles.view import profile_view, view_schema

REPO = Path(__file__).resolve().parents[1]
D = dt.date(2026, 11, 1)


def at(days: int, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(D + dt.timedelta(days=days), dt.time(hour))


def row(schema, **values):
    return tuple(values.get(f.name) for f in schema.fields)


def consent(purpose, status, when):
    return [(purpose, "email", status, when)]


def event(i, ids, name, when, source="web", **extra):
    return row(EVENTS.schema, event_id=f"e{i}", source=source, event_name=name, event_time=when,
               event_date=when.date(), identifiers=ids, run_id="r", **extra)


def graph_rows(assign: dict[str, list[tuple[str, str]]]):
    return [row(ID_GRAPH.schema, id_type=t, value=v, vertex_id=hash((t, v)) % 1000, profile_id=p,
                profile_created_at=D, assigned_at=at(0, 0)) for p, ids in assign.items() for t, v in ids]


GRAPH = {"p1": [("customer_id", "c1"), ("email", "a@x.com")], "p2": [("email", "b@x.com"), ("cookie_id", "k2")],
         "p3": [("cookie_id", "k3")]}


def snapshot(lake):
    return {r.profile_id: r.asDict() for r in lake.read("gold.profiles").collect()}


@pytest.fixture(scope="module")
def world(make_lake, spark, tmp_path_factory):
    base = load_config(REPO / "conf" / "cdp.yaml")
    config = base.model_copy(update={"lake": base.lake.model_copy(update={"root": str(tmp_path_factory.mktemp("lake"))})})
    lake = make_lake(config.lake.root, default_registry())
    events = [
        event(1, {"email": "a@x.com", "cookie_id": "k1"}, "product viewed", at(-1), product_id="SKU-1",
              category="home", consent=consent("email_marketing", "granted", at(-5))),
        event(2, {"customer_id": "c1"}, "order_completed", at(-2), source="orders", order_id="o1",
              revenue_reporting=50.0, quantity=2),
        event(3, {"email": "b@x.com"}, "identify", at(-3), consent=consent("email_marketing", "denied", at(-3))),
        event(4, {"cookie_id": "k3"}, "page", at(0, 8)),
        event(5, {"customer_id": "c1"}, "login", at(3), source="app"),          # after the as-of: not counted
    ]
    records = [
        row(PROFILE_RECORDS.schema, source="crm", record_key="c1", change_type="insert", identifiers={"customer_id": "c1"},
            traits={"first_name": "Robert", "country": "GB", "signup_date": "2024-01-01"}, record_time=at(-10),
            received_at=at(-10), consent=consent("email_marketing", "granted", at(-1)), run_id="r",
            ingest_file="crm.csv", ingest_line=1),
        row(PROFILE_RECORDS.schema, source="web", change_type="upsert", identifiers={"email": "a@x.com"},
            traits={"first_name": "Bob", "signup_date": "2023-06-30"}, record_time=at(-2), received_at=at(-2),
            run_id="r", ingest_file="web.json", ingest_line=1),
        row(PROFILE_RECORDS.schema, source="web", change_type="upsert", identifiers={"email": "b@x.com"},
            traits={"first_name": "Ann"}, record_time=at(-3), received_at=at(-3), run_id="r",
            ingest_file="web.json", ingest_line=2),
    ]
    lake.append(EVENTS.name, spark.createDataFrame(events, EVENTS.schema))
    lake.append(PROFILE_RECORDS.name, spark.createDataFrame(records, PROFILE_RECORDS.schema))
    lake.overwrite(ID_GRAPH.name, spark.createDataFrame(graph_rows(GRAPH), ID_GRAPH.schema))
    out = {"config": config, "lake": lake}

    out["first"] = stage_function("profiles")(spark, config, lake, D)
    out["profiles_1"] = snapshot(lake)
    out["view_1"] = {r.profile_id: r.asDict(recursive=True) for r in profile_view(spark, config, lake).collect()}
    out["view_schema"] = profile_view(spark, config, lake).schema
    out["versions_1"] = (lake.version("gold.profiles"), lake.version("gold.profile_attributes"))
    out["attrs_1"] = sorted((r.profile_id, r.attributes) for r in lake.read("gold.profile_attributes").collect())
    out["delta_rs_1"] = DeltaTable(lake.path("gold.profiles")).to_pyarrow_table().to_pylist()

    out["again"] = stage.run(spark, config, lake, D)
    out["versions_2"] = (lake.version("gold.profiles"), lake.version("gold.profile_attributes"))

    # late data for a later day changes the inputs (new fingerprint) but not what is true as of D
    lake.append(EVENTS.name, spark.createDataFrame([event(6, {"cookie_id": "k3"}, "page", at(1))], EVENTS.schema))
    out["late"] = stage.run(spark, config, lake, D)
    out["versions_3"] = (lake.version("gold.profiles"), lake.version("gold.profile_attributes"))
    out["attrs_3"] = sorted((r.profile_id, r.attributes) for r in
                            lake.read("gold.profile_attributes").where(f"as_of = '{D}'").collect())
    out["profiles_3"] = snapshot(lake)

    # identity merges p2 into p1
    lake.overwrite(ID_GRAPH.name, spark.createDataFrame(graph_rows({"p1": GRAPH["p1"] + GRAPH["p2"], "p3": GRAPH["p3"]}),
                                                        ID_GRAPH.schema))
    lake.append(PROFILE_ID_HISTORY.name, spark.createDataFrame(
        [("p2", "p1", "merge", 2, D, "identity-x")], PROFILE_ID_HISTORY.schema))
    out["merged"] = stage.run(spark, config, lake, D)
    out["profiles_4"] = snapshot(lake)
    out["delta_rs_4"] = {r["profile_id"] for r in DeltaTable(lake.path("gold.profiles")).to_pyarrow_table().to_pylist()}
    return out


def test_profiles_merge_traits_consent_and_sources(world):
    p = world["profiles_1"]
    assert set(p) == {"p1", "p2", "p3"}
    p1 = p["p1"]
    assert p1["identifiers"] == {"customer_id": ["c1"], "email": ["a@x.com"]}
    assert p1["traits"]["first_name"] == "Robert"             # crm beats web (source_priority)
    assert p1["trait_sources"]["first_name"] == "crm"
    assert p1["traits"]["signup_date"] == "2023-06-30"        # rule min, compared as dates
    assert p1["consent"] == {"email_marketing": "granted"}    # crm grant at D-1 is later than the event's at D-5
    assert p1["sources"] == ["crm", "orders", "web"]
    assert p1["first_seen"] == at(-10) and p1["last_seen"] == at(-1) and p1["events"] == 2
    assert p["p2"]["consent"] == {"email_marketing": "denied"} and p["p2"]["traits"] == {"first_name": "Ann"}
    assert p["p3"]["traits"] == {} and p["p3"]["events"] == 1
    # an independent reader (delta-rs) sees the same rows
    by_id = {r["profile_id"]: r for r in world["delta_rs_1"]}
    assert dict(by_id["p1"]["traits"]) == p1["traits"] and dict(by_id["p2"]["consent"]) == p["p2"]["consent"]


def test_view_is_typed_and_matches_view_schema(world):
    config = world["config"]
    assert world["view_schema"].simpleString() == view_schema(config, with_scores=False).simpleString()
    v1 = world["view_1"]["p1"]
    assert v1["traits"]["signup_date"] == dt.date(2023, 6, 30) and v1["traits"]["country"] == "GB"
    assert v1["consent"] == {"email_marketing": "granted", "ads_personalisation": "unknown", "analytics": "unknown"}
    a = v1["attributes"]
    assert a["orders_lifetime"] == 1 and a["revenue_lifetime"] == 50.0 and a["items_purchased_lifetime"] == 2.0
    assert a["logins_last_7_days"] == 0                       # the login after the as-of does not count
    assert a["last_viewed_product"] == "SKU-1" and a["days_since_last_order"] == 2
    assert a["value_tier"] == "low"
    assert world["view_1"]["p3"]["attributes"]["page_views_last_30_days"] == 1


def test_rerun_same_as_of_changes_nothing(world):
    assert world["again"].metrics == {"skipped": "already committed"}
    assert world["versions_2"] == world["versions_1"]


def test_late_data_leaves_as_of_results_and_profile_table_unchanged(world):
    assert world["late"].metrics["profiles_changed"] == 0 and world["late"].metrics["profiles_removed"] == 0
    assert world["versions_3"][0] == world["versions_1"][0]     # no profile rewritten: no commit
    assert world["attrs_3"] == world["attrs_1"]                 # attributes as of D are reproducible
    assert world["profiles_3"] == world["profiles_1"]


def test_merged_away_profile_is_removed_and_only_changed_profiles_rewritten(world):
    after, before = world["profiles_4"], world["profiles_1"]
    assert set(after) == {"p1", "p3"} and world["delta_rs_4"] == {"p1", "p3"}
    assert world["merged"].metrics["profiles_removed"] == 1 and world["merged"].metrics["profiles_merged_away"] == 1
    assert world["merged"].metrics["profiles_changed"] == 1
    assert after["p1"]["identifiers"]["email"] == ["a@x.com", "b@x.com"]
    assert after["p1"]["consent"] == {"email_marketing": "granted"}   # D-1 grant still the latest
    assert after["p1"]["updated_at"] > before["p1"]["updated_at"]
    assert after["p3"] == before["p3"]                                 # untouched, same updated_at



def test_a_profiles_table_from_before_consent_source_gains_the_column(make_lake, spark, tmp_path):
    """An existing gold.profiles without the new column gets it (nullable), so the next merge can write it."""
    import dataclasses

    from cdp_spark.lake.registry import TableRegistry
    from cdp_spark.profiles.tables import PROFILES

    before = dataclasses.replace(PROFILES, columns=[c for c in PROFILES.columns if c.name != "consent_source"])
    root = str(tmp_path / "lake")
    EmbeddedLake(spark, root, TableRegistry([before])).create_if_missing(PROFILES.name)
    lake = make_lake(root, default_registry())
    stage._add_new_columns(spark, lake)
    assert lake.table_schema(PROFILES.name).fieldNames()[-1] == "consent_source"
    assert sorted(lake.table_schema(PROFILES.name).fieldNames()) == sorted(PROFILES.schema.fieldNames())
    assert profile_view(spark, load_config(REPO / "conf" / "cdp.yaml"), lake).count() == 0
