"""Audience definitions: a tree of clauses (`all`, `any`, `not`/`exclude`) over events, traits, calculated
attributes, scores, affinities, consent, identifiers and other audiences; plus A/B variants.

One YAML file per audience in ``conf/audiences/``. Errors name the file (the loader adds it), the clause path
(pydantic's location, e.g. ``rule.all.1.event.where.0``) and the reason. What needs the rest of the config (names
and references across audiences, traits, attributes, consent purposes and identifier types) is checked by
`reference_problems`, the audiences domain's cross-section check, once every section is valid.

Example:
    >>> a = Audience.model_validate({"name": "buyers", "rule": {"event": {"name": "order_completed"}}})
    >>> a.rule.event.window_label()
    'within 30 days'
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal, Optional, Union

from pydantic import Field, PositiveInt, field_validator, model_validator

from cdp_spark.config_base import Strict
from cdp_spark.domain_spec import ConfigProblem

Op = Literal["=", "!=", ">", ">=", "<", "<=", "in", "not_in", "contains", "starts_with", "regex", "exists",
             "not_exists"]
ORDER_OPS = {">", ">=", "<", "<="}
TEXT_OPS = {"contains", "starts_with", "regex"}
NO_VALUE_OPS = {"exists", "not_exists"}

# The scores contract (gold.profile_scores), known without Spark data so definitions are checked at load.
SCORE_FIELDS: dict[str, str] = {
    "rfm_recency_days": "int", "rfm_frequency": "bigint", "rfm_monetary": "double", "rfm_r": "int", "rfm_f": "int",
    "rfm_m": "int", "rfm_segment": "string", "clv_horizon_days": "int", "expected_purchases": "double",
    "p_alive": "double", "clv": "double", "clv_percentile": "double", "propensity_purchase": "double",
    "propensity_churn": "double",
}
# bronze.events columns an event filter or aggregate may use (others live in `properties.<key>`).
EVENT_FIELDS: dict[str, str] = {
    "source": "string", "stream": "string", "event_name": "string", "page_url": "string", "product_id": "string",
    "category": "string", "order_id": "string", "price": "double", "quantity": "bigint", "currency": "string",
    "revenue": "double", "revenue_reporting": "double", "event_time": "timestamp", "event_date": "date",
}
NUMERIC = {"int", "bigint", "double", "float", "smallint", "tinyint", "decimal"}
_RELATIVE = re.compile(r"^-?(\d+)([hdw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def relative_offset(value: Any) -> dt.timedelta | None:
    """How far back a relative time reaches: ``-6h`` 6 hours, ``-14d`` 14 days, ``-2w`` 2 weeks (the minus is
    optional); None when ``value`` is not one. The one parser of relative times, for filters and windows alike.

    Example:
        >>> relative_offset("-6h"), relative_offset("-2w"), relative_offset("2026-11-01")
        (datetime.timedelta(seconds=21600), datetime.timedelta(days=14), None)
    """
    m = _RELATIVE.match(value.strip()) if isinstance(value, str) else None
    return dt.timedelta(**{_UNITS[m.group(2)]: int(m.group(1))}) if m else None


def type_problem(field_type: str | None, op: str, value: Any) -> str | None:
    """Why ``op value`` cannot apply to a field of ``field_type`` (Spark simpleString), or None when it can.

    Example:
        >>> type_problem("string", ">", 5)
        "cannot compare a string field with '>'"
        >>> type_problem("double", ">", 5) is None
        True
    """
    if field_type is None or op in NO_VALUE_OPS:  # unknown type (raw event properties): checked at run time
        return None
    base = field_type.split("(")[0]
    values = value if isinstance(value, list) else [value]
    if base == "string":
        if op in ORDER_OPS:
            return f"cannot compare a string field with {op!r}"
        return None
    if base in NUMERIC:
        if op in TEXT_OPS:
            return f"{op!r} needs a text field, this one is {field_type}"
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))]
        return f"{field_type} field compared with non-numeric {bad[0]!r}" if bad else None
    if base in ("date", "timestamp"):
        if op in TEXT_OPS:
            return f"{op!r} needs a text field, this one is {field_type}"
        for v in values:
            if isinstance(v, (dt.date, dt.datetime)) or relative_offset(v) is not None:
                continue
            try:
                dt.date.fromisoformat(str(v)[:10])
            except ValueError:
                return (f"{field_type} field compared with {v!r}; expected a date YYYY-MM-DD or a relative time "
                        "-Nh, -Nd or -Nw")
        return None
    if base == "boolean":
        if op not in ("=", "!="):
            return f"a boolean field takes '=' or '!=', not {op!r}"
        return None if all(isinstance(v, bool) for v in values) else f"boolean field compared with {value!r}"
    if base.startswith("array"):
        return None if op == "contains" else f"a list field takes 'contains' or 'exists', not {op!r}"
    return None


class Filter(Strict):
    """``field op value``; strings compare case-insensitively unless ``case_sensitive``."""

    field: str = Field(min_length=1)
    op: Op = "="
    value: Any = None
    case_sensitive: bool = False

    @model_validator(mode="after")
    def _value_fits_op(self) -> "Filter":
        if self.op in NO_VALUE_OPS:
            return self
        if self.value is None:
            raise ValueError(f"op {self.op!r} needs a value")
        if self.op in ("in", "not_in"):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"op {self.op!r} needs a non-empty list of values")
        elif isinstance(self.value, (list, dict)):
            raise ValueError(f"op {self.op!r} needs a single value, got a {type(self.value).__name__}")
        if self.op == "regex":
            try:
                re.compile(str(self.value))
            except re.error as exc:
                raise ValueError(f"invalid regex: {exc}") from None
        return self


class Within(Strict):
    """A trailing window ending at the run's as-of time (end of the as-of day): N days or N hours."""

    days: Optional[PositiveInt] = None
    hours: Optional[PositiveInt] = None

    @model_validator(mode="after")
    def _one(self) -> "Within":
        if (self.days is None) == (self.hours is None):
            raise ValueError("give exactly one of days or hours")
        return self


