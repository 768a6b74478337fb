"""Config models for ingestion: the catalogue, sources (with enrichers, consent, expectations) and route rules.

A source mapping that names a field missing from the catalogue is a config error naming the source file and key
(`catalogue_problems`, the ingest domain's cross-section check).

Example:
    >>> Catalogue(fields={"email": {"group": "identifier", "type": "string", "pii": "pii", "normaliser": "email"}}).fields["email"].pii
    'pii'
"""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from cdp_spark.config_base import Strict
from cdp_spark.domain_spec import ConfigProblem


# Event fields with a bronze.events column of their own; any other catalogue field of group `event` that a source
# maps lands in the event's `properties` JSON (see `config_notes`).
EVENT_COLUMNS = ["page_url", "product_id", "category", "order_id", "price", "quantity", "currency", "revenue"]
BRONZE_EVENT_FIELDS = frozenset([*EVENT_COLUMNS, "event_id", "event_name", "event_time", "revenue_reporting"])

FieldType = Literal["string", "long", "double", "boolean", "timestamp", "date"]
Normaliser = Literal["none", "trim", "lower", "email", "phone", "country", "currency", "timestamp"]

class CatalogueField(Strict):
    """One canonical field: group, type, PII class and normaliser."""

    group: Literal["identifier", "trait", "consent", "event"]
    type: FieldType = "string"
    pii: Literal["none", "pii", "sensitive"] = "none"
    normaliser: Normaliser = "trim"
    channel: str | None = Field(None, description="consent fields: the channel (email, sms, ads, ...)")
    description: str = ""


class Catalogue(Strict):
    """The organisation-wide canonical fields, plus the reporting currency for converted amounts."""

    reporting_currency: str = "EUR"
    fields: dict[str, CatalogueField] = Field(default_factory=dict)

    def group(self, name: str) -> list[str]:
        return [f for f, spec in self.fields.items() if spec.group == name]


# ---- enrichers: each a pure DataFrame transform, discriminated by `type` ----
class Flatten(Strict):
    """Nested structs -> dotted top-level columns, expanding `depth` levels of structs (the raw record is kept)."""

    type: Literal["flatten"]
    depth: int = Field(3, ge=1, le=10)


class ParseDatetime(Strict):
    """Parse `column` with the first matching format; values without an offset are read in `timezone`."""

    type: Literal["parse_datetime"]
    column: str
    output: str | None = None
    formats: list[str] = Field(default_factory=list, description="Spark datetime patterns, 'epoch_s' or 'epoch_ms'; empty = ISO-8601")
    timezone: str = "UTC"


class RatesTable(Strict):
    path: str
    format: Literal["csv", "delta"] = "csv"
    currency_column: str = "currency"
    rate_column: str = Field("rate_to_eur", description="units of the rates' base currency per unit of `currency`")


class ConvertCurrency(Strict):
    """amount (in `currency`) -> `output` in the catalogue's reporting currency, from a rates table."""

    type: Literal["convert_currency"]
    amount: str
    currency: str
    output: str
    rates: RatesTable


class Constant(Strict):
    type: Literal["constant"]
    output: str
    value: Any


class Derive(Strict):
    """A column from a Spark SQL expression, e.g. consent derived from a CRM flag."""

    type: Literal["derive"]
    output: str
    expr: str


class ValueMap(Strict):
    type: Literal["value_map"]
    column: str
    output: str | None = None
    values: dict[str, Any]
    default: Any = None
    keep_unmapped: bool = Field(True, description="keep the original value when it is not in `values`")


class RegexExtract(Strict):
    type: Literal["regex_extract"]
    column: str
    output: str
    pattern: str
    group: int = Field(1, ge=0)


class Hash(Strict):
    type: Literal["hash"]
    column: str
    output: str | None = None
    algorithm: Literal["sha256", "sha512", "md5"] = "sha256"


Enricher = Annotated[
    Union[Flatten, ParseDatetime, ConvertCurrency, Constant, Derive, ValueMap, RegexExtract, Hash],
    Field(discriminator="type"),
]


class Expectation(Strict):
    """A data-quality rule on a catalogue field (`field`) or a whole row (`check: sql`)."""

    name: str | None = None
    field: str | None = None
    check: Literal["not_null", "valid", "regex", "range", "allowed", "sql"]
    pattern: str | None = None
    min: float | None = None
    max: float | None = None
    values: list[Any] | None = None
    expr: str | None = None
    action: Literal["warn", "drop", "fail"] = "drop"

    @model_validator(mode="after")
    def _arguments(self) -> "Expectation":
        needs = {"regex": "pattern", "allowed": "values", "sql": "expr"}
        if self.check in needs and getattr(self, needs[self.check]) is None:
            raise ValueError(f"check {self.check!r} needs {needs[self.check]!r}")
        if self.check == "range" and self.min is None and self.max is None:
            raise ValueError("check 'range' needs 'min' and/or 'max'")
        if self.check != "sql" and self.field is None:
            raise ValueError(f"check {self.check!r} needs 'field'")
        if self.name is None:
            object.__setattr__(self, "name", f"{self.field or 'row'}_{self.check}")
        return self


class ConsentPurpose(Strict):
    """Where a purpose's status comes from: a boolean-like source column and optionally its timestamp column."""

    column: str
    timestamp: str | None = None


class Consent(Strict):
    """Consent mapping. With no purposes mapped, `unmapped: granted` (the documented rule) consents all purposes."""

    unmapped: Literal["granted", "unknown"] = "granted"
    purposes: dict[str, ConsentPurpose] = Field(default_factory=dict)


class Timestamp(Strict):
    field: str
    formats: list[str] = Field(default_factory=list)
    timezone: str = "UTC"


