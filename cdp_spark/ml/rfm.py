"""RFM (recency, frequency, monetary) measures, quantile scores and segments, computed in Spark.

Measures (:func:`rfm_measures`)
-------------------------------
Input is a purchases DataFrame ``(profile_id, event_time timestamp, revenue double)`` already limited to
purchase events. Only purchases at or before ``as_of`` count: a ``datetime`` is an inclusive instant
(a naive one is read as UTC), a ``date`` means the whole day, i.e. up to but excluding the next UTC midnight.

- ``recency_days``: UTC calendar days from the day of the last purchase to the day of ``as_of`` (0 = same day).
- ``frequency``: number of purchase rows.
- ``monetary``: sum of revenue (``"total"``) or mean revenue per purchase (``"average"``);
  a null revenue counts as 0.

Scores (:func:`rfm_scores`)
---------------------------
Each measure is scored 1..``bins`` from quantile cut points ``c_1 <= ... <= c_(bins-1)``, where ``c_k`` is
the value at rank ``ceil(k * n / bins)`` of the n sorted values, obtained with ``DataFrame.approxQuantile``
(one distributed pass for all three measures; its rank error is at most ``relative_error * n``; 0 makes
it exact). The score is::

    score(v) = 1 + #{k : v > c_k}

A score depends only on the value, so equal values always get the same score (ties never straddle bins),
and a value equal to a cut point stays in the lower bin. Duplicate cut points need no special case: when
frequency is massed at 1, ``c_1 = c_2 = c_3 = 1`` and customers with one purchase score 1 while the next
value jumps to 4 — the score keeps meaning "which fifth of the customer base this value reaches" and some
scores are simply not used. With exact cut points the rule equals the rank form::

    score(v) = 1 + min(bins - 1, floor(bins * L(v) / n)),   L(v) = #customers with a strictly smaller value

Recency is scored on ``recency_days`` with the same rule and then inverted, ``rfm_r = bins + 1 - score``,
so the most recent customers get ``bins`` (5).

Segments (:func:`rfm_segments`)
-------------------------------
An ordered list of :class:`SegmentRule` (inclusive ranges on r, f, m or fm = (f + m) / 2); the first rule
that matches names the segment. :data:`DEFAULT_SEGMENTS` is the widely used R x F grid for 5 bins, with
"Lost" split off the bottom-left corner of "Hibernating"; it covers all 25 (r, f) cells.

Example:
    >>> from datetime import date
    >>> measures = rfm_measures(purchases, as_of=date(2024, 6, 30))       # doctest: +SKIP
    >>> segments = rfm_segments(rfm_scores(measures))                     # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable, Literal, Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

MEASURES = ("recency_days", "frequency", "monetary")
SCORE_COLUMNS = {"recency_days": "rfm_r", "frequency": "rfm_f", "monetary": "rfm_m"}
_DAY_MICROS = 86_400_000_000


# ------------------------------------------------------------------------------------------ as_of


def as_of_cutoff(as_of: date | datetime) -> tuple[datetime, bool]:
    """The UTC instant that ends the observation window, and whether it is inclusive.

    Example:
        >>> as_of_cutoff(date(2024, 1, 31))
        (datetime.datetime(2024, 2, 1, 0, 0, tzinfo=datetime.timezone.utc), False)
    """
    if isinstance(as_of, datetime):
        instant = as_of if as_of.tzinfo else as_of.replace(tzinfo=timezone.utc)
        return instant.astimezone(timezone.utc), True
    if isinstance(as_of, date):
        return datetime.combine(as_of + timedelta(days=1), time(0), tzinfo=timezone.utc), False
    raise TypeError(f"as_of must be a date or datetime, got {type(as_of).__name__}")


def as_of_day(as_of: date | datetime) -> int:
    """UTC day number (days since 1970-01-01) of ``as_of``.

    Example:
        >>> as_of_day(date(1970, 1, 2))
        1
    """
    if isinstance(as_of, datetime):
        instant = as_of if as_of.tzinfo else as_of.replace(tzinfo=timezone.utc)
        as_of = instant.astimezone(timezone.utc).date()
    return (as_of - date(1970, 1, 1)).days


def purchases_as_of(purchases: DataFrame, as_of: date | datetime, column: str = "event_time") -> DataFrame:
    """Keep the purchases at or before ``as_of`` (a date includes its whole UTC day).

    Example:
        >>> purchases_as_of(purchases, date(2024, 6, 30))   # doctest: +SKIP
    """
    cutoff, inclusive = as_of_cutoff(as_of)
    ts = F.col(column).cast("timestamp")
    return purchases.where(ts <= F.lit(cutoff) if inclusive else ts < F.lit(cutoff))


def utc_day(column: str | Column) -> Column:
    """UTC day number of a timestamp column, independent of the session time zone.

    Example:
        >>> df.select(utc_day("event_time"))   # doctest: +SKIP
    """
    col = F.col(column) if isinstance(column, str) else column
    return F.floor(F.unix_micros(col.cast("timestamp")) / F.lit(_DAY_MICROS)).cast("long")


# ---------------------------------------------------------------------------------------- measures


def rfm_measures(purchases: DataFrame, as_of: date | datetime,
                 monetary: Literal["total", "average"] = "total") -> DataFrame:
    """One row per customer: profile_id, recency_days, frequency, monetary (see the module docstring).

    Example:
        >>> rfm_measures(purchases, as_of=date(2024, 6, 30), monetary="average")   # doctest: +SKIP
        DataFrame[profile_id: string, recency_days: bigint, frequency: bigint, monetary: double]
    """
    if monetary not in ("total", "average"):
        raise ValueError(f"monetary must be 'total' or 'average', got {monetary!r}")
    revenue = F.coalesce(F.col("revenue").cast("double"), F.lit(0.0))
    value = F.sum(revenue) if monetary == "total" else F.avg(revenue)
    return (
        purchases_as_of(purchases, as_of)
        .groupBy("profile_id")
        .agg(F.max(utc_day("event_time")).alias("_last_day"),
             F.count(F.lit(1)).alias("frequency"),
             value.alias("monetary"))
        .select("profile_id",
                (F.lit(as_of_day(as_of)) - F.col("_last_day")).cast("long").alias("recency_days"),
                "frequency", "monetary")
    )


# ------------------------------------------------------------------------------------------ scores


def rfm_cut_points(measures: DataFrame, bins: int = 5, relative_error: float = 1e-3,
                   columns: Sequence[str] = MEASURES) -> dict[str, list[float]]:
    """Quantile cut points ``c_1..c_(bins-1)`` per measure, from one distributed approxQuantile pass.

    Keep them (e.g. log them) to score other data on the same scale via ``rfm_scores(cut_points=...)``.

    Example:
        >>> rfm_cut_points(measures, bins=5)   # doctest: +SKIP
        {'recency_days': [12.0, 40.0, 95.0, 210.0], 'frequency': [1.0, 1.0, 1.0, 2.0], 'monetary': [...]}
    """
    if bins < 2:
        raise ValueError("bins must be at least 2")
    probabilities = [k / bins for k in range(1, bins)]
    quantiles = measures.approxQuantile(list(columns), probabilities, relative_error)
    # An empty input gives empty lists: every score is then 1, which is harmless for zero rows.
    return {name: [float(v) for v in values] for name, values in zip(columns, quantiles)}


def _score(column: str, cuts: Sequence[float]) -> Column:
    # 1 + number of cut points strictly below the value: a pure function of the value, hence tie-safe.
    score = F.lit(1)
    for cut in cuts:
        score = score + F.when(F.col(column) > F.lit(cut), 1).otherwise(0)
    return score


def rfm_scores(measures: DataFrame, bins: int = 5, *, relative_error: float = 1e-3,
               cut_points: Mapping[str, Sequence[float]] | None = None) -> DataFrame:
    """Add rfm_r, rfm_f, rfm_m scores in 1..bins (rule in the module docstring; recent = high r).

    ``cut_points`` (as from :func:`rfm_cut_points`) skips the quantile pass, e.g. to reuse a model.
    Without them ``measures`` is evaluated twice (cut points, then scores): cache it if it is costly.

    Example:
        >>> rfm_scores(rfm_measures(purchases, date(2024, 6, 30)), bins=5)   # doctest: +SKIP
    """
    cuts = dict(cut_points) if cut_points is not None else rfm_cut_points(measures, bins, relative_error)
    for name in MEASURES:
        if len(cuts.get(name, [])) not in (0, bins - 1):
            raise ValueError(f"expected {bins - 1} cut points for {name}, got {len(cuts[name])}")
    r = F.lit(bins + 1) - _score("recency_days", cuts.get("recency_days", []))
    return measures.select(
        "*",
        r.cast("int").alias("rfm_r"),
        _score("frequency", cuts.get("frequency", [])).cast("int").alias("rfm_f"),
        _score("monetary", cuts.get("monetary", [])).cast("int").alias("rfm_m"),
    )


# ---------------------------------------------------------------------------------------- segments

Range = tuple[float, float]


@dataclass(frozen=True)
class SegmentRule:
    """A named segment: inclusive (low, high) ranges on scores; ``None`` means any value.

    ``fm`` is the mean of the f and m scores, for grids keyed on R x FM.

    Example:
        >>> SegmentRule("Champions", r=(5, 5), f=(4, 5)).matches(r=5, f=4, m=1)
        True
    """

    name: str
    r: Range | None = None
    f: Range | None = None
    m: Range | None = None
    fm: Range | None = None

    def __post_init__(self) -> None:
        for key in ("r", "f", "m", "fm"):
            value = getattr(self, key)
            if value is not None:
                low, high = value
                if low > high:
                    raise ValueError(f"segment {self.name!r}: empty {key} range {value}")
                object.__setattr__(self, key, (low, high))

    @classmethod
    def from_mapping(cls, spec: Mapping[str, Any]) -> "SegmentRule":
        """Build from a config mapping such as ``{"name": "Loyal", "r": [3, 4], "f": [4, 5]}``."""
        unknown = set(spec) - {"name", "r", "f", "m", "fm"}
        if unknown:
            raise ValueError(f"unknown segment rule keys: {sorted(unknown)}")
        return cls(spec["name"], **{k: tuple(v) for k, v in spec.items() if k != "name" and v is not None})

    def _ranges(self) -> Iterable[tuple[str, Range]]:
        return ((k, getattr(self, k)) for k in ("r", "f", "m", "fm") if getattr(self, k) is not None)

    def matches(self, r: int, f: int, m: int) -> bool:
        """Whether a score triple falls in this rule (pure Python, for checks and tests)."""
        values = {"r": r, "f": f, "m": m, "fm": (f + m) / 2}
        return all(low <= values[k] <= high for k, (low, high) in self._ranges())

    def condition(self) -> Column:
        """The same test as a Spark column over rfm_r, rfm_f, rfm_m."""
        cols = {"r": F.col("rfm_r"), "f": F.col("rfm_f"), "m": F.col("rfm_m"),
                "fm": (F.col("rfm_f") + F.col("rfm_m")) / 2}
        cond = F.lit(True)
        for key, (low, high) in self._ranges():
            cond = cond & cols[key].between(low, high)
        return cond


#: The common R x F grid for 5 bins, in match order (first match wins).
DEFAULT_SEGMENTS: tuple[SegmentRule, ...] = (
    SegmentRule("Champions", r=(5, 5), f=(4, 5)),
    SegmentRule("Loyal", r=(3, 4), f=(4, 5)),
    SegmentRule("Potential Loyalist", r=(4, 5), f=(2, 3)),
    SegmentRule("New", r=(5, 5), f=(1, 1)),
    SegmentRule("Promising", r=(4, 4), f=(1, 1)),
    SegmentRule("Need Attention", r=(3, 3), f=(3, 3)),
    SegmentRule("About to Sleep", r=(3, 3), f=(1, 2)),
    SegmentRule("At Risk", r=(1, 2), f=(3, 4)),
    SegmentRule("Can't Lose", r=(1, 2), f=(5, 5)),
    SegmentRule("Lost", r=(1, 1), f=(1, 1)),
    SegmentRule("Hibernating", r=(1, 2), f=(1, 2)),
)


def segment_for(r: int, f: int, m: int, segment_map: Sequence[SegmentRule] = DEFAULT_SEGMENTS,
                default: str | None = None) -> str | None:
    """Segment name of one score triple: the first matching rule, else ``default``.

    Example:
        >>> segment_for(5, 1, 3)
        'New'
    """
    return next((rule.name for rule in segment_map if rule.matches(r, f, m)), default)


def rfm_segments(scores: DataFrame, segment_map: Sequence[SegmentRule] = DEFAULT_SEGMENTS,
                 default: str | None = None) -> DataFrame:
    """Add ``rfm_segment``: the first rule of ``segment_map`` matching (rfm_r, rfm_f, rfm_m), else ``default``.

    Example:
        >>> rfm_segments(scores).groupBy("rfm_segment").count()   # doctest: +SKIP
    """
    if not segment_map:
        raise ValueError("segment_map must contain at least one rule")
    segment = F.lit(default).cast("string")
    for rule in reversed(segment_map):  # build inside-out so the first rule is tested first
        segment = F.when(rule.condition(), F.lit(rule.name)).otherwise(segment)
    return scores.withColumn("rfm_segment", segment)
