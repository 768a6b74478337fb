"""Compile every audience into one Spark plan.

Events are scanned once per run: every event condition of every audience becomes one conditional aggregate
(``count(CASE WHEN match_i THEN 1 END)``, ``sum(CASE WHEN match_i THEN x END)``, ...) in a single ``groupBy
(profile_id)`` over the events of the widest window. Affinity conditions likewise share one pass over
``gold.affinities``. Each audience is then a boolean column over one row per profile; a reference reads the
referenced audience's column (one projection per reference level, dependency order, cycles refused).

Time windows are relative to the end of the as-of day, so evaluating the same as-of twice gives the same result.

Example:
    >>> plan = compile_audiences(config.audiences, as_of=date(2026, 11, 1))       # doctest: +SKIP
    >>> members = evaluate(plan, profiles, events, affinities)                      # doctest: +SKIP
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdp_spark.audiences.config import (EVENT_FIELDS, NUMERIC, SCORE_FIELDS, Aggregate, Audience, Clause,
                                        EventCondition, Filter, dependency_order, relative_offset, static_problem,
                                        type_problem)

BUCKETS = 10_000  # variant hash buckets: weights resolve to 0.01 %
WORD_BITS = 63  # presence flags per bit word (the sign bit stays clear)


class AudienceError(ValueError):
    """An audience cannot be compiled: names the audience, the clause path and the reason."""


def day_end(as_of: dt.date) -> dt.datetime:
    """The run's reference time: the end of the as-of day (UTC)."""
    return dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time())


def _point(value: Any, end: dt.datetime, *, is_end: bool) -> dt.datetime:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return dt.datetime.combine(value + dt.timedelta(days=1 if is_end else 0), dt.time())
    offset = relative_offset(value)
    assert offset is not None, value  # validated by the config model
    return end - offset


