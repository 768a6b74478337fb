"""Enrichers, each checked on a tiny frame against hand-computed or hashlib results."""
from __future__ import annotations

import hashlib

from pyspark.sql import functions as F

from cdp_spark.ingest import sources as S
from cdp_spark.ingest.enrichers import apply_enrichers, flatten


def test_flatten_to_dotted_names_up_to_depth(spark):
    df = spark.createDataFrame([({"page": {"url": "u", "deep": {"x": 1}}, "ip": "1.2.3.4"}, "{}")],
                               "context struct<page:struct<url:string,deep:struct<x:int>>,ip:string>, _raw string")
    out = flatten(df, 2)
    assert sorted(out.columns) == ["_raw", "context.ip", "context.page.deep", "context.page.url"]
    row = out.collect()[0]
    assert row["context.page.url"] == "u" and row["context.page.deep"] == '{"x":1}' and row["_raw"] == "{}"


def test_value_map_regex_hash_constant_derive(spark):
    df = spark.createDataFrame([("M", "https://shop.example/p/123?x", "a@b.co", "2")], "g string, url string, e string, q string")
    out = apply_enrichers(spark, df, [
        S.ValueMap(type="value_map", column="g", output="gender", values={"M": "male", "F": "female"}),
        S.RegexExtract(type="regex_extract", column="url", output="pid", pattern=r"/p/(\d+)"),
        S.Hash(type="hash", column="e", output="e_hash"),
        S.Constant(type="constant", output="tenant", value="acme"),
        S.Derive(type="derive", output="double_q", expr="cast(q as int) * 2"),
    ]).collect()[0]
    assert (out.gender, out.pid, out.tenant, out.double_q) == ("male", "123", "acme", 4)
    assert out.e_hash == hashlib.sha256(b"a@b.co").hexdigest()


def test_currency_conversion_to_reporting_currency(spark, tmp_path):
    rates = tmp_path / "fx.csv"
    rates.write_text("currency,rate_to_eur\nEUR,1.0\nUSD,0.5\nGBP,2.0\n")
    df = spark.createDataFrame([(10.0, "usd"), (10.0, "GBP"), (10.0, "ZZZ"), (None, "EUR")], "amt double, cur string")
    enr = S.ConvertCurrency(type="convert_currency", amount="amt", currency="cur", output="rep",
                            rates=S.RatesTable(path="{demo_dir}/fx.csv"))
    to_eur = apply_enrichers(spark, df, [enr], reporting_currency="EUR", paths={"demo_dir": str(tmp_path)})
    assert [(r.cur, r.rep) for r in to_eur.orderBy(F.col("cur")).collect()] == [("EUR", None), ("GBP", 20.0), ("ZZZ", None), ("usd", 5.0)]
    to_gbp = apply_enrichers(spark, df, [enr], reporting_currency="GBP", paths={"demo_dir": str(tmp_path)})
    assert sorted((r.cur, r.rep) for r in to_gbp.collect() if r.rep is not None) == [("GBP", 10.0), ("usd", 2.5)]


def test_flat_columns_are_flatten_as_expressions(spark):
    # The stage computes the key-stats columns inside the chain's projection; they must be flatten's columns.
    from cdp_spark.ingest.enrichers import flat_columns

    df = spark.createDataFrame([({"page": {"url": "u", "deep": {"x": 1}}, "ip": "1.2.3.4"}, "{}", 7)],
                               "context struct<page:struct<url:string,deep:struct<x:int>>,ip:string>, _raw string, n int")
    cols = flat_columns(df, 2)
    assert [n for n, _ in cols] == flatten(df, 2).columns
    assert df.select(*[c.alias(n) for n, c in cols]).collect() == flatten(df, 2).collect()
