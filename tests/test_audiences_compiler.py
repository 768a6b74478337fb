"""Audience compilation against an independent pure-Python evaluator: every operator and window, AND/OR/NOT
nesting, references, scores/affinities/consent/identifiers, A/B variants and as-of reproducibility.

All audiences are evaluated in one Spark plan (one event scan), as the stage does."""
from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from pyspark.sql import types as T
from scipy import stats

from cdp_spark.audiences import compiler as C
from cdp_spark.audiences.config import Audience

AS_OF = dt.date(2026, 11, 1)
END = dt.datetime(2026, 11, 2)

PROFILE_SCHEMA = T.StructType([
    T.StructField("profile_id", T.StringType()),
    T.StructField("identifiers", T.MapType(T.StringType(), T.ArrayType(T.StringType()))),
    T.StructField("traits", T.StructType([T.StructField("first_name", T.StringType()),
                                          T.StructField("country", T.StringType()),
                                          T.StructField("signup_date", T.DateType())])),
    T.StructField("attributes", T.StructType([T.StructField("orders", T.LongType()),
                                              T.StructField("favourite_category", T.StringType()),
                                              T.StructField("categories", T.ArrayType(T.StringType())),
                                              T.StructField("vip", T.BooleanType())])),
    T.StructField("consent", T.MapType(T.StringType(), T.StringType())),
    T.StructField("scores", T.StructType([T.StructField("clv_percentile", T.DoubleType()),
                                          T.StructField("p_alive", T.DoubleType()),
                                          T.StructField("rfm_segment", T.StringType())])),
])
EVENT_SCHEMA = ("profile_id string, event_id string, event_name string, event_time timestamp, event_date date, "
                "category string, price double, quantity bigint, source string, properties string")

# Profiles with varied traits/attributes/scores; events with varied names, times, categories, prices, properties.
NAMES = ["product viewed", "product added", "order completed"]
CATS = ["Electronics", "books", "home", None]


def _profiles():
    rows = []
    for i in range(12):
        rows.append({
            "profile_id": f"p{i:02d}",
            "identifiers": ({"email": [f"u{i}@x.com"]} if i % 2 == 0 else {}) | ({"customer_id": [f"c{i}"]} if i % 3 == 0 else {}),
            "traits": {"first_name": ["Ann", "bob", "CHLOE", None][i % 4], "country": ["GB", "FR", "DE"][i % 3],
                       "signup_date": dt.date(2026, 1 + i % 10, 1)},
            "attributes": {"orders": i % 5, "favourite_category": CATS[i % 4],
                           "categories": [c for c in CATS[: i % 4] if c], "vip": i % 4 == 0},
            "consent": {"email_marketing": ["granted", "denied", "unknown"][i % 3]},
            "scores": {"clv_percentile": float(i * 9), "p_alive": (i % 5) / 5.0, "rfm_segment": ["Champions", "At Risk"][i % 2]},
        })
    return rows


def _events():
    rows, n = [], 0
    for i in range(12):
        for k in range(i % 6 + 1):
            n += 1
            t = END - dt.timedelta(hours=5 + 29 * ((i * 7 + k * 13) % 40))  # spread over ~48 days before END
            props = {"coupon": ["SAVE10", "save20", "none"][(i + k) % 3], "score": (i + k) % 7}
            if (i + k) % 4 == 0:
                props.pop("coupon")
            if (i + k) % 3 != 1:  # a nested object, read by dotted keys
                props["meta"] = {"channel": ["email", "Ads"][(i * k) % 2], "depth": {"n": i % 3}}
            rows.append({"profile_id": f"p{i:02d}", "event_id": f"e{n}", "event_name": NAMES[(i + k) % 3],
                         "event_time": t, "event_date": t.date(), "category": CATS[(i * 3 + k) % 4],
                         "price": float((i * 11 + k * 7) % 90), "quantity": (i + k) % 4, "source": "web",
                         "properties": json.dumps(props)})
    # events after the as-of date must never count
    rows.append({**rows[0], "event_id": "late", "event_time": END + dt.timedelta(hours=1), "event_date": AS_OF + dt.timedelta(days=1)})
    return rows


