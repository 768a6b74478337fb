"""Normalisers against independent references (phonenumbers, pycountry) and hand-checked cases."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pycountry
from pyspark.sql import functions as F

from cdp_spark.ingest.normalise import country_codes, currency_codes, e164, normalise, parse_timestamp


def test_e164_with_default_region():
    got = e164(pd.Series(["020 7946 0018", "+1 650-253-0000", "12", None, "06 12 34 56 78"]),
               pd.Series(["GB", "GB", "GB", "GB", "FR"]))
    assert got.tolist() == ["+442079460018", "+16502530000", None, None, "+33612345678"]


def test_country_and_currency_tables_cover_iso():
    codes = country_codes()
    assert all(codes[c.alpha_2] == c.alpha_2 and codes[c.alpha_3] == c.alpha_2 for c in pycountry.countries)
    assert codes["UNITED KINGDOM"] == "GB" and codes["GERMANY"] == "DE" and codes["USA"] == "US"
    assert {"EUR", "USD", "GBP", "JPY"} <= currency_codes() and "ABC" not in currency_codes()


def test_normalise_columns(spark):
    df = spark.createDataFrame(
        [(" Ann@Example.COM ", "france", " usd", "2", "2026-10-30T10:00:00+02:00", "020 7946 0018"),
         ("nope", "Atlantis", "ABC", "two", "garbage", "123"),
         (None, None, None, None, None, None)],
        "e string, c string, cur string, q string, t string, p string")
    cols = {}
    for name, norm, typ in [("e", "email", "string"), ("c", "country", "string"), ("cur", "currency", "string"),
                            ("q", "trim", "long"), ("t", "timestamp", "timestamp"), ("p", "phone", "string")]:
        value, bad = normalise(F.col(name), norm, typ, "GB")
        cols[name] = value.alias(name)
        cols[name + "_bad"] = bad.alias(name + "_bad")
    rows = df.select(*cols.values()).collect()
    good, bad, empty = rows
    assert (good.e, good.c, good.cur, good.q, good.p) == ("ann@example.com", "FR", "USD", 2, "+442079460018")
    assert good.t == dt.datetime(2026, 10, 30, 8, 0)  # offset honoured, stored as UTC
    assert (bad.e, bad.c, bad.cur, bad.q, bad.t, bad.p) == (None,) * 6
    assert all(bad[n + "_bad"] for n in ["e", "c", "cur", "q", "t", "p"])
    assert not any(empty[n + "_bad"] for n in ["e", "c", "cur", "q", "t", "p"])


def test_parse_timestamp_formats_and_time_zone(spark):
    df = spark.createDataFrame([("30/10/2026 10:00",), ("2026-10-30T10:00:00Z",), ("1793354400",)], "t string")
    got = [r.ts for r in df.select(parse_timestamp(F.col("t"), ["dd/MM/yyyy HH:mm", "yyyy-MM-dd'T'HH:mm:ssXXX", "epoch_s"],
                                                   "Europe/Paris").alias("ts")).collect()]
    # Paris is UTC+1 on 30 Oct 2026 (after DST ends on 25 Oct); the explicit Z and epoch are left as instants.
    assert got == [dt.datetime(2026, 10, 30, 9, 0), dt.datetime(2026, 10, 30, 10, 0),
                   dt.datetime(2026, 10, 30, 10, 0)]


def test_default_timestamp_parsing_reads_epoch_seconds_and_milliseconds(spark):
    """ISO-8601 text, and numbers as epoch seconds (10^8 .. 10^11) or milliseconds (10^11 .. 10^14), as JSON sends
    them (text, long or double); anything else numeric is not a time."""
    want = dt.datetime(2026, 10, 30, 10, 0)
    df = spark.createDataFrame([("1793354400",), ("1793354400000",), ("1.7933544E9",), ("1793354400.0",),
                                ("2026-10-30T10:00:00Z",), ("12",), ("1e30",), ("Infinity",), ("-1793354400",)],
                               "t string")
    got = [r.ts for r in df.select(parse_timestamp(F.col("t")).alias("ts")).collect()]
    assert got[:5] == [want] * 5
    assert got[5:] == [None] * 4
    numbers = spark.createDataFrame([(1793354400, 1793354400000.0)], "s long, ms double")
    row = numbers.select(parse_timestamp(F.col("s")).alias("s"), parse_timestamp(F.col("ms")).alias("ms")).first()
    assert (row.s, row.ms) == (want, want)


def test_timestamps_out_of_any_representable_range_are_null_not_a_failed_job(spark):
    """Under ANSI SQL an overflowing cast fails the whole job: every parse is bounded (years 1 to 9999), also for the
    explicit epoch formats, so one absurd value can only become null."""
    df = spark.createDataFrame([("1e30",), ("9223372036854775807",), ("9999-12-31T23:59:59-05:00",),
                                ("+10000-01-01",), ("1793354400",)], "t string")
    for formats in (["epoch_s"], ["epoch_ms"], None):
        got = [r.ts for r in df.select(parse_timestamp(F.col("t"), formats).alias("ts")).collect()]
        assert got[:4] == [None] * 4, formats
    assert df.select(parse_timestamp(F.col("t"), ["epoch_s"]).alias("ts")).collect()[4].ts == dt.datetime(2026, 10, 30, 10, 0)
