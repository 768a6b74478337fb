"""Trait writes of the Profile API, checked as batch ingestion checks a record: each value goes through its catalogue
field's normaliser and type (`cdp_spark.ingest.normalise.normalise_value`, the Python twin of the Spark normalisers),
then through ``api.expectations`` (the checks of a source's ``expectations`` that need no Spark).

A refused value is reported by trait name and reason code, never by its text (it may be PII).

Example:
    >>> checked = TraitCheck(config).check({"country": " united kingdom", "city": "York"})   # doctest: +SKIP
    >>> checked.typed["country"], checked.warnings                                            # doctest: +SKIP
    ('GB', [])
"""
from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cdp_spark.ingest.normalise import normalise_value

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig
    from cdp_spark.ingest.sources import Expectation

MAX_TEXT = 1000  # characters of one trait value


class TraitsRefused(ValueError):
    """Some traits were refused: ``reasons`` are ``<trait>: <code>`` strings (no values)."""

    def __init__(self, reasons: list[str]):
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass
class Checked:
    """Accepted traits: ``text`` as bronze.profile_records stores them, ``typed`` (JSON values) for the serving
    store, and the names of ``warn`` expectations the values broke (recorded as quality issues)."""

    text: dict[str, str] = field(default_factory=dict)
    typed: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class TraitCheck:
    """The catalogue's trait fields and the API's expectations, ready to check PATCH bodies."""

    def __init__(self, config: "CdpConfig"):
        cat = config.catalogue
        self.fields = {n: cat.fields[n] for n in cat.group("trait")}
        self.expectations: list[Expectation] = list(config.api.expectations)  # type: ignore[attr-defined]
        self.default_country: str = config.api.default_country  # type: ignore[attr-defined]

    def check(self, traits: dict[str, Any]) -> Checked:
        """The accepted traits, or `TraitsRefused` listing every refused one (unknown name, wrong JSON type, NUL,
        too long, refused by the normaliser, blank, a ``drop``/``fail`` expectation).

        Example:
            >>> TraitCheck(config).check({"country": "Narnia"})    # doctest: +SKIP
            Traceback (most recent call last):
            TraitsRefused: country: invalid (the country normaliser refused it)
        """
        out, reasons = Checked(), []
        for name, value in traits.items():
            spec = self.fields.get(name)
            if spec is None:
                shown = repr(name) if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name) else "(a trait name)"
                reasons.append(f"{shown}: unknown trait (known: {', '.join(sorted(self.fields))})")
                continue
            text = _text(value, spec.type)
            if text is None:
                reasons.append(f"{name}: expects a {spec.type} value")
                continue
            if "\x00" in text:
                reasons.append(f"{name}: contains a NUL character")
                continue
            if len(text) > MAX_TEXT:
                reasons.append(f"{name}: longer than {MAX_TEXT} characters")
                continue
            normalised, invalid = normalise_value(text, spec.normaliser, spec.type, self.default_country)
            if normalised is None:
                reasons.append(f"{name}: invalid (the {spec.normaliser} normaliser and {spec.type} type refused it)"
                               if invalid else f"{name}: blank (send a value)")
                continue
            out.text[name], out.typed[name] = _stored(normalised, spec.type)
        for e in self.expectations:
            if e.field in out.text and _breaks(e, out.text[e.field]):
                if e.action == "warn":
                    out.warnings.append(str(e.name))
                else:
                    reasons.append(f"{e.field}: breaks expectation {e.name}")
        if reasons:
            raise TraitsRefused(reasons)
        return out


def _text(value: Any, type_: str) -> str | None:
    """A JSON value as the text a source file would hold for this type; None for the wrong JSON type."""
    if type_ == "boolean":
        return ("true" if value else "false") if isinstance(value, bool) else None
    if isinstance(value, bool):
        return None
    if type_ == "long":
        return str(value) if isinstance(value, int) else None
    if type_ == "double":
        return repr(float(value)) if isinstance(value, (int, float)) and math.isfinite(value) else None
    return value if isinstance(value, str) else None


def _stored(value: Any, type_: str) -> tuple[str, Any]:
    """(text as Spark casts the typed value to string in bronze, JSON value for the serving store)."""
    if type_ == "boolean":
        return ("true" if value else "false"), value
    if type_ == "date":
        return value.isoformat(), value.isoformat()
    if type_ == "timestamp":
        text = value.strftime("%m-%d %H:%M:%S") + (f".{value.microsecond:06d}".rstrip("0") if value.microsecond else "")
        return f"{value.year:04d}-{text}", value.replace(tzinfo=dt.timezone.utc).isoformat()
    if type_ == "double":
        return repr(value), value
    return str(value), value


def _breaks(e: "Expectation", text: str) -> bool:
    """Whether a value (as bronze text) breaks a field expectation, as `cdp_spark.ingest.expectations.violated`
    decides for a present value."""
    if e.check == "regex":
        return re.search(e.pattern or "", text) is None
    if e.check == "range":
        number = normalise_value(text, "none", "double")[0]
        if number is None:
            return False  # Spark's cast to double gives null: the check skips the value
        return (e.min is not None and number < e.min) or (e.max is not None and number > e.max)
    if e.check == "allowed":
        return text not in [str(v) for v in e.values or []]
    return False  # not_null and valid: the value is present and the normaliser accepted it
