"""Expectations -> a boolean "violated" column per rule (null-safe: a rule that cannot be evaluated is violated
only for `not_null`/`valid`; the other checks skip null values, as dbt and Great Expectations do).

Example:
    >>> violated(Expectation(field="qty", check="range", min=1), {})     # doctest: +SKIP
"""
from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from cdp_spark.ingest.sources import Expectation


def violated(e: Expectation, invalid: dict[str, Column]) -> Column:
    """True where the row breaks the expectation; ``invalid`` holds each field's normaliser-rejected flag.

    Example:
        >>> violated(Expectation(field="email", check="not_null"), {})   # doctest: +SKIP
    """
    col = F.col(f"`{e.field}`") if e.field else None
    if e.check == "not_null":
        return col.isNull()
    if e.check == "valid":
        return invalid.get(e.field or "", F.lit(False))
    if e.check == "regex":
        return F.coalesce(~col.cast("string").rlike(e.pattern or ""), F.lit(False))
    if e.check == "range":
        bad = F.lit(False)
        if e.min is not None:
            bad = bad | (col.cast("double") < F.lit(e.min))
        if e.max is not None:
            bad = bad | (col.cast("double") > F.lit(e.max))
        return F.coalesce(bad, F.lit(False))
    if e.check == "allowed":
        return F.coalesce(~col.cast("string").isin(*[str(v) for v in e.values or []]), F.lit(False))
    return F.coalesce(~F.expr(e.expr or "true"), F.lit(True))
