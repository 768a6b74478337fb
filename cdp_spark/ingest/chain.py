"""The ingestion chain, one code path for batch and streaming: a pure function of a raw DataFrame and config.

Input: the source's columns plus ``_raw`` (the record as text), ``_file``, ``_line`` and ``_error`` (a structural
problem found while reading, e.g. ``malformed_json``; null when the record parsed). Output of `prepare`: one row per
input row with canonical catalogue columns, ``_reasons`` (non-empty = quarantine), ``_issues`` (values nulled with
a reason), ``_warnings``, ``_fatal``, ``stream`` and ``_record_key``.

Example:
    >>> checked = prepare(spark, raw, source, config.catalogue, config.routes)       # doctest: +SKIP
    >>> accepted, quarantined = split(checked)                                      # doctest: +SKIP
"""
from __future__ import annotations

from functools import reduce
from typing import Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_spark.ingest.enrichers import apply_enrichers, column, with_keys_of
from cdp_spark.ingest.expectations import violated
from cdp_spark.ingest.normalise import normalise, parse_timestamp
from cdp_spark.ingest.routes import route_column
from cdp_spark.ingest.sources import BRONZE_EVENT_FIELDS, EVENT_COLUMNS, Catalogue, RouteRule, Source
from cdp_spark.ingest.tables import CONSENT_TYPE, EVENTS, PROFILE_RECORDS

META = ["_raw", "_file", "_line", "_error"]
# Optional raw columns that `prepare` carries through unchanged when present (batch ingestion has none): the
# stream's per-micro-batch receipt time comes as data in this column, not as a literal (see collect/stream.py).
CARRIED = ["_received_at"]
SPARK_TYPES = {"string": "string", "long": "bigint", "double": "double", "boolean": "boolean",
               "timestamp": "timestamp", "date": "date"}


def _reasons(pairs: Sequence[tuple[Column, str]]) -> Column:
    empty = F.array().cast("array<string>")
    if not pairs:
        return empty
    # array_except rather than filter(x -> x is not null): higher-order functions have no code generation, and
    # would make every expression of the chain's projection run interpreted. Most records have no reason at all:
    # they get the empty array without building one (array_except allocates a hash set per row).
    listed = F.array_except(F.array(*[F.when(cond, F.lit(reason)) for cond, reason in pairs]),
                            F.array(F.lit(None).cast("string")))
    anything = reduce(lambda a, b: a | b, [F.coalesce(cond, F.lit(False)) for cond, _ in pairs])
    return F.when(anything, listed).otherwise(empty)


def non_null_map(pairs: Sequence[tuple[str, Column]]) -> Column:
    """map<string,string> of the pairs whose value is not null (code-generated, unlike ``map_filter``).

    Example:
        >>> non_null_map([("email", F.col("email")), ("phone", F.col("phone"))])     # doctest: +SKIP
    """
    if not pairs:
        return F.create_map().cast("map<string,string>")
    entry = "struct<key:string,value:string>"
    entries = [F.when(value.isNotNull(), F.struct(F.lit(key).alias("key"), value.cast("string").alias("value")))
               for key, value in pairs]
    return F.map_from_entries(F.array_except(F.array(*entries), F.array(F.lit(None).cast(entry))))


