"""Read-side helpers for the CLI: raw key stats and quarantine summaries, with PII masked.

Example:
    >>> quarantine_summary(lake, "orders")[0]["reason"]        # doctest: +SKIP
    'malformed_csv'
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from cdp_spark.ingest.tables import QUARANTINE, RAW_KEYS

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.lake import Lake

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_DIGITS = re.compile(r"\d")
_LETTERS = re.compile(r"[^\W\d_]+")


def mask(text: str, limit: int = 120) -> str:
    """Mask a raw record for display: emails, then every letter run and digit, keeping punctuation (the shape).

    Example:
        >>> mask('O1,ann@example.com,+44 20 7946')
        'X9,***@***,+99 99 9999'
    """
    text = _EMAIL.sub("***@***", text[:limit])
    text = _LETTERS.sub("X", text)
    return _DIGITS.sub("9", text)


def raw_keys(lake: "Lake", source: str, *, unmapped_only: bool = False) -> list[dict[str, Any]]:
    """The source's raw keys, most frequent first."""
    if not lake.exists(RAW_KEYS.name):
        return []
    df = lake.read(RAW_KEYS.name).where(F.col("source") == source).drop("distinct_sketch")
    if unmapped_only:
        df = df.where(~F.col("mapped"))
    return [r.asDict() for r in df.orderBy(F.col("times_seen").desc(), "key").collect()]


def quarantine_summary(lake: "Lake", source: str | None = None, *, samples: int = 2) -> list[dict[str, Any]]:
    """Per (source, reason): record count and a few masked samples, largest first."""
    if not lake.exists(QUARANTINE.name):
        return []
    df = lake.read(QUARANTINE.name)
    if source:
        df = df.where(F.col("source") == source)
    exploded = df.select("source", F.explode("reasons").alias("reason"), "raw_record")
    grouped = exploded.groupBy("source", "reason").agg(
        F.count("*").alias("records"), F.slice(F.collect_list("raw_record"), 1, max(samples, 0)).alias("samples"))
    return [{"source": r.source, "reason": r.reason, "records": int(r.records),
             "samples": [mask(x or "") for x in r.samples]}
            for r in grouped.orderBy(F.col("records").desc(), "source", "reason").collect()]
