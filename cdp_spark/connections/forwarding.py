"""Per output: which events pass (data filter), which users are sampled, whose consent allows it, and what each
forwarded event carries. DataFrame transforms decide; `rendered` shapes each sent event into its JSON text in Spark
(the delivery path), and `payload` states the same rules in plain Python over one row (the tests hold them equal).

A forwarded event::

    {"event_id", "event", "stream", "source", "timestamp", "profile_id",
     "identifiers": {type: value}, "properties": {...}, "traits": {...}}

``properties`` holds the event's catalogue columns (page_url, product_id, price, ...) and its free-form JSON
properties; ``traits`` the typed traits of its profile (when identity has resolved one). Without ``pii: true`` on
the output, every catalogue field marked pii or sensitive is left out (identifiers, page_url, names, ...).

Example:
    >>> base = with_profiles(events, lake.read("gold.id_graph"), profiles, config.identity)      # doctest: +SKIP
    >>> flagged = decide(base, connection, output, config)                                      # doctest: +SKIP
    >>> flagged.where("_send").select(rendered(output, pii_fields(config.catalogue)))           # doctest: +SKIP
"""
from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_spark.connections.config import Connection, DataFilter, Drop, Output, Rename, Sampling, SetField
from cdp_spark.identity.config import IdentityConfig
from cdp_spark.identity.lookup import attach_profile_ids
from cdp_spark.ingest.sources import Catalogue
from cdp_spark.profiles.merge import ConsentBasis, consent_candidate

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig

BUCKETS = 10_000
EVENT_FIELDS = ("page_url", "product_id", "category", "order_id", "price", "quantity", "currency", "revenue",
                "revenue_reporting")
_TEXT_MAP = T.MapType(T.StringType(), T.StringType())


def with_profiles(events: DataFrame, id_graph: DataFrame, profiles: DataFrame | None, cfg: IdentityConfig) -> DataFrame:
    """Events (one row per event id) with ``profile_id`` (null when no identifier resolves, see
    `cdp_spark.identity.lookup`) and the profile's ``p_traits`` (JSON of the typed traits), ``p_consent``,
    ``p_consent_at`` and ``p_consent_source`` (null without a profile). ``profiles`` holds profile_id, traits (JSON
    text), consent, consent_at, consent_source (gold.profiles), or is None before the profiles stage ran.

    Example:
        >>> with_profiles(events, lake.read("gold.id_graph"), None, IdentityConfig()).select("profile_id")  # doctest: +SKIP
    """
    events = events.dropDuplicates(["event_id"])
    resolved = attach_profile_ids(events.select("event_id", "identifiers"), id_graph, cfg, ["event_id"])
    out = events.join(resolved.select("event_id", "profile_id"), "event_id", "left")
    if profiles is None:
        return out.select("*", *[F.lit(None).cast(t).alias(c) for c, t in (
            ("p_traits", "string"), ("p_consent", "map<string,string>"), ("p_consent_at", "map<string,timestamp>"),
            ("p_consent_source", "map<string,string>"))])
    p = profiles.select("profile_id", F.col("traits").alias("p_traits"), F.col("consent").alias("p_consent"),
                        F.col("consent_at").alias("p_consent_at"), F.col("consent_source").alias("p_consent_source"))
    return out.join(p, "profile_id", "left")


def passes(flt: DataFilter) -> Column:
    """True for an event the data filter lets through: its stream and event name (lower-cased) are allowed.

    Example:
        >>> passes(DataFilter(events=["Order Completed"]))   # doctest: +SKIP
    """
    cond = F.lit(True)
    if flt.streams:
        cond = cond & F.col("stream").isin(*flt.streams)
    name = F.lower(F.col("event_name"))
    if flt.events:
        cond = cond & name.isin(*[e.lower() for e in flt.events])
    if flt.exclude_events:
        cond = cond & ~name.isin(*[e.lower() for e in flt.exclude_events])
    return F.coalesce(cond, F.lit(False))


def sample_key(by: Sequence[str]) -> Column:
    """The first non-null of ``by`` (``profile_id`` or identifier types) for each event."""
    parts = [F.col("profile_id") if b == "profile_id" else F.element_at(F.col("identifiers"), F.lit(b)) for b in by]
    return F.coalesce(*parts) if len(parts) > 1 else parts[0]


def sampled(sampling: Sampling, salt: str, by: Sequence[str]) -> Column:
    """True for an event whose user is in the sample: ``pmod(xxhash64(salt, key), 10000) < percent * 100``.

    Stable: the same key and salt give the same answer in every run; raising the percentage only adds users.
    An event with no key at all (no profile, no listed identifier) is never sampled in below 100%.

    Example:
        >>> sampled(Sampling(percent=10), "web_events.tool", ["profile_id", "cookie_id"])   # doctest: +SKIP
    """
    if sampling.percent >= 100:
        return F.lit(True)
    bucket = F.pmod(F.xxhash64(F.lit(salt), sample_key(by)), F.lit(BUCKETS))
    return F.coalesce(sample_key(by).isNotNull() & (bucket < F.lit(int(round(sampling.percent * 100)))), F.lit(False))


