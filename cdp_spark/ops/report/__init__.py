"""The HTML run report: gather the numbers (`data`), draw them (`charts`), render one self-contained page (`html`).

Example:
    >>> report = build_report(lake, config, date(2026, 11, 1))          # doctest: +SKIP
    >>> Path("report.html").write_text(render_html(report))             # doctest: +SKIP
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd

from cdp_spark.ops.report import charts, data
from cdp_spark.ops.report.html import render_html

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.config import CdpConfig
    from cdp_spark.lake import Lake

log = logging.getLogger(__name__)

__all__ = ["Section", "Report", "build_report", "render_html", "write_report", "SECTIONS"]


@dataclass
class Section:
    """One report section: its chart (SVG) and the chart's numbers, or a reason why there is none yet."""

    key: str
    title: str
    description: str
    numbers: pd.DataFrame | None = None
    svg: str | None = None
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    note: str | None = None

    @property
    def has_data(self) -> bool:
        return self.numbers is not None and not self.numbers.empty


@dataclass
class Report:
    as_of: date
    generated_at: datetime
    org: str
    sections: list[Section]

    def section(self, key: str) -> Section:
        return next(s for s in self.sections if s.key == key)


# key, title, description, gather(lake, as_of, ledger_rows) -> DataFrame | None, draw(df) -> svg
SectionSpec = tuple[str, str, str, Callable[..., Any], Callable[[pd.DataFrame], str]]


def _activation_draw(df: pd.DataFrame) -> str:
    counters = [c for c in data.CHARTED_COUNTERS if c in df.columns]
    return charts.grouped_bars(df, "destination", counters, ylabel="profiles / records")


SECTIONS: list[SectionSpec] = [
    ("events", "Ingested events per source per day",
     "Accepted events in bronze.events by event date, over the 30 days up to the as-of date.",
     lambda lake, as_of, rows: data.events_per_source_day(lake, as_of),
     lambda df: charts.stacked_bars(df, "day", "events", "source", ylabel="events")),
    ("quarantine", "Quarantine reasons",
     "Records rejected by reading checks or expectations, per source and reason (bronze.quarantine).",
     lambda lake, as_of, rows: data.quarantine_reasons(lake, as_of),
     lambda df: charts.bars(df, ["source", "reason"], "records", xlabel="records")),
    ("streaming", "Streaming lag",
     "Largest lag between landing and commit to bronze per collector stream run and source, in seconds.",
     lambda lake, as_of, rows: data.streaming_lag(rows),
     lambda df: charts.lines(df, "run_started", "max_lag_s", "source", ylabel="max lag (s)")),
    ("identity", "Identity: component sizes",
     "How many profiles have N identifiers (gold.id_graph). A long tail means over-merging: check hub identifiers.",
     lambda lake, as_of, rows: data.identity_component_sizes(lake),
     lambda df: charts.bars(df, "identifiers", "profiles", horizontal=False, xlabel="profiles")),
    ("profiles", "Profile count over time",
     "Profiles that exist now, cumulated by the as-of date of the identity run that created them.",
     lambda lake, as_of, rows: data.profile_count_over_time(lake, as_of),
     lambda df: charts.lines(df, "day", "profiles", ylabel="profiles")),
    ("rfm", "RFM segments",
     "Profiles per RFM segment in the latest scores (gold.profile_scores).",
     lambda lake, as_of, rows: data.rfm_segments(lake, as_of),
     lambda df: charts.bars(df, "segment", "profiles", xlabel="profiles")),
    ("clv", "CLV distribution",
     "Predicted customer lifetime value over the model's horizon, equal-width bins up to the 99th percentile.",
     lambda lake, as_of, rows: data.clv_distribution(lake, as_of),
     lambda df: charts.histogram(df, "bin_from", "bin_to", "profiles", xlabel="CLV (reporting currency)")),
    ("audiences", "Audience sizes",
     "Members per audience per as-of date, and the profiles that entered and exited (gold.audience_sizes).",
     lambda lake, as_of, rows: data.audience_sizes(lake, as_of),
     charts.audience_chart),
    ("activation", "Activation delivery per destination",
     "The latest activation run per destination: records sent, skipped (consent, no identifier), failures.",
     lambda lake, as_of, rows: data.activation_results(rows),
     _activation_draw),
    ("connections", "Event forwarding per connection output",
     "The latest connections run per output: events of its inputs, left out by the data filter or the user sample, "
     "without consent, sent, and failed deliveries.",
     lambda lake, as_of, rows: data.forwarding_results(rows),
     lambda df: charts.grouped_bars(df, "output", [c for c in data.FORWARDING_COUNTERS if c in df.columns],
                                    ylabel="events")),
    ("durations", "Job durations per stage",
     "Seconds per pipeline stage over recent runs (ops.job_runs).",
     lambda lake, as_of, rows: data.job_durations(rows),
     lambda df: charts.lines(df, "run_started", "seconds", "stage", ylabel="seconds")),
]


def build_report(lake: "Lake", config: "CdpConfig", as_of: date) -> Report:
    """Gather every section's numbers and draw its chart; a section whose table is missing says "no data yet".

    A section that fails (e.g. a table of an unexpected shape) shows the error type instead of breaking the page.
    """
    from cdp_spark.ops.ledger import Ledger
    from cdp_spark.pipeline import describe_error

    rows = Ledger(lake, stale_after_minutes=config.pipeline.stale_after_minutes).runs(limit=0)
    sections = []
    for key, title, description, gather, draw in SECTIONS:
        section = Section(key, title, description)
        try:
            section.numbers = gather(lake, as_of, rows)
            if section.has_data:
                section.svg = draw(section.numbers)
        except Exception as exc:  # one broken section must not hide the others
            section.numbers, section.svg = None, None
            section.note = f"could not be computed: {describe_error(exc)}"
            log.warning("report section %s failed: %s", key, section.note)
        if key == "identity" and section.has_data:
            largest = data.largest_profiles(lake)
            if largest is not None:
                section.tables.append(("Largest profiles (ids masked)", largest))
        sections.append(section)
    return Report(as_of, data.generated_at(), config.org.id, sections)


def write_report(lake: "Lake", config: "CdpConfig", as_of: date, out: str) -> Report:
    """Build the report and write the HTML page to ``out``."""
    report = build_report(lake, config, as_of)
    with open(out, "w", encoding="utf-8") as handle:
        handle.write(render_html(report))
    return report
