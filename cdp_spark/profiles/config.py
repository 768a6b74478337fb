"""Typed profile rules (`conf/profiles.yaml`) and calculated attributes (`conf/attributes.yaml`).

Both are checked against the catalogue when the whole config loads: a trait rule on a field that is not a catalogue
trait, an attribute over an unknown event field or undeclared property, an aggregation of a non-numeric field or a
formula naming an unknown attribute is an error naming the file and the key.

Example:
    >>> cfg = AttributesConfig.model_validate({"attributes": {
    ...     "orders_lifetime": {"kind": "unique_count", "events": ["order_completed"], "field": "order_id"}}})
    >>> cfg.attributes["orders_lifetime"].value_type
    'long'
"""
from __future__ import annotations

import contextvars
import re
from typing import Annotated, Any, Literal

from pydantic import Field, PositiveInt, ValidationInfo, WrapValidator, field_validator, model_validator

from cdp_spark.config_base import Strict

TraitRule = Literal["latest", "first", "most_frequent", "max", "min", "sum", "source_priority"]
ValueType = Literal["string", "long", "double", "boolean", "date", "timestamp", "array<string>", "int"]
PropertyType = Literal["string", "long", "double", "boolean"]
NUMERIC = ("long", "double", "int")

# Columns of bronze.events that attributes may use, with their types (the table's own schema, kept here so that
# config validation needs neither Spark nor the table registry). `properties.<key>` needs a declared property.
EVENT_FIELDS: dict[str, str] = {
    "event_id": "string", "source": "string", "stream": "string", "event_name": "string",
    "event_time": "timestamp", "event_date": "date", "page_url": "string", "product_id": "string",
    "category": "string", "order_id": "string", "price": "double", "quantity": "long", "currency": "string",
    "revenue": "double", "revenue_reporting": "double",
}

# Catalogue facts visible while a CdpConfig validates (set by the wrap validators below), so that errors point at
# the key in profiles.yaml / attributes.yaml. None outside a CdpConfig: then only self-contained checks run.
_CATALOGUE: contextvars.ContextVar[dict[str, tuple[str, str]] | None] = contextvars.ContextVar("cdp_profiles_catalogue",
                                                                                              default=None)
# Attribute name -> kind and declared properties, while one AttributesConfig validates.
_ATTRS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("cdp_attrs", default=None)


def _catalogue_fields(info: ValidationInfo) -> dict[str, tuple[str, str]] | None:
    cat = info.data.get("catalogue") if info.data else None
    if cat is None:
        return None
    return {name: (f.group, f.type) for name, f in cat.fields.items()}


# ---------------------------------------------------------------- profiles.yaml
class TraitConfig(Strict):
    """How one trait is merged from every record that carries it."""

    rule: TraitRule = Field("latest", description="latest | first (by record time) | most_frequent (ties: "
                                                  "alphabetical) | max | min | sum | source_priority")
    sources: list[str] | None = Field(None, description="source_priority: sources in priority order (else the "
                                                        "profiles-level list); unlisted sources rank last")


class ProfilesConfig(Strict):
    """The `profiles` domain: per-trait merge rules and the default source priority."""

    default_rule: TraitRule = Field("latest", description="rule for catalogue traits not listed under `traits`")
    source_priority: list[str] = Field(default_factory=list,
                                       description="sources in priority order for the source_priority rule")
    traits: dict[str, TraitConfig] = Field(default_factory=dict, description="catalogue trait -> merge rule")
    ignore_unknown_consent: bool = Field(
        True, description="a consent status of `unknown` never overrides a known one (it carries no decision)")

    @field_validator("traits")
    @classmethod
    def _catalogue_traits(cls, traits: dict[str, TraitConfig]) -> dict[str, TraitConfig]:
        fields = _CATALOGUE.get()
        if fields is None:
            return traits
        for name, rule in traits.items():
            if fields.get(name, ("", ""))[0] != "trait":
                known = ", ".join(n for n, (g, _) in fields.items() if g == "trait")
                raise ValueError(f"traits.{name}: not a catalogue trait (catalogue traits: {known})")
            if rule.rule == "sum" and fields[name][1] not in NUMERIC:
                raise ValueError(f"traits.{name}: rule sum needs a numeric trait, {name} is {fields[name][1]}")
        return traits

    def rule_for(self, trait: str) -> TraitConfig:
        return self.traits.get(trait) or TraitConfig(rule=self.default_rule)

    def priority_for(self, trait: str) -> list[str]:
        rule = self.rule_for(trait)
        return list(rule.sources if rule.sources is not None else self.source_priority)