def _check_point(v: Any) -> Any:
    if isinstance(v, dt.date) or relative_offset(v) is not None:
        return v
    try:
        return dt.date.fromisoformat(str(v))
    except ValueError:
        raise ValueError(f"expected a date YYYY-MM-DD or a relative time like -6h, -14d or -2w, got {v!r}") from None


class Between(Strict):
    """From ``start`` to ``end`` (inclusive days): absolute dates or times before the end of the as-of day
    (``-6h``, ``-14d``, ``-2w``)."""

    start: Union[dt.date, str]
    end: Union[dt.date, str] = "0d"

    _points = field_validator("start", "end")(_check_point)


class Aggregate(Strict):
    """The aggregate over matching events compared with a value; default ``count > 0``."""

    fn: Literal["count", "sum", "avg", "min", "max"] = "count"
    property: Optional[str] = None
    op: Literal["=", "!=", ">", ">=", "<", "<="] = ">"
    value: float = 0

    @model_validator(mode="after")
    def _property(self) -> "Aggregate":
        if self.fn != "count" and not self.property:
            raise ValueError(f"aggregate {self.fn!r} needs a property")
        return self


class EventCondition(Strict):
    """Events by name, filtered by properties, in a window, aggregated and compared (default count > 0 within 30 days)."""

    name: Union[str, list[str]]
    where: list[Filter] = Field(default_factory=list)
    within: Optional[Within] = None
    between: Optional[Between] = None
    aggregate: Aggregate = Field(default_factory=Aggregate)

    @field_validator("name")
    @classmethod
    def _names(cls, v: Union[str, list[str]]) -> list[str]:
        names = [v] if isinstance(v, str) else list(v)
        if not names or any(not str(n).strip() for n in names):
            raise ValueError("needs one or more event names")
        return sorted({str(n).strip().lower() for n in names})  # bronze event names are lower-cased

    @model_validator(mode="after")
    def _window(self) -> "EventCondition":
        if self.within is not None and self.between is not None:
            raise ValueError("give within or between, not both")
        if self.within is None and self.between is None:
            object.__setattr__(self, "within", Within(days=30))
        for i, f in enumerate(self.where):
            _check_event_field(f.field, f"where.{i}.field")
            problem = type_problem(EVENT_FIELDS.get(f.field), f.op, f.value)
            if problem:
                raise ValueError(f"where.{i}: {f.field}: {problem}")
        if self.aggregate.property:
            _check_event_field(self.aggregate.property, "aggregate.property")
            t = EVENT_FIELDS.get(self.aggregate.property)
            if t is not None and t not in NUMERIC:
                raise ValueError(f"aggregate.property: {self.aggregate.fn} needs a numeric property, "
                                 f"{self.aggregate.property} is {t}")
        return self

    def window_label(self) -> str:
        if self.within is not None:
            return f"within {self.within.days} days" if self.within.days else f"within {self.within.hours} hours"
        assert self.between is not None
        return f"between {self.between.start} and {self.between.end}"


def _check_event_field(name: str, where: str) -> None:
    if name in EVENT_FIELDS or (name.startswith("properties.") and len(name) > len("properties.")):
        return
    raise ValueError(f"{where}: unknown event field {name!r} (expected one of {', '.join(EVENT_FIELDS)}, "
                     "or properties.<key>)")


