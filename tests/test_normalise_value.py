"""The pure-Python normaliser (used by the Profile API's PATCH) against the Spark normalisers of batch ingestion:
on a few thousand generated values of every normaliser and type, whatever the Python one accepts, Spark accepts with
the same result; it may refuse more (it reads ISO-8601 times only)."""
from __future__ import annotations

import datetime as dt
import random

import pytest
from pyspark.sql import functions as F

from cdp_spark.ingest.normalise import normalise, normalise_value

CASES = [("email", "string"), ("country", "string"), ("currency", "string"), ("lower", "string"), ("trim", "string"),
         ("none", "string"), ("trim", "long"), ("trim", "double"), ("trim", "boolean"), ("trim", "date"),
         ("trim", "timestamp"), ("timestamp", "timestamp"), ("none", "long"), ("none", "date"), ("phone", "string")]


def _values(rng: random.Random, n: int) -> list[str]:
    pad = lambda: rng.choice(["", " ", "  ", "\t", "\n"])  # noqa: E731
    digits = lambda k: "".join(rng.choice("0123456789") for _ in range(k))  # noqa: E731

    def one() -> str:
        kind = rng.randrange(9)
        if kind == 0:  # dates and times, valid and not
            y = rng.choice(["2026", "0001", "9999", "0000", "1999", digits(4), digits(5)])
            v = f"{y}-{digits(rng.choice([1, 2]))}-{digits(rng.choice([1, 2]))}"
            if rng.random() < 0.7:
                v += rng.choice(["T", " "]) + f"{digits(rng.choice([1, 2]))}:{digits(2)}"
                if rng.random() < 0.7:
                    v += f":{digits(2)}" + (f".{digits(rng.randint(1, 9))}" if rng.random() < 0.4 else "")
            if rng.random() < 0.6:
                v += rng.choice(["Z", "z", "+01:00", "-05:30", "+0100", "+01", "-18:00", "+19:00", "+01:75", " UTC"])
            return v
        if kind == 1:  # numbers
            return rng.choice(["", "+", "-"]) + rng.choice([digits(rng.randint(1, 20)), f"{digits(2)}.{digits(2)}",
                                                           f"{digits(1)}e{digits(2)}", f".{digits(3)}", "1_000", "0x1F"])
        if kind == 2:  # e-mails
            local = rng.choice(["ann", "A.B", "x y", "ä", "o'neil", ""])
            return f"{local}@{rng.choice(['example.com', 'EXAMPLE.CO.UK', 'b.c', 'b..cd', 'host', 'ex.c1'])}"
        if kind == 3:
            return rng.choice(["GB", "gb", "United Kingdom", "uk", "Narnia", "DEU", "france", "U.S.A.", "Côte d'Ivoire"])
        if kind == 4:
            return rng.choice(["eur", "USD", "abc", "gbp", "€"])
        if kind == 5:
            return rng.choice(["true", "FALSE", "Yes", "n", "t", "1", "0", "maybe", "on"])
        if kind == 6:
            return rng.choice(["020 7946 0018", "+1 650-253-0000", "12", "06 12 34 56 78", "+447700900123"])
        if kind == 7:  # odd text
            return "".join(rng.choice("aZ \t\n\x00é€\u2028İ") for _ in range(rng.randint(0, 6)))
        return rng.choice(["", " ", "  x  ", "x\x00y"])

    return [pad() + one() + pad() for _ in range(n)]


@pytest.fixture(scope="module")
def compared(spark):
    values = sorted(set(_values(random.Random(7), 2000)))
    df = spark.createDataFrame([(v,) for v in values], "v string")
    cols = []
    for i, (norm, typ) in enumerate(CASES):
        value, bad = normalise(F.col("v"), norm, typ, "GB")
        out = value.cast({"long": "bigint"}.get(typ, typ))
        # dates and times as text: Spark reads years Python cannot hold (0000, 12026)
        cols += [(out.cast("string") if typ in ("date", "timestamp") else out).alias(f"v{i}"), bad.alias(f"b{i}")]
    rows = df.select("v", *cols).collect()
    return [(r.v, norm, typ, r[f"v{i}"], r[f"b{i}"]) for r in rows for i, (norm, typ) in enumerate(CASES)]


def _as_spark_text(value, typ):
    if typ == "date":
        return value.isoformat()
    if typ == "timestamp":
        text = f"{value.year:04d}-" + value.strftime("%m-%d %H:%M:%S")
        return text + (f".{value.microsecond:06d}".rstrip("0") if value.microsecond else "")
    return value


def test_what_python_accepts_spark_accepts_with_the_same_value(compared):
    accepted = 0
    for v, norm, typ, spark_value, spark_bad in compared:
        value, bad = normalise_value(v, norm, typ, "GB")
        assert bad == (value is None and v.strip(" ") != ""), (v, norm, typ)
        if value is not None:
            accepted += 1
            assert not spark_bad and spark_value == _as_spark_text(value, typ), (v, norm, typ, value, spark_value)
        elif not bad:  # blank
            assert spark_value is None and not spark_bad, (v, norm, typ)
    assert accepted > 2000  # the comparison covers real values, not only refusals


def test_python_refuses_what_spark_refuses(compared):
    refused = sum(1 for v, norm, typ, sv, sb in compared if sb and normalise_value(v, norm, typ, "GB")[0] is None)
    assert refused == sum(1 for *_, sb in compared if sb)


@pytest.mark.parametrize("value, norm, typ, expected", [
    (" Ann@Example.COM ", "email", "string", "ann@example.com"), ("Narnia", "country", "string", None),
    (" united kingdom", "country", "string", "GB"), ("2026-10-30T10:00:00+02:00", "timestamp", "timestamp",
                                                     dt.datetime(2026, 10, 30, 8, 0)),
    ("0001-01-01T00:30:00+01:00", "timestamp", "timestamp", None), ("9999-12-31T23:30:00-01:00", "trim", "timestamp", None),
    ("1990-02-30", "trim", "date", None), ("1990-02-03", "trim", "date", dt.date(1990, 2, 3)), ("Yes", "trim", "boolean", True),
])
def test_hand_checked_values(value, norm, typ, expected):
    assert normalise_value(value, norm, typ) == (expected, expected is None)