# ---- the independent evaluator (plain Python) ----
def _cmp(v, op, value, case_sensitive=False, numeric=False):
    if op == "exists":
        return v is not None and v != []
    if op == "not_exists":
        return v is None
    if v is None:
        return False
    if isinstance(v, list):
        return any((x if case_sensitive else x.lower()) == (value if case_sensitive else value.lower()) for x in v)
    if numeric:
        try:
            v = float(v)
        except ValueError:
            return False
    if isinstance(v, str) and not case_sensitive:
        v = v.lower()
        value = [x.lower() if isinstance(x, str) else x for x in value] if isinstance(value, list) else (
            value.lower() if isinstance(value, str) else value)
    if isinstance(v, dt.date) and isinstance(value, str):
        value = dt.date.fromisoformat(value)
    return {"=": lambda: v == value, "!=": lambda: v != value, ">": lambda: v > value, ">=": lambda: v >= value,
            "<": lambda: v < value, "<=": lambda: v <= value, "in": lambda: v in value, "not_in": lambda: v not in value,
            "contains": lambda: value in v, "starts_with": lambda: v.startswith(value),
            "regex": lambda: re.search(value, v, 0 if case_sensitive else re.I) is not None}[op]()


def _field(e, name):
    if name.startswith("properties."):
        v = json.loads(e["properties"])
        for part in name.split(".")[1:]:
            v = v.get(part) if isinstance(v, dict) else None
        return json.dumps(v) if isinstance(v, dict) else v
    return e[name]


def _window(c):
    if "between" in c:
        def point(p, is_end):
            if re.match(r"^-?\d+[dh]$", str(p)):
                n = int(re.findall(r"\d+", str(p))[0])
                return END - (dt.timedelta(days=n) if str(p).endswith("d") else dt.timedelta(hours=n))
            d = dt.date.fromisoformat(str(p))
            return dt.datetime.combine(d + dt.timedelta(days=1 if is_end else 0), dt.time())
        return point(c["between"]["start"], False), min(point(c["between"].get("end", "0d"), True), END)
    w = c.get("within", {"days": 30})
    return END - (dt.timedelta(days=w["days"]) if "days" in w else dt.timedelta(hours=w["hours"])), END


def ref_event(c, evs):
    names = [c["name"]] if isinstance(c["name"], str) else c["name"]
    start, stop = _window(c)
    matched = [e for e in evs if e["event_name"] in names and start <= e["event_time"] < stop
               and all(_cmp(_field(e, f["field"]), f.get("op", "="), f.get("value"), f.get("case_sensitive", False),
                            numeric=f["field"].startswith("properties.") and (
                                isinstance(f.get("value"), (int, float)) or f.get("op") in (">", ">=", "<", "<=")))
                       for f in c.get("where", []))]
    g = c.get("aggregate", {})
    fn, op, value = g.get("fn", "count"), g.get("op", ">"), g.get("value", 0)
    if fn == "count":
        x = len(matched)
    else:
        xs = [float(_field(e, g["property"])) for e in matched if _field(e, g["property"]) is not None]
        x = {"sum": lambda: sum(xs), "avg": lambda: sum(xs) / len(xs) if xs else None,
             "min": lambda: min(xs) if xs else None, "max": lambda: max(xs) if xs else None}[fn]()
    return x is not None and _cmp(x, op, value)


def ref_rule(r, p, evs, done):
    (k, v), = r.items()
    if k == "all":
        return all(ref_rule(x, p, evs, done) for x in v)
    if k == "any":
        return any(ref_rule(x, p, evs, done) for x in v)
    if k in ("not", "exclude"):
        return not ref_rule(v, p, evs, done)
    if k == "event":
        return ref_event(v, evs)
    if k in ("trait", "attribute", "score"):
        return _cmp(p[k + "s"][v["field"]], v.get("op", "="), v.get("value"), v.get("case_sensitive", False))
    if k == "consent":
        return p["consent"].get(v["purpose"], "unknown") == v.get("status", "granted")
    if k == "identifier":
        return bool(p["identifiers"].get(v))
    if k == "audience":
        return p["profile_id"] in done[v]
    if k == "affinity":
        a = AFFINITIES.get((p["profile_id"], v["dimension"], v["value"]))
        return a is not None and (a[1] == v["band"] if "band" in v else _cmp(a[0], v.get("op", ">="), v["score"]))
    raise AssertionError(k)