def _with_catalogue_profiles(value: Any, handler: Any, info: ValidationInfo) -> Any:
    token = _CATALOGUE.set(_catalogue_fields(info))
    try:
        return handler(value)
    finally:
        _CATALOGUE.reset(token)


ProfilesField = Annotated[ProfilesConfig, WrapValidator(_with_catalogue_profiles)]

# ---------------------------------------------------------------- attributes.yaml
AttributeKind = Literal["count", "sum", "avg", "min", "max", "most_frequent", "first", "last", "unique_list",
                        "unique_count", "days_since_first", "days_since_last", "formula"]
AGGREGATIONS = ("sum", "avg", "min", "max")
SELECTORS = ("most_frequent", "first", "last")
_NEEDS_FIELD = AGGREGATIONS + SELECTORS + ("unique_list", "unique_count")

_SQL_WORDS = frozenset("""
and or not in is null case when then else end true false like ilike rlike between as cast try_cast distinct
interval day days hour hours minute minutes second seconds month months year years week weeks
string int integer bigint long double float boolean date timestamp decimal smallint tinyint
""".split())
_STRINGS = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_IDENT = re.compile(r"`([^`]+)`|([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(\s*\()?")
_NUMBER_SUFFIX = re.compile(r"\d[A-Za-z_]")


def sql_identifiers(expr: str) -> set[str]:
    """Column names used by a SQL expression (string literals, function names and keywords left out).

    Example:
        >>> sorted(sql_identifiers("coalesce(orders, 0) * 2 + IF(country = 'GB', 1, 0) + `x`"))
        ['country', 'orders', 'x']
    """
    text = _STRINGS.sub("''", expr)
    names = set()
    for m in _IDENT.finditer(text):
        if m.group(1) is not None:
            names.add(m.group(1))
            continue
        name, call = m.group(2), m.group(3)
        start = m.start(2)
        if call or name.lower() in _SQL_WORDS or (start and text[start - 1].isdigit()):
            continue  # a function, a keyword, or a literal suffix like 1e5 / 10L
        names.add(name)
    return names


