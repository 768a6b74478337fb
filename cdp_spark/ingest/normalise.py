"""Normalisers: catalogue-typed, cleaned values as Spark columns, each with the reason when a value is invalid.

Each normaliser returns ``(value, invalid)``: ``value`` is null when the input is unusable and ``invalid`` is true
exactly when a non-null input was rejected, so the caller can record a reason instead of keeping garbage.

`normalise_value` is the same for one Python value, for writes that do not go through Spark (the Profile API's
PATCH). It accepts a subset of what the Spark path accepts (ISO-8601 times only, e-mail whitespace as Java
defines it) and, where both accept a value, gives the same result (tests/test_ingest_normalise.py compares them).

Example:
    >>> value, invalid = normalise(F.col("e"), "email", "string", "GB")    # doctest: +SKIP
    >>> normalise_value(" United Kingdom ", "country", "string")
    ('GB', False)
"""
from __future__ import annotations

import datetime as dt
import math
import re
from functools import lru_cache
from typing import Any

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$"
_OFFSET_RE = r"(Z|[+-]\d\d:?\d\d)$"
TRUE_WORDS = ("true", "1", "yes", "y", "t")
FALSE_WORDS = ("false", "0", "no", "n", "f")


@lru_cache(maxsize=1)
def country_codes() -> dict[str, str]:
    """Upper-cased country names, alpha-3 codes and common aliases -> ISO-3166 alpha-2 (from pycountry).

    Example:
        >>> country_codes()["FRANCE"], country_codes()["UK"]
        ('FR', 'GB')
    """
    import pycountry

    codes: dict[str, str] = {}
    for c in pycountry.countries:
        for name in (c.alpha_2, c.alpha_3, c.name, getattr(c, "common_name", None), getattr(c, "official_name", None)):
            if name:
                codes[name.upper()] = c.alpha_2
    codes.update({"UK": "GB", "GREAT BRITAIN": "GB", "ENGLAND": "GB", "USA": "US", "U.S.A.": "US", "AMERICA": "US",
                  "HOLLAND": "NL", "RUSSIA": "RU", "SOUTH KOREA": "KR", "CZECHIA": "CZ"})
    return codes


@lru_cache(maxsize=1)
def currency_codes() -> frozenset[str]:
    """ISO-4217 alphabetic codes (pycountry)."""
    import pycountry

    return frozenset(c.alpha_3 for c in pycountry.currencies)


def e164(numbers: pd.Series, regions: pd.Series) -> pd.Series:
    """Phone numbers -> E.164 strings (None when not a valid number), with a default region per row.

    Example:
        >>> e164(pd.Series(["020 7946 0018"]), pd.Series(["GB"])).tolist()
        ['+442079460018']
    """
    import phonenumbers

    def one(number: object, region: object) -> str | None:
        if number is None or (isinstance(number, float) and pd.isna(number)):
            return None
        try:
            parsed = phonenumbers.parse(str(number), str(region) if region else None)
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_valid_number(parsed):
            return None
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

    # Parse each distinct (number, region) once per Arrow batch: exports repeat numbers, and parsing is the cost.
    cache: dict[tuple[object, object], str | None] = {}
    out = []
    for n, r in zip(numbers, regions):
        key = (n, r)
        if key not in cache:
            cache[key] = one(n, r)
        out.append(cache[key])
    return pd.Series(out, dtype=object)


_e164_udf = F.pandas_udf(e164, T.StringType())  # type: ignore[call-overload]


# Timestamps a parse may produce: years 1 to 9999 (what Python, Arrow readers and Parquet tools all represent).
_MIN_TS, _MAX_TS = "0001-01-01 00:00:00", "9999-12-31 23:59:59.999999"
# Numbers read as epoch times when no format is declared: seconds from 10^8 (1973) and milliseconds from 10^11.
_EPOCH_S, _EPOCH_MS, _EPOCH_END = 1e8, 1e11, 1e14


def _epoch_seconds(seconds: Column) -> Column:
    # Bounded before the conversion: under ANSI SQL an overflowing cast or multiplication fails the whole job.
    return F.timestamp_seconds(F.when(F.abs(seconds) < 253_402_300_800, seconds))


def parse_timestamp(col: Column, formats: list[str] | None = None, timezone: str = "UTC") -> Column:
    """Strings (or epoch numbers) -> UTC timestamps; values without an explicit offset are read in ``timezone``.

    Without ``formats``: ISO-8601 text, or a number as epoch seconds (10^8 to 10^11) or milliseconds (10^11 to
    10^14), whether it came as text, long or double. ``epoch_s``/``epoch_ms`` formats take any number. Results
    outside years 1 to 9999 are null: one absurd value never fails the job.

    Example:
        >>> parse_timestamp(F.col("t"), ["yyyy-MM-dd HH:mm:ss"], "Europe/Paris")     # doctest: +SKIP
    """
    text = F.trim(col.cast("string"))
    number = text.try_cast("double")

    def wall_clock(parsed: Column) -> Column:
        # Only wall-clock values are shifted; a value carrying its own offset is already an instant.
        if timezone.upper() == "UTC":
            return parsed
        return F.when(text.rlike(_OFFSET_RE), parsed).otherwise(F.to_utc_timestamp(parsed, timezone))

    attempts: list[Column] = []
    for fmt in formats or []:
        if fmt == "epoch_s":
            attempts.append(_epoch_seconds(number))
        elif fmt == "epoch_ms":
            attempts.append(_epoch_seconds(number / 1000))
        else:
            attempts.append(wall_clock(F.try_to_timestamp(text, F.lit(fmt))))
    if not formats:
        epoch = (F.when((number >= _EPOCH_S) & (number < _EPOCH_MS), number)
                 .when((number >= _EPOCH_MS) & (number < _EPOCH_END), number / 1000))
        attempts.append(F.when(epoch.isNotNull(), _epoch_seconds(epoch)).otherwise(wall_clock(F.try_to_timestamp(text))))
    parsed = F.coalesce(*attempts) if len(attempts) > 1 else attempts[0]
    return F.when(parsed.between(F.lit(_MIN_TS).cast("timestamp"), F.lit(_MAX_TS).cast("timestamp")), parsed)


