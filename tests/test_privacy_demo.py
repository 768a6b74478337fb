"""Privacy on the demo world (a copy of the session's `cdp demo` lake): explicit consent decisions win over the
sources' implicit defaults and keep the person out of every consent-gated export; an erasure reaches every
destination that held the person (a remove each), the recommendation model, and verifies with zero residue; a
request filed through the Profile API's DELETE is executed by the daily pipeline's `erasure` stage.

The expected consent is computed here from bronze with delta-rs and pandas, independently of the profiles stage.
"""
from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from cdp_spark.cli import main
from cdp_spark.config import load_config
from tests.conftest import CONF
from tests.spark_settings import cli_keeps_test_settings


@pytest.fixture(scope="module")
def world(spark, demo_lake, tmp_path_factory):
    """A copy of the demo lake and its answer key (beside it, as `cdp demo` writes it), with the shipped config
    pointed at it. The copied MLflow store is dropped: its experiment names the shared lake's artifact folder."""
    from cdp_spark.lake import open_lake

    root = tmp_path_factory.mktemp("privacy-demo") / "lake"
    shutil.copytree(demo_lake.root, root)
    shutil.copytree(f"{demo_lake.root}-demo-truth", f"{root}-demo-truth")
    shutil.rmtree(root / "_system" / "mlflow", ignore_errors=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CDP_LAKE_ROOT", str(root))
        config = load_config(CONF)
        yield config, open_lake(spark, config), root


def cli(*args: str) -> tuple[int, object]:
    buffer = io.StringIO()
    with cli_keeps_test_settings(), contextlib.redirect_stdout(buffer):
        code = main([*args, "--conf", str(CONF), "--json"])
    text = buffer.getvalue()
    try:
        return code, json.loads(text)
    except ValueError:
        return code, text


def _table(root: Path, name: str) -> pd.DataFrame:
    return DeltaTable(str(root / name.replace(".", "/"))).to_pandas()


def explicit_decisions(config, root: Path) -> pd.DataFrame:
    """(profile_id, purpose) -> the latest explicit decision: entries of sources that map the purpose to a
    column, from every record but snapshot delete markers, timed by their own timestamp or the record time; at an
    equal time `denied` wins; `unknown` decides nothing. A record belongs to the profile of its highest-priority
    identifier (identity's attachment rule)."""
    mapped = {(s.name, p) for s in config.sources for p in s.consent.purposes}
    rank = {t: i for i, t in enumerate(config.identity.by_priority())}
    records = _table(root, "bronze.profile_records")
    records = records[records.change_type != "delete"]
    graph = _table(root, "gold.id_graph")
    profile_of = dict(zip(zip(graph.id_type, graph.value), graph.profile_id))
    rows = []
    for r in records.itertuples():
        owners = sorted((rank[t], t, profile_of[(t, v)]) for t, v in dict(r.identifiers).items()
                        if t in rank and (t, v) in profile_of)
        if not owners:
            continue
        for c in r.consent:
            if (r.source, c["purpose"]) in mapped and c["status"] in ("granted", "denied"):
                when = c["timestamp"] if c["timestamp"] is not None else (
                    r.record_time if not pd.isna(r.record_time) else r.received_at)
                rows.append((owners[0][2], c["purpose"], c["status"], pd.Timestamp(when)))
    decisions = pd.DataFrame(rows, columns=["profile_id", "purpose", "status", "decided_at"])
    decisions["granted"] = decisions.status == "granted"  # False (denied) sorts first at an equal time
    latest = decisions.sort_values(["decided_at", "granted"], ascending=[False, True]).groupby(
        ["profile_id", "purpose"]).head(1)
    return latest.set_index(["profile_id", "purpose"])[["status", "decided_at"]]


def test_no_explicit_opt_out_ends_granted(world):
    config, lake, root = world
    decided = explicit_decisions(config, root)
    profiles = _table(root, "gold.profiles").set_index("profile_id")
    denied = decided[decided.status == "denied"]
    assert len(denied) >= 20, "the demo CRM opts a good share of its customers out"
    got = {(p, purpose): dict(profiles.consent[p]).get(purpose) for p, purpose in decided.index}
    assert {k: v for k, v in got.items() if v != decided.status[k]} == {}
    for (p, purpose), row in decided.iterrows():
        assert dict(profiles.consent_source[p])[purpose] == "crm"
        assert pd.Timestamp(dict(profiles.consent_at[p])[purpose]) == pd.Timestamp(row.decided_at)
    # a purpose nobody decided explicitly has the web/app/orders default: granted, from one of them, with no time
    defaults = [(p, purpose, status) for p, c in zip(profiles.index, profiles.consent)
                for purpose, status in dict(c).items() if (p, purpose) not in decided.index]
    assert defaults
    for p, purpose, status in defaults:
        assert status == "granted" and dict(profiles.consent_source[p])[purpose] in ("web", "app", "orders")
        assert purpose not in dict(profiles.consent_at[p])


def test_opted_out_profiles_are_in_no_consent_gated_export(world, spark):
    from cdp_spark.audiences.cli import export_members

    config, lake, root = world
    decided = explicit_decisions(config, root)
    denied = {purpose: {p for (p, q) in decided[decided.status == "denied"].index if q == purpose}
              for purpose in config.catalogue.group("consent")}
    held = _table(root, "gold.activation_state")
    for d in config.destinations:
        assert d.consent, d.name
        holding = set(held[held.destination == d.name].profile_id)
        assert holding, d.name
        for purpose in d.consent:
            assert not holding & denied[purpose], (d.name, purpose)
    # what the file drop delivered (add rows) and what `cdp audience export` writes
    for path in (root / "exports").rglob("part-*.csv"):
        with open(path, newline="") as f:
            added = {r["profile_id"] for r in csv.DictReader(f) if r["action"] == "add"}
        assert not added & denied["email_marketing"], path
    purposes = config.catalogue.group("consent")
    for i, audience in enumerate(config.audiences):  # every audience, every purpose at least once
        purpose = purposes[i % len(purposes)]
        out = io.StringIO()
        record = export_members(spark, config, lake, audience.name, out, consent=[purpose])
        exported = {r["profile_id"] for r in csv.DictReader(io.StringIO(out.getvalue()))}
        assert not exported & denied[purpose], (audience.name, purpose)
        assert record["rows"] == len(exported)


def _residue(root: Path, needles: list[str]) -> dict[str, list[str]]:
    """needle -> files under root whose decoded content holds it (Parquet values via pyarrow, gzip unpacked)."""
    hits: dict[str, list[str]] = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = Path(dirpath, n)
            data = p.read_bytes()
            if data[:4] == b"PAR1":
                data = json.dumps(pq.read_table(p).to_pylist(), default=str, ensure_ascii=False).encode()
            elif data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            text = data.decode("utf-8", errors="ignore").lower()
            for needle in needles:
                if needle.lower() in text:
                    hits.setdefault(needle, []).append(str(p.relative_to(root)))
    return hits


@pytest.fixture(scope="module")
def erased(world, spark):
    """A recommendation model is trained on the copy (the small demo is below the shipped minimum), then a person
    whom both destinations hold is erased with `cdp erase --id email:... --now`, with the ads platform up."""
    from cdp_spark.activation.receiver import WebhookReceiver
    from cdp_spark.ml import tracking
    from cdp_spark.pipeline import stage_function

    config, lake, root = world
    scores = config.scores.model_copy(update={"recommendations": config.scores.recommendations.model_copy(
        update={"min_events": 1})})
    stage_function("scores")(spark, config.model_copy(update={"scores": scores}), lake, config.demo.end_date)
    with tracking.mlflow_store(config) as client:
        modelled = set(tracking.load_champion(client, "cdp_recommendations_als")[0].user_ids)
    held = _table(root, "gold.activation_state")
    graph = _table(root, "gold.id_graph")
    both = set.intersection(*[set(held[held.destination == d.name].profile_id) for d in config.destinations])
    candidates = sorted(set(graph[graph.id_type == "email"].profile_id) & both & modelled)
    assert candidates, "the demo has people with an email, delivered to both destinations and in the model"
    profile = candidates[0]
    values = sorted(graph[graph.profile_id == profile].value)
    email = sorted(graph[(graph.profile_id == profile) & (graph.id_type == "email")].value)[0]
    theirs = held[held.profile_id == profile]
    with WebhookReceiver() as receiver, pytest.MonkeyPatch.context() as mp:
        mp.setenv("CDP_DEMO_WEBHOOK_URL", receiver.url)
        code, result = cli("erase", "--id", f"email:{email.upper()}", "--now")
    return {"code": code, "result": result, "profile": profile, "values": values, "held": theirs,
            "received": receiver.records()}


def test_erasure_sends_every_destination_a_remove(world, erased):
    config, lake, root = world
    held, result = erased["held"], erased["result"]
    # the ads platform gets the hashed identifiers it holds, as removes
    sent = [r for r in erased["received"] if r["action"] == "remove"]
    webhook = held[held.destination == "ads_webhook"]
    assert sorted((r["audience"], r["hashed_email"]) for r in sent) == sorted(
        (a, json.loads(p)["hashed_email"]) for a, p in zip(webhook.audience, webhook.payload))
    # the CRM's file drop gets remove rows that name the profile and repeat none of its identifiers
    drops = held[held.destination == "crm_file_drop"]
    rows = []
    for path in (root / "exports" / "crm_file_drop").rglob("part-*.csv"):
        with open(path, newline="") as f:
            rows += [r for r in csv.DictReader(f) if r["action"] == "remove" and r["profile_id"] == erased["profile"]]
    assert sorted(r["audience"] for r in rows) == sorted(drops.audience)
    assert all(r[c] == "" for r in rows for c in ("email", "customer_id", "phone", "first_name", "last_name"))
    deliveries = _table(root, "ops.deliveries")
    assert set(deliveries[deliveries.run_id == f"erasure-{result['request_id']}"].removes) == {len(drops), len(webhook)}
    assert erased["code"] == 0 and result["removes_sent"] == held.groupby("destination").size().to_dict()


def test_erasure_verifies_with_zero_residue_and_keeps_only_hashes(world, erased):
    config, lake, root = world
    result = erased["result"]
    assert result["status"] == "verified" and result["occurrences"] == 0
    assert list(result["models_scrubbed"].values()) == [1]
    # the answer key is beside the lake root, not under it
    assert Path(config.demo_truth_dir).exists() and not Path(config.demo_truth_dir).is_relative_to(root)
    # not one of the person's identifier values anywhere under the lake root: tables of every version, logs,
    # the serving store, landing files, exports, the MLflow store; the sealed request is gone
    assert _residue(root, erased["values"]) == {}
    assert not list((root / "_system" / "erasure").glob("er_*.json"))
    # the pseudonymous profile id is left in the request's own record and in the file drop's remove delivery only
    places = {str(Path(f).parent.parent if "exports" in f else Path(f).parent)
              for f in _residue(root, [erased["profile"]])[erased["profile"]]}
    assert places == {"ops/erasure_requests", "exports/crm_file_drop"}


def test_an_api_delete_is_executed_by_the_daily_pipelines_erasure_stage(world, spark):
    from fastapi.testclient import TestClient

    from cdp_spark.api.app import create_app
    from cdp_spark.api.audit import AuditLog
    from cdp_spark.api.keys import store_for as keys_for
    from cdp_spark.runtime import metadata_lake

    config, lake, root = world
    assert "erasure" == config.pipeline.stages[0]
    graph = _table(root, "gold.id_graph")
    email = sorted(graph[graph.id_type == "email"].value)[-1]
    profile = graph[graph.value == email].profile_id.iloc[0]
    secret, _ = keys_for(config).create("privacy-desk", ["delete"])
    meta = metadata_lake(config)
    client = TestClient(create_app(config, lake=meta, audit=AuditLog(meta, background=False)))
    filed = client.delete(f"/v1/profiles/email/{email}", headers={"Authorization": f"Bearer {secret}"})
    assert filed.status_code == 202
    request_id = filed.json()["request_id"]

    code, report = cli("run", "erasure", "--as-of", config.demo.end_date.isoformat())
    assert code == 0, report
    assert report["metrics"]["erasure"]["requests"] == 1
    status = client.get(f"/v1/erasures/{request_id}", headers={"Authorization": f"Bearer {secret}"}).json()
    # old file versions stay until the vacuum retention passes: deleted now, verified by a later run
    assert status["status"] in ("deleted", "verified") and status["step"] == "verify"
    assert profile not in set(_table(root, "gold.id_graph").profile_id)
    assert profile not in set(_table(root, "gold.profiles").profile_id)
    assert len(_table(root, "ops.tombstones")) >= 1
