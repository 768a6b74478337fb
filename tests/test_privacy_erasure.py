"""Erasure of a demo person end to end: every table, the serving store, landing files and exports; vacuum now;
tombstones; then independent checks (delta-rs reads of every table, a byte scan of every file under the lake root,
SQLite queries of the serving store) that zero bytes of any of their identifiers remain and that other people's
rows are untouched. Then the person's data is delivered again and ingestion suppresses it (counted, written nowhere).
"""
from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
from pathlib import Path

import phonenumbers
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from cdp_spark.api.sandbox import create_sandbox
from cdp_spark.cli import main
from cdp_spark.config import load_config
from cdp_spark.demo import generate
from cdp_spark.lake import default_registry
from cdp_spark.privacy.tombstones import load_tombstones, salt_for, suppressed, token

CONF = Path(__file__).resolve().parents[1] / "conf" / "cdp.yaml"
WRITTEN_BY_ERASURE = {"ops.erasure_requests", "ops.tombstones"}


def _contract_view(spark, config, lake):
    """The profile view: the profiles stage's when it is registered, else the contract's shape from id_graph."""
    from pyspark.sql import functions as F

    from cdp_spark.pipeline import STAGES
    from cdp_spark.profiles.view import profile_view, view_schema

    if "profiles" in STAGES:
        from cdp_spark.pipeline import stage_function

        stage_function("profiles")(spark, config, lake, config.demo.end_date)
        return profile_view(spark, config, lake)
    schema = view_schema(config, with_scores=False)
    ids = (lake.read("gold.id_graph").groupBy("profile_id", "id_type").agg(F.sort_array(F.collect_list("value")).alias("v"))
           .groupBy("profile_id").agg(F.map_from_entries(F.collect_list(F.struct("id_type", "v"))).alias("identifiers")))
    return ids.select(*[F.col(f.name) if f.name in ids.columns else F.lit(None).cast(f.dataType).alias(f.name)
                        for f in schema.fields])


@pytest.fixture(scope="module")
def world(make_lake, spark, tmp_path_factory):
    from cdp_spark.api.store import refresh_serving_store
    from cdp_spark.identity import stage as identity
    from cdp_spark.ingest import stage as ingest

    base = tmp_path_factory.mktemp("erasure")
    conf = create_sandbox(CONF, base / "conf", lake_root=str(base / "lake"))["conf"]
    config = load_config(conf)
    lake = make_lake(config.lake.root, default_registry())
    # the generator's answer key is not CDP data: it lives beside the lake root, where `cdp demo` puts it
    generate(spark, config.demo_dir, people=30, days=3, seed=11, end_date=config.demo.end_date,
             truth_dir=config.demo_truth_dir)
    truth = ds.dataset(f"{config.demo_truth_dir}/identities").to_table().to_pandas()
    ingest.run(spark, config, lake, config.demo.end_date)
    identity.run(spark, config, lake, config.demo.end_date)
    refresh_serving_store(spark, config, lake, view=_contract_view(spark, config, lake))
    # export staging: a hashed-email audience export and a clear CSV, as activation would write them
    exports = Path(config.lake.root) / "exports" / "ads"
    exports.mkdir(parents=True)
    emails = sorted(truth[truth.id_type == "email"].value)
    (exports / "audience.csv").write_text("email_sha256\n" + "".join(
        hashlib.sha256(e.encode()).hexdigest() + "\n" for e in emails))
    with gzip.open(exports / "crm.ndjson.gz", "wt") as f:
        f.writelines(json.dumps({"email": e.upper()}) + "\n" for e in emails)
    return conf, config, lake, truth


# ---- independent views of the data (delta-rs, pyarrow, sqlite3, plain bytes; none of cdp_spark.privacy) ----
def _tables(lake) -> dict[str, list[str]]:
    """Every registered table that exists, read with delta-rs: one JSON text per row."""
    out = {}
    for spec in default_registry():
        path = lake.path(spec.name)
        if DeltaTable.is_deltatable(path):
            out[spec.name] = [json.dumps(r, default=str, ensure_ascii=False)
                              for r in DeltaTable(path).to_pyarrow_table().to_pylist()]
    return out


