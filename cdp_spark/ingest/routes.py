"""Route rules: move records between streams by SQL condition, highest priority first, ties to the newer rule.

Example:
    >>> df.withColumn("stream", route_column(rules))     # doctest: +SKIP
"""
from __future__ import annotations

import datetime as dt
from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdp_spark.ingest.sources import RouteRule


def ordered(rules: Sequence[RouteRule]) -> list[RouteRule]:
    """Active rules in evaluation order: priority desc, then newer `created` first, then later in the file first.

    Example:
        >>> [r.name for r in ordered([RouteRule(name="a", priority=1, input_stream="w", output_stream="x", condition="true"),
        ...                           RouteRule(name="b", priority=2, input_stream="w", output_stream="y", condition="true")])]
        ['b', 'a']
    """

    def created(r: RouteRule) -> dt.datetime:
        c = r.created
        return c if isinstance(c, dt.datetime) else dt.datetime(c.year, c.month, c.day)

    indexed = [(i, r) for i, r in enumerate(rules) if r.active]
    indexed.sort(key=lambda ir: (ir[1].priority, created(ir[1]).replace(tzinfo=None), ir[0]), reverse=True)
    return [r for _, r in indexed]


def route_column(rules: Sequence[RouteRule], stream: Column | None = None) -> Column:
    """The output stream: the first matching rule whose input is the record's stream, else the stream unchanged.

    One pass: a record moves at most once (rules do not chain), so results never depend on loops between rules.
    """
    stream = stream if stream is not None else F.col("stream")
    result = None
    for rule in ordered(rules):
        cond = (stream == F.lit(rule.input_stream)) & F.coalesce(F.expr(rule.condition).cast("boolean"), F.lit(False))
        result = F.when(cond, F.lit(rule.output_stream)) if result is None else result.when(cond, F.lit(rule.output_stream))
    return stream if result is None else result.otherwise(stream)


STAGES = ("identity", "profiles", "scores", "content", "audiences")


def diverted_streams(rules: Sequence[RouteRule], stage: str | None = None) -> list[str]:
    """The output streams of the active diverting rules (QA, test or localhost traffic): events routed there stay
    in bronze, but identity, profiles, scores and audiences leave them out; with ``stage``, only the streams whose
    rule does not list that stage in `include_in`.

    Example:
        >>> diverted_streams([RouteRule(name="qa", input_stream="web", output_stream="web_qa", condition="true",
        ...                             divert=True, include_in=["audiences"])], "identity")
        ['web_qa']
    """
    return sorted({r.output_stream for r in rules if r.active and r.divert and (stage is None or stage not in r.include_in)})


def without_diverted(df: DataFrame, streams: Sequence[str]) -> DataFrame:
    """Bronze rows (events or profile records) minus those routed to one of ``streams``; rows without a stream
    (API patches, tables written before streams were recorded) are kept.

    Example:
        >>> events = without_diverted(lake.read("bronze.events"), diverted_streams(config.routes, "profiles"))  # doctest: +SKIP
    """
    if not streams or "stream" not in df.columns:
        return df
    return df.where(~F.coalesce(F.col("stream").isin(*streams), F.lit(False)))
