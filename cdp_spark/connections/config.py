"""Connection definitions (`conf/connections/*.yaml`): which events go from an input to which outputs, filtered,
sampled, consent-gated and reshaped per output.

An input is a source (``{source: web}``) or the collector (``{collector: true}``: every source the collector
feeds). An output reuses activation's transports: a webhook or a file drop (the same keys as a destination's
``transport``), a Delta table (``gold.forwarded_events``) or a Kafka topic.

Example:
    >>> c = Connection.model_validate({"name": "web_events", "input": {"source": "web"},
    ...     "outputs": [{"name": "tool", "transport": {"type": "file"}, "sampling": {"percent": 25}}]})
    >>> c.outputs[0].sampling.percent, c.outputs[0].pii
    (25.0, False)
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator
from typing_extensions import Annotated

from cdp_spark.activation.config import FileTransport, WebhookTransport
from cdp_spark.collect.config import KafkaConfig
from cdp_spark.config_base import Strict, repeated
from cdp_spark.domain_spec import ConfigProblem

NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# Top-level fields of a forwarded event (see cdp_spark.connections.forwarding.payload).
PAYLOAD_FIELDS = ("event_id", "event", "stream", "source", "timestamp", "profile_id", "identifiers", "properties",
                  "traits")
NESTED = ("identifiers", "properties", "traits")
# Columns a `set` expression may read: the event's own fields, plus the three maps by key (properties.coupon).
EXPRESSION_COLUMNS = ("event_id", "event_name", "event_time", "stream", "source", "profile_id", "page_url",
                      "product_id", "category", "order_id", "price", "quantity", "currency", "revenue",
                      "revenue_reporting", *NESTED)
ValueType = Literal["string", "long", "double", "boolean", "timestamp", "date"]


class Input(Strict):
    """Where the events come from: one source, or every source the collector feeds."""

    source: Optional[str] = Field(None, description="a source name from conf/sources/")
    collector: bool = Field(False, description="true: every source of collector.sources")

    @model_validator(mode="after")
    def _one(self) -> "Input":
        if (self.source is None) == (not self.collector):
            raise ValueError("give exactly one of source (a source name) or collector: true")
        return self


class DeltaOutput(Strict):
    """Events appended to gold.forwarded_events (one table for every connection, partitioned by connection)."""

    type: Literal["delta"]


class KafkaOutput(KafkaConfig):
    """Events produced to a Kafka topic (one JSON message per event) with the collector's producer settings
    (idempotent, acks=all); ``topic`` may name ``{source}``. Needs confluent-kafka (`cdp-spark[kafka]`)."""

    type: Literal["kafka"]


class WebhookOutput(WebhookTransport):
    """Activation's webhook (batches with an Idempotency-Key each, retries, rate limit), posting several batches at
    once by default: a stream's micro-batch holds many."""

    concurrency: int = Field(4, ge=1, le=64, description="batches posted at once; 1 posts them one after another")


Transport = Annotated[Union[FileTransport, WebhookOutput, DeltaOutput, KafkaOutput], Field(discriminator="type")]


class DataFilter(Strict):
    """Which events pass, and which of their properties and traits are left out."""

    streams: list[str] = Field(default_factory=list, description="event types (the stream after route rules) that "
                                                                 "pass; empty: all")
    events: list[str] = Field(default_factory=list, description="event names that pass (case-insensitive); empty: all")
    exclude_events: list[str] = Field(default_factory=list, description="event names that never pass")
    drop_properties: list[str] = Field(default_factory=list, description="property keys left out")
    drop_traits: list[str] = Field(default_factory=list, description="trait names left out")


class Sampling(Strict):
    """Deterministic user sampling: a user is in the sample when ``pmod(xxhash64(salt, key), 10000)`` is below
    ``percent`` x 100. The key is the first of ``by`` the event has: ``profile_id`` or an identifier type."""

    percent: float = Field(100.0, ge=0, le=100, description="share of users whose events are sent")
    by: list[str] = Field(default_factory=list, description="key in preference order; default: profile_id, then "
                                                            "every identifier type by identity priority")
    salt: Optional[str] = Field(None, description="default: <connection>.<output>; the same salt keeps the same users")


def _path(value: str) -> str:
    head, _, key = value.partition(".")
    if head not in PAYLOAD_FIELDS or (key and head not in NESTED) or (head in NESTED and not key and "." in value):
        nested = ", ".join(f"{n}.<key>" for n in NESTED)
        raise ValueError(f"unknown field {value!r} (expected one of {', '.join(PAYLOAD_FIELDS)} or {nested})")
    return value


class Rename(Strict):
    """Rename fields: ``{from: to}`` (``properties.product_id: properties.sku``; a top-level or nested path)."""

    rename: dict[str, str]

    @field_validator("rename")
    @classmethod
    def _paths(cls, v: dict[str, str]) -> dict[str, str]:
        for a, b in v.items():
            _path(a)
            if "." in a and "." not in b or "." in b and "." not in a:
                raise ValueError(f"rename {a!r} -> {b!r}: rename within a level (both top-level or both nested)")
        return v


