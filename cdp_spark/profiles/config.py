"""Typed profile rules (`conf/profiles.yaml`) and calculated attributes (`conf/attributes.yaml`).

An attribute over an unknown event field or undeclared property, or an aggregation of a non-numeric field, is an
error of the section itself. A trait rule on a field that is not a catalogue trait, or a formula naming neither an
attribute nor a trait, is found by `catalogue_problems` (the profiles domain's cross-section check) once the whole
config is valid. Either error names the file and the key.

Example:
    >>> cfg = AttributesConfig.model_validate({"attributes": {
    ...     "orders_lifetime": {"kind": "unique_count", "events": ["order_completed"], "field": "order_id"}}})
    >>> cfg.attributes["orders_lifetime"].value_type
    'long'
"""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, PositiveInt, ValidationInfo, field_validator, model_validator

from cdp_spark.config_base import KeyedValueError, Strict
from cdp_spark.domain_spec import ConfigProblem

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

    def rule_for(self, trait: str) -> TraitConfig:
        return self.traits.get(trait) or TraitConfig(rule=self.default_rule)

    def priority_for(self, trait: str) -> list[str]:
        rule = self.rule_for(trait)
        return list(rule.sources if rule.sources is not None else self.source_priority)


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
                _event_field_type(name)  # properties: checked by AttributesConfig against its declared ones
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
        ftype = _event_field_type(field)
        if kind in AGGREGATIONS and ftype is not None and ftype not in NUMERIC:
            raise ValueError(f"{kind} needs a numeric field; {field} is {ftype}")
        return field

    @field_validator("expr")
    @classmethod
    def _formula_only(cls, expr: str | None, info: ValidationInfo) -> str | None:
        if expr is not None and info.data.get("kind") != "formula":
            raise ValueError("only a formula takes `expr`")
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


def _event_field_type(name: str) -> str | None:
    """The type of a bronze.events column; None for ``properties.<key>`` (its type is declared beside the
    attributes)."""
    if name.startswith("properties."):
        return None
    if name not in EVENT_FIELDS:
        raise ValueError(f"unknown event field {name!r} (event fields: {', '.join(EVENT_FIELDS)}; "
                         "or properties.<key>)")
    return EVENT_FIELDS[name]


class AttributesConfig(Strict):
    """The `attributes` domain: declared event properties and the calculated attributes."""

    properties: dict[str, PropertyType] = Field(
        default_factory=dict, description="event properties (keys of the events' `properties` JSON) and their types")
    attributes: dict[str, AttributeDef] = Field(default_factory=dict, description="attribute name -> definition")

    @field_validator("attributes")
    @classmethod
    def _names_and_order(cls, attrs: dict[str, AttributeDef]) -> dict[str, AttributeDef]:
        for name in attrs:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"attribute name {name!r}: use lower-case letters, digits and _")
        formula_order(attrs)  # raises on a cycle
        return attrs

    @model_validator(mode="after")
    def _declared_properties(self) -> "AttributesConfig":
        for name, attr in self.attributes.items():
            used = [("where", f) for f in sorted(sql_identifiers(attr.where or ""))] + [("field", attr.field or "")]
            for key, field in used:
                if not field.startswith("properties."):
                    continue  # event columns: checked by AttributeDef itself
                prop = field.removeprefix("properties.")
                if prop not in self.properties:
                    raise KeyedValueError(f"unknown event property {prop!r}; declare it under `properties` with its "
                                          "type", key=("attributes", name, key), value=getattr(attr, key))
                if key == "field" and attr.kind in AGGREGATIONS and self.properties[prop] not in NUMERIC:
                    raise KeyedValueError(f"{attr.kind} needs a numeric field; {field} is {self.properties[prop]}",
                                          key=("attributes", name, key), value=field)
        return self

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


def catalogue_problems(config: Any) -> list[ConfigProblem]:
    """The profiles domain's cross-section check: trait rules name catalogue traits (numeric ones for ``sum``),
    formulas name only attributes and traits, and no attribute is named like a trait.

    Example:
        >>> [(p.section, p.key) for p in catalogue_problems(config)]      # doctest: +SKIP
        [('profiles', ('traits', 'shoe_size'))]
    """
    fields = {name: (f.group, f.type) for name, f in config.catalogue.fields.items()}
    traits = [n for n, (group, _) in fields.items() if group == "trait"]
    problems = []
    for name, rule in config.profiles.traits.items():
        if name not in traits:
            problems.append(ConfigProblem("profiles", ("traits", name), name,
                                          f"not a catalogue trait (catalogue traits: {', '.join(traits) or 'none'})"))
        elif rule.rule == "sum" and fields[name][1] not in NUMERIC:
            problems.append(ConfigProblem("profiles", ("traits", name, "rule"), "sum",
                                          f"rule sum needs a numeric trait, {name} is {fields[name][1]}"))
    attrs = config.attributes.attributes
    for name, attr in attrs.items():
        if name in traits:
            problems.append(ConfigProblem("attributes", ("attributes", name), name,
                                          f"attribute name {name!r} is also a trait; formulas could not tell them "
                                          "apart"))
        unknown = sorted(n for n in sql_identifiers(attr.expr or "") if n not in attrs and n not in traits)
        if unknown:
            problems.append(ConfigProblem("attributes", ("attributes", name, "expr"), attr.expr,
                                          f"unknown attribute or trait {', '.join(unknown)} in the formula "
                                          f"(attributes: {', '.join(attrs)}; traits: {', '.join(traits) or 'none'})"))
    return problems
