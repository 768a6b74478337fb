"""Typed identity rules (`conf/identity.yaml`): per identifier type priority, limit, TTL, blocklist, anchoring.

Lives in the identity package (like the ingest models) so `cdp_spark.config.models` can import it without cycles.

Example:
    >>> cfg = IdentityConfig()
    >>> cfg.rule("customer_id").limit, cfg.rule("cookie_id").ttl_days
    (1, 90)
    >>> [t for t in cfg.by_priority()][:3]
    ['customer_id', 'crm_id', 'email']
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from cdp_spark.config_base import Strict

# Values that identify nobody (Segment's suggested blocklist, opted-out advertising ids, placeholders).
BUILTIN_BLOCKED_VALUES = ("null", "undefined", "none", "nil", "anonymous", "unknown", "-1", "")
BUILTIN_BLOCKED_PATTERNS = (r"^[0-]*$",)  # all-zero advertising ids (iOS/Android opt-out), "0", "---"


class IdTypeRule(Strict):
    """Rules for one identifier type."""

    priority: PositiveInt = Field(description="rank: 1 is the highest (e.g. customer_id)")
    limit: PositiveInt = Field(5, description="at most this many distinct values of the type per profile")
    limit_window_days: PositiveInt | None = Field(
        None, description="count only values seen within this many days of the as-of date towards the limit")
    ttl_days: PositiveInt | None = Field(None, description="links last seen longer ago than this are ignored")
    anchor: bool = Field(False, description="may anchor a profile (identifiers of this type are never merged beyond the limit)")
    blocked_values: list[str] = Field(default_factory=list, description="exact values (after normalisation) never used")
    blocked_patterns: list[str] = Field(default_factory=list, description="regexes; a matching value is never used")
    compact_after_values: PositiveInt | None = Field(
        None, description="compaction by size: a profile keeps the N most recently seen values of the type; the "
                          "others leave it (their links still count)")
    compact_after_days: PositiveInt | None = Field(
        None, description="compaction by time: values last seen more than N days before the as-of date leave the "
                          "profile, except its most recent value of the type")

    @field_validator("blocked_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"invalid regex {p!r}: {exc}") from None
        return patterns


def _default_types() -> dict[str, IdTypeRule]:
    return {
        "customer_id": IdTypeRule(priority=1, limit=1, anchor=True),
        "crm_id": IdTypeRule(priority=2, limit=1, anchor=True),
        "email": IdTypeRule(priority=3, limit=5),
        "phone": IdTypeRule(priority=4, limit=5),
        "device_id": IdTypeRule(priority=5, limit=10),
        "idfa": IdTypeRule(priority=5, limit=10),
        "gaid": IdTypeRule(priority=5, limit=10),
        "cookie_id": IdTypeRule(priority=6, limit=50, limit_window_days=90, ttl_days=90),
    }


class IdentityConfig(Strict):
    """The `identity` domain: rules per identifier type and engine settings."""

    engine: Literal["auto", "native", "graphframes", "graphx"] = Field(
        "auto", description="connected components: graphframes when its JVM classes load (auto), else native; "
                            "graphx runs Spark GraphX's Pregel implementation")
    id_types: dict[str, IdTypeRule] = Field(default_factory=_default_types)
    blocked_values: list[str] = Field(
        default_factory=lambda: ["test@test.com", "test@example.com"],
        description="extra values blocked for every type, on top of the built-in list")
    blocked_patterns: list[str] = Field(default_factory=list, description="extra regexes blocked for every type")
    builtin_blocklist: bool = Field(True, description="apply the built-in blocklist (null, undefined, all-zero ids, ...)")
    max_links: PositiveInt = Field(
        100, description="hub guard: an identifier linked to more distinct higher-priority identifiers is not used")
    max_neighbours: PositiveInt | None = Field(
        50, description="neighbour cap: an identifier uses its N strongest links (a link must be within the cap at "
                        "both ends); null: no cap")
    max_hops: PositiveInt | None = Field(
        50, description="traversal cap: a profile holds identifiers within N links of its highest-priority "
                        "identifier; the rest are cut off into profiles of their own; null: no cap")
    max_iterations: PositiveInt = Field(100, description="connected-components iteration cap (an error when reached)")
    checkpoint_every: PositiveInt = Field(1, description="cut the lineage every N connected-components iterations")
    sources: list[str] = Field(default_factory=list, description="only these ingest sources (empty: all)")

    @field_validator("blocked_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        return IdTypeRule._compiles(patterns)

    @model_validator(mode="after")
    def _some_type(self) -> "IdentityConfig":
        if not self.id_types:
            raise ValueError("id_types: at least one identifier type is needed")
        return self

    def rule(self, id_type: str) -> IdTypeRule:
        return self.id_types[id_type]

    def by_priority(self) -> list[str]:
        """Identifier types, highest priority first (ties by name)."""
        return sorted(self.id_types, key=lambda t: (self.id_types[t].priority, t))

    def blocked_values_for(self, id_type: str) -> list[str]:
        base = list(BUILTIN_BLOCKED_VALUES) if self.builtin_blocklist else []
        return sorted(set(base + self.blocked_values + self.id_types[id_type].blocked_values))

    def blocked_patterns_for(self, id_type: str) -> list[str]:
        base = list(BUILTIN_BLOCKED_PATTERNS) if self.builtin_blocklist else []
        return base + self.blocked_patterns + self.id_types[id_type].blocked_patterns