def prepare(
    spark: SparkSession,
    raw: DataFrame,
    source: Source,
    catalogue: Catalogue,
    routes: Sequence[RouteRule] = (),
    *,
    paths: dict[str, str] | None = None,
    carry: Sequence[str] = (),
    received_at: Column | None = None,
) -> DataFrame:
    """Enrich, map, normalise, check and route a raw DataFrame (see the module docstring for the contract).

    ``carry`` names further columns of ``raw`` to pass through unchanged (the stage carries the raw key columns
    for its key statistics, so the batch is kept in memory once, not once raw and once checked). ``received_at``
    is the receipt time the event time must be plausible against (default: the ``_received_at`` column when
    ``raw`` has one, else now).

    Example:
        >>> prepare(spark, raw, source, catalogue).select("email", "_reasons").show()   # doctest: +SKIP
    """
    df = raw
    for name in META:
        if name not in df.columns:
            df = df.withColumn(name, F.lit(None).cast("long" if name == "_line" else "string"))
    df = apply_enrichers(spark, df, source.enrichers, reporting_currency=catalogue.reporting_currency, paths=paths)
    if received_at is None:
        received_at = F.col("_received_at") if "_received_at" in df.columns else F.current_timestamp()

    structural: list[tuple[Column, str]] = []  # the reading error (_error) is added as its own reason below
    canonical: list[Column] = []
    values: dict[str, Column] = {}
    invalid: dict[str, Column] = {}
    for field, src in source.mapping.items():
        spec = catalogue.fields[field]
        # A plain (possibly dotted) name is a column; anything else is a Spark SQL expression over the columns.
        plain = all(part.isidentifier() for part in src.split("."))
        if not (src in df.columns or plain):
            df = with_keys_of(df, src)
        value_in = column(df, src) if src in df.columns or plain else F.expr(src)
        text = value_in.cast("string")
        # Characters are counted (a scan of the value) only when the bytes could exceed the limit.
        limit = source.max_field_length
        structural.append(((F.octet_length(text) > limit) & (F.length(text) > limit), f"oversize:{field}"))
        # NUL is refused rather than stripped: it is never part of a real value, and a silent edit would hide it.
        structural.append((text.contains("\x00"), f"nul_byte:{field}"))
        value, bad = normalise(value_in, spec.normaliser, spec.type, source.default_country)
        values[field] = value.cast(SPARK_TYPES[spec.type])
        canonical.append(values[field].alias(field))
        invalid[field] = bad
    time: Column = F.lit(None).cast("timestamp")
    if source.timestamp is not None:
        ts_in = column(df, source.timestamp.field)
        time = parse_timestamp(ts_in, source.timestamp.formats, source.timestamp.timezone)
        invalid["event_time"] = ts_in.isNotNull() & time.isNull()
    if "event_time" in values:
        time = F.coalesce(time, values["event_time"])
    window = source.event_time_window
    implausible = time.isNotNull() & (
        (time < received_at - F.make_dt_interval(days=F.lit(window.max_past_days)))
        | (time > received_at + F.make_dt_interval(mins=F.lit(window.max_future_minutes))))
    consent = consent_column(df, source, catalogue)
    # Catalogue event fields without a bronze.events column of their own travel in the properties JSON.
    extra = [(f, values[f]) for f in source.mapping if catalogue.fields[f].group == "event" and f not in BRONZE_EVENT_FIELDS]
    properties = properties_column(df, source, extra)
    structural.append((properties.contains("\\u0000"), "nul_byte:properties"))

    mapped = df.select(
        *[F.col(m) for m in META], *[F.col(c) for c in CARRIED if c in df.columns], *[F.col(f"`{c}`") for c in carry],
        *canonical, F.when(~implausible, time).alias("_event_time"), implausible.alias("_implausible"),
        consent.alias("_consent"), properties.alias("_properties"),
        _reasons(structural).alias("_structural"),
        _reasons([*[(flag, f"invalid:{name}") for name, flag in invalid.items()],
                  (implausible, "implausible:event_time")]).alias("_issues"),
        *[flag.alias(f"_bad_{name}") for name, flag in invalid.items()],
    )

    flags = {name: F.col(f"_bad_{name}") for name in invalid}
    drops, warns, fails = [], [], []
    for e in source.expectations:
        target = {"drop": drops, "warn": warns, "fail": fails}[e.action]
        target.append((violated(e, flags), e.name or e.check))
    drops += _unplaced(mapped, source, catalogue)
    reasons = F.concat(
        F.when(F.col("_error").isNotNull(), F.array(F.col("_error"))).otherwise(F.array().cast("array<string>")),
        F.col("_structural"), _reasons(drops),
    )
    checked = mapped.select(
        "*", F.array_distinct(reasons).alias("_reasons"), _reasons(warns).alias("_warnings"),
        _reasons(fails).alias("_fatal"),
    ).drop("_structural", "_implausible", *[f"_bad_{n}" for n in invalid])
    key = F.concat_ws("|", *[F.col(k).cast("string") for k in source.key]) if source.key else F.lit(None)
    checked = checked.withColumn("_record_key", F.when(F.length(key) > 0, key).cast("string"))
    # Only rules reading this source's stream apply (a record moves at most once), so conditions may use columns
    # that only this source's records have.
    mine = [r for r in routes if r.input_stream == source.stream_name]
    return checked.withColumn("stream", F.lit(source.stream_name)).withColumn("stream", route_column(mine))


def _unplaced(mapped: DataFrame, source: Source, catalogue: Catalogue) -> list[tuple[Column, str]]:
    """Quarantine conditions for records no output table would take: an event source's record without a usable
    time (it cannot be partitioned or ordered), and a `both` source's record that is neither an event (name and
    time) nor a profile record (a trait)."""
    if source.role == "profiles":
        return []
    no_time = F.col("_event_time").isNull()
    # A record that could not be read (malformed, too deep) has that one reason.
    unplaced = F.col("_error").isNull()
    if source.role == "both":
        unplaced = unplaced & ~_has_traits(mapped, source, catalogue)
    out = [(unplaced & no_time & F.col("_implausible"), "implausible:event_time"),
           (unplaced & no_time & ~F.col("_implausible"), "missing_or_bad:event_time")]
    if source.role == "both":
        name = F.col("event_name") if "event_name" in mapped.columns else F.lit(None)
        out.append((unplaced & ~no_time & name.isNull(), "missing:event_name"))
    return out