def window(cond: EventCondition, as_of: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of an event condition's window for this as-of.

    Example:
        >>> c = EventCondition(name="x", within={"days": 7})
        >>> [t.isoformat() for t in window(c, dt.date(2026, 11, 1))]
        ['2026-10-26T00:00:00', '2026-11-02T00:00:00']
    """
    end = day_end(as_of)
    if cond.within is not None:
        w = cond.within
        return end - (dt.timedelta(days=w.days) if w.days else dt.timedelta(hours=w.hours or 0)), end
    assert cond.between is not None
    return _point(cond.between.start, end, is_end=False), min(_point(cond.between.end, end, is_end=True), end)


def _lit_list(values: list[Any], lower: bool) -> list[Any]:
    return [str(v).lower() if lower and isinstance(v, str) else v for v in values]


def compare(col: Column, field_type: Optional[str], f: Filter, as_of: dt.date | None = None) -> Column:
    """``col op value`` as a Spark boolean (null when the value is missing; callers coalesce to false)."""
    op, value = f.op, f.value
    if op == "exists":
        return col.isNotNull() & (F.size(col) > 0 if (field_type or "").startswith("array") else F.lit(True))
    if op == "not_exists":
        return col.isNull()
    base = (field_type or "string").split("(")[0]
    text = base == "string"
    if field_type is None:  # a raw event property (JSON text): numbers compare as numbers
        numeric_value = all(isinstance(v, (int, float)) and not isinstance(v, bool)
                            for v in (value if isinstance(value, list) else [value]))
        if numeric_value or op in (">", ">=", "<", "<="):
            col, text = col.cast("double"), False
    if base in ("date", "timestamp") and as_of is not None:
        value = relative_value(value, as_of, base)
    lower = text and not f.case_sensitive
    if base.startswith("array"):
        v = str(value).lower() if not f.case_sensitive else str(value)
        return F.exists(col, lambda x: (F.lower(x) if not f.case_sensitive else x) == F.lit(v))
    c = F.lower(col) if lower else col
    if op in ("in", "not_in"):
        vals = _lit_list(list(value), lower)
        return c.isin(*vals) if op == "in" else ~c.isin(*vals)
    v = str(value).lower() if lower and isinstance(value, str) else value
    if op == "contains":
        return c.contains(str(v))
    if op == "starts_with":
        return c.startswith(str(v))
    if op == "regex":
        return col.rlike(("(?i)" if not f.case_sensitive else "") + str(value))
    return {"=": c == F.lit(v), "!=": c != F.lit(v), ">": c > F.lit(v), ">=": c >= F.lit(v), "<": c < F.lit(v),
            "<=": c <= F.lit(v)}[op]


def relative_value(value: Any, as_of: dt.date, field_type: str) -> Any:
    """A filter value on a date or timestamp field, with relative times resolved: counted back from the start of
    the as-of day, the date of that time for a date field, the time itself for a timestamp field.

    Example:
        >>> [relative_value(v, dt.date(2026, 11, 1), "date").isoformat() for v in ("-6h", "-3d", "-2w")]
        ['2026-10-31', '2026-10-29', '2026-10-18']
        >>> relative_value("-6h", dt.date(2026, 11, 1), "timestamp")
        datetime.datetime(2026, 10, 31, 18, 0)
    """
    if isinstance(value, list):
        return [relative_value(v, as_of, field_type) for v in value]
    offset = relative_offset(value)
    if offset is not None:
        point = dt.datetime.combine(as_of, dt.time()) - offset
        return point.date() if field_type == "date" else point
    return dt.date.fromisoformat(str(value)[:10]) if not isinstance(value, dt.date) else value



def event_field(name: str) -> Column:
    """An event field as a column: a column of the events, or a key of the ``properties`` JSON text."""
    if name.startswith("properties."):
        return F.get_json_object(F.col("properties"), "$." + name[len("properties."):])
    return F.col(name)


def property_column(name: str) -> str:
    """The name of the projected column holding a decoded event property (``properties.coupon`` -> ``_p_coupon``).

    Example:
        >>> property_column("properties.a.b")
        '`_p_a.b`'
    """
    return f"`_p_{name[len('properties.'):]}`"


def decode_properties(events: DataFrame, names: Iterable[str], guards: dict[str, Column] | None = None) -> DataFrame:
    """``events`` with one column per referenced ``properties.<key>``, each parsed from the JSON text once per row.

    Every condition on the same key then reads that column: without it, each condition's ``get_json_object`` parsed
    the whole properties text again (40 conditions, 10 on two keys: 10 parses per event instead of 2). A key with a
    guard is parsed only where the guard holds (null elsewhere), and any key only where the text mentions it.

    Example:
        >>> decode_properties(ev, ["properties.coupon"]).columns[-1]   # doctest: +SKIP
        '_p_coupon'
    """
    keys = sorted({n for n in names if n.startswith("properties.")})
    if not keys:
        return events
    guards = guards or {}

    def decoded(k: str) -> Column:
        test = [t for t in (guards.get(k), _mentions(k)) if t is not None]
        return F.when(functools.reduce(lambda x, y: x & y, test), event_field(k)) if test else event_field(k)

    return events.select("*", *[decoded(k).alias(property_column(k).strip("`")) for k in keys])


def _mentions(name: str) -> Column | None:
    """A byte search that must succeed for ``properties.<key>`` to exist: each part of the key, quoted, is in the
    text. Parsing the JSON costs far more, and most events lack most keys. None for keys with characters an encoder
    may escape (the search could then miss a key that is there)."""
    parts = name[len("properties."):].split(".")
    if not all(re.fullmatch(r"[A-Za-z0-9_$-]+", p) for p in parts):
        return None
    return functools.reduce(lambda x, y: x & y, [F.col("properties").contains(f'"{p}"') for p in parts])


@dataclass
class Plan:
    """All audiences compiled for one as-of: shared event/affinity aggregates and one expression per audience."""

    as_of: dt.date
    audiences: list[Audience]
    event_conditions: dict[str, EventCondition] = field(default_factory=dict)   # key -> condition
    affinity_keys: dict[str, tuple[str, str]] = field(default_factory=dict)     # key -> (dimension, value)
    needs: set[str] = field(default_factory=set)                               # scores, affinities, ...

    @property
    def since(self) -> dt.date | None:
        """The earliest event date any condition looks at (partition pruning for the one scan)."""
        starts = [window(c, self.as_of)[0].date() for c in self.event_conditions.values()]
        return min(starts) if starts else None

    @property
    def event_names(self) -> list[str]:
        return sorted({n for c in self.event_conditions.values() for n in c.name})


def _key(obj: Any) -> str:
    import hashlib

    return "c" + hashlib.sha1(json.dumps(obj.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:12]


def compile_audiences(audiences: Iterable[Audience], as_of: dt.date) -> Plan:
    """Collect the shared work of all (enabled) audiences; raises AudienceError on a reference problem."""
    enabled = [a for a in audiences if a.enabled]
    names = {a.name for a in enabled}
    for a in enabled:
        for path, c in a.rule.walk():
            if c.kind == "audience" and c.audience not in names:
                raise AudienceError(f"audience {a.name}: {path}.audience: unknown or disabled audience {c.audience!r}")
    try:
        ordered = dependency_order(enabled)
    except ValueError as exc:
        raise AudienceError(str(exc)) from None
    plan = Plan(as_of, ordered)
    for a in ordered:
        for _, c in a.rule.walk():
            if c.kind == "event":
                plan.event_conditions.setdefault(_key(c.event), c.event)
            elif c.kind == "affinity":
                plan.affinity_keys.setdefault(_key(c.affinity), (c.affinity.dimension, c.affinity.value.lower()))
                plan.needs.add("affinities")
            elif c.kind == "score":
                plan.needs.add("scores")
    return plan


def check_against(plan: Plan, profile_schema: T.StructType, raw_keys: dict[str, str] | None = None) -> None:
    """Check every condition against the real profile view (traits/attributes/consent) and, for event
    properties, against the raw key stats (key -> predicted type). Raises AudienceError naming the clause."""
    fields: dict[str, dict[str, str]] = {}
    for kind in ("traits", "attributes", "scores"):
        if kind in profile_schema.fieldNames() and isinstance(profile_schema[kind].dataType, T.StructType):
            fields[kind] = {f.name: f.dataType.simpleString() for f in profile_schema[kind].dataType.fields}
    fields.setdefault("traits", {})
    fields.setdefault("attributes", {})
    for a in plan.audiences:
        for path, c in a.rule.walk():
            problem = static_problem(c, fields)
            if problem:
                raise AudienceError(f"audience {a.name}: {path}: {problem}")
            if c.kind == "event" and raw_keys is not None:
                props = [(f"where.{i}", f.field, f) for i, f in enumerate(c.event.where)]
                if c.event.aggregate.property:
                    props.append(("aggregate", c.event.aggregate.property, None))
                for where, name, flt in props:
                    if not name.startswith("properties."):
                        continue
                    if name not in raw_keys:
                        raise AudienceError(f"audience {a.name}: {path}.event.{where}: unknown event property "
                                            f"{name!r} (not among the raw keys of any source)")
                    predicted = {"long": "bigint"}.get(raw_keys[name], raw_keys[name])
                    problem = type_problem(predicted, flt.op, flt.value) if flt is not None else (
                        None if predicted in NUMERIC else f"{name} is {predicted}, not numeric")
                    if problem:
                        raise AudienceError(f"audience {a.name}: {path}.event.{where}: {name}: {problem}")


# ---- the shared passes ----
def event_aggregates(plan: Plan, events: DataFrame) -> DataFrame:
    """One row per profile with one column per event condition (the aggregate's value), in one scan."""
    if not plan.event_conditions:
        return events.sparkSession.createDataFrame([], "profile_id string")
    end = day_end(plan.as_of)
    ev = events.where(F.col("event_name").isin(*plan.event_names) & (F.col("event_time") < F.lit(end)))
    if plan.since is not None:
        ev = ev.where(F.col("event_date") >= F.lit(plan.since))
    # Each referenced JSON property is decoded once per event into its own column (Spark keeps a non-cheap
    # expression used by many conditions in its own projection instead of inlining it into each).
    # A key is decoded only on events of a name (and from a time) that a condition reading it looks at: the column
    # is read only under that condition's name and window test, and the other events skip the parse.
    users: dict[str, list[EventCondition]] = {}
    for c in plan.event_conditions.values():
        for n in {f.field for f in c.where} | ({c.aggregate.property} if c.aggregate.property else set()):
            if n.startswith("properties."):
                users.setdefault(n, []).append(c)
    ev = decode_properties(ev, users, {
        n: F.col("event_name").isin(*sorted({x for c in cs for x in c.name}))
        & (F.col("event_time") >= F.lit(min(window(c, plan.as_of)[0] for c in cs))) for n, cs in users.items()})

    def field_col(name: str) -> Column:
        return F.col(property_column(name)) if name.startswith("properties.") else F.col(name)

    # One projection computes every condition's match flag (and value) per event; the aggregation then only
    # counts/sums columns. Conditions that only ask whether a matching event exists (the default, count > 0) share
    # bit words: one bit_or per 63 of them instead of one counter each (every counter is a column of the partial
    # aggregate, its shuffle, the sort and the join). A word's expression is one large generated method: HotSpot
    # compiles it only with -XX:-DontCompileHugeMethods (set by the embedded mode, see `spark.embedded_conf`).
    presence = [k for k, c in plan.event_conditions.items() if presence_only(c.aggregate)]
    cols, aggs, flags = [], [], {}
    for key, c in plan.event_conditions.items():
        start, stop = window(c, plan.as_of)
        match = (F.col("event_name").isin(*c.name) & (F.col("event_time") >= F.lit(start))
                 & (F.col("event_time") < F.lit(stop)))
        for f in c.where:
            match = match & F.coalesce(compare(field_col(f.field), EVENT_FIELDS.get(f.field), f, plan.as_of),
                                       F.lit(False))
        g = c.aggregate
        if key in presence:
            flags[key] = match
            continue
        cols.append(match.alias(f"m_{key}"))
        if g.fn == "count":
            aggs.append(F.count_if(F.col(f"m_{key}")).alias(key))
        else:
            cols.append(field_col(g.property or "").cast("double").alias(f"x_{key}"))
            fn = {"sum": F.sum, "avg": F.avg, "min": F.min, "max": F.max}[g.fn]
            aggs.append(fn(F.when(F.col(f"m_{key}"), F.col(f"x_{key}"))).alias(key))
    words = [presence[i:i + WORD_BITS] for i in range(0, len(presence), WORD_BITS)]
    for w, keys in enumerate(words):
        bits = [F.when(flags[k], F.lit(1 << b).cast("long")).otherwise(F.lit(0).cast("long"))
                for b, k in enumerate(keys)]
        cols.append(functools.reduce(lambda x, y: x.bitwiseOR(y), bits).alias(f"_w{w}"))
        aggs.append(F.bit_or(f"_w{w}").alias(f"_w{w}"))
    # An event that matches no condition changes no aggregate: a profile without matching events reads the same
    # after the left join (null -> 0 for count and sum, null for avg/min/max), so such events skip the hash
    # aggregation, the per-row cost that dominates the run.
    hit = [F.col(f"m_{k}") for k in plan.event_conditions if k not in presence] + [
        F.col(f"_w{w}") != 0 for w in range(len(words))]
    agg = (ev.select("profile_id", *cols).where(functools.reduce(lambda x, y: x | y, hit))
           .groupBy("profile_id").agg(*aggs))
    # Each presence condition reads back as a 0/1 count, which its comparison treats like the real count.
    unpacked = [F.shiftright(F.col(f"_w{w}"), b).bitwiseAND(F.lit(1)).alias(k)
                for w, keys in enumerate(words) for b, k in enumerate(keys)]
    return agg.select("profile_id", *[k for k in plan.event_conditions if k not in presence], *unpacked)


def presence_only(g: Aggregate) -> bool:
    """Whether ``g``'s test gives the same answer for every count of one or more: then a condition only needs to
    know whether a matching event exists, not how many there are.

    Example:
        >>> presence_only(Aggregate()), presence_only(Aggregate(op=">=", value=2))
        (True, False)
    """
    if g.fn != "count":
        return False
    if g.op in ("=", "!="):
        return not (g.value >= 1 and float(g.value).is_integer())
    test = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}[g.op]
    return test(1, g.value) == test(2 ** 62, g.value)


def affinity_pivot(plan: Plan, affinities: DataFrame) -> DataFrame:
    """One row per profile: score and band per (dimension, value) used by any audience, in one pass."""
    # Each dimension's latest run: the scores and content stages write theirs separately.
    latest = [(F.col("dimension") == F.lit(r["dimension"])) & (F.col("as_of") == F.lit(r["as_of"]))
              for r in affinities.groupBy("dimension").agg(F.max("as_of").alias("as_of")).collect()
              if r["as_of"] is not None]
    aff = affinities.where(functools.reduce(operator.or_, latest)) if latest else affinities
    aggs = []
    for key, (dim, value) in plan.affinity_keys.items():
        m = (F.col("dimension") == F.lit(dim)) & (F.lower("value") == F.lit(value))
        aggs += [F.max(F.when(m, F.col("score"))).alias(key + "_score"), F.max(F.when(m, F.col("band"))).alias(key + "_band")]
    return aff.groupBy("profile_id").agg(*aggs)


def _leaf(c: Clause, available: set[str], fields: dict[str, dict[str, str]], as_of: dt.date) -> Column:
    k = c.kind
    if k == "event":
        key, g = _key(c.event), c.event.aggregate
        v = F.col(f"_ev.{key}")
        v = F.coalesce(v, F.lit(0)) if g.fn in ("count", "sum") else v
        return {"=": v == g.value, "!=": v != g.value, ">": v > g.value, ">=": v >= g.value, "<": v < g.value,
                "<=": v <= g.value}[g.op]
    if k in ("trait", "attribute"):
        f = c.part(k)
        return compare(F.col(f"{k}s.{f.field}"), fields.get(k + "s", {}).get(f.field), f, as_of)
    if k == "score":
        if "scores" not in available:
            return F.lit(False)  # documented: no scores table yet -> score conditions match nobody
        return compare(F.col(f"scores.{c.score.field}"), SCORE_FIELDS[c.score.field], c.score, as_of)
    if k == "affinity":
        if "affinities" not in available:
            return F.lit(False)
        a, key = c.affinity, _key(c.affinity)
        if a.band is not None:
            return F.col(f"_aff.{key}_band") == F.lit(a.band)
        v = F.col(f"_aff.{key}_score")
        return {"=": v == a.score, "!=": v != a.score, ">": v > a.score, ">=": v >= a.score, "<": v < a.score,
                "<=": v <= a.score}[a.op]
    if k == "consent":
        status = F.coalesce(F.col("consent")[c.consent.purpose], F.lit("unknown"))
        return status == F.lit(c.consent.status)
    if k == "identifier":
        ids = F.col("identifiers")[c.identifier.type]
        return ids.isNotNull() & (F.size(ids) > 0)
    raise AssertionError(k)


def audience_expression(c: Clause, exprs: dict[str, Column], available: set[str],
                        fields: dict[str, dict[str, str]], as_of: dt.date) -> Column:
    """A clause tree as one never-null boolean column (null leaves count as false, so NOT behaves)."""
    k = c.kind
    if k == "all" or k == "any":
        parts = [audience_expression(x, exprs, available, fields, as_of) for x in c.part(k)]
        out = parts[0]
        for p in parts[1:]:
            out = (out & p) if k == "all" else (out | p)
        return out
    if k in ("not", "exclude"):
        return ~audience_expression(c.part(k), exprs, available, fields, as_of)
    if k == "audience":
        return exprs[c.audience]
    return F.coalesce(_leaf(c, available, fields, as_of), F.lit(False))


def variant_of(a: Audience) -> Column:
    """The variant of ``a`` for the row's ``profile_id``: weights over a stable hash of the audience's salt and the
    profile id, so a profile keeps its variant across runs and regardless of who else enters or leaves. An
    audience with one variant is a literal (no hash).

    Example:
        >>> variant_of(Audience(name="x", rule={"consent": {"purpose": "p", "status": "granted"}}))  # doctest: +SKIP
        Column<'all'>
    """
    total = sum(v.weight for v in a.variants)
    cum, case = 0.0, F.lit(a.variants[-1].name)
    bounds = []
    for v in a.variants:
        cum += v.weight
        bounds.append((round(cum / total * BUCKETS), v.name))
    if len(bounds) > 1:
        bucket = F.pmod(F.xxhash64(F.lit(a.hash_salt), F.col("profile_id")), F.lit(BUCKETS))
        for upper, name in reversed(bounds[:-1]):
            case = F.when(bucket < upper, F.lit(name)).otherwise(case)
    return case


def evaluate(plan: Plan, profiles: DataFrame, events: DataFrame | None, affinities: DataFrame | None = None,
             *, excluded_ids: DataFrame | None = None) -> DataFrame:
    """Members of every audience: (audience, profile_id, variant), one row per qualifying pair.

    ``profiles`` has the profile view's shape (profile_id, identifiers, traits, attributes, consent[, scores]);
    ``events`` has profile_id, event_name, event_time, event_date and the event columns; ``excluded_ids``
    (profile_id) are ids merged away by identity, never members.
    """
    available = set()
    base = profiles
    if "scores" in profiles.columns:
        available.add("scores")
    fields: dict[str, dict[str, str]] = {}
    for kind in ("traits", "attributes"):
        if kind in profiles.columns:
            fields[kind] = {f.name: f.dataType.simpleString() for f in profiles.schema[kind].dataType.fields}
    if plan.event_conditions and events is not None:
        agg = event_aggregates(plan, events)
        base = base.join(agg.select("profile_id", F.struct(*[c for c in agg.columns if c != "profile_id"]).alias("_ev")),
                         "profile_id", "left")
    elif plan.event_conditions:
        base = base.withColumn("_ev", F.struct(*[F.lit(None).cast("double").alias(k) for k in plan.event_conditions]))
    if plan.affinity_keys and affinities is not None:
        available.add("affinities")
        piv = affinity_pivot(plan, affinities)
        base = base.join(piv.select("profile_id", F.struct(*[c for c in piv.columns if c != "profile_id"]).alias("_aff")),
                         "profile_id", "left")
    if excluded_ids is not None:
        base = base.join(excluded_ids.select("profile_id").distinct(), "profile_id", "left_anti")
    if not plan.audiences:
        return profiles.sparkSession.createDataFrame([], "audience string, profile_id string, variant string")
    # One projection per reference level: a reference reads the referenced audience's column instead of copying its
    # expression, so chains of references do not grow the plan.
    refs = {a.name: F.col(f"`_a_{a.name}`") for a in plan.audiences}
    level: dict[str, int] = {}
    for a in plan.audiences:  # dependency order
        level[a.name] = 1 + max((level[r] for r in a.references()), default=-1)
    for n in range(max(level.values()) + 1):
        base = base.select("*", *[audience_expression(a.rule, refs, available, fields, plan.as_of).alias(f"_a_{a.name}")
                                  for a in plan.audiences if level[a.name] == n])
    # One (audience, variant) entry per audience the profile is in, variant computed where the audience is known:
    # looking the audience up again per member row (salt map, a chain of name tests) cost ~N/2 string comparisons
    # per member, the largest per-audience cost of the run.
    # A non-member's entry is null and becomes an all-null row, dropped after the generator: cheaper than filtering
    # the array first, whose lambda Spark interprets per element (profiles x audiences calls).
    entries = [F.when(refs[a.name], F.struct(F.lit(a.name).alias("audience"), variant_of(a).alias("variant")))
               for a in plan.audiences]
    members = base.select("profile_id", F.inline(F.array(*entries))).where(F.col("audience").isNotNull())
    return members.select("audience", "profile_id", "variant")


def unavailable(plan: Plan, available: set[str]) -> dict[str, list[str]]:
    """Audiences with conditions on data that does not exist yet (they match nobody on those conditions)."""
    out: dict[str, list[str]] = {}
    for a in plan.audiences:
        for _, c in a.rule.walk():
            need = {"score": "scores", "affinity": "affinities"}.get(c.kind)
            if need and need not in available:
                out.setdefault(need, [])
                if a.name not in out[need]:
                    out[need].append(a.name)
    return out