AFFINITIES = {(f"p{i:02d}", "category", c): (round((i * 37 % 100) / 100, 2), ["Low", "Some", "High"][i % 3])
              for i in range(12) for c in ("books", "home") if (i + len(c)) % 2 == 0}

EV = lambda **kw: {"event": kw}  # noqa: E731
RULES = {
    # every filter operator on events (columns and raw properties)
    "op_eq": EV(name="product viewed", where=[{"field": "category", "op": "=", "value": "ELECTRONICS"}]),
    "op_eq_cs": EV(name="product viewed", where=[{"field": "category", "op": "=", "value": "electronics", "case_sensitive": True}]),
    "op_ne": EV(name=NAMES, where=[{"field": "category", "op": "!=", "value": "books"}]),
    "op_gt": EV(name=NAMES, where=[{"field": "price", "op": ">", "value": 50}]),
    "op_ge": EV(name=NAMES, where=[{"field": "price", "op": ">=", "value": 62}]),
    "op_lt": EV(name=NAMES, where=[{"field": "quantity", "op": "<", "value": 1}]),
    "op_le": EV(name=NAMES, where=[{"field": "price", "op": "<=", "value": 7}]),
    "op_in": EV(name=NAMES, where=[{"field": "category", "op": "in", "value": ["Books", "home"]}]),
    "op_not_in": EV(name=NAMES, where=[{"field": "category", "op": "not_in", "value": ["books", "electronics"]}]),
    "op_contains": EV(name=NAMES, where=[{"field": "category", "op": "contains", "value": "TRON"}]),
    "op_starts": EV(name=NAMES, where=[{"field": "properties.coupon", "op": "starts_with", "value": "save"}]),
    "op_regex": EV(name=NAMES, where=[{"field": "properties.coupon", "op": "regex", "value": "^save[0-9]+$"}]),
    "op_exists": EV(name=NAMES, where=[{"field": "properties.coupon", "op": "exists"}]),
    "op_not_exists": EV(name=NAMES, where=[{"field": "category", "op": "not_exists"}]),
    "op_prop_num": EV(name=NAMES, where=[{"field": "properties.score", "op": ">=", "value": 5}]),
    "op_nested": EV(name=NAMES, where=[{"field": "properties.meta.channel", "op": "=", "value": "ads"}]),
    "op_nested_num": EV(name=NAMES, where=[{"field": "properties.meta.depth.n", "op": ">", "value": 0}]),
    "op_object": EV(name=NAMES, where=[{"field": "properties.meta.depth", "op": "contains", "value": "2"}]),
    # windows
    "w_days": EV(name="order completed", within={"days": 7}),
    "w_hours": EV(name=NAMES, within={"hours": 30}),
    "w_default": EV(name="product added"),
    "w_between_rel": EV(name=NAMES, between={"start": "-20d", "end": "-10d"}),
    "w_between_abs": EV(name=NAMES, between={"start": "2026-10-01", "end": "2026-10-15"}),
    # aggregates
    "agg_count": EV(name=NAMES, within={"days": 60}, aggregate={"fn": "count", "op": ">=", "value": 4}),
    "agg_sum": EV(name=NAMES, within={"days": 60}, aggregate={"fn": "sum", "property": "price", "op": ">", "value": 120}),
    "agg_avg": EV(name=NAMES, within={"days": 60}, aggregate={"fn": "avg", "property": "price", "op": "<", "value": 40}),
    "agg_min": EV(name=NAMES, within={"days": 60}, aggregate={"fn": "min", "property": "price", "op": "<=", "value": 10}),
    "agg_max": EV(name=NAMES, within={"days": 60}, aggregate={"fn": "max", "property": "properties.score", "op": "=", "value": 6}),
    "agg_none": EV(name="order completed", within={"days": 60}, aggregate={"fn": "count", "op": "=", "value": 0}),
    "agg_lt_one": EV(name="product added", within={"days": 30}, aggregate={"fn": "count", "op": "<", "value": 1}),
    "agg_ne_one": EV(name=NAMES, within={"days": 30}, aggregate={"fn": "count", "op": "!=", "value": 1}),
    "agg_le_two": EV(name=NAMES, within={"days": 30}, aggregate={"fn": "count", "op": "<=", "value": 2}),
    # traits, attributes, scores, consent, identifiers, affinities
    "trait_ci": {"trait": {"field": "first_name", "op": "in", "value": ["ann", "Chloe"]}},
    "trait_date": {"trait": {"field": "signup_date", "op": "<", "value": "2026-05-01"}},
    "attr_num": {"attribute": {"field": "orders", "op": ">=", "value": 3}},
    "attr_list": {"attribute": {"field": "categories", "op": "contains", "value": "ELECTRONICS"}},
    "attr_bool": {"attribute": {"field": "vip", "op": "=", "value": True}},
    "score_pct": {"score": {"field": "clv_percentile", "op": ">=", "value": 50}},
    "score_seg": {"score": {"field": "rfm_segment", "op": "=", "value": "at risk"}},
    "consent": {"consent": {"purpose": "email_marketing", "status": "granted"}},
    "consent_unknown": {"consent": {"purpose": "ads_personalisation", "status": "unknown"}},
    "has_email": {"identifier": "email"},
    "aff_band": {"affinity": {"dimension": "category", "value": "books", "band": "High"}},
    "aff_score": {"affinity": {"dimension": "category", "value": "home", "op": ">", "score": 0.4}},
    # nesting and references
    "nested": {"all": [{"any": [{"audience": "op_gt"}, {"identifier": "customer_id"}]},
                       {"not": {"all": [{"audience": "consent"}, {"exclude": {"audience": "w_days"}}]}},
                       {"any": [{"not": {"trait": {"field": "country", "op": "=", "value": "gb"}}}, {"audience": "agg_count"}]}]},
    "ref_chain": {"all": [{"audience": "nested"}, {"not": {"audience": "has_email"}}]},
}
ORDER = list(RULES)