def normalise(col: Column, normaliser: str, type_: str, default_country: str = "GB") -> tuple[Column, Column]:
    """(normalised value, invalid flag) for one catalogue field; invalid = a non-empty input that became null.

    Example:
        >>> value, invalid = normalise(F.col("email"), "email", "string")     # doctest: +SKIP
    """
    text = F.trim(col.cast("string"))
    present = col.isNotNull() & (text != "")
    if normaliser == "email":
        value = F.when(F.lower(text).rlike(EMAIL_RE), F.lower(text))
    elif normaliser == "phone":
        # Blank values reach Python as null and return at once, without a parse attempt.
        value = _e164_udf(F.when(text != "", text), F.lit(default_country))
    elif normaliser == "country":
        codes = country_codes()
        lookup = F.create_map(*[F.lit(x) for kv in sorted(codes.items()) for x in kv])
        value = F.try_element_at(lookup, F.upper(text))
    elif normaliser == "currency":
        value = F.when(F.upper(text).isin(*sorted(currency_codes())), F.upper(text))
    elif normaliser == "lower":
        value = F.lower(text)
    elif normaliser == "none":
        value = col
    else:
        value = text
    if type_ == "timestamp":
        # Already-typed timestamps pass through; text is read as ISO-8601 (UTC unless it carries an offset).
        value = col if normaliser == "none" else parse_timestamp(value)
    elif type_ == "boolean":
        value = F.when(F.lower(text).isin(*TRUE_WORDS, *FALSE_WORDS), F.lower(text).isin(*TRUE_WORDS))
    elif type_ != "string":
        value = value.cast("string").try_cast(type_) if normaliser != "none" else col.try_cast(type_)
    value = F.when(present, value)
    return value, present & value.isNull()


# ---- the same for one Python value ----
# EMAIL_RE as Java reads it: \s is these six characters (not Unicode spaces); fullmatch, not Java's `$` that also
# matches before a final line break.
_EMAIL = re.compile(r"[^@ \t\n\x0b\f\r]+@[^@ \t\n\x0b\f\r]+\.[^@ \t\n\x0b\f\r.]{2,}")
_LONG = re.compile(r"[+-]?[0-9]+")
_DOUBLE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DATE = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})")
_TIMESTAMP = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:[T ]([0-9]{1,2}):([0-9]{1,2})"
                        r"(?::([0-9]{1,2})(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?)?")
_CONTROL_AND_SPACE = "".join(map(chr, range(33)))  # what Spark's casts from text trim


def normalise_value(value: str | None, normaliser: str, type_: str, default_country: str = "GB") -> tuple[Any, bool]:
    """`normalise` for one value: (normalised value of the catalogue type, invalid). ``invalid`` is true exactly when
    a non-blank value was rejected; a blank one gives ``(None, False)``. Timestamps come back as naive UTC.

    Example:
        >>> normalise_value(" Ann@Example.COM ", "email", "string")
        ('ann@example.com', False)
        >>> normalise_value("Narnia", "country", "string")
        (None, True)
        >>> normalise_value("2026-10-30T10:00:00+02:00", "timestamp", "timestamp")
        (datetime.datetime(2026, 10, 30, 8, 0), False)
    """
    if value is None:
        return None, False
    text = value.strip(" ")  # Spark's trim() removes spaces only
    if not text:
        return None, False
    out: Any
    if normaliser == "email":
        out = text.lower() if _EMAIL.fullmatch(text.lower()) else None
    elif normaliser == "phone":
        out = e164(pd.Series([text]), pd.Series([default_country]))[0]
    elif normaliser == "country":
        out = country_codes().get(text.upper())
    elif normaliser == "currency":
        out = text.upper() if text.upper() in currency_codes() else None
    elif normaliser == "lower":
        out = text.lower()
    elif normaliser == "none":
        out = value
    else:
        out = text
    if type_ == "boolean":  # from the trimmed input, as the Spark path does
        out = text.lower() in TRUE_WORDS if text.lower() in TRUE_WORDS + FALSE_WORDS else None
    elif out is not None and type_ != "string":
        out = _cast(out, type_)
    return out, out is None


def _cast(text: str, type_: str) -> Any:
    text = text.strip(_CONTROL_AND_SPACE)
    if type_ == "long":
        return int(text) if _LONG.fullmatch(text) and -2**63 <= int(text) < 2**63 else None
    if type_ == "double":
        return float(text) if _DOUBLE.fullmatch(text) and math.isfinite(float(text)) else None
    if type_ == "date":
        m = _DATE.fullmatch(text)
        try:
            return dt.date(*map(int, m.groups())) if m else None
        except ValueError:
            return None
    if type_ == "timestamp":
        return _timestamp(text)
    return None


def _timestamp(text: str) -> dt.datetime | None:
    m = _TIMESTAMP.fullmatch(text)
    if not m:
        return None
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        t = dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                        int((fraction or "0")[:6].ljust(6, "0")))
        if zone and zone != "Z":
            digits = zone[1:].replace(":", "")
            offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
            if int(digits[2:] or 0) > 59 or offset > dt.timedelta(hours=18):  # beyond any zone offset (Java's too)
                return None
            t = t - offset if zone[0] == "+" else t + offset
    except (ValueError, OverflowError):  # not a calendar time, or outside the years 1-9999 in UTC
        return None
    return t
