"""Normalisers: catalogue-typed, cleaned values as Spark columns, each with the reason when a value is invalid.

Each normaliser returns ``(value, invalid)``: ``value`` is null when the input is unusable and ``invalid`` is true
exactly when a non-null input was rejected, so the caller can record a reason instead of keeping garbage.

Example:
    >>> value, invalid = normalise(F.col("e"), "email", "string", "GB")    # doctest: +SKIP
"""
from __future__ import annotations

from functools import lru_cache

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$"
_OFFSET_RE = r"(Z|[+-]\d\d:?\d\d)$"


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
        value = F.when(F.lower(text).isin("true", "1", "yes", "y", "t", "false", "0", "no", "n", "f"),
                       F.lower(text).isin("true", "1", "yes", "y", "t"))
    elif type_ != "string":
        value = value.cast("string").try_cast(type_) if normaliser != "none" else col.try_cast(type_)
    value = F.when(present, value)
    return value, present & value.isNull()