class AttributeDef(Strict):
    """One calculated attribute, evaluated at the run's as-of over the profile's events."""

    kind: AttributeKind = Field(description="count | sum | avg | min | max | most_frequent | first | last | "
                                            "unique_list | unique_count | days_since_first | days_since_last | formula")
    events: list[str] = Field(default_factory=list, description="event names counted (any of); empty: every event")
    where: str | None = Field(None, description="extra SQL filter over event fields, e.g. \"source = 'orders'\"")
    window_days: PositiveInt | None = Field(None, description="only events of the as-of day and the N-1 days before; "
                                                              "unset: the whole history")
    field: str | None = Field(None, validate_default=True,
                               description="event field or `properties.<key>` the attribute reads")
    expr: str | None = Field(None, description="formula: a SQL expression over other attributes and traits")
    type: ValueType | None = Field(None, description="formula: result type (default double)")
    max_items: PositiveInt = Field(50, description="unique_list: keep at most this many values (alphabetical)")
    description: str = ""

    @field_validator("events")
    @classmethod
    def _lower(cls, events: list[str]) -> list[str]:
        return [e.lower() for e in events]  # the catalogue normalises event names to lower case

    @field_validator("where")
    @classmethod
    def _known_filter_fields(cls, where: str | None) -> str | None:
        if where is not None:
            for name in sorted(sql_identifiers(where)):
                _field_type(name)
        return where

    @field_validator("field")
    @classmethod
    def _known_field(cls, field: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if field is None:
            if kind in _NEEDS_FIELD:
                raise ValueError(f"kind {kind} needs a `field`")
            return field
        if kind in ("days_since_first", "days_since_last", "formula"):
            raise ValueError(f"kind {kind} takes no `field`")
        ftype = _field_type(field)
        if kind in AGGREGATIONS and ftype not in NUMERIC:
            raise ValueError(f"{kind} needs a numeric field; {field} is {ftype}")
        return field

    @field_validator("expr")
    @classmethod
    def _known_references(cls, expr: str | None, info: ValidationInfo) -> str | None:
        if expr is None:
            return expr
        if info.data.get("kind") != "formula":
            raise ValueError("only a formula takes `expr`")
        scope = _ATTRS.get() or {}
        attrs, traits = scope.get("names"), scope.get("traits") or []
        if attrs is None:
            return expr
        unknown = sorted(n for n in sql_identifiers(expr) if n not in set(attrs) | set(traits))
        if unknown:
            raise ValueError(f"unknown attribute or trait {', '.join(unknown)} in the formula "
                             f"(attributes: {', '.join(attrs)}; traits: {', '.join(traits) or 'none'})")
        return expr

    @model_validator(mode="after")
    def _shape(self) -> "AttributeDef":
        if self.kind == "formula":
            if self.expr is None:
                raise ValueError("a formula needs `expr`")
            if self.events or self.where or self.window_days:
                raise ValueError("a formula reads other attributes: no events, where or window_days")
        elif self.type is not None:
            raise ValueError("`type` is only for formulas (other kinds have a fixed type)")
        return self

    @property
    def value_type(self) -> str:
        """The attribute's type in the profile view: counts long, sums/avgs/min/max double, selectors string,
        unique lists array<string>, recency int days, formulas their declared type (default double)."""
        if self.kind in ("count", "unique_count"):
            return "long"
        if self.kind in AGGREGATIONS:
            return "double"
        if self.kind in SELECTORS:
            return "string"
        if self.kind == "unique_list":
            return "array<string>"
        if self.kind in ("days_since_first", "days_since_last"):
            return "int"
        return self.type or "double"


def _field_type(name: str) -> str:
    if name.startswith("properties."):
        props = (_ATTRS.get() or {}).get("properties")
        key = name.removeprefix("properties.")
        if props is not None and key not in props:
            raise ValueError(f"unknown event property {key!r}; declare it under `properties` with its type")
        return (props or {}).get(key, "string")
    if name not in EVENT_FIELDS:
        raise ValueError(f"unknown event field {name!r} (event fields: {', '.join(EVENT_FIELDS)}; "
                         "or properties.<key>)")
    return EVENT_FIELDS[name]


class AttributesConfig(Strict):
    """The `attributes` domain: declared event properties and the calculated attributes."""

    properties: dict[str, PropertyType] = Field(
        default_factory=dict, description="event properties (keys of the events' `properties` JSON) and their types")
    attributes: dict[str, AttributeDef] = Field(default_factory=dict, description="attribute name -> definition")

    @model_validator(mode="wrap")
    @classmethod
    def _scope(cls, data: Any, handler: Any) -> Any:
        if not isinstance(data, dict):
            return handler(data)
        outer = _ATTRS.get() or {}
        attrs = data.get("attributes") if isinstance(data.get("attributes"), dict) else {}
        props = data.get("properties") if isinstance(data.get("properties"), dict) else {}
        token = _ATTRS.set({**outer, "names": [str(a) for a in attrs], "properties": dict(props)})
        try:
            return handler(data)
        finally:
            _ATTRS.reset(token)

    @field_validator("attributes")
    @classmethod
    def _names_and_order(cls, attrs: dict[str, AttributeDef]) -> dict[str, AttributeDef]:
        traits = (_ATTRS.get() or {}).get("traits") or ()
        for name in attrs:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"attribute name {name!r}: use lower-case letters, digits and _")
            if name in traits:
                raise ValueError(f"attribute name {name!r} is also a trait; formulas could not tell them apart")
        formula_order(attrs)  # raises on a cycle
        return attrs

    def formulas(self) -> list[str]:
        """Formula attributes in evaluation order (each after the formulas it reads)."""
        return formula_order(self.attributes)


def formula_order(attrs: dict[str, AttributeDef]) -> list[str]:
    """Formulas topologically sorted by their references; a cycle is an error naming the attributes."""
    deps = {n: {r for r in sql_identifiers(a.expr or "") if r in attrs and attrs[r].kind == "formula"}
            for n, a in attrs.items() if a.kind == "formula"}
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            raise ValueError(f"formula cycle: {' -> '.join(path + [n])}")
        state[n] = 1
        for d in sorted(deps[n]):
            visit(d, path + [n])
        state[n] = 2
        order.append(n)

    for n in deps:
        visit(n, [])
    return order


def _with_catalogue_attributes(value: Any, handler: Any, info: ValidationInfo) -> Any:
    fields = _catalogue_fields(info)
    traits = [n for n, (g, _) in fields.items() if g == "trait"] if fields is not None else None
    token = _ATTRS.set({"traits": traits})
    try:
        return handler(value)
    finally:
        _ATTRS.reset(token)


AttributesField = Annotated[AttributesConfig, WrapValidator(_with_catalogue_attributes)]
