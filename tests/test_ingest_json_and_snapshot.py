"""NDJSON events (flatten, routes, role both, malformed lines), snapshot deltas and raw key statistics."""
from __future__ import annotations

import datetime as dt
import json

import yaml

from cdp_spark.ingest import stage
from cdp_spark.lake import default_registry
from cdp_spark.lake.embedded import EmbeddedLake
from tests.ingest_fixtures import REPO, make_config, write

AS_OF = dt.date(2026, 11, 1)


def web_source(landing):
    src = yaml.safe_load((REPO / "conf" / "sources" / "web.yaml").read_text())
    return {**src, "path": str(landing)}


def test_ndjson_events_profiles_routes_and_key_stats(spark, tmp_path):
    landing = tmp_path / "web"
    routes = yaml.safe_load((REPO / "conf" / "routes.yaml").read_text())
    config = make_config(tmp_path, [web_source(landing)], routes)
    lake = EmbeddedLake(spark, config.lake.root, default_registry())
    events = [
        {"type": "track", "event": "Product Viewed", "messageId": "m1", "anonymousId": "a1", "userId": "c1",
         "timestamp": "2026-10-30T10:00:00Z", "context": {"page": {"url": "https://shop/p/1"}},
         "properties": {"product_id": "P1", "category": "shoes", "colour": "red"}},
        {"type": "page", "messageId": "m2", "anonymousId": "a2", "timestamp": "2026-10-30T11:00:00Z",
         "context": {"page": {"url": "http://localhost:3000/"}}},
        {"type": "identify", "messageId": "m3", "anonymousId": "a1", "userId": "c1", "timestamp": "2026-10-30T12:00:00Z",
         "traits": {"email": " C1@Example.com "}},
    ]
    text = "\n".join(json.dumps(e) for e in events) + "\n{not json\n"
    write(landing / "day=2026-10-30" / "part-0.json", text)
    s = stage.run(spark, config, lake, AS_OF).metrics["sources"]["web"]
    assert (s["read"], s["accepted"], s["quarantined"]) == (4, 3, 1) and s["reconciled"]
    q = lake.read("bronze.quarantine").collect()
    assert [(r.reasons, r.ingest_line, r.raw_record) for r in q] == [(["malformed_json"], 4, "{not json")]
    ev = {r.event_id: r for r in lake.read("bronze.events").collect()}
    assert ev["m1"].event_name == "product viewed" and ev["m1"].stream == "web"
    assert ev["m1"].identifiers == {"customer_id": "c1", "cookie_id": "a1"}
    assert json.loads(ev["m1"].properties) == {"product_id": "P1", "category": "shoes", "colour": "red"}
    assert ev["m2"].stream == "web_divert"  # the localhost route rule
    assert ev["m3"].identifiers["email"] == "c1@example.com"
    profiles = lake.read("bronze.profile_records").collect()
    assert len(profiles) == 0  # web maps no trait fields; identify's email is an identifier, on the event
    keys = {r.key: r for r in lake.read("bronze.raw_keys").collect()}
    assert keys["properties.colour"].mapped is False and keys["context.page.url"].mapped is True
    assert keys["anonymousId"].times_seen == 3 and keys["anonymousId"].approx_distinct == 2
    assert keys["timestamp"].predicted_type in ("timestamp", "string")
    # a second delivery adds to the stats: counts add up and sketches union
    write(landing / "day=2026-10-31" / "part-0.json", json.dumps({**events[0], "messageId": "m4", "anonymousId": "a9"}) + "\n")
    stage.run(spark, config, lake, AS_OF)
    keys = {r.key: r for r in lake.read("bronze.raw_keys").collect()}
    assert keys["anonymousId"].times_seen == 4 and keys["anonymousId"].approx_distinct == 3


CRM_HEADER = "customer_id,email,phone,first_name,last_name,country,email_opt_in,ads_opt_in,signup_date\n"


def test_snapshot_source_emits_only_changes(spark, tmp_path):
    landing = tmp_path / "crm"
    src = yaml.safe_load((REPO / "conf" / "sources" / "crm.yaml").read_text())
    config = make_config(tmp_path, [{**src, "path": str(landing)}])
    lake = EmbeddedLake(spark, config.lake.root, default_registry())
    write(landing / "crm_1.csv", CRM_HEADER + "c1,a@x.com,,Ann,Lee,France,true,false,2025-01-01\n"
          "c2,b@x.com,,Bob,Ray,UK,false,true,2025-01-02\nc3,c@x.com,,Cy,Doe,DE,1,0,2025-01-03\n")
    first = stage.run(spark, config, lake, AS_OF).metrics["sources"]["crm"]
    assert first["accepted"] == 3
    recs = {r.record_key: r for r in lake.read("bronze.profile_records").collect()}
    assert {k: r.change_type for k, r in recs.items()} == {"c1": "insert", "c2": "insert", "c3": "insert"}
    assert recs["c1"].traits["country"] == "FR" and recs["c2"].traits["country"] == "GB"
    consent = {c.purpose: c.status for c in recs["c1"].consent}
    assert consent == {"email_marketing": "granted", "ads_personalisation": "denied", "analytics": "unknown"}
    # next delivery: c1 unchanged, c2 changed, c3 gone, c4 new
    write(landing / "crm_2.csv", CRM_HEADER + "c1,a@x.com,,Ann,Lee,France,true,false,2025-01-01\n"
          "c2,b@x.com,,Bob,Ray,UK,true,true,2025-01-02\nc4,d@x.com,,Di,Fox,IT,1,1,2025-01-04\n")
    stage.run(spark, config, lake, AS_OF)
    second = [r for r in lake.read("bronze.profile_records").collect() if r.ingest_file is None or r.ingest_file.endswith("crm_2.csv")]
    assert sorted((r.record_key, r.change_type) for r in second) == [("c2", "update"), ("c3", "delete"), ("c4", "insert")]
    deleted = next(r for r in second if r.change_type == "delete")
    assert deleted.identifiers["email"] == "c@x.com"
    state = sorted(r.record_key for r in lake.read("bronze.snapshot_state").collect())
    assert state == ["c1", "c2", "c4"]


def test_delta_table_source_is_read_once_per_table_version(spark, tmp_path):
    import pandas as pd
    from deltalake import write_deltalake

    table = tmp_path / "crm_delta"
    write_deltalake(str(table), pd.DataFrame({"customer_id": ["c1", "c2"], "email": ["A@x.com", "b@x.com"]}))
    src = {"name": "crm_table", "kind": "delta", "path": str(table), "role": "profiles", "load_mode": "snapshot",
           "key": ["customer_id"], "mapping": {"customer_id": "customer_id", "email": "email"}}
    config = make_config(tmp_path, [src])
    lake = EmbeddedLake(spark, config.lake.root, default_registry())
    assert stage.run(spark, config, lake, AS_OF).metrics["sources"]["crm_table"]["accepted"] == 2
    again = stage.run(spark, config, lake, AS_OF).metrics["sources"]["crm_table"]
    assert again["read"] == 0 and again["files_skipped"] == 1
    write_deltalake(str(table), pd.DataFrame({"customer_id": ["c1"], "email": ["new@x.com"]}), mode="overwrite")
    stage.run(spark, config, lake, AS_OF)
    changes = sorted((r.record_key, r.change_type, r.identifiers.get("email"))
                     for r in lake.read("bronze.profile_records").collect())
    assert changes == [("c1", "insert", "a@x.com"), ("c1", "update", "new@x.com"), ("c2", "delete", "b@x.com"),
                       ("c2", "insert", "b@x.com")]
