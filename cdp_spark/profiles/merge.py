"""Pure transforms that assemble a unified profile: identifiers, merged traits and consent.

Trait rules (per trait, `conf/profiles.yaml`): ``latest`` / ``first`` by record time, ``most_frequent`` (ties:
the alphabetically first value), ``max`` / ``min`` / ``sum`` on the catalogue type, ``source_priority`` (the
highest-priority source's latest value; unlisted sources rank last). Consent: per purpose, the status with the
latest timestamp wins; at an equal timestamp ``denied`` wins (the privacy-safe reading).

Example:
    >>> traits = merge_traits(trait_rows(records), config.profiles, trait_types)    # doctest: +SKIP
"""
from __future__ import annotations

from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_spark.profiles.config import NUMERIC, ProfilesConfig

_STATUS_RANK = {"granted": 0, "unknown": 1, "denied": 2}  # at equal timestamps the higher rank wins


def _map_of(pairs: dict) -> Column:
    if not pairs:
        return F.create_map().cast(T.MapType(T.StringType(), T.StringType()))
    items = []
    for k, v in pairs.items():
        items += [F.lit(k), F.lit(v)]
    return F.create_map(*items)


def live_records(records: DataFrame) -> DataFrame:
    """Drop records a snapshot source has since deleted (a ``delete`` of the same source and record key), and
    the delete records themselves: a dropped CRM row no longer contributes traits or consent."""
    ts = F.coalesce("record_time", "received_at")
    deletes = (records.where((F.col("change_type") == "delete") & F.col("record_key").isNotNull())
               .groupBy("source", "record_key").agg(F.max(ts).alias("_deleted_at")))
    kept = records.where(F.coalesce(F.col("change_type"), F.lit("")) != "delete")
    joined = kept.join(deletes, ["source", "record_key"], "left")
    return joined.where(F.col("_deleted_at").isNull() | (ts > F.col("_deleted_at"))).drop("_deleted_at")


def trait_rows(records: DataFrame, traits: Sequence[str]) -> DataFrame:
    """profile records -> (profile_id, source, ts, trait, value): one row per non-null catalogue trait value."""
    ts = F.coalesce("record_time", "received_at")
    return (records.select("profile_id", "source", ts.alias("ts"), F.explode("traits").alias("trait", "value"))
            .where(F.col("value").isNotNull() & F.col("trait").isin(list(traits))))


def merge_traits(rows: DataFrame, cfg: ProfilesConfig, trait_types: dict[str, str]) -> DataFrame:
    """(profile_id, source, ts, trait, value) rows -> profile_id, traits map, trait_sources map.

    Every candidate rule is aggregated per (profile, trait) in one pass, then each trait keeps its own rule's.

    Example:
        >>> merge_traits(rows, ProfilesConfig(traits={"country": {"rule": "most_frequent"}}), {"country": "string"})  # doctest: +SKIP
    """
    rules = {t: cfg.rule_for(t).rule for t in trait_types}
    prio_pairs: list[Column] = []
    for t in trait_types:
        for i, s in enumerate(cfg.priority_for(t)):
            prio_pairs += [F.lit(f"{t}\u0000{s}"), F.lit(i)]
    prio = F.create_map(*prio_pairs) if prio_pairs else F.create_map().cast("map<string,int>")
    rank = F.coalesce(prio[F.concat_ws("\u0000", "trait", "source")], F.lit(1 << 20))
    type_of = _map_of(trait_types)[F.col("trait")]
    numeric = F.col("value").try_cast("double")
    # Values compared in their catalogue type: dates and timestamps as such, numbers numerically, else text.
    as_date, as_ts = F.col("value").try_cast("date"), F.col("value").try_cast("timestamp")
    typed_key = F.struct(
        F.when(type_of.isin(*NUMERIC), numeric).alias("n"),
        F.when(type_of == "date", as_date).alias("d"),
        F.when(type_of == "timestamp", as_ts).alias("t"),
        F.when(~type_of.isin(*NUMERIC, "date", "timestamp"), F.col("value")).alias("s"))
    typed_ok = (F.when(type_of.isin(*NUMERIC), numeric.isNotNull())
                .when(type_of == "date", as_date.isNotNull())
                .when(type_of == "timestamp", as_ts.isNotNull())
                .otherwise(F.lit(True)))
    pick = F.struct(F.col("value").alias("value"), F.col("source").alias("source"))
    with_cols = rows.withColumns({"_rank": rank, "_ok": typed_ok, "_key": typed_key})
    agg = with_cols.groupBy("profile_id", "trait").agg(
        F.max_by(pick, F.struct("ts", -F.col("_rank"), "value")).alias("latest"),
        F.min_by(pick, F.struct("ts", "_rank", "value")).alias("first"),
        F.min_by(pick, F.struct("_rank", -F.unix_micros("ts"), "value")).alias("source_priority"),
        F.mode("value", True).alias("most_frequent"),
        F.max_by(pick, F.when(F.col("_ok"), F.struct("_key", "value"))).alias("max"),
        F.min_by(pick, F.when(F.col("_ok"), F.struct("_key", "value"))).alias("min"),
        F.sum(numeric).alias("_sum"), F.max(F.col("_ok").cast("int")).alias("_any_ok"),
    )
    rule = _map_of(rules)[F.col("trait")]
    is_long = type_of.isin("long", "int")
    sum_text = F.when(is_long, F.col("_sum").cast("long").cast("string")).otherwise(F.col("_sum").cast("string"))
    chosen = (F.when(rule == "latest", F.col("latest"))
              .when(rule == "first", F.col("first"))
              .when(rule == "source_priority", F.col("source_priority"))
              .when(rule == "max", F.col("max"))
              .when(rule == "min", F.col("min"))
              .when(rule == "most_frequent", F.struct(F.col("most_frequent").alias("value"),
                                                      F.lit(None).cast("string").alias("source")))
              .when(rule == "sum", F.struct(F.when(F.col("_any_ok") == 1, sum_text).alias("value"),
                                            F.lit(None).cast("string").alias("source"))))
    picked = agg.select("profile_id", "trait", chosen.alias("c")).where(F.col("c.value").isNotNull())
    # Sorted entries: the map (and so the profile's content hash) must not depend on collect order.
    return picked.groupBy("profile_id").agg(
        F.map_from_entries(F.array_sort(F.collect_list(F.struct("trait", F.col("c.value"))))).alias("traits"),
        F.map_from_entries(F.array_sort(F.collect_list(F.struct("trait", F.col("c.source"))))).alias("trait_sources"))


