"""Finding a person in data: written forms of identifiers, file rewrites, the verification scan and the
tombstone suppression (pure Python, plus one tiny Spark check)."""
from __future__ import annotations

import gzip
import hashlib
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cdp_spark.privacy.files import clean_folders, rewrite_text
from cdp_spark.privacy.matching import Identifier, combined_pattern
from cdp_spark.privacy.tombstones import suppressed, token
from cdp_spark.privacy.verify import scan

ANN = [Identifier("email", "Ann.Lee@Example.com"), Identifier("phone", "+447700900123"),
       Identifier("customer_id", "C00000012")]


@pytest.mark.parametrize("text,hit", [
    ("ann.lee@example.com", True), ('"email":" ANN.LEE@EXAMPLE.COM  "', True), ("joann.lee@example.com", False),
    ("mail ann.lee@example.com.", True), ("+447700900123", True), ("07700 900123", True), ("+44 7700 900123", True),
    ("(0)7700-900-123", True), ("447700900123", True), ("17700900123", False), ("77009001234", False),
    ("C00000012", True), ("C000000123", False), ("xC00000012", False), ("id=C00000012;", True),
    (hashlib.sha256(b"ann.lee@example.com").hexdigest(), True), ("annlee@example.com", False),
])
def test_patterns_find_written_forms_and_nothing_else(text, hit):
    assert bool(re.search(combined_pattern(ANN), text, re.I)) is hit


def test_landing_rewrite_drops_records_keeps_header_and_mtime(tmp_path):
    csv = tmp_path / "crm" / "customers.csv"
    csv.parent.mkdir()
    csv.write_text("customer_id,email,phone\nC00000012,ann.lee@example.com,07700 900123\nC00000013,bo@x.com,\n")
    zipped = tmp_path / "web" / "day=1" / "events.json.gz"
    zipped.parent.mkdir(parents=True)
    zipped.write_bytes(gzip.compress(b'{"userId":"C00000012"}\n{"userId":"C00000014"}\n'))
    live = tmp_path / "web" / ".x.json.inprogress"
    live.write_text('{"userId":"C00000012"}\n')
    import os

    os.utime(csv, ns=(1_000_000_000, 1_000_000_000))
    pattern = re.compile(combined_pattern(ANN).encode(), re.I)
    result = clean_folders([tmp_path], pattern, combined_pattern(ANN))
    assert sorted(result.rewritten) == sorted([str(csv.resolve()), str(zipped.resolve())])
    assert result.records_dropped == 2 and result.skipped_live == [str(live.resolve())]
    assert csv.read_text() == "customer_id,email,phone\nC00000013,bo@x.com,\n"
    assert csv.stat().st_mtime_ns == 1_000_000_000
    assert gzip.decompress(zipped.read_bytes()) == b'{"userId":"C00000014"}\n'
    assert rewrite_text(csv, pattern) == 0  # nothing left to drop


def test_scan_reads_parquet_values_nested_and_statistics_gzip_and_raw_bytes(tmp_path):
    table = pa.table({"ids": pa.array([[("email", "ann.lee@example.com")], [("email", "x@y.z")]],
                                      type=pa.map_(pa.string(), pa.string())),
                      "rec": pa.array([{"phone": "07700900123"}, {"phone": None}]), "n": [1, 2]})
    pq.write_table(table, tmp_path / "part-0.parquet", compression="zstd")
    (tmp_path / "log.json.gz").write_bytes(gzip.compress(b'{"minValues":{"id":"C00000012"}}'))
    (tmp_path / "store.sqlite").write_bytes(b"\x00\x01ANN.LEE@example.com\x00")
    (tmp_path / "clean.csv").write_text("a,b\n1,2\n")
    found = {(o.path.rsplit("/", 1)[1], o.place, o.id_type): o.count for o in scan([tmp_path], ANN)}
    assert found == {("part-0.parquet", "ids.value", "email"): 1, ("part-0.parquet", "rec.phone", "phone"): 1,
                     ("part-0.parquet", "ids.key_value.value (statistics)", "email"): 1,
                     ("part-0.parquet", "rec.phone (statistics)", "phone"): 2,
                     ("log.json.gz", "bytes (gunzipped)", "customer_id"): 1, ("store.sqlite", "bytes", "email"): 1}
    assert scan([tmp_path], ANN, exclude=[tmp_path]) == []


def test_tombstone_tokens_are_salted_and_suppress_matching_records(spark):
    salt = "s3cret"
    assert token("email", "a@x.com", salt) != hashlib.sha256(b"email:a@x.com").hexdigest()
    stones = spark.createDataFrame([("email", token("email", "a@x.com", salt))], "id_type string, value_hash string")
    df = spark.createDataFrame([({"email": "a@x.com", "cookie_id": "k1"}, 1), ({"cookie_id": "k1"}, 2),
                                ({"email": "b@x.com"}, 3), (None, 4)], "identifiers map<string,string>, n int")
    assert sorted(r.n for r in suppressed(df, stones, salt).collect()) == [2, 3, 4]
    assert suppressed(df, stones.limit(0), salt).count() == 4
    assert sorted(r.n for r in suppressed(df, stones, "other salt").collect()) == [1, 2, 3, 4]


def test_ingest_suppression_flag_is_off_until_an_erasure_and_when_disabled(spark, tmp_path):
    from types import SimpleNamespace

    from pyspark.sql import functions as F

    from cdp_spark.lake import default_registry
    from cdp_spark.lake.embedded import EmbeddedLake
    from cdp_spark.privacy.config import PrivacyConfig
    from cdp_spark.privacy.tombstones import salt_for, suppression

    lake = EmbeddedLake(spark, str(tmp_path / "lake"), default_registry())
    config = SimpleNamespace(privacy=PrivacyConfig())
    ids = F.col("identifiers")
    assert suppression(spark, config, lake, ids) is None
    assert not (tmp_path / "lake" / "_system" / "privacy" / "salt").exists()  # no erasure yet: no salt either

    salt = salt_for(config, lake.root)
    lake.create_if_missing("ops.tombstones")
    lake.append("ops.tombstones", spark.createDataFrame(
        [("email", token("email", "a@x.com", salt), "er_1", None), ("phone", token("phone", "+447700900123", salt),
                                                                      "er_1", None)],
        "id_type string, value_hash string, request_id string, erased_at timestamp"))
    df = spark.createDataFrame([({"email": "a@x.com"}, 1), ({"cookie_id": "a@x.com"}, 2),  # same value, other type
                                ({"phone": "+447700900123", "cookie_id": "k"}, 3), ({"email": "b@x.com"}, 4),
                                ({}, 5), (None, 6)], "identifiers map<string,string>, n int")
    flag = suppression(spark, config, lake, ids)
    assert sorted(r.n for r in df.where(flag).collect()) == [1, 3]
    assert suppression(spark, SimpleNamespace(privacy=PrivacyConfig(suppress_tombstoned=False)), lake, ids) is None