def bucket_of(salt: str, key: str) -> int:
    """The sample bucket (0-9999) of one key, computed by Spark's xxhash64: for tests and notebooks.

    Example:
        >>> bucket_of("web_events.tool", "p_1f3a")     # doctest: +SKIP
        4821
    """
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    assert spark is not None, "needs an active Spark session"
    return int(spark.range(1).select(F.pmod(F.xxhash64(F.lit(salt), F.lit(key)), F.lit(BUCKETS))).first()[0])


def consented(purposes: Sequence[str], basis: ConsentBasis, *, ignore_unknown: bool) -> Column:
    """True when every purpose is granted for the event's user, by the profiles' precedence rules: the deciding
    entry is the greatest of the profile's stored decision and the event's own consent entry (an explicit decision
    beats any default; then the latest; then ``denied`` at an equal time). Nothing recorded is not consent.

    The profile's entry is rebuilt from gold.profiles' ``consent`` (status), ``consent_at`` (only for an explicit
    decision) and ``consent_source``, and judged by the same `ConsentBasis` as the event's: an explicit decision
    of the profile stays explicit, its default stays a default.
    """
    if not purposes:
        return F.lit(True)
    cond = F.lit(True)
    entry = T.ArrayType(T.StructType([T.StructField("purpose", T.StringType()), T.StructField("channel", T.StringType()),
                                      T.StructField("status", T.StringType()),
                                      T.StructField("timestamp", T.TimestampType())]))
    for p in purposes:
        stored = F.when(F.element_at("p_consent", F.lit(p)).isNotNull(), F.array(F.struct(
            F.lit(p).alias("purpose"), F.lit(None).cast("string").alias("channel"),
            F.element_at("p_consent", F.lit(p)).alias("status"),
            F.element_at("p_consent_at", F.lit(p)).alias("timestamp")))).otherwise(F.array().cast(entry))
        profile_side = consent_candidate(stored, F.lit(None).cast("timestamp"), p, ignore_unknown=ignore_unknown,
                                         source=F.element_at("p_consent_source", F.lit(p)), basis=basis)
        event_side = consent_candidate(F.col("consent"), F.col("event_time"), p, ignore_unknown=ignore_unknown,
                                       source=F.col("source"), basis=basis)
        best = F.greatest(profile_side, event_side)
        cond = cond & F.coalesce(best["status"] == F.lit("granted"), F.lit(False))
    return cond


def decide(events: DataFrame, connection: Connection, output: Output, config: "CdpConfig") -> DataFrame:
    """`with_profiles` rows -> the same rows with ``_passes``, ``_sampled``, ``_consented``, ``_send`` (all three)
    and the values of the output's ``set`` steps (``_set_<n>``, computed only for events sent).

    Example:
        >>> decide(base, connection, connection.outputs[0], config).where("_send").count()   # doctest: +SKIP
    """
    from cdp_spark.profiles.view import consent_purposes, spark_type

    by = output.sampling.by or ["profile_id", *config.identity.by_priority()]
    salt = output.sampling.salt or connection.label(output)
    basis = ConsentBasis.of(config.sources, consent_purposes(config))
    flags = {"_passes": passes(output.filter), "_sampled": sampled(output.sampling, salt, by),
             "_consented": consented(output.consent, basis,
                                     ignore_unknown=config.profiles.ignore_unknown_consent)}
    df = events.withColumns(flags).withColumn("_send", F.col("_passes") & F.col("_sampled") & F.col("_consented"))
    sets = [s for s in output.transform if isinstance(s, SetField)]
    if sets:
        # The expression's view of the event: its columns, plus properties/traits/identifiers as text maps.
        view = {"properties": F.from_json("properties", _TEXT_MAP), "traits": F.from_json("p_traits", _TEXT_MAP)}
        scoped = df.withColumns({"_props_json": F.col("properties"), **view})
        scoped = scoped.withColumns({f"_set_{i}": F.when(F.col("_send"), F.expr(s.expr).try_cast(spark_type(s.type)))
                                     for i, s in enumerate(sets)})
        df = scoped.drop("properties", "traits").withColumnRenamed("_props_json", "properties")
    return df


def pii_fields(catalogue: Catalogue) -> frozenset[str]:
    """Catalogue fields marked pii or sensitive: what an output without ``pii: true`` never receives.

    Example:
        >>> sorted(pii_fields(Catalogue(fields={"email": {"group": "identifier", "pii": "pii"},
        ...                                     "category": {"group": "event"}})))
        ['email']
    """
    return frozenset(n for n, f in catalogue.fields.items() if f.pii != "none")


