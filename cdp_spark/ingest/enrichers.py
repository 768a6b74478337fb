"""Enrichers: declared in a source's YAML, applied in order, each a pure ``DataFrame -> DataFrame`` transform.

Example:
    >>> df = apply_enrichers(spark, df, source.enrichers, reporting_currency="EUR", paths={})   # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_spark.ingest import sources as S
from cdp_spark.ingest.normalise import parse_timestamp

RAW = "_raw"


def resolves(df: DataFrame, name: str) -> bool:
    """Whether ``name`` is a top-level column or a nested struct path of ``df`` (checked on the schema)."""
    if name in df.columns:
        return True
    dtype: T.DataType = df.schema
    for part in name.split("."):
        if not isinstance(dtype, T.StructType) or part not in dtype.fieldNames():
            return False
        dtype = dtype[part].dataType
    return True


_REFERENCES: dict[str, tuple[str, ...]] = {}


def referenced_columns(spark: SparkSession, expr: str) -> tuple[str, ...]:
    """The one-part column names a Spark SQL expression refers to (``name`` or ```a.b```), read by Spark's own
    parser: function names, keywords, literals and lambda variables are not columns. Empty when the parser is not
    reachable (Spark Connect).

    Example:
        >>> referenced_columns(spark, "CASE WHEN type = 'alias' THEN coalesce(previousId, `traits.id`) END")  # doctest: +SKIP
        ('type', 'previousId', 'traits.id')
    """
    if expr not in _REFERENCES:
        try:
            stack = [spark._jsparkSession.sessionState().sqlParser().parseExpression(expr)]  # noqa: SLF001
        except Exception:  # noqa: BLE001 - no JVM (Spark Connect) or a parse error, which the select reports itself
            return ()
        names: list[str] = []
        while stack:
            node = stack.pop()
            if node.getClass().getSimpleName() == "UnresolvedAttribute" and node.nameParts().size() == 1:
                names.append(node.nameParts().apply(0))
            children = node.children()
            stack.extend(children.apply(i) for i in range(children.size()))
        _REFERENCES[expr] = tuple(dict.fromkeys(reversed(names)))
    return _REFERENCES[expr]


def with_keys_of(df: DataFrame, expr: str) -> DataFrame:
    """``df`` plus a column for each column the SQL expression names that this batch lacks: a dotted name through
    a nested field or a map (the collector's `traits`) reads that key (`column`); a key no record of the batch
    used (JSON batches only carry those) is null, so the expression gives null there instead of failing the batch.

    Example:
        >>> with_keys_of(df, "coalesce(event, type)").columns[-1]     # doctest: +SKIP
        'event'
    """
    missing = [n for n in referenced_columns(df.sparkSession, expr) if n not in df.columns]
    return df.withColumns({n: column(df, n) for n in missing}) if missing else df


def column(df: DataFrame, name: str) -> Column:
    """A column by name: a flattened dotted name as-is, else a nested path; null when this batch lacks the key
    (JSON batches only carry the keys their records used). A path through a map (the collector's free-form
    `properties` and `traits`) looks the key up, and reads deeper keys from the value's JSON text.

    Example:
        >>> column(df, "context.page.url")     # doctest: +SKIP
    """
    if name in df.columns:
        return F.col(f"`{name}`")
    if resolves(df, name):
        return F.col(name)
    dtype: T.DataType = df.schema
    expr: Column | None = None
    parts = name.split(".")
    for i, part in enumerate(parts):
        if isinstance(dtype, T.StructType) and part in dtype.fieldNames():
            expr = F.col(f"`{part}`") if expr is None else expr.getField(part)
            dtype = dtype[part].dataType
        elif isinstance(dtype, T.MapType) and expr is not None:
            value = F.try_element_at(expr, F.lit(part))
            rest = parts[i + 1:]
            if not rest:
                return value
            return F.get_json_object(value, "$" + "".join(f"['{p}']" for p in rest))
        else:
            break
    return F.lit(None).cast("string")


def flatten(df: DataFrame, depth: int) -> DataFrame:
    """Nested structs become dotted top-level columns, down to ``depth`` levels; deeper structs become JSON text.

    Example:
        >>> flatten(spark.createDataFrame([({"a": {"b": 1}},)], "s struct<a:struct<b:int>>"), 3).columns   # doctest: +SKIP
        ['s.a.b']
    """
    return df.select(*[value.alias(name) for name, value in flat_columns(df, depth)])


def flat_columns(df: DataFrame, depth: int) -> list[tuple[str, Column]]:
    """(name, expression over ``df``) of each column of `flatten`, to compute them inside another projection.

    Example:
        >>> [n for n, _ in flat_columns(spark.createDataFrame([({"a": 1}, 2)], "s struct<a:int>, t int"), 3)]  # doctest: +SKIP
        ['s.a', 't']
    """
    cols: list[tuple[str, Column]] = []

    def walk(prefix: str, dtype: T.DataType, expr: Column, level: int) -> None:
        if isinstance(dtype, T.StructType) and level <= depth:
            for f in dtype.fields:
                walk(f"{prefix}.{f.name}", f.dataType, expr.getField(f.name), level + 1)
        elif isinstance(dtype, (T.StructType, T.ArrayType, T.MapType)):
            cols.append((prefix, F.to_json(expr)))
        else:
            cols.append((prefix, expr))

    for f in df.schema.fields:
        if f.name.startswith("_") or not isinstance(f.dataType, T.StructType):
            cols.append((f.name, F.col(f"`{f.name}`")))
        else:
            walk(f.name, f.dataType, F.col(f"`{f.name}`"), 1)
    return cols


def rates_frame(spark: SparkSession, rates: S.RatesTable, paths: dict[str, str]) -> DataFrame:
    """The rates table as (currency, rate) from a CSV file or a Delta table path."""
    path = rates.path.format(**paths)
    if rates.format == "csv":
        raw = spark.read.option("header", "true").csv(path)
    else:
        from deltalake import DeltaTable

        raw = spark.createDataFrame(DeltaTable(path).to_pandas())
    return raw.select(
        F.upper(F.trim(F.col(rates.currency_column).cast("string"))).alias("currency"),
        F.col(rates.rate_column).cast("double").alias("rate"),
    )


@dataclass(frozen=True)
class EnrichContext:
    """What some enrichers need besides their own settings: the session (to read a rates table), the reporting
    currency and the folders a rates path may name (``{demo_dir}``)."""

    spark: SparkSession
    reporting_currency: str = "EUR"
    paths: Mapping[str, str] = field(default_factory=dict)


Transform = Callable[[DataFrame], DataFrame]


def _flatten(e: S.Flatten, _ctx: EnrichContext) -> Transform:
    return lambda df: flatten(df, e.depth)


def _parse_datetime(e: S.ParseDatetime, _ctx: EnrichContext) -> Transform:
    return lambda df: df.withColumn(e.output or e.column, parse_timestamp(column(df, e.column), e.formats, e.timezone))


def _convert_currency(e: S.ConvertCurrency, ctx: EnrichContext) -> Transform:
    return lambda df: convert_currency(df, rates_frame(ctx.spark, e.rates, dict(ctx.paths)), e, ctx.reporting_currency)


def _constant(e: S.Constant, _ctx: EnrichContext) -> Transform:
    return lambda df: df.withColumn(e.output, F.lit(e.value))


def _derive(e: S.Derive, _ctx: EnrichContext) -> Transform:
    return lambda df: with_keys_of(df, e.expr).withColumn(e.output, F.expr(e.expr))


def _value_map(e: S.ValueMap, _ctx: EnrichContext) -> Transform:
    def apply(df: DataFrame) -> DataFrame:
        src = column(df, e.column).cast("string")
        lookup = F.create_map(*[F.lit(x) for kv in e.values.items()
                                for x in (kv[0], str(kv[1]) if kv[1] is not None else None)])
        mapped = F.try_element_at(lookup, src)
        if e.default is not None:
            fallback = F.lit(str(e.default))
        else:
            fallback = src if e.keep_unmapped else F.lit(None)
        return df.withColumn(e.output or e.column, F.when(src.isNull(), None).otherwise(F.coalesce(mapped, fallback)))
    return apply


def _regex_extract(e: S.RegexExtract, _ctx: EnrichContext) -> Transform:
    def apply(df: DataFrame) -> DataFrame:
        got = F.regexp_extract(column(df, e.column).cast("string"), e.pattern, e.group)
        return df.withColumn(e.output, F.when(got != "", got))
    return apply


def _hash(e: S.Hash, _ctx: EnrichContext) -> Transform:
    def apply(df: DataFrame) -> DataFrame:
        src = column(df, e.column).cast("string")
        hashed = F.md5(src) if e.algorithm == "md5" else F.sha2(src, 512 if e.algorithm == "sha512" else 256)
        return df.withColumn(e.output or e.column, hashed)
    return apply


# Enricher settings type -> the factory of its DataFrame transform.
TRANSFORMS: dict[type, Callable[[Any, EnrichContext], Transform]] = {
    S.Flatten: _flatten, S.ParseDatetime: _parse_datetime, S.ConvertCurrency: _convert_currency,
    S.Constant: _constant, S.Derive: _derive, S.ValueMap: _value_map, S.RegexExtract: _regex_extract, S.Hash: _hash,
}


def enricher_transform(enricher: Any, ctx: EnrichContext) -> Transform:
    """The ``DataFrame -> DataFrame`` transform of one configured enricher.

    Example:
        >>> to_tenant = enricher_transform(S.Constant(type="constant", output="tenant", value="acme"), EnrichContext(spark))  # doctest: +SKIP
        >>> df.transform(to_tenant).select("tenant").first()[0]                     # doctest: +SKIP
        'acme'
    """
    return TRANSFORMS[type(enricher)](enricher, ctx)


def apply_enrichers(
    spark: SparkSession,
    df: DataFrame,
    enrichers: Sequence[Any],
    *,
    reporting_currency: str = "EUR",
    paths: dict[str, str] | None = None,
) -> DataFrame:
    """Apply the enrichers in order.

    Example:
        >>> apply_enrichers(spark, df, [S.Constant(type="constant", output="tenant", value="acme")])   # doctest: +SKIP
    """
    ctx = EnrichContext(spark, reporting_currency, paths or {})
    for e in enrichers:
        df = df.transform(enricher_transform(e, ctx))
    return df


def convert_currency(df: DataFrame, rates: DataFrame, e: S.ConvertCurrency, reporting_currency: str) -> DataFrame:
    """amount * rate(currency) / rate(reporting currency); null (not garbage) when a currency has no rate."""
    target = rates.where(F.col("currency") == reporting_currency.upper()).select(F.col("rate").alias("__target"))
    lookup = rates.select(F.col("currency").alias("__cur"), F.col("rate").alias("__rate")).crossJoin(F.broadcast(target))
    cur = F.upper(F.trim(column(df, e.currency).cast("string")))
    joined = df.withColumn("__cur_key", cur).join(F.broadcast(lookup), F.col("__cur_key") == F.col("__cur"), "left")
    amount = column(joined, e.amount).cast("double")
    return joined.withColumn(e.output, F.round(amount * F.col("__rate") / F.col("__target"), 6)).drop(
        "__cur_key", "__cur", "__rate", "__target"
    )