class AffinityCondition(Strict):
    """A profile's affinity for a value of a dimension (gold.affinities): its band, or its score compared."""

    dimension: str = "category"
    value: str
    band: Optional[Literal["Low", "Some", "High"]] = None
    op: Literal["=", "!=", ">", ">=", "<", "<="] = ">="
    score: Optional[float] = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _one(self) -> "AffinityCondition":
        if (self.band is None) == (self.score is None):
            raise ValueError("give exactly one of band or score")
        return self


class ConsentCondition(Strict):
    """The consent state of a purpose (granted, denied or unknown)."""

    purpose: str
    status: Literal["granted", "denied", "unknown"] = "granted"


class IdentifierCondition(Strict):
    """The profile has at least one identifier of this type, e.g. an email."""

    type: str


KINDS = ("all", "any", "not", "exclude", "event", "trait", "attribute", "score", "affinity", "consent",
         "identifier", "audience")


class Clause(Strict):
    """Exactly one of: all / any (lists of clauses), not / exclude (one clause), or one condition."""

    all: Optional[list["Clause"]] = None
    any: Optional[list["Clause"]] = None
    not_: Optional["Clause"] = Field(None, alias="not")
    exclude: Optional["Clause"] = None
    event: Optional[EventCondition] = None
    trait: Optional[Filter] = None
    attribute: Optional[Filter] = None
    score: Optional[Filter] = None
    affinity: Optional[AffinityCondition] = None
    consent: Optional[ConsentCondition] = None
    identifier: Optional[IdentifierCondition] = None
    audience: Optional[str] = None

    @field_validator("identifier", mode="before")
    @classmethod
    def _identifier_short(cls, v: Any) -> Any:
        return {"type": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _exactly_one(self) -> "Clause":
        given = [k for k in KINDS if self.part(k) is not None]
        if len(given) != 1:
            raise ValueError(f"a clause has exactly one of {', '.join(KINDS)}; got {', '.join(given) or 'none'}")
        if self.kind in ("all", "any") and not self.part(self.kind):
            raise ValueError(f"{self.kind} needs at least one clause")
        problem = static_problem(self, {})  # scores: the rest needs the catalogue (see `reference_problems`)
        if problem:
            raise ValueError(problem)
        return self

    def part(self, kind: str) -> Any:
        return getattr(self, "not_" if kind == "not" else kind)

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if self.part(k) is not None)

    def children(self) -> list["Clause"]:
        k = self.kind
        if k in ("all", "any"):
            return list(self.part(k))
        if k in ("not", "exclude"):
            return [self.part(k)]
        return []

    def walk(self, path: str = "rule"):  # type: ignore[no-untyped-def]
        """(clause path, clause) for this clause and every clause under it, depth first."""
        yield path, self
        k = self.kind
        if k in ("all", "any"):
            for i, c in enumerate(self.part(k)):
                yield from c.walk(f"{path}.{k}.{i}")
        elif k in ("not", "exclude"):
            yield from self.part(k).walk(f"{path}.{k}")


def static_problem(clause: Clause, fields: dict[str, dict[str, str]]) -> str | None:
    """A type or name problem of one condition against known fields (kind -> field -> Spark type), or None.

    ``fields`` may lack a kind (e.g. attributes before the profiles view is known): that kind is not checked.
    """
    k = clause.kind
    if k in ("trait", "attribute", "score"):
        f: Filter = clause.part(k)
        known = SCORE_FIELDS if k == "score" else fields.get(k + "s")
        if known is None:
            return None
        if f.field not in known:
            return f"{k}.field: unknown {k} {f.field!r} (known: {', '.join(sorted(known)) or 'none'})"
        problem = type_problem(known[f.field], f.op, f.value)
        return f"{k}.{f.field}: {problem}" if problem else None
    if k == "consent" and "consent" in fields and clause.consent.purpose not in fields["consent"]:
        return f"consent.purpose: unknown purpose {clause.consent.purpose!r} (known: {', '.join(fields['consent'])})"
    if k == "identifier" and "identifiers" in fields and clause.identifier.type not in fields["identifiers"]:
        return (f"identifier.type: unknown identifier type {clause.identifier.type!r} "
                f"(known: {', '.join(fields['identifiers'])})")
    return None


Clause.model_rebuild()