@pytest.fixture(scope="module")
def evaluated(spark):
    audiences = [Audience.model_validate({"name": n, "rule": r}) for n, r in reversed(RULES.items())]
    plan = C.compile_audiences(audiences, AS_OF)
    profiles = spark.createDataFrame(_profiles(), PROFILE_SCHEMA)
    events = spark.createDataFrame(_events(), EVENT_SCHEMA)
    aff = spark.createDataFrame([(p, d, v, AS_OF, s, b) for (p, d, v), (s, b) in AFFINITIES.items()],
                                "profile_id string, dimension string, value string, as_of date, score double, band string")
    rows = C.evaluate(plan, profiles, events, aff).collect()
    got: dict[str, set[str]] = {n: set() for n in RULES}
    for r in rows:
        got[r.audience].add(r.profile_id)
    return plan, got


def _expected():
    evs = _events()
    done: dict[str, set[str]] = {}
    for name in ORDER:  # RULES lists referenced audiences first
        done[name] = {p["profile_id"] for p in _profiles()
                      if ref_rule(RULES[name], p, [e for e in evs if e["profile_id"] == p["profile_id"]], done)}
    return done


@pytest.mark.parametrize("name", ORDER)
def test_every_operator_window_and_condition_matches_the_reference(evaluated, name):
    _, got = evaluated
    want = _expected()[name]
    assert got[name] == want


def test_reference_cases_are_not_trivial():
    # each audience picks some profiles but not all, so a broken operator cannot pass by accident
    want = _expected()
    trivial = [n for n, s in want.items() if not s or len(s) == 12]
    assert len(trivial) <= 3, trivial


def test_one_event_scan_for_all_audiences(evaluated):
    plan, _ = evaluated
    n_event = sum(1 for r in RULES.values() if "event" in json.dumps(r))
    assert len(plan.event_conditions) >= 20 and len(plan.event_conditions) <= n_event
    # one aggregation over events no matter how many conditions: a single Aggregate node in the event branch
    assert plan.since == dt.date(2026, 9, 3)  # the widest window (60 days) bounds the one scan


@pytest.mark.parametrize("op,value,presence", [
    (">", 0, True), (">=", 1, True), ("=", 0, True), ("<", 1, True), ("<=", 0, True), ("!=", 0, True),
    (">", 0.5, True), ("=", 1.5, True), (">=", 2, False), (">", 1, False), ("=", 1, False), ("!=", 1, False),
    ("<=", 1, False), ("<", 2, False)])
