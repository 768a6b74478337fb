"""Each enricher's `DataFrame -> DataFrame` transform on its own, applied with ``df.transform``."""
from __future__ import annotations

import datetime as dt
import hashlib
import typing

import pytest

from cdp_spark.ingest import sources as S
from cdp_spark.ingest.enrichers import TRANSFORMS, EnrichContext, enricher_transform


@pytest.fixture(scope="module")
def ctx(spark):
    return EnrichContext(spark)


def test_every_configurable_enricher_has_a_transform():
    union = typing.get_args(typing.get_args(S.Enricher)[0])
    assert set(TRANSFORMS) == set(union)


def test_flatten(spark, ctx):
    df = spark.createDataFrame([({"page": {"url": "u"}},)], "context struct<page:struct<url:string>>")
    out = df.transform(enricher_transform(S.Flatten(type="flatten", depth=2), ctx))
    assert out.columns == ["context.page.url"] and out.first()[0] == "u"


def test_parse_datetime(spark, ctx):
    df = spark.createDataFrame([("01/11/2026 08:30",)], "ts string")
    enricher = S.ParseDatetime(type="parse_datetime", column="ts", output="at", formats=["dd/MM/yyyy HH:mm"])
    assert df.transform(enricher_transform(enricher, ctx)).first().at == dt.datetime(2026, 11, 1, 8, 30)


def test_convert_currency(spark, tmp_path):
    (tmp_path / "fx.csv").write_text("currency,rate_to_eur\nEUR,1.0\nUSD,0.5\n")
    df = spark.createDataFrame([(10.0, "USD")], "amt double, cur string")
    enricher = S.ConvertCurrency(type="convert_currency", amount="amt", currency="cur", output="eur",
                                 rates=S.RatesTable(path="{demo_dir}/fx.csv"))
    out = df.transform(enricher_transform(enricher, EnrichContext(spark, "EUR", {"demo_dir": str(tmp_path)})))
    assert out.first().eur == 5.0


def test_constant(spark, ctx):
    df = spark.createDataFrame([(1,)], "n int")
    out = df.transform(enricher_transform(S.Constant(type="constant", output="tenant", value="acme"), ctx))
    assert out.first().tenant == "acme"


def test_derive(spark, ctx):
    df = spark.createDataFrame([("2",)], "q string")
    out = df.transform(enricher_transform(S.Derive(type="derive", output="twice", expr="cast(q as int) * 2"), ctx))
    assert out.first().twice == 4


def test_value_map_with_default_and_keeping_unmapped_values(spark, ctx):
    df = spark.createDataFrame([("M",), ("X",), (None,)], "g string")
    values = {"M": "male"}
    kept = df.transform(enricher_transform(S.ValueMap(type="value_map", column="g", output="o", values=values,
                                                      keep_unmapped=True), ctx))
    assert [r.o for r in kept.collect()] == ["male", "X", None]
    default = df.transform(enricher_transform(S.ValueMap(type="value_map", column="g", output="o", values=values,
                                                         default="other"), ctx))
    assert [r.o for r in default.collect()] == ["male", "other", None]


def test_regex_extract_gives_null_when_nothing_matches(spark, ctx):
    df = spark.createDataFrame([("https://shop.example/p/123",), ("https://shop.example/",)], "url string")
    enricher = S.RegexExtract(type="regex_extract", column="url", output="pid", pattern=r"/p/(\d+)")
    assert [r.pid for r in df.transform(enricher_transform(enricher, ctx)).collect()] == ["123", None]


def test_hash(spark, ctx):
    df = spark.createDataFrame([("a@b.co",)], "e string")
    sha = df.transform(enricher_transform(S.Hash(type="hash", column="e", output="h"), ctx)).first().h
    md5 = df.transform(enricher_transform(S.Hash(type="hash", column="e", output="h", algorithm="md5"), ctx)).first().h
    assert sha == hashlib.sha256(b"a@b.co").hexdigest() and md5 == hashlib.md5(b"a@b.co").hexdigest()
