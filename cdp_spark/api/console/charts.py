"""Small inline SVG charts for the console: a sparkline-sized line chart, bars, and an identity graph.

Hand-drawn SVG rather than the report's matplotlib figures: the console draws a chart per audience per page view,
where a figure takes tens of milliseconds and these take microseconds, and they are a few dozen elements each.
Every label is escaped; the result is markup to embed as is.

Example:
    >>> svg = line_chart([("2026-10-31", 3), ("2026-11-01", 5)], title="size")
    >>> svg.startswith("<svg") and "<polyline" in svg
    True
"""
from __future__ import annotations

import math
from html import escape
from typing import Sequence

BLUE, ORANGE, GREY, RED = "#2563eb", "#f97316", "#9ca3af", "#dc2626"
TYPE_COLOURS = ["#2563eb", "#16a34a", "#f97316", "#9333ea", "#0891b2", "#ca8a04", "#db2777", "#4b5563"]


def _svg(width: int, height: int, body: str, title: str) -> str:
    return (f'<svg viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>{body}</svg>')


def line_chart(points: Sequence[tuple[str, float]], *, title: str, width: int = 320, height: int = 90) -> str:
    """Values over labelled points (e.g. dates), with the last value and the range labelled."""
    if not points:
        return _svg(width, height, f'<text x="8" y="{height // 2}" fill="{GREY}" font-size="12">no data yet</text>',
                    title)
    left, right, top, bottom = 34, 8, 10, 18
    values = [float(v) for _, v in points]
    high = max(max(values), 1.0)
    step = (width - left - right) / max(len(points) - 1, 1)

    def y(v: float) -> float:
        return top + (height - top - bottom) * (1 - v / high)

    coords = [(left + i * step, y(v)) for i, v in enumerate(values)]
    line = " ".join(f"{x:.1f},{yy:.1f}" for x, yy in coords)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{yy:.1f}" r="2.5" fill="{BLUE}"><title>{escape(label)}: '
                   f'{_num(v)}</title></circle>' for (x, yy), (label, v) in zip(coords, points))
    axis = (f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="{GREY}"/>'
            f'<text x="{left - 4}" y="{top + 4}" font-size="10" text-anchor="end" fill="#4b5563">{_num(high)}</text>'
            f'<text x="{left - 4}" y="{height - bottom}" font-size="10" text-anchor="end" fill="#4b5563">0</text>'
            f'<text x="{left}" y="{height - 4}" font-size="10" fill="#4b5563">{escape(points[0][0])}</text>'
            f'<text x="{width - right}" y="{height - 4}" font-size="10" text-anchor="end" fill="#4b5563">'
            f'{escape(points[-1][0])}</text>')
    return _svg(width, height, f'{axis}<polyline points="{line}" fill="none" stroke="{BLUE}" stroke-width="2"/>{dots}',
                title)


def bar_chart(bars: Sequence[tuple[str, float]], *, title: str, width: int = 420, height: int = 140,
              colour: str = BLUE) -> str:
    """Vertical bars with their labels under them and their values over them."""
    if not bars:
        return _svg(width, height, f'<text x="8" y="{height // 2}" fill="{GREY}" font-size="12">no data yet</text>',
                    title)
    top, bottom = 14, 18
    high = max(max(float(v) for _, v in bars), 1.0)
    slot = width / len(bars)
    body = []
    for i, (label, v) in enumerate(bars):
        h = (height - top - bottom) * float(v) / high
        x = i * slot + slot * 0.15
        body.append(f'<rect x="{x:.1f}" y="{height - bottom - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                    f'fill="{colour}"><title>{escape(label)}: {_num(v)}</title></rect>'
                    f'<text x="{x + slot * 0.35:.1f}" y="{height - bottom - h - 3:.1f}" font-size="10" '
                    f'text-anchor="middle">{_num(v)}</text>'
                    f'<text x="{x + slot * 0.35:.1f}" y="{height - 5}" font-size="10" text-anchor="middle" '
                    f'fill="#4b5563">{escape(label)}</text>')
    return _svg(width, height, "".join(body), title)


def entered_exited(rows: Sequence[tuple[str, int, int]], *, title: str, width: int = 320, height: int = 90) -> str:
    """Per day, entries up (blue) and exits down (orange) from a middle line."""
    if not rows:
        return _svg(width, height, f'<text x="8" y="{height // 2}" fill="{GREY}" font-size="12">no data yet</text>',
                    title)
    middle, half = height / 2, height / 2 - 8
    high = max(max(max(e, x) for _, e, x in rows), 1)
    slot = width / len(rows)
    body = [f'<line x1="0" y1="{middle}" x2="{width}" y2="{middle}" stroke="{GREY}"/>']
    for i, (label, entered, exited) in enumerate(rows):
        x, w = i * slot + slot * 0.2, slot * 0.6
        up, down = half * entered / high, half * exited / high
        body.append(f'<rect x="{x:.1f}" y="{middle - up:.1f}" width="{w:.1f}" height="{up:.1f}" fill="{BLUE}">'
                    f'<title>{escape(label)}: {entered:,} entered</title></rect>'
                    f'<rect x="{x:.1f}" y="{middle:.1f}" width="{w:.1f}" height="{down:.1f}" fill="{ORANGE}">'
                    f'<title>{escape(label)}: {exited:,} exited</title></rect>')
    return _svg(width, height, "".join(body), title)


def identity_graph(nodes: Sequence[tuple[str, str]], edges: Sequence[tuple[int, int, str]], *, title: str,
                   width: int = 520, height: int = 340) -> str:
    """Identifiers (type, label) on a circle, coloured by type, and the links between them (dashed when the link
    is not active: expired or through a hub)."""
    if not nodes:
        return _svg(width, 60, f'<text x="8" y="30" fill="{GREY}" font-size="12">no identifiers</text>', title)
    cx, cy, radius = width / 2, height / 2, min(width / 2 - 150, height / 2 - 24)
    types = sorted({t for t, _ in nodes})
    colour = {t: TYPE_COLOURS[i % len(TYPE_COLOURS)] for i, t in enumerate(types)}
    points = [(cx + radius * math.cos(2 * math.pi * i / len(nodes) - math.pi / 2),
               cy + radius * math.sin(2 * math.pi * i / len(nodes) - math.pi / 2)) for i in range(len(nodes))]
    body = []
    for a, b, status in edges:
        (x1, y1), (x2, y2) = points[a], points[b]
        dash = "" if status == "active" else ' stroke-dasharray="4 3"'
        body.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{GREY}" '
                    f'stroke-width="1.5"{dash}><title>{escape(status)}</title></line>')
    for (t, label), (x, y) in zip(nodes, points):
        anchor, dx = ("start", 9) if x >= cx - 1 else ("end", -9)
        short = label if len(label) <= 18 else label[:17] + "…"
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{colour[t]}"><title>{escape(t)}: '
                    f'{escape(label)}</title></circle><text x="{x + dx:.1f}" y="{y + 4:.1f}" font-size="10" '
                    f'text-anchor="{anchor}">{escape(t)}: {escape(short)}</text>')
    return _svg(width, height, "".join(body), title)


def _num(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}"