def _needles(person: dict, *, profiles: bool = True) -> tuple[list[str], list[str]]:
    """(lower-cased texts, digit strings) that give the person away: every identifier value from the demo truth,
    the email's SHA-256, the phone's national digits, and (``profiles``) their profile ids: rows keyed by them
    are theirs."""
    texts = [v.lower() for _, v in person["ids"]] + [hashlib.sha256(person["email"].encode()).hexdigest()]
    digits = [str(phonenumbers.parse(person["phone"]).national_number)]
    return texts + (sorted(person["profile_ids"]) if profiles else []), digits


def _mentions(text: str, needles: tuple[list[str], list[str]]) -> bool:
    low = text.lower()
    return any(n in low for n in needles[0]) or any(d in re.sub(r"[ .()\-]", "", low) for d in needles[1])


def _residue(root: Path, needles: tuple[list[str], list[str]]) -> list[str]:
    """Every file under root (all versions, logs, checkpoints, stores) whose decoded content holds a needle:
    Parquet values via pyarrow, gzip decompressed, everything else as raw bytes."""
    hits = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = Path(dirpath, n)
            data = p.read_bytes()
            if data[:4] == b"PAR1":
                data = json.dumps(pq.read_table(p).to_pylist(), default=str, ensure_ascii=False).encode()
            elif data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            if _mentions(data.decode("utf-8", errors="ignore"), needles):
                hits.append(str(p))
    return hits


def _store_rows(config) -> list[str]:
    """Every row of every serving-store file, as text (sqlite3)."""
    folder = Path(config.api.serving.folder(config.lake.root))
    rows = []
    for path in sorted(folder.glob("profiles-*.sqlite")):
        with contextlib.closing(sqlite3.connect(path)) as conn:
            for table in ("profiles", "identifiers", "patches"):
                rows += [json.dumps(r, default=str) for r in conn.execute(f"SELECT * FROM {table}")]
    return rows


def _person(truth, lake) -> dict:
    """A person with email, phone and customer id, with events in bronze.events and whose every identifier identity
    resolved to one profile (a cookie never linked to them is, for the CDP, someone else)."""
    graph = DeltaTable(lake.path("gold.id_graph")).to_pandas()
    event_values = [{v for _, v in m} for m in DeltaTable(lake.path("bronze.events")).to_pandas().identifiers]
    for person_id, rows in truth.groupby("person_id"):
        ids = list(zip(rows.id_type, rows.value))
        values = {v for _, v in ids}
        kinds = dict(ids)
        profiles = set(graph[graph.value.isin(values)].profile_id)
        if ({"email", "phone", "customer_id"} <= set(kinds) and len(profiles) == 1
                and set(graph[graph.value.isin(values)].value) == values
                and sum(1 for s in event_values if s & values) >= 3):
            return {"person_id": person_id, "ids": ids, "email": kinds["email"], "phone": kinds["phone"],
                    "customer_id": kinds["customer_id"], "profile_ids": profiles}
    raise AssertionError("the demo has no fully resolved person with email, phone, customer id and events")


def cli(conf: str, *args: str) -> tuple[int, dict]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main([*args, "--conf", conf, "--json"])
    return code, json.loads(buffer.getvalue()) if buffer.getvalue().strip() else {}


@pytest.fixture(scope="module")
def erased(world, tmp_path_factory):
    """The erasure, run once through the CLI; with the state of every table and of the store just before it."""
    conf, config, lake, truth = world
    person = _person(truth, lake)
    needles = _needles(person)
    tables = _tables(lake)
    before = {name: (len(rows), sum(_mentions(r, needles) for r in rows)) for name, rows in tables.items()}
    store_before = _store_rows(config)
    landing = Path(config.demo_dir) / "landing" / "orders"
    kept = tmp_path_factory.mktemp("pre-erasure")
    orders = sorted(landing.rglob("*.csv"))[0]
    shutil.copy(orders, kept / "orders.csv")  # outside every scanned folder, for the re-delivery test
    assert _residue(Path(config.lake.root), needles), "the person must be in the lake before the erasure"
    code, result = cli(conf, "erase", "--id", f"email:{person['email'].upper()}", "--now")
    assert code == 0, result
    return {"person": person, "needles": needles, "result": result, "before": before, "store_before": store_before,
            "orders": kept / "orders.csv", "landing": landing}