def test_presence_only_exactly_when_every_count_from_one_up_answers_alike(op, value, presence):
    from cdp_spark.audiences.config import Aggregate

    g = Aggregate(op=op, value=value)
    assert C.presence_only(g) is presence
    answers = {_cmp(n, op, value) for n in range(1, 50)}
    assert (len(answers) == 1) is presence
    assert not C.presence_only(Aggregate(fn="sum", property="price", op=op, value=value))


def test_as_of_reproducible(spark):
    aud = [Audience.model_validate({"name": "recent", "rule": {"event": {"name": NAMES, "within": {"days": 3}}}})]
    profiles = spark.createDataFrame(_profiles(), PROFILE_SCHEMA)
    base = _events()
    later = base + [{**base[1], "event_id": f"later{i}", "profile_id": f"p{i:02d}", "event_time": END + dt.timedelta(days=1, hours=i),
                     "event_date": AS_OF + dt.timedelta(days=1)} for i in range(12)]
    def members(evs, as_of):
        plan = C.compile_audiences(aud, as_of)
        return sorted(r.profile_id for r in C.evaluate(plan, profiles, spark.createDataFrame(evs, EVENT_SCHEMA)).collect())
    first = members(base, AS_OF)
    assert first == members(later, AS_OF)             # later data does not change an earlier as-of
    assert first != members(later, AS_OF + dt.timedelta(days=1))  # the next day sees the new events