class Drop(Strict):
    """Leave fields out (``identifiers``, ``properties.coupon``, ...)."""

    drop: list[str]

    @field_validator("drop")
    @classmethod
    def _paths(cls, v: list[str]) -> list[str]:
        return [_path(p) for p in v]


class SetField(Strict):
    """Set a field to a Spark SQL expression over the event, cast to ``type``, e.g.
    ``{set: properties.revenue_cents, expr: "round(revenue * 100)", type: long}``. The expression reads the event
    as it arrived (before earlier steps renamed or dropped anything): its columns, and ``properties.<key>``,
    ``traits.<key>``, ``identifiers.<type>`` (text)."""

    set: str
    expr: str = Field(min_length=1)
    type: ValueType = "string"

    @field_validator("set")
    @classmethod
    def _target(cls, v: str) -> str:
        return _path(v)

    @field_validator("expr")
    @classmethod
    def _known_columns(cls, v: str) -> str:
        from cdp_spark.profiles.config import sql_identifiers

        unknown = sorted(n for n in sql_identifiers(v) if n.split(".", 1)[0] not in EXPRESSION_COLUMNS
                         or ("." in n and n.split(".", 1)[0] not in NESTED))
        if unknown:
            raise ValueError(f"unknown column {', '.join(unknown)} in the expression (expected "
                             f"{', '.join(EXPRESSION_COLUMNS)}; maps by key, e.g. properties.coupon)")
        return v


Step = Union[Rename, Drop, SetField]


class Output(Strict):
    """One output of a connection: where events go and what each one carries."""

    name: str = Field(pattern=NAME)
    transport: Transport
    pii: bool = Field(False, description="true: personal data (catalogue fields marked pii/sensitive) is sent; "
                                         "false: it is left out")
    filter: DataFilter = Field(default_factory=DataFilter)
    sampling: Sampling = Field(default_factory=Sampling)
    consent: list[str] = Field(default_factory=list, description="purposes that must be granted for the event's "
                                                                 "user (the profiles' precedence rules)")
    transform: list[Step] = Field(default_factory=list, description="rename / drop / set steps, in order")
    enabled: bool = True


class Connection(Strict):
    """An input connected to its outputs."""

    name: str = Field(pattern=NAME)
    description: str = ""
    input: Input
    outputs: list[Output] = Field(min_length=1)
    delivery_size: PositiveInt = Field(50_000, description="events per delivery (a batch run's input is split into "
                                                           "deliveries of at most this many events)")
    lookback_hours: PositiveInt = Field(48, description="the batch stage forwards input batches received this "
                                                        "recently that no delivery of an output has acknowledged")
    retry_after_minutes: NonNegativeInt = Field(10, description="the batch stage leaves a stream micro-batch to the "
                                                             "stream for this long before it retries the delivery")
    enabled: bool = True

    @field_validator("outputs")
    @classmethod
    def _unique(cls, v: list[Output]) -> list[Output]:
        names = [o.name for o in v]
        twice = repeated(names)
        if twice:
            raise ValueError(f"output names must be unique; repeated: {', '.join(twice)}")
        return v

    def label(self, output: Output) -> str:
        """``<connection>.<output>``: the output's name in the delivery ledger and its default sampling salt."""
        return f"{self.name}.{output.name}"


def connection_problems(config: Any) -> list[ConfigProblem]:
    """The connections domain's cross-section check: names used once, inputs from defined sources (or a collector
    that feeds some), consent purposes of the catalogue and sampling keys of identity's identifier types.

    Example:
        >>> [p.key for p in connection_problems(config)]      # doctest: +SKIP
        [(0, 'input', 'source')]
    """
    sources = {s.name for s in config.sources}
    purposes = set(config.catalogue.group("consent"))
    keys = {"profile_id", *config.identity.id_types}
    names = [c.name for c in config.connections]
    problems = []
    for i, c in enumerate(config.connections):
        if names.count(c.name) > 1:
            problems.append(ConfigProblem("connections", (i, "name"), c.name, "expected a connection name used once"))
        if c.input.source is not None and c.input.source not in sources:
            problems.append(ConfigProblem("connections", (i, "input", "source"), c.input.source,
                                          f"expected a source of conf/sources/ ({', '.join(sorted(sources)) or 'none'})"))
        if c.input.collector and not config.collector.sources:
            problems.append(ConfigProblem("connections", (i, "input", "collector"), True,
                                          "expected collector.sources to name at least one source"))
        for j, o in enumerate(c.outputs):
            problems += [ConfigProblem("connections", (i, "outputs", j, "consent", k), p,
                                       f"expected a consent purpose of the catalogue ({', '.join(sorted(purposes)) or 'none'})")
                         for k, p in enumerate(o.consent) if p not in purposes]
            problems += [ConfigProblem("connections", (i, "outputs", j, "sampling", "by", k), b,
                                       f"expected profile_id or an identifier type of identity.id_types "
                                       f"({', '.join(sorted(keys))})")
                         for k, b in enumerate(o.sampling.by) if b not in keys]
    return problems
