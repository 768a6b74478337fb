"""NDJSON events (flatten, routes, role both, malformed lines), snapshot deltas and raw key statistics."""
from __future__ import annotations

import datetime as dt
import json

import pytest
import yaml

from cdp_spark.ingest import stage
from cdp_spark.lake import default_registry
from tests.ingest_fixtures import REPO, make_config, write

AS_OF = dt.date(2026, 11, 1)


def web_source(landing):
    src = yaml.safe_load((REPO / "conf" / "sources" / "web.yaml").read_text())
    return {**src, "path": str(landing)}


@pytest.mark.slow
def test_ndjson_events_profiles_routes_and_key_stats(make_lake, spark, tmp_path):
    landing = tmp_path / "web"
    routes = yaml.safe_load((REPO / "conf" / "routes.yaml").read_text())
    config = make_config(tmp_path, [web_source(landing)], routes)
    lake = make_lake(config.lake.root, default_registry())
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


@pytest.mark.slow
def test_snapshot_source_emits_only_changes(make_lake, spark, tmp_path):
    landing = tmp_path / "crm"
    src = yaml.safe_load((REPO / "conf" / "sources" / "crm.yaml").read_text())
    # one of three keys deleted is more than the default guard allows: this test is about the deltas
    config = make_config(tmp_path, [{**src, "path": str(landing), "max_delete_share": 0.5}])
    lake = make_lake(config.lake.root, default_registry())
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


def test_delta_table_source_is_read_once_per_table_version(make_lake, spark, tmp_path):
    import pandas as pd
    from deltalake import write_deltalake

    table = tmp_path / "crm_delta"
    write_deltalake(str(table), pd.DataFrame({"customer_id": ["c1", "c2"], "email": ["A@x.com", "b@x.com"]}))
    src = {"name": "crm_table", "kind": "delta", "path": str(table), "role": "profiles", "load_mode": "snapshot",
           "key": ["customer_id"], "max_delete_share": 1.0, "mapping": {"customer_id": "customer_id", "email": "email"}}
    config = make_config(tmp_path, [src])
    lake = make_lake(config.lake.root, default_registry())
    assert stage.run(spark, config, lake, AS_OF).metrics["sources"]["crm_table"]["accepted"] == 2
    again = stage.run(spark, config, lake, AS_OF).metrics["sources"]["crm_table"]
    assert again["read"] == 0 and again["files_skipped"] == 1
    write_deltalake(str(table), pd.DataFrame({"customer_id": ["c1"], "email": ["new@x.com"]}), mode="overwrite")
    stage.run(spark, config, lake, AS_OF)
    changes = sorted((r.record_key, r.change_type, r.identifiers.get("email"))
                     for r in lake.read("bronze.profile_records").collect())
    assert changes == [("c1", "insert", "a@x.com"), ("c1", "update", "new@x.com"), ("c2", "delete", "b@x.com"),
                       ("c2", "insert", "b@x.com")]


@pytest.mark.slow
def test_a_snapshot_that_would_delete_most_keys_is_refused_until_applied_explicitly(spark, tmp_path, capsys):
    """A header-only CRM delivery: `cdp run ingest` exits 1 and applies nothing (state, records and consent stay),
    the file ledger records the refusal and the job ledger the reason; `--allow-snapshot-deletes crm` applies it."""
    import contextlib
    import io
    import os

    from deltalake import DeltaTable

    from cdp_spark.api.sandbox import create_sandbox
    from cdp_spark.cli import main
    from tests.spark_settings import cli_keeps_test_settings

    conf = create_sandbox(REPO / "conf" / "cdp.yaml", tmp_path / "conf", lake_root=str(tmp_path / "lake"))["conf"]
    crm = tmp_path / "lake" / "demo" / "landing" / "crm"
    rows = "".join(f"c{i},p{i}@x.com,,Ann,Lee,FR,{'false' if i % 3 else 'true'},true,2025-01-01\n" for i in range(10))
    write(crm / "customers_20261101.csv", CRM_HEADER + rows)

    def cdp(*args: str) -> int:
        with cli_keeps_test_settings(), contextlib.redirect_stdout(io.StringIO()):
            return main(["run", "ingest", "--as-of", "2026-11-02", "--conf", conf, *args])

    def table(name: str):
        return DeltaTable(str(tmp_path / "lake" / name.replace(".", "/"))).to_pandas()

    assert cdp() == 0
    empty = write(crm / "customers_20261102.csv", CRM_HEADER)
    os.utime(empty, (empty.stat().st_mtime + 60,) * 2)
    capsys.readouterr()

    assert cdp() == 1
    said = capsys.readouterr().err
    assert "would delete 10 of its 10 current keys" in said and "--allow-snapshot-deletes crm" in said
    assert len(table("bronze.snapshot_state")) == 10
    records = table("bronze.profile_records")
    assert len(records) == 10 and set(records.change_type) == {"insert"}
    files = table("bronze.ingested_files")
    assert files[files.path.str.endswith("customers_20261102.csv")].status.tolist() == ["refused_deletes"]
    runs = table("ops.job_runs")
    failed = runs[(runs.step == "ingest") & (runs.status == "failed")]
    assert len(failed) == 1 and "max_delete_share" in failed.error.iloc[0]

    assert cdp("--allow-snapshot-deletes", "web") == 2   # not a snapshot source
    assert cdp() == 1                                     # still refused on the next run
    assert cdp("--allow-snapshot-deletes", "crm") == 0
    assert len(table("bronze.snapshot_state")) == 0
    records = table("bronze.profile_records")
    assert (records.change_type == "delete").sum() == 10
    files = table("bronze.ingested_files").sort_values("version")
    assert files[files.path.str.endswith("customers_20261102.csv")][["version", "status"]].values.tolist() == [
        [1, "refused_deletes"], [2, "refused_deletes"], [3, "ingested"]]
    runs = table("ops.job_runs")
    applied = runs[(runs.step == "job") & (runs.status == "succeeded")].params.tolist()
    assert any('"allow_snapshot_deletes": ["crm"]' in p for p in applied)
