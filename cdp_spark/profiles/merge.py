"""Pure transforms that assemble a unified profile: identifiers, merged traits and consent.

Trait rules (per trait, `conf/profiles.yaml`): ``latest`` / ``first`` by record time, ``most_frequent`` (ties:
the alphabetically first value), ``max`` / ``min`` / ``sum`` on the catalogue type, ``source_priority`` (the
highest-priority source's latest value; unlisted sources rank last). Consent: per purpose, an explicit decision
always beats a source's implicit default (`ConsentBasis`); among decisions (or, without any, among defaults) the
latest wins, and at an equal time ``denied`` wins (the privacy-safe reading).

Example:
    >>> traits = merge_traits(trait_rows(records), config.profiles, trait_types)    # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

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
    the delete records themselves: a dropped CRM row no longer contributes traits (its consent decisions still
    count, see `consent_history`)."""
    ts = F.coalesce("record_time", "received_at")
    deletes = (records.where((F.col("change_type") == "delete") & F.col("record_key").isNotNull())
               .groupBy("source", "record_key").agg(F.max(ts).alias("_deleted_at")))
    kept = records.where(F.coalesce(F.col("change_type"), F.lit("")) != "delete")
    joined = kept.join(deletes, ["source", "record_key"], "left")
    return joined.where(F.col("_deleted_at").isNull() | (ts > F.col("_deleted_at"))).drop("_deleted_at")


def consent_history(records: DataFrame) -> DataFrame:
    """The records whose consent entries count: every record but the ``delete`` markers themselves. A decision
    stays a decision when a later snapshot delivery omits its row, so an opt-out is never forgotten that way."""
    return records.where(F.coalesce(F.col("change_type"), F.lit("")) != "delete")


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


@dataclass(frozen=True)
class ConsentBasis:
    """Which consent entries are explicit decisions and which are a source's implicit default.

    A source decides a purpose explicitly when it maps that purpose to a column (``consent.purposes``); for the
    purposes it does not map, every record carries the source's ``consent.unmapped`` status, which is only a
    default. Entries of a source that is no longer configured count as decisions when they are denials or carry
    their own timestamp (the privacy-safe reading of data whose origin is unknown).

    Example:
        >>> b = ConsentBasis({"analytics": ("web",)}, ("crm", "web"))
        >>> b.defaults["analytics"]
        ('web',)
    """

    defaults: Mapping[str, tuple[str, ...]]   # purpose -> configured sources that do not map it
    known: tuple[str, ...]                    # every configured source

    @classmethod
    def of(cls, sources: Sequence[Any], purposes: Sequence[str]) -> "ConsentBasis":
        """From the configured sources (``config.sources``)."""
        return cls({p: tuple(s.name for s in sources if p not in s.consent.purposes) for p in purposes},
                   tuple(s.name for s in sources))

    def explicit(self, purpose: str, source: Column, status: Column, own_ts: Column) -> Column:
        """True when the entry (of ``source``, for ``purpose``) is an explicit decision."""
        known = source.isin(*self.known) if self.known else F.lit(False)
        defaults = self.defaults.get(purpose, ())
        mapped = ~source.isin(*defaults) if defaults else F.lit(True)
        return F.coalesce(F.when(known, mapped).otherwise((status == "denied") | own_ts.isNotNull()), F.lit(False))


def consent_candidate(consent: Column, fallback_ts: Column, purpose: str, *, ignore_unknown: bool,
                      source: Column | None = None, basis: ConsentBasis | None = None) -> Column:
    """The deciding consent entry of one record for ``purpose``: struct(explicit, ts, rank, status, source), or
    null. Structs compare field by field, so the greatest candidate is an explicit decision before any default,
    then the latest, then ``denied`` at an equal time. Without ``basis`` every entry counts as explicit."""
    def keep(x: Column) -> Column:
        ok = (x["purpose"] == purpose) & x["status"].isNotNull()
        return ok & (x["status"] != "unknown") if ignore_unknown else ok

    ranks = _map_of(_STATUS_RANK)
    src = source if source is not None else F.lit(None).cast("string")
    entries = F.transform(F.filter(consent, keep), lambda x: F.struct(
        (basis.explicit(purpose, src, x["status"], x["timestamp"]) if basis is not None else F.lit(True))
        .alias("explicit"),
        F.coalesce(x["timestamp"], fallback_ts).alias("ts"),
        F.coalesce(ranks[x["status"]], F.lit(1)).cast("int").alias("rank"),
        x["status"].alias("status"),
        src.alias("source")))
    return F.array_max(entries)


def consent_aggregates(df: DataFrame, purposes: Sequence[str], ts: Column, *, ignore_unknown: bool,
                       basis: ConsentBasis | None = None) -> list[Column]:
    """Aggregations (to use inside one groupBy) of the deciding consent entry per purpose: ``_consent_<purpose>``.

    With ``basis`` the rows' ``source`` column tells decisions from defaults (see `ConsentBasis`)."""
    source = F.col("source") if basis is not None else None
    return [F.max(consent_candidate(F.col("consent"), ts, p, ignore_unknown=ignore_unknown, source=source,
                                    basis=basis)).alias(f"_consent_{p}")
            for p in purposes]


def consent_maps(purposes: Sequence[str], sides: Sequence[str]) -> tuple[Column, Column, Column]:
    """Combine the per-purpose winners of several inputs (column prefixes ``sides``) into the consent map, the
    consent_at map and the consent_source map. The overall winner is the greatest candidate across inputs: an
    explicit decision beats any default, then the latest wins, then ``denied``. ``consent_at`` holds the time of
    the deciding explicit decision (absent when the status is a default); ``consent_source`` the source of the
    deciding entry."""
    status_pairs, at_pairs, source_pairs = [], [], []
    for p in purposes:
        cands = [F.col(f"{s}_consent_{p}") for s in sides]
        best = F.greatest(*cands) if len(cands) > 1 else cands[0]
        status_pairs += [F.lit(p), best["status"]]
        at_pairs += [F.lit(p), F.when(best["explicit"], best["ts"])]
        source_pairs += [F.lit(p), best["source"]]
    if not purposes:
        empty = F.create_map().cast("map<string,string>")
        return empty, F.create_map().cast("map<string,timestamp>"), empty
    return tuple(F.map_filter(F.create_map(*pairs), lambda k, v: v.isNotNull())  # type: ignore[return-value]
                 for pairs in (status_pairs, at_pairs, source_pairs))


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
