"""Charts as inline SVG (matplotlib's object API, no pyplot state, no network): one function per report chart.

Example:
    >>> import pandas as pd
    >>> svg = bars(pd.DataFrame({"segment": ["Champions", "At risk"], "profiles": [12, 5]}), "segment", "profiles")
    >>> svg.startswith("<svg") and "Champions" in svg
    True
"""
from __future__ import annotations

import datetime as dt
import io
from typing import Sequence

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

PALETTE = ["#2563eb", "#f97316", "#16a34a", "#dc2626", "#9333ea", "#0891b2", "#ca8a04", "#db2777", "#4b5563"]
STYLE = {
    "svg.fonttype": "none",  # text stays text: smaller, selectable, searchable
    "svg.hashsalt": "cdp-report",  # stable element ids: the same data gives the same page
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
}


def _figure(height: float = 3.0) -> Figure:
    return Figure(figsize=(7.5, height), layout="constrained")


def to_svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element (XML prolog and doctype stripped) for inlining in HTML."""
    buffer = io.StringIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": "cdp-spark"})
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _styled(draw):  # type: ignore[no-untyped-def]
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)

    wrapper.__doc__, wrapper.__name__ = draw.__doc__, draw.__name__
    return wrapper


def _label(value: object) -> str:
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        return value.strftime("%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


@_styled
def lines(df: pd.DataFrame, x: str, y: str, series: str | None = None, *, ylabel: str = "", logy: bool = False,
          marker: str = "o") -> str:
    """One line per ``series`` value (or one line) of ``y`` over ``x``; x values are evenly spaced, in order.

    Even spacing keeps runs and days readable whatever their gaps, and a single point does not stretch the axis.
    """
    fig = _figure()
    ax = fig.add_subplot()
    order = sorted(df[x].unique())
    position = {value: i for i, value in enumerate(order)}
    groups = df.groupby(series, sort=True) if series else [("", df)]
    for name, part in groups:
        part = part.sort_values(x)
        ax.plot([position[v] for v in part[x]], part[y], marker=marker, markersize=4, linewidth=1.5,
                label=str(name) if series else None)
    step = max(1, len(order) // 12)
    ticks = list(range(0, len(order), step))
    ax.set_xticks(ticks, [_label(order[i]) for i in ticks], rotation=30 if len(order) > 3 else 0, ha="right"
                  if len(order) > 3 else "center")
    ax.set_xlim(-0.5, len(order) - 0.5)
    if series:
        ax.legend(frameon=False, fontsize=8, ncols=min(4, df[series].nunique()))
    ax.set_ylabel(ylabel or y)
    if logy:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)
    return to_svg(fig)


@_styled
def stacked_bars(df: pd.DataFrame, x: str, y: str, series: str, *, ylabel: str = "") -> str:
    """Bars of ``y`` per ``x``, stacked by ``series``."""
    table = df.pivot_table(index=x, columns=series, values=y, aggfunc="sum", fill_value=0).sort_index()
    fig = _figure()
    ax = fig.add_subplot()
    bottom = [0] * len(table)
    labels = [str(v) for v in table.index]
    for name in table.columns:
        values = table[name].tolist()
        ax.bar(labels, values, bottom=bottom, label=str(name))
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.legend(frameon=False, fontsize=8, ncols=min(4, len(table.columns)))
    ax.set_ylabel(ylabel or y)
    ax.tick_params(axis="x", labelrotation=45 if len(labels) > 6 else 0)
    ax.grid(axis="y", alpha=0.3)
    return to_svg(fig)


@_styled
def bars(df: pd.DataFrame, label: str | Sequence[str], value: str, *, horizontal: bool = True, xlabel: str = "",
         logy: bool = False) -> str:
    """One bar per row: ``label`` (a column, or columns joined with ': ') against ``value``."""
    names = df[label].astype(str) if isinstance(label, str) else df[list(label)].astype(str).agg(": ".join, axis=1)
    fig = _figure(max(2.2, 0.28 * len(df) + 0.8) if horizontal else 3.0)
    ax = fig.add_subplot()
    if horizontal:
        ax.barh(list(names)[::-1], list(df[value])[::-1], color=PALETTE[0])
        ax.set_xlabel(xlabel or value)
        ax.grid(axis="x", alpha=0.3)
    else:
        ax.bar(list(names), list(df[value]), color=PALETTE[0])
        ax.set_ylabel(xlabel or value)
        ax.grid(axis="y", alpha=0.3)
        if logy:
            ax.set_yscale("log")
    return to_svg(fig)


@_styled
def histogram(df: pd.DataFrame, low: str, high: str, count: str, *, xlabel: str = "") -> str:
    """Pre-binned histogram: bars from ``low`` to ``high`` with height ``count``."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.bar(df[low], df[count], width=(df[high] - df[low]), align="edge", color=PALETTE[2], edgecolor="white")
    ax.set_xlabel(xlabel or low)
    ax.set_ylabel(count)
    ax.grid(axis="y", alpha=0.3)
    return to_svg(fig)


@_styled
def grouped_bars(df: pd.DataFrame, label: str, values: Sequence[str], *, ylabel: str = "") -> str:
    """For each ``label`` a group of bars, one per column in ``values``."""
    fig = _figure()
    ax = fig.add_subplot()
    n = max(len(values), 1)
    width = 0.8 / n
    positions = range(len(df))
    for i, column in enumerate(values):
        ax.bar([p + i * width for p in positions], df[column].fillna(0), width=width, label=column)
    ax.set_xticks([p + 0.4 - width / 2 for p in positions], df[label].astype(str))
    ax.legend(frameon=False, fontsize=8, ncols=min(4, n))
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    return to_svg(fig)


@_styled
def audience_chart(df: pd.DataFrame) -> str:
    """Sizes per audience over time (top) and profiles entered (+) and exited (−) per day (bottom)."""
    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    for name, part in df.groupby("audience", sort=True):
        part = part.sort_values("as_of")
        top.plot(part["as_of"], part["size"], marker="o", markersize=3, label=str(name))
    top.set_ylabel("members")
    top.legend(frameon=False, fontsize=8, ncols=min(4, df["audience"].nunique()))
    top.grid(axis="y", alpha=0.3)
    per_day = df.groupby("as_of")[["entered", "exited"]].sum().sort_index()
    bottom.bar(per_day.index, per_day["entered"], color=PALETTE[2], label="entered")
    bottom.bar(per_day.index, -per_day["exited"], color=PALETTE[3], label="exited")
    bottom.axhline(0, color="#999", linewidth=0.8)
    bottom.set_ylabel("entered / exited")
    bottom.legend(frameon=False, fontsize=8, ncols=2)
    fig.autofmt_xdate()
    return to_svg(fig)