_VARIANT_MAP = "map<string,variant>"
# Python's rendering of a datetime in `payload` (and Spark's pattern for the same text).
TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'"


def _value(c: Column, kind: str) -> Column:
    """A value as `payload` writes it: times as text, the rest as JSON of its type."""
    if kind == "timestamp":
        return F.date_format(c, TIME_FORMAT)
    if kind == "date":
        return F.date_format(c, "yyyy-MM-dd")
    return c


def _variant(c: Column) -> Column:
    return c.cast("variant")


def _without(m: Column, keys: Iterable[str]) -> Column:
    keys = sorted(set(keys))
    return F.map_filter(m, lambda k, v: ~k.isin(*keys)) if keys else m


def _put_key(m: Column, key: str, value: Column) -> Column:
    """``m`` with ``key`` set to ``value``: in its place when present, else last (a dict's assignment)."""
    return F.when(F.map_contains_key(m, F.lit(key)),
                  F.transform_values(m, lambda k, v: F.when(k == F.lit(key), value).otherwise(v))
                  ).otherwise(F.map_concat(m, F.create_map(F.lit(key), value)))


def rendered(output: Output, pii: Iterable[str]) -> Column:
    """The forwarded event as JSON text, built by Spark from a `decide` row: the same rules as `payload` (which
    states them in plain Python), with no Python per event. Nested maps keep each value's JSON type (Spark's
    variant); the free-form properties and the traits are parsed from their JSON text.

    One difference: a field that only some events have after the steps (a rename into a map an earlier step
    dropped) is null in the others, where `payload` leaves it out.

    Example:
        >>> flagged.select(rendered(output, pii_fields(config.catalogue)).alias("payload"))     # doctest: +SKIP
    """
    hide = set(pii) if not output.pii else set()
    flt = output.filter
    empty = F.create_map().cast(_VARIANT_MAP)
    catalogue = F.map_filter(F.create_map(*[x for f in EVENT_FIELDS for x in (F.lit(f), _variant(F.col(f)))]),
                             lambda k, v: v.isNotNull())
    extra = F.coalesce(F.from_json("properties", _VARIANT_MAP), empty)
    properties = F.map_concat(catalogue, F.map_filter(extra, lambda k, v: ~F.map_contains_key(catalogue, k)))
    traits = F.map_filter(F.coalesce(F.from_json("p_traits", _VARIANT_MAP), empty),
                          lambda k, v: v.isNotNull() & ~F.is_variant_null(v))
    ids = F.map_from_entries(F.array_sort(F.map_entries(F.coalesce(
        F.col("identifiers"), F.create_map().cast("map<string,string>")))))
    # (name, value, is a map): the event's fields in order, changed by the steps as `payload` changes its dict
    fields: list[list[Any]] = [
        ["event_id", F.col("event_id"), False], ["event", F.col("event_name"), False], ["stream", F.col("stream"), False],
        ["source", F.col("source"), False], ["timestamp", _value(F.col("event_time"), "timestamp"), False],
        ["profile_id", F.col("profile_id"), False],
        ["identifiers", F.transform_values(_without(ids, hide), lambda k, v: _variant(v)), True],
        ["properties", _without(properties, hide | set(flt.drop_properties)), True],
        ["traits", _without(traits, hide | set(flt.drop_traits)), True]]

    def at(name: str) -> Optional[list[Any]]:
        return next((f for f in fields if f[0] == name), None)

    def put(path: str, value: Column, kind: str) -> None:
        head, _, key = path.partition(".")
        field = at(head)
        if not key:
            new = [head, _value(value, kind), False]
        elif field is not None and field[2]:
            new = [head, _put_key(field[1], key, _variant(_value(value, kind))), True]
        else:
            new = [head, F.create_map(F.lit(key), _variant(_value(value, kind))), True]
        if field is None:
            fields.append(new)
        else:
            field[:] = new

    n_set = 0
    for step in output.transform:
        if isinstance(step, Rename):
            for a, b in step.rename.items():
                ha, _, ka = a.partition(".")
                hb, _, kb = b.partition(".")
                src = at(ha)
                if not ka:
                    if src is not None:
                        fields[:] = [f for f in fields if f[0] != hb or f is src]
                        src[0] = hb
                    continue
                if src is None or not src[2]:
                    continue
                m = src[1]
                present = F.map_contains_key(m, F.lit(ka))
                if ha == hb:
                    moved = F.transform_keys(F.map_filter(m, lambda k, v: k != F.lit(kb)),
                                             lambda k, v: F.when(k == F.lit(ka), F.lit(kb)).otherwise(k))
                    src[1] = F.when(present, moved).otherwise(m)
                    continue
                value = F.element_at(m, F.lit(ka))
                src[1] = F.when(present, _without(m, [ka])).otherwise(m)
                dst = at(hb)
                if dst is not None and dst[2]:
                    dst[1] = F.when(present, _put_key(dst[1], kb, value)).otherwise(dst[1])
                elif dst is None:
                    fields.append([hb, F.when(present, F.create_map(F.lit(kb), value)), True])
                else:
                    dst[:] = [hb, F.when(present, F.create_map(F.lit(kb), value)), True]
        elif isinstance(step, Drop):
            for path in step.drop:
                head, _, key = path.partition(".")
                field = at(head)
                if field is None:
                    continue
                if not key:
                    fields.remove(field)
                elif field[2]:
                    field[1] = _without(field[1], [key])
        else:
            put(step.set, F.col(f"_set_{n_set}"), step.type)
            n_set += 1
    return F.to_json(F.struct(*[value.alias(name) for name, value, _ in fields]), {"ignoreNullFields": "false"})