def test_erasing_a_demo_person_leaves_zero_bytes_of_them(world, erased, spark):
    conf, config, lake, truth = world
    root = Path(config.lake.root)
    person, needles, result, before = erased["person"], erased["needles"], erased["result"], erased["before"]
    assert result["status"] == "verified" and result["occurrences"] == 0 and result["profiles"] == 1
    assert result["rows_deleted"]["bronze.events"] >= 3 and result["rows_deleted"]["gold.id_graph"] >= len(person["ids"])
    assert result["rows_deleted"]["serving_store"] >= 1 and result["files_rewritten"] >= 2

    # every table, read with delta-rs: none of the person's rows is left, and exactly their rows went
    after = _tables(lake)
    for name, (rows, theirs) in before.items():
        if name in WRITTEN_BY_ERASURE:
            continue
        assert not [r for r in after[name] if _mentions(r, needles)], name
        assert len(after[name]) == rows - theirs, name
        assert result["rows_deleted"].get(name, 0) == theirs, name
    # the independent byte scan over every file under the lake root: table files of every version, Delta logs,
    # checkpoints, the serving store and its WAL, landing files and exports. Not one identifier value is left; the
    # (pseudonymous) profile id remains only in the erasure's own audit record.
    assert _residue(root, _needles(person, profiles=False)) == []
    assert {Path(h).parent.name for h in _residue(root, (sorted(person["profile_ids"]), []))} == {"erasure_requests"}
    code, verified = cli(conf, "erase", "verify", result["request_id"],
                         *[f"--id={t}:{v}" for t, v in person["ids"]])
    assert code == 0 and verified["occurrences"] == 0

    # the serving store: no row of the person; every other row is still there
    store = _store_rows(config)
    assert not [r for r in store if _mentions(r, needles)]
    assert sorted(store) == sorted(r for r in erased["store_before"] if not _mentions(r, needles))

    # other people are untouched in bronze and in the exports
    other = sorted(truth[(truth.id_type == "email") & (truth.value != person["email"])].value)[0]
    still = _residue(root, ([other.lower()], []))
    assert any("bronze" in h for h in still) and any("exports" in h for h in still)

    # the tombstone holds salted hashes only, and suppresses the person's records
    stones = load_tombstones(spark, lake)
    salt = salt_for(config, lake.root)
    hashes = {r.value_hash for r in stones.collect()}
    assert {token(t, v, salt) for t, v in person["ids"]} <= hashes
    again = spark.createDataFrame([({"email": person["email"]},), ({"email": other},)], "identifiers map<string,string>")
    assert [r.identifiers["email"] for r in suppressed(again, stones, salt).collect()] == [other]

    # the request's progress is recorded without values; the sealed identifiers were purged after verification
    code, steps = cli(conf, "erase", "status", result["request_id"])
    assert code == 0 and steps[-1]["status"] == "verified"
    assert not list((root / "_system" / "erasure").glob("er_*.json"))