def consent_column(df: DataFrame, source: Source, catalogue: Catalogue) -> Column:
    """One struct per catalogue consent purpose: purpose, channel, status (granted/denied/unknown), timestamp.

    With no column for a purpose, `consent.unmapped` decides: `granted` (the documented default: a source without
    consent fields is consented for all purposes) or `unknown`.
    """
    items = []
    for purpose in catalogue.group("consent"):
        spec = catalogue.fields[purpose]
        mapped = source.consent.purposes.get(purpose)
        if mapped is None:
            status: Column = F.lit(source.consent.unmapped)
            when: Column = F.lit(None).cast("timestamp")
        else:
            text = F.lower(F.trim(column(df, mapped.column).cast("string")))
            status = (F.when(text.isin("true", "1", "yes", "y", "t", "granted", "opt_in", "opted_in"), "granted")
                      .when(text.isin("false", "0", "no", "n", "f", "denied", "opt_out", "opted_out"), "denied")
                      .otherwise("unknown"))
            when = parse_timestamp(column(df, mapped.timestamp)) if mapped.timestamp else F.lit(None).cast("timestamp")
        items.append(F.struct(F.lit(purpose).alias("purpose"), F.lit(spec.channel).cast("string").alias("channel"),
                              status.alias("status"), when.alias("timestamp")))
    return F.array(*items).cast(CONSENT_TYPE) if items else F.array().cast(CONSENT_TYPE)


def properties_column(df: DataFrame, source: Source, extra: Sequence[tuple[str, Column]] = ()) -> Column:
    """Source columns under `properties_prefix` (or, from the collector's stream, the map column the prefix
    names), plus ``extra`` (name, value) pairs, as a JSON object string (null fields left out)."""
    prefix = source.properties_prefix or ""
    names = [c for c in df.columns if prefix and c.startswith(prefix) and c[len(prefix):] not in dict(extra)]
    as_map = prefix.endswith(".") and prefix[:-1] in df.columns and isinstance(df.schema[prefix[:-1]].dataType, T.MapType)
    if as_map:
        free = F.col(f"`{prefix[:-1]}`")
        if not extra:
            return F.to_json(free)
        taken = F.array(*[F.lit(n) for n, _ in extra])
        # map_concat fails on a repeated key: the mapped fields replace the sender's keys of the same name.
        kept = F.map_filter(free, lambda k, _: ~F.array_contains(taken, k))
        return F.to_json(F.map_concat(kept, F.create_map(*[x for n, v in extra for x in (F.lit(n), v.cast("string"))])))
    if not names and not extra:
        return F.lit(None).cast("string")
    # A struct, not a map: to_json leaves null fields out (spark.sql.jsonGenerator.ignoreNullFields, on by default)
    # without building a map of the non-null values per row first.
    fields = [F.col(f"`{c}`").cast("string").alias(c[len(prefix):]) for c in names]
    fields += [value.cast("string").alias(name) for name, value in extra]
    return F.to_json(F.struct(*fields), {"ignoreNullFields": "true"})


def output_flags(checked: DataFrame, source: Source, catalogue: Catalogue) -> dict[str, Column]:
    """Per output table, the condition an accepted record meets to be written there (the filters of `to_events`
    and `to_profile_records`), so one aggregation can count every output before anything is written.

    Example:
        >>> output_flags(checked, source, catalogue)["bronze.events"]      # doctest: +SKIP
    """
    out: dict[str, Column] = {}
    if source.role in ("events", "both"):
        out[EVENTS.name] = _is_event(checked, source)
    if source.role in ("profiles", "both"):
        out[PROFILE_RECORDS.name] = _has_traits(checked, source, catalogue)
    return out


def _is_event(df: DataFrame, source: Source) -> Column:
    # A record of a source that is both events and profiles is an event when it has a name and a time.
    if source.role != "both":
        return F.lit(True)
    if "event_name" not in df.columns:
        return F.lit(False)
    return F.col("event_name").isNotNull() & F.col("_event_time").isNotNull()


def _trait_map(df: DataFrame, catalogue: Catalogue) -> Column:
    return non_null_map([(n, F.col(n)) for n in catalogue.group("trait") if n in df.columns])


