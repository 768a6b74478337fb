"""Property-based tests (hypothesis) of the ingest reader, chain and normalisers on arbitrary input: bytes, broken
encodings, any JSON shape and nesting depth, long values, NUL, quotes and line breaks.

Invariants: no exception escapes, every file reconciles in the ledger (read = accepted + quarantined + duplicates),
the number of records read is the number of non-blank lines (computed here independently), and bronze holds what
the counts say. Bounded for CI: each example is a whole file of many drawn lines, and a few examples per run.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from cdp_spark.ingest import stage
from cdp_spark.ingest.normalise import normalise, parse_timestamp
from cdp_spark.lake import default_registry
from cdp_spark.lake.embedded import EmbeddedLake
from tests.ingest_fixtures import ORDERS_SOURCE, REPO, make_config

pytestmark = pytest.mark.slow  # generated files through ingestion

FUZZ = settings(max_examples=4, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
_names = itertools.count()

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | text
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                           max_leaves=12)
times = st.one_of(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)).map(
    lambda t: t.isoformat() + "Z"), st.integers(-10**15, 10**15), st.floats(), text,
    st.just((dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)).isoformat()))
records = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["track", "page", "identify", "screen"]) | text, "event": text,
    "messageId": st.sampled_from(["m1", "m2", "m3"]) | text | st.integers(),
    "anonymousId": text, "userId": text | st.integers(), "timestamp": times,
    "properties": st.dictionaries(text, json_values, max_size=4), "traits": st.dictionaries(
        st.sampled_from(["email", "first_name", "last_name"]) | text, json_values, max_size=3),
    "context": st.fixed_dictionaries({}, optional={"page": st.fixed_dictionaries({}, optional={"url": text}),
                                                   "ip": text}) | json_values,
})


def deep(levels: int) -> bytes:
    return ('{"type":"track","p":' + '{"a":' * levels + "1" + "}" * levels + "}").encode()


lines = st.one_of(
    records.map(lambda r: json.dumps(r).encode()),
    records.map(lambda r: json.dumps(r, ensure_ascii=False).encode("utf-8")),
    records.map(lambda r: json.dumps(r).encode()[: max(1, len(json.dumps(r)) // 2)]),        # cut short
    st.integers(1, 1500).map(deep),
    st.binary(max_size=120),
    text.map(lambda s: s.encode("utf-16")),
    text.map(lambda s: s.encode("latin-1", "replace")),
    st.sampled_from([b"", b"   ", b"\r", b"\xef\xbb\xbf{}", b'{"event":"a\\u0000b"}', b"null", b"[]", b"{}"]),
)
files = st.lists(lines, max_size=60).map(lambda ls: b"\n".join(ls) + b"\n")


def non_blank(data: bytes) -> int:
    """Independent count of the records a file holds: lines split at LF, CR ending and a leading BOM removed,
    blank (only spaces) left out; invalid UTF-8 read with replacement characters, as the reader keeps it."""
    count = 0
    for i, line in enumerate(data.split(b"\n")):
        line = line[:-1] if line.endswith(b"\r") else line
        text_ = line.decode("utf-8", "replace")
        if i == 0:
            text_ = text_.removeprefix("\ufeff")
        count += text_.strip(" ") != ""
    return count


@pytest.fixture(scope="module")
def fuzz_lake(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    web = {**yaml.safe_load((REPO / "conf" / "sources" / "web.yaml").read_text()), "path": str(root / "web")}
    orders = {**ORDERS_SOURCE, "path": str(root / "orders"), "options": {"escape": '"'}}
    config = make_config(root, [web, orders], yaml.safe_load((REPO / "conf" / "routes.yaml").read_text()))
    return root, config, EmbeddedLake(spark, config.lake.root, default_registry())


def ingest_and_check(spark, fuzz_lake, source: str, name: str, data: bytes) -> dict:
    root, config, lake = fuzz_lake
    folder = root / source
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data)
    before = {t: lake.read(t).where(F.col("source") == source).count() if lake.exists(t) else 0
              for t in ("bronze.events", "bronze.profile_records", "bronze.quarantine")}

    s = stage.run(spark, config, lake, dt.date(2026, 11, 1)).metrics["sources"][source]

    [row] = [r for r in lake.read("bronze.ingested_files").collect() if r.source == source and r.path == name]
    assert row.status == "ingested"
    assert row.rows_read == row.rows_accepted + row.rows_quarantined + row.rows_duplicate
    assert s["reconciled"] and s["read"] == row.rows_read
    after = {t: lake.read(t).where(F.col("source") == source).count() for t in before}
    assert after["bronze.quarantine"] - before["bronze.quarantine"] == row.rows_quarantined
    written = after["bronze.events"] - before["bronze.events"]
    profile_only = after["bronze.profile_records"] - before["bronze.profile_records"]
    assert written <= row.rows_accepted <= written + profile_only
    return s


@FUZZ
@given(data=files)
def test_any_ndjson_file_reconciles_and_nothing_escapes(spark, fuzz_lake, data):
    s = ingest_and_check(spark, fuzz_lake, "web", f"f{next(_names)}.json", data)
    assert s["read"] == non_blank(data)


csv_fields = st.one_of(text, st.sampled_from(['"', '""', '"a,b"', '"x\ny"', "\x00", "2026-10-30T10:00:00Z", "EUR",
                                              "1", "5.5", "a@example.com", "\r"]))
csv_rows = st.lists(st.lists(csv_fields, min_size=1, max_size=9).map(lambda fs: ",".join(fs)), max_size=40)


@FUZZ
@given(rows=csv_rows)
def test_any_csv_file_reconciles_and_nothing_escapes(spark, fuzz_lake, rows):
    header = "order_id,order_time,email,phone,quantity,unit_price,currency,note"
    data = ("\n".join([header, *rows]) + "\n").encode("utf-8", "surrogatepass")
    s = ingest_and_check(spark, fuzz_lake, "orders", f"f{next(_names)}.csv", data)
    assert s["read"] <= non_blank(data) - 1       # multi-line records make one record of several lines


@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(text | st.sampled_from(["1e30", "NaN", "-0", "9" * 40, "+10000-01-01", "0001-01-01T00:00:00Z"]),
                       min_size=1, max_size=80))
def test_normalisers_and_time_parsing_never_fail_and_flag_exactly_the_rejected_values(spark, values):
    df = spark.createDataFrame([(v,) for v in values], "v string")
    cases = [("email", "string"), ("phone", "string"), ("country", "string"), ("currency", "string"),
             ("trim", "long"), ("trim", "double"), ("trim", "boolean"), ("timestamp", "timestamp"), ("lower", "date")]
    cols = []
    for i, (normaliser, type_) in enumerate(cases):
        value, bad = normalise(F.col("v"), normaliser, type_, "GB")
        cols += [value.cast("string").alias(f"v{i}"), bad.alias(f"b{i}")]
    for i, formats in enumerate([None, ["epoch_s"], ["epoch_ms"], ["dd/MM/yyyy HH:mm"]]):
        cols.append(parse_timestamp(F.col("v"), formats, "Europe/Paris").cast("string").alias(f"t{i}"))
    for original, row in zip(values, df.select("v", *cols).collect()):
        present = original is not None and original.strip(" ") != ""   # Spark's trim removes spaces only
        for i in range(len(cases)):
            assert row[f"b{i}"] == (present and row[f"v{i}"] is None), (cases[i], original)