class Variant(Strict):
    """An A/B arm: a share of the audience (weights are relative), optionally a holdout that is never activated."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    weight: float = Field(gt=0)
    holdout: bool = False


class Audience(Strict):
    """One audience: a name, a rule and optional variants (default: one variant ``all``)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_]{0,62}$", description="lower-case slug; unique")
    description: str = ""
    rule: Clause
    variants: list[Variant] = Field(default_factory=lambda: [Variant(name="all", weight=1)])
    salt: Optional[str] = Field(None, description="variant hash salt; defaults to the name. Changing it reshuffles")
    enabled: bool = True

    @field_validator("variants")
    @classmethod
    def _unique_variants(cls, v: list[Variant]) -> list[Variant]:
        names = [x.name for x in v]
        if not v or len(set(names)) != len(names):
            raise ValueError("variants need unique names, and at least one")
        return v

    @property
    def hash_salt(self) -> str:
        return self.salt or self.name

    def references(self) -> list[str]:
        return sorted({c.audience for _, c in self.rule.walk() if c.kind == "audience"})


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A reference cycle as a path ``[a, b, a]``, or None.

    Example:
        >>> find_cycle({"a": ["b"], "b": ["a"], "c": []})
        ['a', 'b', 'a']
    """
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in graph.get(n, []):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m in graph and state.get(m) is None:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if state.get(n) is None:
            found = visit(n)
            if found:
                return found
    return None


def dependency_order(audiences: list[Audience]) -> list[Audience]:
    """Audiences ordered so that each comes after those it references; raises ValueError on a cycle."""
    by_name = {a.name: a for a in audiences}
    graph = {a.name: [r for r in a.references() if r in by_name] for a in audiences}
    cycle = find_cycle(graph)
    if cycle:
        raise ValueError("audience reference cycle: " + " -> ".join(cycle))
    done: list[str] = []

    def add(n: str) -> None:
        if n in done:
            return
        for m in graph[n]:
            add(m)
        done.append(n)

    for a in audiences:
        add(a.name)
    return [by_name[n] for n in done]


def known_fields(config: Any) -> dict[str, dict[str, str]]:
    """The types (Spark simple strings) the rest of the config gives conditions: the catalogue's traits, consent
    purposes and identifier types, and the calculated attributes, as the profile view types them. Empty without
    a catalogue (a bare config built in code): the compiler checks against the data then.

    Example:
        >>> known_fields(config)["attributes"]["orders_lifetime"]      # doctest: +SKIP
        'bigint'
    """
    if not config.catalogue.fields:
        return {}
    spark = {"long": "bigint"}  # the view's Spark names of the catalogue's and attributes' type names
    groups: dict[str, dict[str, str]] = {"trait": {}, "consent": {}, "identifier": {}}
    for name, f in config.catalogue.fields.items():
        if f.group in groups:
            groups[f.group][name] = spark.get(f.type, f.type)
    attributes = {name: spark.get(a.value_type, a.value_type) for name, a in config.attributes.attributes.items()}
    return {"traits": groups["trait"], "consent": groups["consent"], "identifiers": groups["identifier"],
            "attributes": attributes}


def reference_problems(config: Any) -> list[ConfigProblem]:
    """The audiences domain's cross-section check: names used once, references to defined audiences without
    cycles, and conditions on traits, attributes, consent purposes and identifier types the config defines.

    Example:
        >>> [p.expected for p in reference_problems(config)]     # doctest: +SKIP
        ["expected the name of an audience in conf/audiences/ (defined: a, b)"]
    """
    audiences = config.audiences
    names = [a.name for a in audiences]
    fields = known_fields(config)
    problems = []
    for i, a in enumerate(audiences):
        if names.count(a.name) > 1:
            problems.append(ConfigProblem("audiences", (i, "name"), a.name, "defined in more than one file"))
        for path, c in a.rule.walk():
            key = (i, *path.split("."))
            problem = static_problem(c, fields)
            if problem:
                problems.append(ConfigProblem("audiences", key, None, problem))
            if c.kind != "audience":
                continue
            if c.audience == a.name:
                problems.append(ConfigProblem("audiences", (*key, "audience"), c.audience,
                                              "an audience cannot reference itself"))
            elif c.audience not in names:
                problems.append(ConfigProblem("audiences", (*key, "audience"), c.audience,
                                              f"expected the name of an audience in conf/audiences/ "
                                              f"(defined: {', '.join(sorted(set(names)))})"))
    cycle = find_cycle({a.name: [r for r in a.references() if r != a.name] for a in audiences})
    if cycle:
        i = names.index(cycle[0])
        path = next(p for p, c in audiences[i].rule.walk() if c.kind == "audience" and c.audience == cycle[1])
        problems.append(ConfigProblem("audiences", (i, *path.split("."), "audience"), None,
                                      "reference cycle " + " -> ".join(cycle)))
    return problems
