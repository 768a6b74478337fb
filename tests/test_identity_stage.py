"""The identity stage on a real (embedded) lake: tables written, idempotent re-run, config and registry wiring."""
from __future__ import annotations

import datetime as dt

from cdp_spark.config import CdpConfig, load_config
from cdp_spark.identity import stage
from cdp_spark.identity.config import IdentityConfig
from cdp_spark.ingest.tables import EVENTS, PROFILE_RECORDS
from cdp_spark.lake import default_registry
from cdp_spark.pipeline import STAGES, stage_function

AS_OF = dt.date(2026, 11, 1)
T = dt.datetime(2026, 10, 31, 9)


def row(schema, **values):
    return tuple(values.get(f.name) for f in schema.fields)


def test_config_registry_and_pipeline_know_the_identity_stage():
    cfg = load_config("conf/cdp.yaml")
    assert isinstance(cfg.identity, IdentityConfig) and cfg.identity.rule("customer_id").limit == 1
    assert cfg.identity.by_priority()[0] == "customer_id"
    assert {"silver.identifiers", "silver.id_links", "gold.id_graph", "gold.profile_id_history"} <= set(default_registry().names())
    assert stage_function("identity") is stage.run and "identity" in STAGES


def test_stage_writes_tables_and_rerun_is_idempotent(make_lake, spark, tmp_path):
    config = CdpConfig.model_validate({"lake": {"root": str(tmp_path / "lake")}})
    lake = make_lake(config.lake.root, default_registry())
    ev = EVENTS.schema
    events = [row(ev, event_id=f"e{i}", source="web", event_name="page", event_time=T, event_date=T.date(),
                  identifiers=ids, run_id="r") for i, ids in enumerate([
                      {"cookie_id": "k1", "email": "a@x.com"}, {"cookie_id": "k1"}, {"cookie_id": "k2", "email": "b@x.com"},
                      {"idfa": "00000000-0000-0000-0000-000000000000", "cookie_id": "k3"}])]
    # an event after the as-of date is not used
    late = dt.datetime(2026, 11, 5)
    events.append(row(ev, event_id="late", source="web", event_time=late, event_date=late.date(),
                      identifiers={"cookie_id": "k2", "email": "a@x.com"}, run_id="r"))
    pr = PROFILE_RECORDS.schema
    profiles = [row(pr, source="crm", record_key="1", change_type="insert", identifiers={"customer_id": "c1", "email": "a@x.com"},
                    record_time=T, received_at=T, run_id="r", ingest_file="f", ingest_line=1),
                row(pr, source="crm", record_key="2", change_type="insert", identifiers={"customer_id": "c2", "email": "b@x.com"},
                    record_time=T, received_at=T, run_id="r", ingest_file="f", ingest_line=2)]
    lake.append(EVENTS.name, spark.createDataFrame(events, ev))
    lake.append(PROFILE_RECORDS.name, spark.createDataFrame(profiles, pr))

    first = stage.run(spark, config, lake, AS_OF)
    graph = {(r.id_type, r.value): r.profile_id for r in lake.read("gold.id_graph").collect()}
    assert graph[("customer_id", "c1")] == graph[("email", "a@x.com")] == graph[("cookie_id", "k1")]
    assert graph[("customer_id", "c2")] == graph[("cookie_id", "k2")] != graph[("customer_id", "c1")]
    assert ("idfa", "00000000-0000-0000-0000-000000000000") not in graph and ("cookie_id", "k3") in graph
    assert first.rows_out["gold.id_graph"] == len(graph) == 7
    assert first.metrics["profiles"] == 3 and first.metrics["iterations"] >= 1
    assert lake.read("silver.id_links").count() == 4
    status = {(r.id_type, r.value): r.status for r in lake.read("silver.identifiers").collect()}
    assert len(status) == 8 and status.pop(("idfa", "00000000-0000-0000-0000-000000000000")) == "blocked"
    assert set(status.values()) == {"active"}

    versions = {t: lake.version(t) for t in ("silver.identifiers", "silver.id_links", "gold.id_graph", "gold.profile_id_history")}
    again = stage.run(spark, config, lake, AS_OF)
    assert again.metrics["skipped"] == "already committed"
    assert {t: lake.version(t) for t in versions} == versions
    assert {(r.id_type, r.value): r.profile_id for r in lake.read("gold.id_graph").collect()} == graph