def consent_candidate(consent: Column, fallback_ts: Column, purpose: str, *, ignore_unknown: bool) -> Column:
    """The deciding consent entry of one record for ``purpose``: struct(ts, rank, status), or null."""
    def keep(x: Column) -> Column:
        ok = (x["purpose"] == purpose) & x["status"].isNotNull()
        return ok & (x["status"] != "unknown") if ignore_unknown else ok

    ranks = _map_of(_STATUS_RANK)
    entries = F.transform(F.filter(consent, keep), lambda x: F.struct(
        F.coalesce(x["timestamp"], fallback_ts).alias("ts"),
        F.coalesce(ranks[x["status"]], F.lit(1)).cast("int").alias("rank"),
        x["status"].alias("status")))
    return F.array_max(entries)


def consent_aggregates(df: DataFrame, purposes: Sequence[str], ts: Column, *, ignore_unknown: bool) -> list[Column]:
    """Aggregations (to use inside one groupBy) of the latest consent entry per purpose: ``_consent_<purpose>``."""
    return [F.max(consent_candidate(F.col("consent"), ts, p, ignore_unknown=ignore_unknown)).alias(f"_consent_{p}")
            for p in purposes]


def consent_maps(purposes: Sequence[str], sides: Sequence[str]) -> tuple[Column, Column]:
    """Combine the per-purpose winners of several inputs (column prefixes ``sides``) into the consent map and
    the consent_at map; the overall winner is the greatest (ts, rank) across inputs."""
    status_pairs, at_pairs = [], []
    for p in purposes:
        cands = [F.col(f"{s}_consent_{p}") for s in sides]
        best = F.greatest(*cands) if len(cands) > 1 else cands[0]
        status_pairs += [F.lit(p), best["status"]]
        at_pairs += [F.lit(p), best["ts"]]
    if not purposes:
        return (F.create_map().cast("map<string,string>"), F.create_map().cast("map<string,timestamp>"))
    return (F.map_filter(F.create_map(*status_pairs), lambda k, v: v.isNotNull()),
            F.map_filter(F.create_map(*at_pairs), lambda k, v: v.isNotNull()))


def identifiers_by_type(graph: DataFrame, limits: dict[str, int]) -> DataFrame:
    """gold.id_graph -> profile_id, identifiers map<type, sorted values> (at most each type's limit)."""
    limit_of = F.create_map(*[x for t, n in limits.items() for x in (F.lit(t), F.lit(n))]) if limits else None
    per_type = graph.groupBy("profile_id", "id_type").agg(F.array_sort(F.collect_set("value")).alias("values"))
    if limit_of is not None:
        per_type = per_type.withColumn("values", F.when(
            limit_of[F.col("id_type")].isNotNull(),
            F.slice("values", 1, F.coalesce(limit_of[F.col("id_type")], F.lit(1)))).otherwise(F.col("values")))
    return per_type.groupBy("profile_id").agg(
        F.map_from_entries(F.array_sort(F.collect_list(F.struct("id_type", "values")))).alias("identifiers"))