def _has_traits(df: DataFrame, source: Source, catalogue: Catalogue) -> Column:
    if source.role != "both":
        return F.lit(True)
    traits = [n for n in catalogue.group("trait") if n in df.columns]
    if not traits:
        return F.lit(False)
    # The trait map is non-empty exactly when a trait is not null: a test per column instead of building the map
    # for every row (it is counted for every record, and filtered on again when writing).
    return reduce(lambda a, b: a | b, [F.col(f"`{n}`").isNotNull() for n in traits])


def split(checked: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(accepted, quarantined) by whether a record has reasons."""
    bad = F.size("_reasons") > 0
    return checked.where(~bad), checked.where(bad)


def _typed(df: DataFrame, name: str, spark_type: str) -> Column:
    return (F.col(f"`{name}`") if name in df.columns else F.lit(None)).cast(spark_type).alias(name)


def identifiers_column(df: DataFrame, catalogue: Catalogue) -> Column:
    """Every normalised identifier of the record as map<id_type, value> (null values left out)."""
    return non_null_map([(n, F.col(n)) for n in catalogue.group("identifier") if n in df.columns])


def event_id_column(df: DataFrame, source: Source) -> Column:
    """The event's id: the source's own (mapped `event_id`), else the SHA-256 of source and raw record, so the same
    record gets the same id wherever its file lies or is renamed to (and a re-delivery is a duplicate).

    Example:
        >>> df.select(event_id_column(df, source))      # doctest: +SKIP
    """
    own = F.col("event_id").cast("string") if "event_id" in df.columns else F.lit(None).cast("string")
    return F.coalesce(own, F.sha2(F.concat_ws("|", F.lit(source.name), F.col("_raw")), 256))


def to_events(accepted: DataFrame, source: Source, catalogue: Catalogue, run_id: str, received_at: Column) -> DataFrame:
    """Rows for `bronze.events`."""
    types = {c: SPARK_TYPES[catalogue.fields[c].type] if c in catalogue.fields else "string" for c in EVENT_COLUMNS}
    rows = accepted.where(_is_event(accepted, source)) if source.role == "both" else accepted
    revenue_rep = F.col("revenue_reporting") if "revenue_reporting" in rows.columns else F.lit(None)
    return rows.select(
        event_id_column(rows, source).alias("event_id"),
        F.lit(source.name).alias("source"), F.col("stream"),
        _typed(rows, "event_name", "string"), F.col("_event_time").alias("event_time"),
        F.to_date("_event_time").alias("event_date"), identifiers_column(rows, catalogue).alias("identifiers"),
        *[_typed(rows, c, types[c]) for c in EVENT_COLUMNS],
        revenue_rep.cast("double").alias("revenue_reporting"),
        F.col("_properties").alias("properties"), F.col("_consent").alias("consent"),
        F.col("_issues").alias("quality_issues"), received_at.alias("received_at"), F.lit(run_id).alias("run_id"),
        F.col("_file").alias("ingest_file"), F.col("_line").alias("ingest_line"),
    )


def to_profile_records(accepted: DataFrame, source: Source, catalogue: Catalogue, run_id: str, received_at: Column,
                       change_type: Column | None = None) -> DataFrame:
    """Rows for `bronze.profile_records`: identifiers, traits (map of text), consent and the change type."""
    trait_map = _trait_map(accepted, catalogue)
    rows = accepted.where(_has_traits(accepted, source, catalogue)) if source.role == "both" else accepted
    return rows.select(
        F.lit(source.name).alias("source"), F.col("stream"), F.col("_record_key").alias("record_key"),
        (change_type if change_type is not None else F.lit("upsert")).alias("change_type"),
        identifiers_column(rows, catalogue).alias("identifiers"), trait_map.alias("traits"),
        F.col("_consent").alias("consent"), F.col("_event_time").alias("record_time"),
        F.col("_issues").alias("quality_issues"), received_at.alias("received_at"), F.lit(run_id).alias("run_id"),
        F.col("_file").alias("ingest_file"), F.col("_line").alias("ingest_line"),
    )


def to_quarantine(quarantined: DataFrame, source: Source, run_id: str, received_at: Column) -> DataFrame:
    """Rows for `bronze.quarantine`: where the record came from, its raw text and why it was rejected."""
    return quarantined.select(
        F.lit(source.name).alias("source"), F.col("stream"), F.col("_file").alias("ingest_file"),
        F.col("_line").alias("ingest_line"), F.col("_raw").alias("raw_record"), F.col("_reasons").alias("reasons"),
        F.lit(run_id).alias("run_id"), received_at.alias("quarantined_at"),
    )