class EventTimeWindow(Strict):
    """How far from its receipt an event time may lie and still be believed; outside, the time is implausible."""

    max_past_days: int = Field(3650, ge=0, description="older event times are implausible (backfills: raise it)")
    max_future_minutes: int = Field(1440, ge=0, description="event times further ahead of the receipt are implausible")


class Source(Strict):
    """One source of data: how to read it and how it maps onto the catalogue."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: Literal["files", "delta", "jdbc"] = "files"
    format: Literal["csv", "json", "parquet"] = "json"
    path: str | None = Field(None, description="folder or URI; may use {demo_dir} and {lake_root}")
    glob: str = "*"
    encoding: str = "UTF-8"
    options: dict[str, str] = Field(default_factory=dict, description="reader options (csv sep/quote, jdbc url/dbtable/driver)")
    role: Literal["events", "profiles", "both"] = "events"
    stream: str | None = Field(None, description="default stream name; defaults to the source name")
    load_mode: Literal["incremental", "snapshot"] = "incremental"
    key: list[str] = Field(default_factory=list, description="record key (snapshot delta computation)")
    timestamp: Timestamp | None = None
    default_country: str = "GB"
    on_changed_file: Literal["reject", "new_version"] = "reject"
    max_delete_share: float = Field(
        0.2, ge=0, le=1, description="snapshot sources: a delivery that would delete more than this share of the "
                                     "current keys is refused (1 allows any; `cdp run ingest --allow-snapshot-deletes "
                                     "<source>` applies one refused delivery)")
    max_field_length: int = Field(4096, ge=1)
    max_nesting_depth: int = Field(400, ge=1, le=10_000, description="JSON records nested deeper are quarantined "
                                   "(too_deep) before any parsing; the record itself is level 1")
    event_time_window: EventTimeWindow = Field(default_factory=EventTimeWindow)
    dedup_days: int = Field(1, ge=0, description="an event whose event_id bronze.events already holds for this "
                            "source within this many days of its event date is a duplicate")
    enrichers: list[Enricher] = Field(default_factory=list)
    mapping: dict[str, str] = Field(default_factory=dict, description="catalogue field -> source column")
    properties_prefix: str | None = Field("properties.", description="source columns copied into properties JSON")
    consent: Consent = Field(default_factory=Consent)
    expectations: list[Expectation] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> "Source":
        if self.kind in ("files", "delta") and not self.path:
            raise ValueError(f"a {self.kind} source needs 'path'")
        if self.kind == "jdbc" and not {"url", "dbtable"} <= set(self.options):
            raise ValueError("a jdbc source needs options.url and options.dbtable")
        if self.kind in ("delta", "jdbc") and self.load_mode != "snapshot":
            raise ValueError(f"a {self.kind} source is read whole each run: use load_mode: snapshot (with a key)")
        if self.load_mode == "snapshot" and self.role != "profiles":
            raise ValueError("load_mode snapshot is for role: profiles")
        if self.load_mode == "snapshot" and not self.key:
            raise ValueError("a snapshot source needs 'key' to compute deltas")
        return self

    @property
    def stream_name(self) -> str:
        return self.stream or self.name


class RouteRule(Strict):
    """Move matching records from one stream to another; highest priority first, ties to the newer rule."""

    name: str
    active: bool = True
    priority: int = 0
    input_stream: str
    output_stream: str
    condition: str
    created: dt.datetime | dt.date = dt.date(1970, 1, 1)
    divert: bool = Field(False, description="the records this rule moves (QA, test traffic) stay in bronze but "
                         "identity, profiles, scores and audiences leave them out")
    include_in: list[Literal["identity", "profiles", "scores", "content", "audiences"]] = Field(
        default_factory=list, description="stages that still use what this diverting rule moved")


def config_notes(config: Any) -> list[str]:
    """What `cdp config check` points out about ingestion that is valid but easy to misread: catalogue event fields
    without a bronze.events column (they land in `properties`) and diverting route rules.

    Example:
        >>> config_notes(config)      # doctest: +SKIP
        ["catalogue field 'campaign' (group event) has no bronze.events column: source web puts it in properties.campaign"]
    """
    notes = []
    catalogue = config.catalogue
    for name, spec in catalogue.fields.items():
        users = [s.name for s in config.sources if name in s.mapping]
        if spec.group == "event" and name not in BRONZE_EVENT_FIELDS and users:
            notes.append(f"catalogue field {name!r} (group event) has no bronze.events column: source(s) "
                         f"{', '.join(users)} put it in properties.{name}")
    for rule in config.routes:
        if rule.divert and rule.active:
            kept = ", ".join(rule.include_in) or "no stage"
            notes.append(f"route {rule.name!r} diverts stream {rule.input_stream} to {rule.output_stream}: kept in "
                         f"bronze, used downstream by {kept}")
    return notes


def catalogue_problems(config: Any) -> list[ConfigProblem]:
    """The ingest domain's cross-section check: every catalogue field a source maps, keys on or takes consent from
    is in the catalogue. A config without a catalogue (a bare one built in code) is not checked.

    Example:
        >>> [p.key for p in catalogue_problems(config)]   # doctest: +SKIP
        [(0, 'mapping', 'emial')]
    """
    known = set(config.catalogue.fields)
    if not known:
        return []
    problems = []
    for i, source in enumerate(config.sources):
        used = [(("mapping", name), name) for name in source.mapping]
        used += [(("key", j), name) for j, name in enumerate(source.key)]
        used += [(("consent", "purposes", name), name) for name in source.consent.purposes]
        problems += [ConfigProblem("sources", (i, *key), name,
                                   f"unknown catalogue field {name!r}; add it to the catalogue or fix the mapping")
                     for key, name in used if name not in known]
    return problems
