"""Render a report as one self-contained HTML page: inline CSS and SVG, no scripts, no external resources.

Example:
    >>> html = render_html(report)            # doctest: +SKIP
    >>> "<script" in html or "http" in html   # doctest: +SKIP
    False
"""
from __future__ import annotations

import html
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from cdp_spark.ops.report import Report, Section

MAX_ROWS = 60

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #111827;
       background: #f3f4f6; }
header { background: #111827; color: #f9fafb; padding: 18px 32px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: #d1d5db; }
nav { padding: 10px 32px; background: #e5e7eb; font-size: 13px; }
nav a { margin-right: 14px; color: #1f2937; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 18px; padding: 18px 32px; }
section { background: #fff; border-radius: 8px; padding: 14px 18px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
section h2 { font-size: 16px; margin: 0 0 4px; }
section p.what { margin: 0 0 8px; color: #4b5563; font-size: 13px; }
.chart svg { width: 100%; height: auto; display: block; }
.empty { padding: 28px; text-align: center; color: #6b7280; background: #f9fafb; border-radius: 6px; }
details { margin-top: 8px; overflow-x: auto; }
summary { cursor: pointer; color: #374151; font-size: 13px; }
table.numbers { border-collapse: collapse; font-size: 12px; margin-top: 6px; width: 100%; }
table.numbers th, table.numbers td { border-bottom: 1px solid #e5e7eb; padding: 3px 6px; text-align: right; }
table.numbers th:first-child, table.numbers td:first-child { text-align: left; }
footer { padding: 8px 32px 24px; color: #6b7280; font-size: 12px; }
"""


def table_html(df: pd.DataFrame, caption: str | None = None) -> str:
    """A DataFrame as an escaped HTML table (first ``MAX_ROWS`` rows, the rest counted)."""
    shown = df.head(MAX_ROWS)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
        for row in shown.itertuples(index=False)
    )
    more = f"<tr><td colspan='{len(shown.columns)}'>… {len(df) - MAX_ROWS} more rows</td></tr>" if len(df) > MAX_ROWS else ""
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table class='numbers'>{cap}<thead><tr>{head}</tr></thead><tbody>{body}{more}</tbody></table>"


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, pd.Timestamp) or hasattr(value, "strftime"):
        text = value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "hour") else value.strftime("%Y-%m-%d")  # type: ignore[union-attr]
        return text
    return str(value)


def section_html(section: "Section") -> str:
    parts = [f"<section id='{section.key}' data-section='{section.key}'>",
             f"<h2>{html.escape(section.title)}</h2>", f"<p class='what'>{html.escape(section.description)}</p>"]
    if section.has_data and section.svg:
        parts.append(f"<div class='chart' role='img' aria-label='{html.escape(section.title)}'>{section.svg}</div>")
        parts.append(f"<details open><summary>Numbers</summary>{table_html(section.numbers)}</details>")  # type: ignore[arg-type]
    else:
        parts.append(f"<div class='empty'>{html.escape(section.note or 'no data yet')}</div>")
    for caption, df in section.tables:
        parts.append(f"<details open><summary>{html.escape(caption)}</summary>{table_html(df)}</details>")
    parts.append("</section>")
    return "\n".join(parts)


def render_html(report: "Report") -> str:
    """The whole page as a string."""
    nav = "".join(f"<a href='#{s.key}'>{html.escape(s.title)}</a>" for s in report.sections)
    body = "\n".join(section_html(s) for s in report.sections)
    with_data = sum(1 for s in report.sections if s.has_data)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cdp-spark report {report.as_of.isoformat()}</title>
<style>{CSS}</style></head>
<body>
<header><h1>cdp-spark run report</h1>
<p>organisation {html.escape(report.org)} · as of {report.as_of.isoformat()} · generated
{report.generated_at.strftime("%Y-%m-%d %H:%M UTC")} · {with_data} of {len(report.sections)} sections with data</p></header>
<nav>{nav}</nav>
<main>
{body}
</main>
<footer>Self-contained page: no scripts and no external resources. Profile ids are masked; no identifier or trait
values are shown.</footer>
</body></html>
"""