def test_a_redelivered_erased_person_is_suppressed_and_counted(world, erased, spark):
    """The person comes back in a new orders file (email in another case with spaces, customer id alone, and a
    line that would be quarantined): ingestion writes none of it anywhere and counts it as suppressed."""
    from cdp_spark.ingest import stage as ingest

    conf, config, lake, truth = world
    person, needles = erased["person"], erased["needles"]
    with open(erased["orders"], newline="") as f:
        rows = list(csv.DictReader(f))
    # other people's lines, as new orders (fresh order ids), so that their arrival in bronze can be seen
    others = [{**r, "order_id": f"{r['order_id']}-AGAIN"} for r in rows if not _mentions(json.dumps(r), needles)]
    assert others
    template = others[0]
    theirs = [
        {**template, "order_id": "ORD-AGAIN-1", "customer_id": "", "email": f"  {person['email'].upper()} "},
        {**template, "order_id": "ORD-AGAIN-2", "customer_id": person["customer_id"], "email": ""},
        {**template, "order_id": "ORD-AGAIN-3", "customer_id": person["customer_id"], "quantity": "many"},
    ]
    folder = erased["landing"] / "day=2099-01-01"
    folder.mkdir()
    with open(folder / "orders-again.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(others[:2] + theirs + others[2:])
    events_before = DeltaTable(lake.path("bronze.events")).to_pyarrow_table().num_rows
    quarantine_before = DeltaTable(lake.path("bronze.quarantine")).to_pyarrow_table().num_rows

    stats = ingest.run(spark, config, lake, config.demo.end_date).metrics["sources"]["orders"]

    assert stats["read"] == len(others) + 3 and stats["suppressed"] == 3 and stats["reconciled"]
    assert stats["accepted"] + stats["quarantined"] == len(others) and stats["accepted"] >= 1
    events = DeltaTable(lake.path("bronze.events")).to_pyarrow_table().num_rows
    quarantine = DeltaTable(lake.path("bronze.quarantine")).to_pyarrow_table().num_rows
    assert (events - events_before, quarantine - quarantine_before) == (stats["accepted"], stats["quarantined"])
    assert _residue(Path(config.lake.root) / "bronze", needles) == []
    new = DeltaTable(lake.path("bronze.events")).to_pandas(columns=["order_id", "ingest_file"])
    new = new[new.ingest_file.str.endswith("orders-again.csv")]
    assert len(new) == stats["accepted"] and set(new.order_id) <= {r["order_id"] for r in others}
    ledger = DeltaTable(lake.path("bronze.ingested_files")).to_pandas()
    row = ledger[ledger.path.str.endswith("orders-again.csv")].iloc[0]
    assert row.rows_read - row.rows_accepted - row.rows_quarantined == 3


def test_the_collector_stream_suppresses_too(world, erased, spark):
    """The streaming micro-batch path (shared with ingest) reconciles read = accepted + quarantined + suppressed."""
    from cdp_spark.collect.stream import BatchWriter, source_config
    from cdp_spark.ingest import readers
    from cdp_spark.lake import Txn

    conf, config, lake, truth = world
    person, needles = erased["person"], erased["needles"]
    source = source_config(config, "orders")
    uri = f"file:{erased['landing'] / 'day=2099-01-01' / 'orders-again.csv'}"  # as the stream's file source lists it
    raw = readers.read_files(spark, source, [uri])
    writer = BatchWriter(spark, config, lake, source, checkpoint=str(Path(config.lake.root) / "_unused"))
    out = writer.process(raw, Txn("test.collect.suppression", 1), "stream-test", [uri])
    assert out["suppressed"] == 3 and out["accepted"] >= 1 and out["reconciled"]
    assert out["read_lines"] == out["accepted"] + out["quarantined"] + out["suppressed"] + out["duplicates"]
    assert _residue(Path(config.lake.root) / "bronze", needles) == []
    ledger = DeltaTable(lake.path("bronze.ingested_files")).to_pandas()
    row = ledger[ledger.run_id == "stream-test"].iloc[0]
    assert row.rows_read - row.rows_accepted - row.rows_quarantined == 3


def test_verify_reports_occurrences_without_values(world, erased):
    conf, config, lake, truth = world
    email = sorted(set(truth[truth.id_type == "email"].value) - {erased["person"]["email"]})[-1]
    code, result = cli(conf, "erase", "verify", "er_" + "0" * 24, f"--id=email:{email}")
    assert code == 1 and result["occurrences"] > 0
    assert email not in json.dumps(result)
    assert {"bronze", "gold"} & {Path(f["path"]).relative_to(config.lake.root).parts[0] for f in result["found"]}