def _json_value(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def payload(row: Mapping[str, Any], output: Output, pii: Iterable[str], drop_pii: bool | None = None) -> dict[str, Any]:
    """One forwarded event from a `decide` row: built, PII and filtered keys left out, then the transform steps in
    order. Pure Python, so every rule is tested without Spark; deliveries use `rendered`, its Spark twin.

    Example:
        >>> from cdp_spark.connections.config import Output
        >>> out = Output.model_validate({"name": "o", "transport": {"type": "file"},
        ...                              "transform": [{"rename": {"event": "name"}}]})
        >>> row = {"event_id": "m1", "event_name": "page", "stream": "web", "source": "web", "event_time": None,
        ...        "profile_id": "p1", "identifiers": {"email": "a@b.c"}, "properties": None, "p_traits": None}
        >>> payload(row, out, {"email"})
        {'event_id': 'm1', 'name': 'page', 'stream': 'web', 'source': 'web', 'timestamp': None, 'profile_id': 'p1', 'identifiers': {}, 'properties': {}, 'traits': {}}
    """
    hide = set(pii) if (not output.pii if drop_pii is None else drop_pii) else set()
    props = {f: _json_value(row.get(f)) for f in EVENT_FIELDS if row.get(f) is not None}
    extra = json.loads(row["properties"]) if row.get("properties") else {}
    props.update({k: v for k, v in extra.items() if k not in props})
    traits = {k: v for k, v in (json.loads(row["p_traits"]) if row.get("p_traits") else {}).items() if v is not None}
    flt = output.filter
    event: dict[str, Any] = {
        "event_id": row["event_id"], "event": row.get("event_name"), "stream": row.get("stream"),
        "source": row.get("source"), "timestamp": _json_value(row.get("event_time")),
        "profile_id": row.get("profile_id"),
        "identifiers": {k: v for k, v in sorted((row.get("identifiers") or {}).items()) if k not in hide},
        "properties": {k: v for k, v in props.items() if k not in hide and k not in flt.drop_properties},
        "traits": {k: v for k, v in traits.items() if k not in hide and k not in flt.drop_traits},
    }
    n_set = 0
    for step in output.transform:
        if isinstance(step, Rename):
            for a, b in step.rename.items():
                _move(event, a, b)
        elif isinstance(step, Drop):
            for p in step.drop:
                _pop(event, p)
        else:
            _put(event, step.set, _json_value(row.get(f"_set_{n_set}")))
            n_set += 1
    return event


def _parent(event: dict[str, Any], path: str) -> tuple[dict[str, Any] | None, str]:
    head, _, key = path.partition(".")
    if not key:
        return event, head
    inner = event.get(head)
    return (inner if isinstance(inner, dict) else None), key


def _pop(event: dict[str, Any], path: str) -> tuple[bool, Any]:
    parent, key = _parent(event, path)
    if parent is None or key not in parent:
        return False, None
    return True, parent.pop(key)


def _put(event: dict[str, Any], path: str, value: Any) -> None:
    head, _, key = path.partition(".")
    if not key:
        event[head] = value
    else:
        if not isinstance(event.get(head), dict):
            event[head] = {}
        event[head][key] = value


def _move(event: dict[str, Any], a: str, b: str) -> None:
    """Rename ``a`` to ``b``; within one level the field keeps its place (a field already called ``b`` goes)."""
    src, old = _parent(event, a)
    if src is None or old not in src:
        return
    dst, new = _parent(event, b)
    if dst is src:
        items = [(new if k == old else k, v) for k, v in src.items() if k != new or k == old]
        src.clear()
        src.update(items)
    else:
        _put(event, b, src.pop(old))
