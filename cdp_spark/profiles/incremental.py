"""Incremental profiles: which profiles a day's run must rebuild, and the attributes carried over for the rest.

A profile's content and attributes are functions of its identifiers, its events, its profile records and the
as-of date. Between the previous run (as of ``P``) and this one (as of ``D``) they can change only for the
**touched** profiles:

- profiles (before and after) of an identifier whose ``gold.id_graph`` row changed: merges, splits, expiry,
  erasure, new identifiers; an event or record that moved profile holds such an identifier;
- profiles of the event ids with a new bronze row (late ones included) and of new profile records;
- profiles with an event that left a windowed attribute's window: event dates in ``(P - N, D - N]`` for a window
  of N days.

Every other profile keeps its row of ``gold.profiles`` and its attributes, except those that count days up to the
as-of date: ``days_since_first``/``days_since_last`` grow by ``D - P`` (the dates they count from did not change),
and formulas are evaluated again over the carried values (`carried_attributes`).

Example:
    >>> touched = touched_profiles(graph_before, graph, new_event_rows, assignments, new_records, windows, P, D)  # doctest: +SKIP
"""
from __future__ import annotations

import datetime as dt
from functools import reduce
from typing import Iterable

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_spark.identity.assign import changed_vertices
from cdp_spark.profiles.config import AttributesConfig

DAY_COUNTS = ("days_since_first", "days_since_last")


def slid_out(assignments: DataFrame, windows: Iterable[int], previous: dt.date, as_of: dt.date) -> DataFrame:
    """Profiles with an event whose date left an N-day window between the previous as-of and this one."""
    parts = []
    for n in sorted(set(windows)):
        first, last = previous - dt.timedelta(days=n - 1), as_of - dt.timedelta(days=n)
        if last >= first:
            parts.append(assignments.where(F.col("event_date").between(F.lit(first), F.lit(last))).select("profile_id"))
    if not parts:
        return assignments.limit(0).select("profile_id")
    return reduce(DataFrame.unionByName, parts)


def touched_profiles(graph_before: DataFrame, graph: DataFrame, new_events: DataFrame, assignments: DataFrame,
                     new_records: DataFrame, windows: Iterable[int], previous: dt.date, as_of: dt.date) -> DataFrame:
    """Distinct ``profile_id`` of every profile the run must rebuild (see the module docstring).

    ``new_events``: (event_id) of new bronze rows; ``assignments``: gold.event_profiles (every row);
    ``new_records``: (profile_id) of new profile records.

    Example:
        >>> touched_profiles(old_graph, graph, new_rows, lake.read("gold.event_profiles"), new_records,
        ...                  [7, 30], date(2026, 11, 1), date(2026, 11, 2))                         # doctest: +SKIP
    """
    changed = changed_vertices(graph_before, graph)
    by_graph = [g.join(changed, "vertex_id", "left_semi").select("profile_id") for g in (graph_before, graph)]
    by_events = assignments.join(new_events.select("event_id").distinct(), "event_id", "left_semi").select("profile_id")
    resolved = assignments.where(F.col("kept") & F.col("profile_id").isNotNull())
    parts = [*by_graph, by_events, new_records.select("profile_id"), slid_out(resolved, windows, previous, as_of)]
    return reduce(DataFrame.unionByName, parts).where(F.col("profile_id").isNotNull()).distinct()


def carried_attributes(previous_rows: DataFrame, typed: DataFrame, attrs: AttributesConfig,
                       attributes_type: T.StructType, days: int) -> DataFrame:
    """The previous as-of's attribute rows of untouched profiles -> profile_id and one typed column per attribute as
    of ``days`` later: day counts moved on, formulas evaluated again (they may read day counts and traits).

    ``typed``: profile_id + the typed trait columns of the same profiles.

    Example:
        >>> carried_attributes(prev.where(...), typed, config.attributes, attributes_type(config), 1)  # doctest: +SKIP
    """
    parsed = previous_rows.select("profile_id", F.from_json("attributes", attributes_type).alias("_v"))
    df = typed.join(parsed, "profile_id")
    for name, a in attrs.attributes.items():
        if a.kind == "formula":
            continue
        value = F.col("_v")[name]
        if a.kind in DAY_COUNTS:
            value = value + F.lit(days)
        df = df.withColumn(name, value.cast(attributes_type[name].dataType))
    df = df.drop("_v")
    for name in attrs.formulas():
        df = df.withColumn(name, F.expr(attrs.attributes[name].expr).cast(attributes_type[name].dataType))
    return df.select("profile_id", *attrs.attributes)
