"""The messy landing zone (tests/messy_files.py): one file per kind of bad input, each reconciled on its own in the
file ledger (read = accepted + quarantined + duplicates), with bronze holding exactly what the ledger says."""
from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
import yaml
from pyspark.sql import functions as F

from cdp_spark.ingest import stage
from cdp_spark.lake import default_registry
from cdp_spark.lake.embedded import EmbeddedLake
from tests.ingest_fixtures import ORDERS_SOURCE, REPO, make_config
from tests.messy_files import write_messy

pytestmark = pytest.mark.slow  # every messy file of the corpus through ingestion


def test_every_messy_file_reconciles_and_bronze_holds_what_the_ledger_says(spark, tmp_path):
    expected = write_messy(tmp_path / "landing")
    web = {**yaml.safe_load((REPO / "conf" / "sources" / "web.yaml").read_text()), "path": str(tmp_path / "landing" / "web")}
    orders = {**ORDERS_SOURCE, "path": str(tmp_path / "landing" / "orders"), "glob": "*.csv",
              "options": {"escape": '"'}, "max_field_length": 4096}
    routes = yaml.safe_load((REPO / "conf" / "routes.yaml").read_text())
    config = make_config(tmp_path, [web, orders], routes)
    lake = EmbeddedLake(spark, config.lake.root, default_registry())

    sources = stage.run(spark, config, lake, dt.date(2026, 11, 1)).metrics["sources"]

    ledger = lake.read("bronze.ingested_files").collect()
    quarantine = lake.read("bronze.quarantine").collect()
    for name, files in expected.items():
        rows = {r.path: r for r in ledger if r.source == name}
        assert set(rows) == set(files), name
        for path, want in files.items():
            r = rows[path]
            assert r.status == want.status, path
            assert (r.rows_read, r.rows_accepted, r.rows_quarantined, r.rows_duplicate) == want.counts, path
            reasons = Counter("+".join(q.reasons) for q in quarantine if q.ingest_file.endswith("/" + path))
            assert reasons == Counter(want.reasons), path
        s = sources[name]
        assert s["reconciled"] and s["read"] == sum(f.counts[0] for f in files.values())
        assert (s["accepted"], s["quarantined"], s["duplicates"]) == tuple(
            sum(f.counts[i] for f in files.values()) for i in (1, 2, 3))
        # per reason, as `cdp status` shows it: a record with several reasons counts under each
        assert s["quarantine_reasons"] == Counter(r for q in quarantine if q.source == name for r in q.reasons), name
    # bronze holds what the ledger says: web's events + profile-only records, and every order, once each
    events = lake.read("bronze.events")
    assert events.where(F.col("source") == "orders").count() == sources["orders"]["accepted"]
    profile_only = lake.read("bronze.profile_records").count()
    assert events.where(F.col("source") == "web").count() + profile_only == sources["web"]["accepted"]
    assert events.count() == events.select("source", "event_id").distinct().count()
    assert sources["web"]["diverted"] == 1 and sources["web"]["files_failed"] == 1
    assert {p["path"] for p in sources["web"]["problem_files"]} == {"frame.json.lz4", "cut.json.gz"}
    note = next(r for r in events.collect() if r.order_id == "O2")
    assert note.ingest_line == 3
