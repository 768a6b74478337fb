"""The SQLite serving store: indexed lookups, atomic swaps under concurrent readers, patches surviving a
refresh, secure erasure from every store file, and the build from a Spark profile view."""
from __future__ import annotations

import datetime as dt
import json
import threading

import pytest

from cdp_spark.api.store import SEP, ServingStore, StoreMissing


def rows(gen: int, n: int = 300):
    for i in range(n):
        doc = {"profile_id": f"p{i}", "gen": gen, "traits": {"city": f"c{i}"}}
        yield f"p{i}", json.dumps(doc), [f"email{SEP}u{i}@x.com", f"customer_id{SEP}C{i:06d}"]


def test_lookups_by_identifier_and_profile_id_use_the_indexes(tmp_path):
    store = ServingStore(tmp_path)
    with pytest.raises(StoreMissing):
        store.by_profile_id("p1")
    store.build(rows(1))
    assert store.by_identifier("email", "u7@x.com")["profile_id"] == "p7"
    assert store.by_profile_id("p8")["traits"] == {"city": "c8"}
    assert store.by_identifier("email", "nobody@x.com") is None and store.meta()["profiles"] == "300"
    import sqlite3

    conn = sqlite3.connect(store.current())
    plan = " ".join(r[-1] for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT profile_id FROM identifiers WHERE id_type='email' AND value='u1@x.com'"))
    assert "USING PRIMARY KEY" in plan
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_readers_never_see_a_half_refreshed_store(tmp_path):
    store = ServingStore(tmp_path, keep_files=1)
    store.build(rows(1))
    seen, errors, stop = set(), [], threading.Event()

    def reader() -> None:
        mine = ServingStore(tmp_path)  # like another API worker
        while not stop.is_set():
            try:
                docs = [mine.by_identifier("email", f"u{i}@x.com") for i in (0, 150, 299)]
                gens = {d["gen"] for d in docs}
                if None in docs:
                    errors.append("missing profile")
                seen.update(gens)
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for gen in range(2, 6):
        store.build(rows(gen))
    stop.set()
    for t in threads:
        t.join()
    assert errors == [] and seen <= {1, 2, 3, 4, 5} and 5 in {store.by_profile_id("p1")["gen"]}
    assert len(list(tmp_path.glob("profiles-*.sqlite"))) <= 2  # old files are cleaned up


def test_patches_apply_at_once_and_are_replayed_onto_a_rebuild(tmp_path):
    store = ServingStore(tmp_path)
    store.build(rows(1))
    now = dt.datetime.now(dt.timezone.utc)
    assert store.apply_patch("p3", {"city": "York"}, now)["traits"]["city"] == "York"
    assert store.apply_patch("p_missing", {"city": "York"}, now) is None
    store.build(rows(2), replay_since=now - dt.timedelta(minutes=5))
    rebuilt = store.by_profile_id("p3")
    assert rebuilt["gen"] == 2 and rebuilt["traits"] == {"city": "York"}  # the new build, with the patch on top
    assert store.by_profile_id("p4")["traits"] == {"city": "c4"}
    store.build(rows(3), replay_since=now + dt.timedelta(minutes=5))  # older patches are not replayed
    assert store.by_profile_id("p3")["traits"]["city"] == "c3"


def test_erase_removes_the_person_from_every_store_file_without_residue(tmp_path):
    store = ServingStore(tmp_path, keep_files=3)
    store.build(rows(1))
    store.build(rows(2))
    store.apply_patch("p42", {"city": "Secretville"}, dt.datetime.now(dt.timezone.utc))
    assert store.erase(["p42"], [("email", "u42@x.com")]) == 2
    assert store.by_profile_id("p42") is None and store.by_identifier("customer_id", "C000042") is None
    assert store.by_profile_id("p43") is not None
    for f in tmp_path.iterdir():
        data = f.read_bytes()
        assert b"u42@x.com" not in data and b"C000042" not in data and b"Secretville" not in data, f.name


def test_refresh_from_a_view_in_the_contract_shape(spark, tmp_path):
    from cdp_spark.api.store import refresh_serving_store
    from cdp_spark.config import load_config
    from cdp_spark.config.models import LakeConfig
    from cdp_spark.lake import default_registry
    from cdp_spark.lake.embedded import EmbeddedLake
    from cdp_spark.profiles.view import view_schema

    config = load_config("conf/cdp.yaml").model_copy(update={"lake": LakeConfig(root=str(tmp_path / "lake"))})
    lake = EmbeddedLake(spark, config.lake.root, default_registry())
    t = dt.datetime(2026, 11, 1, 9)
    view = spark.createDataFrame([
        {"profile_id": "p_a", "identifiers": {"email": ["a@x.com", "a2@x.com"], "customer_id": ["C1"]},
         "traits": {"first_name": "Ann", "birth_date": dt.date(1990, 1, 2)}, "attributes": {"orders_lifetime": 2},
         "consent": {"analytics": "granted"}, "consent_at": {"analytics": t}, "consent_source": {"analytics": "crm"},
         "first_seen": t, "last_seen": t, "sources": ["crm"], "updated_at": t},
        {"profile_id": "p_b", "identifiers": {"cookie_id": ["k1"]}, "traits": {}, "attributes": {}, "consent": {},
         "first_seen": t, "last_seen": t, "sources": ["web"], "updated_at": t}], view_schema(config, with_scores=False))
    result = refresh_serving_store(spark, config, lake, view=view)
    store = ServingStore(config.api.serving.folder(config.lake.root))
    assert result["profiles"] == 2
    a = store.by_identifier("email", "a2@x.com")
    assert a["profile_id"] == "p_a" and a["traits"]["birth_date"] == "1990-01-02" and a["traits"]["last_name"] is None
    assert a["attributes"]["orders_lifetime"] == 2 and a["audiences"] == []
    assert a["consent_source"] == {"analytics": "crm"} and a["consent_at"]["analytics"].startswith("2026-11-01")
    assert store.by_identifier("cookie_id", "k1")["profile_id"] == "p_b"
