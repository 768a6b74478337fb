"""Destination definitions (`conf/destinations/*.yaml`): what to send, how to normalise it, and where.

Example:
    >>> d = Destination.model_validate({"name": "crm_drop", "format": "csv", "transport": {"type": "file"},
    ...                                 "audiences": ["buyers"]})
    >>> d.audiences[0].name, d.mode
    ('buyers', 'changes')
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import Field, PositiveFloat, PositiveInt, SecretStr, field_validator, model_validator
from typing_extensions import Annotated

from cdp_spark.config_base import Strict
from cdp_spark.domain_spec import ConfigProblem

IDENTIFIERS = ("email", "phone", "maid", "customer_id", "crm_id", "first_name", "last_name", "country", "zip")
Format = Literal["google_customer_match", "meta_custom_audience", "liveramp", "csv", "ndjson"]


class AudienceLink(Strict):
    """An audience sent to this destination; ``variants`` limits it to some A/B arms (holdouts are never sent)."""

    name: str
    variants: Optional[list[str]] = None


class FileTransport(Strict):
    """Atomic file drop: a folder per delivery with the data files and a manifest (rows and SHA-256 per file)."""

    type: Literal["file"]
    path: Optional[str] = Field(None, description="defaults to <lake.root>/exports/<destination>")
    rows_per_file: PositiveInt = 1_000_000


class WebhookTransport(Strict):
    """HTTP POST of JSON batches with an Idempotency-Key per batch, retries and a rate limit."""

    type: Literal["webhook"]
    url: SecretStr = Field(description="endpoint; may hold a token, so it is never logged")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="e.g. Authorization: Bearer ${TOKEN}")
    batch_size: PositiveInt = 500
    timeout_seconds: PositiveFloat = 10.0
    max_retries: int = Field(5, ge=0, le=20)
    backoff_seconds: float = Field(0.5, ge=0, description="first retry delay; doubles per retry")
    max_backoff_seconds: float = Field(30.0, ge=0)
    rate_limit_per_second: Optional[PositiveFloat] = Field(None, description="max requests per second")
    concurrency: int = Field(1, ge=1, le=64, description="batches posted at once (each with its own Idempotency-Key); "
                                                        "1 posts them one after another, in order")


class DeltaTransport(Strict):
    """Rows appended to gold.activation_records (one Delta table for all destinations, keyed by destination)."""

    type: Literal["delta"]


Transport = Annotated[Union[FileTransport, WebhookTransport, DeltaTransport], Field(discriminator="type")]


class Dma(Strict):
    """Google's DMA consent fields, each taken from a consent purpose."""

    ad_user_data: str = "ads_personalisation"
    ad_personalization: str = "ads_personalisation"


class Destination(Strict):
    """One activation destination."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    description: str = ""
    format: Format = "csv"
    audiences: list[AudienceLink]
    identifiers: list[Literal[IDENTIFIERS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["email", "phone", "maid"], description="in preference order")
    match: Literal["all", "first"] = Field("all", description="send every listed identifier, or only the first found")
    hash: Literal["none", "sha256"] = Field("none", description="csv/ndjson only: hash identifiers")
    hash_algorithms: list[Literal["sha256", "sha1", "md5"]] = Field(default_factory=lambda: ["sha256"],
                                                                     description="liveramp: one column per algorithm")
    consent: list[str] = Field(default_factory=list, description="purposes that must be granted")
    dma: Dma = Field(default_factory=Dma)
    eea_countries: list[str] = Field(default_factory=lambda: list(EEA), description="where DMA consent is required")
    mode: Literal["snapshot", "changes"] = "changes"
    transport: Transport
    enabled: bool = True

    @field_validator("audiences", mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": x} if isinstance(x, str) else x for x in v]
        return v

    @field_validator("identifiers")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError("list each identifier once, at least one")
        return v

    @model_validator(mode="after")
    def _fits(self) -> "Destination":
        if not self.audiences:
            raise ValueError("audiences: link at least one audience")
        if self.hash != "none" and self.format not in ("csv", "ndjson"):
            raise ValueError(f"hash: only for csv/ndjson; {self.format} hashes by the platform's rules")
        return self


# EEA member states plus the UK and Switzerland (Google's EU user consent policy covers these).
EEA = ("AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IS", "IE", "IT", "LV", "LI",
       "LT", "LU", "MT", "NL", "NO", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "GB", "CH")


def audience_link_problems(config: Any) -> list[ConfigProblem]:
    """The activation domain's cross-section check: every audience a destination links is defined.

    Example:
        >>> [p.value for p in audience_link_problems(config)]      # doctest: +SKIP
        ['cart_abandonerz']
    """
    known = {a.name for a in config.audiences}
    return [ConfigProblem("destinations", (i, "audiences", j), link.name,
                          f"expected the name of an audience in conf/audiences/ (defined: {', '.join(sorted(known)) or 'none'})")
            for i, d in enumerate(config.destinations) for j, link in enumerate(d.audiences) if link.name not in known]
