"""Calculated attributes: every definition of `conf/attributes.yaml` as one conditional aggregate, so that all
of them (and the profile's event facts: first/last seen, sources, consent) come out of **one** groupBy over the
events, evaluated at the run's as-of date.

A window of N days covers the as-of day and the N-1 days before it, by UTC event date. Counts and sums of no
events are 0, unique lists empty; other aggregates, selectors and recency are null when no event matches. Formulas run afterwards on
the aggregated row (other attributes by name, catalogue traits by name, typed).

Example:
    >>> agg = event_pass(events, config, date(2026, 11, 1))                          # doctest: +SKIP
    >>> attrs = finish_attributes(profile_ids, agg, typed_traits, config.attributes, date(2026, 11, 1))  # doctest: +SKIP
"""
from __future__ import annotations

import datetime as dt
import hashlib
from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp_spark.profiles.config import AttributeDef, AttributesConfig
from cdp_spark.profiles.merge import ConsentBasis, consent_aggregates
from cdp_spark.profiles.view import spark_type

PREFIX = "_a_"  # aggregated attribute columns, before formulas and typing


def _value(field: str, properties: dict[str, str]) -> Column:
    if field.startswith("properties."):
        key = field.removeprefix("properties.")
        raw = F.get_json_object(F.col("properties"), "$." + key)
        return raw.try_cast(properties.get(key, "string").replace("long", "bigint"))
    return F.col(field)


def condition(attr: AttributeDef, as_of: dt.date) -> Column:
    """The event filter of one attribute: event names, SQL `where`, and the window ending on ``as_of``."""
    cond = F.lit(True)
    if attr.events:
        cond = cond & F.col("event_name").isin(attr.events)
    if attr.where:
        cond = cond & F.coalesce(F.expr(attr.where), F.lit(False))
    if attr.window_days:
        cond = cond & (F.col("event_date") >= F.lit(as_of - dt.timedelta(days=attr.window_days - 1)))
    return cond


def aggregate(name: str, attr: AttributeDef, as_of: dt.date, properties: dict[str, str]) -> Column:
    """The conditional aggregate of one (non-formula) attribute, aliased ``_a_<name>``."""
    cond = condition(attr, as_of)
    order = F.struct("event_time", "event_id")
    k = attr.kind
    if k == "count":
        out = F.count(F.when(cond, _value(attr.field, properties) if attr.field else F.lit(1)))
    elif k in ("sum", "avg", "min", "max"):
        v = F.when(cond, _value(attr.field, properties).cast("double"))
        out = {"sum": F.sum, "avg": F.avg, "min": F.min, "max": F.max}[k](v)
    elif k in ("most_frequent", "first", "last", "unique_list", "unique_count"):
        raw = _value(attr.field, properties)
        v = F.when(cond, raw.cast("string"))
        if k == "most_frequent":
            out = F.mode(v, True)  # deterministic: the alphabetically first of equally frequent values
        elif k == "first":
            out = F.min_by(v, F.when(cond & raw.isNotNull(), order))
        elif k == "last":
            out = F.max_by(v, F.when(cond & raw.isNotNull(), order))
        elif k == "unique_list":
            out = F.slice(F.array_sort(F.collect_set(v)), 1, attr.max_items)
        else:
            out = F.size(F.collect_set(v)).cast("long")
    elif k == "days_since_first":
        out = F.datediff(F.lit(as_of), F.min(F.when(cond, F.col("event_date"))))
    elif k == "days_since_last":
        out = F.datediff(F.lit(as_of), F.max(F.when(cond, F.col("event_date"))))
    else:  # pragma: no cover - formulas are not aggregates
        raise ValueError(f"{name}: {k} is not an event aggregate")
    return out.alias(PREFIX + name)


def event_pass(events: DataFrame, consent_purposes: Sequence[str], attrs: AttributesConfig, as_of: dt.date, *,
               ignore_unknown_consent: bool = True, consent_basis: ConsentBasis | None = None) -> DataFrame:
    """profile events -> one row per profile: event facts, latest consent per purpose and every event attribute.

    Columns: profile_id, ev_first_seen, ev_last_seen, ev_sources, ev_events, ev_consent_<purpose>, _a_<attribute>.
    """
    aggs = [F.min("event_time").alias("ev_first_seen"), F.max("event_time").alias("ev_last_seen"),
            F.array_sort(F.collect_set("source")).alias("ev_sources"), F.count(F.lit(1)).alias("ev_events")]
    aggs += consent_aggregates(events, consent_purposes, F.col("event_time"), ignore_unknown=ignore_unknown_consent,
                               basis=consent_basis)
    aggs += [aggregate(n, a, as_of, attrs.properties) for n, a in attrs.attributes.items() if a.kind != "formula"]
    out = events.groupBy("profile_id").agg(*aggs)
    return out.withColumnsRenamed({f"_consent_{p}": f"ev_consent_{p}" for p in consent_purposes})


def finish_attributes(profiles: DataFrame, agg: DataFrame, attrs: AttributesConfig, as_of: dt.date) -> DataFrame:
    """Profiles (profile_id + typed trait columns) x event aggregates -> profile_id and one typed column per
    attribute (zero counts for profiles without events), formulas evaluated in dependency order."""
    cols = [c for c in agg.columns if c.startswith(PREFIX)]
    df = profiles.join(agg.select("profile_id", *cols), "profile_id", "left")
    for name, a in attrs.attributes.items():
        if a.kind == "formula":
            continue
        col = F.col(PREFIX + name)
        if a.kind in ("count", "unique_count"):
            col = F.coalesce(col, F.lit(0))
        elif a.kind == "sum":
            col = F.coalesce(col, F.lit(0.0))
        elif a.kind == "unique_list":
            col = F.coalesce(col, F.array().cast("array<string>"))
        df = df.withColumn(name, col.cast(spark_type(a.value_type)))
    df = df.drop(*cols)
    for name in attrs.formulas():
        a = attrs.attributes[name]
        df = df.withColumn(name, F.expr(a.expr).cast(spark_type(a.value_type)))
    return df.select("profile_id", *attrs.attributes)


def attributes_json(df: DataFrame, names: Sequence[str]) -> Column:
    """The typed attribute columns as one JSON object (what gold.profile_attributes stores)."""
    if not names:
        return F.lit("{}")
    return F.to_json(F.struct(*[F.col(n) for n in names]))


def definitions_hash(attrs: AttributesConfig) -> str:
    """A short hash of the attribute definitions (stored with each row, part of the run's idempotency key)."""
    return hashlib.sha256(attrs.model_dump_json().encode()).hexdigest()[:16]