def test_variants_split_within_tolerance_and_are_stable(spark):
    from pyspark.sql import functions as F

    spec = {"name": "ab", "rule": {"identifier": "email"},
            "variants": [{"name": "a", "weight": 45}, {"name": "b", "weight": 45}, {"name": "holdout", "weight": 10, "holdout": True}]}
    n = 20000

    def population(prefix, start, stop):
        return spark.range(start, stop).select(F.concat(F.lit(prefix), F.col("id").cast("string")).alias("profile_id"),
                                               F.create_map(F.lit("email"), F.array(F.lit("x"))).alias("identifiers"))

    plan = C.compile_audiences([Audience.model_validate(spec)], AS_OF)
    first = C.evaluate(plan, population("prof-", 0, n), None).localCheckpoint()
    counts = {r.variant: r["count"] for r in first.groupBy("variant").count().collect()}
    chi = stats.chisquare([counts["a"], counts["b"], counts["holdout"]], [n * 0.45, n * 0.45, n * 0.10])
    assert sum(counts.values()) == n and chi.pvalue > 0.001, counts
    # stable: a different population (half the profiles gone, new ones in) keeps every remaining profile's variant
    second = C.evaluate(plan, population("prof-", n // 2, n).unionByName(population("new-", 0, 3000)), None)
    joined = first.alias("f").join(second.alias("s"), "profile_id")
    assert joined.count() == n // 2 and joined.where(F.col("f.variant") != F.col("s.variant")).count() == 0
    # another salt reshuffles about 1 - (0.45^2 + 0.45^2 + 0.1^2) = 58.5 % of the profiles
    other = C.compile_audiences([Audience.model_validate({**spec, "salt": "other"})], AS_OF)
    third = C.evaluate(other, population("prof-", 0, n), None)
    moved = first.alias("f").join(third.alias("t"), "profile_id").where(F.col("f.variant") != F.col("t.variant")).count()
    assert abs(moved / n - 0.585) < 0.03


def test_unknown_reference_and_cycle_are_refused_when_compiling():
    a = Audience.model_validate({"name": "a", "rule": {"audience": "b"}})
    b = Audience.model_validate({"name": "b", "rule": {"not": {"audience": "a"}}})
    with pytest.raises(C.AudienceError, match="cycle: a -> b -> a"):
        C.compile_audiences([a, b], AS_OF)
    with pytest.raises(C.AudienceError, match=r"audience a: rule.audience: unknown or disabled audience 'b'"):
        C.compile_audiences([a], AS_OF)


def test_checks_against_the_profile_view_and_raw_keys():
    aud = [Audience.model_validate({"name": "x", "rule": {"all": [{"identifier": "email"},
                                                                    {"attribute": {"field": "nope", "op": ">", "value": 1}}]}})]
    with pytest.raises(C.AudienceError, match=r"audience x: rule.all.1: attribute.field: unknown attribute 'nope'"):
        C.check_against(C.compile_audiences(aud, AS_OF), PROFILE_SCHEMA)
    aud = [Audience.model_validate({"name": "y", "rule": {"attribute": {"field": "favourite_category", "op": ">", "value": "a"}}})]
    with pytest.raises(C.AudienceError, match="cannot compare a string field with '>'"):
        C.check_against(C.compile_audiences(aud, AS_OF), PROFILE_SCHEMA)
    ev = [Audience.model_validate({"name": "z", "rule": {"event": {"name": "x", "where": [
        {"field": "properties.colour", "op": "=", "value": "red"}]}}})]
    with pytest.raises(C.AudienceError, match=r"rule.event.where.0: unknown event property 'properties.colour'"):
        C.check_against(C.compile_audiences(ev, AS_OF), PROFILE_SCHEMA, {"properties.coupon": "string"})
    num = [Audience.model_validate({"name": "n", "rule": {"event": {"name": "x", "where": [
        {"field": "properties.coupon", "op": ">", "value": 3}]}}})]
    with pytest.raises(C.AudienceError, match="cannot compare a string field"):
        C.check_against(C.compile_audiences(num, AS_OF), PROFILE_SCHEMA, {"properties.coupon": "string"})
    C.check_against(C.compile_audiences(num, AS_OF), PROFILE_SCHEMA, {"properties.coupon": "long"})


def test_missing_scores_and_affinities_match_nobody_and_are_reported(spark):
    aud = [Audience.model_validate({"name": "s", "rule": {"any": [{"score": {"field": "p_alive", "op": ">", "value": 0}},
                                                                  {"affinity": {"value": "books", "band": "High"}}]}})]
    plan = C.compile_audiences(aud, AS_OF)
    schema = T.StructType([f for f in PROFILE_SCHEMA.fields if f.name != "scores"])
    profiles = spark.createDataFrame([{k: v for k, v in p.items() if k != "scores"} for p in _profiles()], schema)
    assert C.evaluate(plan, profiles, None, None).count() == 0
    assert C.unavailable(plan, set()) == {"scores": ["s"], "affinities": ["s"]}


# ---- relative times: one parser, the same unit everywhere (h hours, d days, w weeks)

@pytest.mark.parametrize("text, offset", [("-6h", dt.timedelta(hours=6)), ("-6d", dt.timedelta(days=6)),
                                          ("-2w", dt.timedelta(weeks=2)), ("30d", dt.timedelta(days=30)),
                                          ("-6m", None), ("2026-11-01", None), ("-h", None)])
def test_relative_offsets(text, offset):
    from cdp_spark.audiences.config import relative_offset

    assert relative_offset(text) == offset


@pytest.mark.parametrize("value, days_back", [("-6h", 1), ("-36h", 2), ("-3d", 3), ("-2w", 14)])
def test_relative_values_in_trait_filters_mean_what_they_mean_in_windows(spark, value, days_back):
    """``signup_date >= value`` keeps the profiles who signed up at or after (start of the as-of day - offset);
    ``-6h`` used to count 6 days there while it counted 6 hours in ``between`` windows."""
    rows = [{**_profiles()[0], "profile_id": f"d{k:02d}",
             "traits": {"first_name": "x", "country": "GB", "signup_date": AS_OF - dt.timedelta(days=k)}}
            for k in range(20)]
    aud = Audience.model_validate({"name": "recent_signups",
                                   "rule": {"trait": {"field": "signup_date", "op": ">=", "value": value}}})
    plan = C.compile_audiences([aud], AS_OF)
    events = spark.createDataFrame([], EVENT_SCHEMA)
    got = {r.profile_id for r in C.evaluate(plan, spark.createDataFrame(rows, PROFILE_SCHEMA), events).collect()}
    assert got == {f"d{k:02d}" for k in range(days_back + 1)}
    window = C.window(Audience.model_validate({"name": "w", "rule": {"event": {
        "name": "x", "between": {"start": value}}}}).rule.event, AS_OF)
    assert window[0] == END - {"h": dt.timedelta(hours=int(value[1:-1])), "d": dt.timedelta(days=int(value[1:-1])),
                               "w": dt.timedelta(weeks=int(value[1:-1]))}[value[-1]]


def test_relative_values_on_timestamp_fields_keep_the_hours():
    f = C.relative_value("-6h", AS_OF, "timestamp")
    assert f == dt.datetime(2026, 10, 31, 18, 0)
