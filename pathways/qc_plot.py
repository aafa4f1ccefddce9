"""The QC chart for the monthly meeting: a PNG a QC office can put on a slide.

Per indicator, one panel: monthly mean (bars) and median (line) in minutes with n under each
month, the per-case limit (and a mean/median target) as horizontal lines, and the compliance
rate on a second axis against its target. Rate indicators show the monthly rate against its
target. matplotlib's object API on the Agg canvas (no pyplot state, safe in worker threads).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pathways.qc import QcReport

__all__ = ["NothingToPlot", "render_plot"]

_BAR = "#4C72B0"
_MEDIAN = "#DD8452"
_LIMIT = "#C44E52"
_COMPLIANCE = "#55A868"


class NothingToPlot(ValueError):
    """No interval or rate indicator was asked for (or the reports are empty)."""


def render_plot(reports: Sequence[QcReport], indicators: Sequence[str] = ()) -> bytes:
    """A PNG with one panel per interval or rate indicator of the reports (or those named)."""
    panels = [
        (report, item)
        for report in reports
        for item in report.as_dict()["indicators"]
        if item["kind"] in ("interval", "rate") and (not indicators or item["id"] in indicators)
    ]
    if not panels:
        raise NothingToPlot("no interval or rate indicator to plot in this report")
    columns = 1 if len(panels) == 1 else 2
    rows = math.ceil(len(panels) / columns)
    figure = Figure(
        figsize=(12 if columns == 1 else 16, 6.75 if rows == 1 else 5.4 * rows), dpi=100
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    for (report, item), ax in zip(panels, axes.flat, strict=False):
        title = f"{item['id']}: {item['name']}  [{report.standard.id}]"
        if not item["confirmed"]:
            title += "  (threshold not confirmed)"
        if item["kind"] == "interval":
            _interval_panel(ax, item, title)
        else:
            _rate_panel(ax, item, title)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    first = reports[0]
    figure.suptitle(
        f"Quality indicators, {first.standard.center.replace('_', ' ')} center, "
        f"{first.months[0]} to {first.months[-1]}",
        fontsize=15,
        fontweight="bold",
    )
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _month_labels(months: list[dict[str, Any]]) -> list[str]:
    return [f"{m['month']}\nn={m['n']}" for m in months]


def _minutes(value: float | None) -> float:
    return math.nan if value is None else value / 60


def _interval_panel(ax: Axes, item: dict[str, Any], title: str) -> None:
    months = item["months"]
    x = list(range(len(months)))
    means = [_minutes(m["mean_seconds"]) for m in months]
    medians = [_minutes(m["median_seconds"]) for m in months]
    ax.bar(x, means, color=_BAR, alpha=0.85, label="mean (min)", zorder=2)
    ax.plot(x, medians, color=_MEDIAN, marker="o", linewidth=2, label="median (min)", zorder=3)
    limit = item["per_case_limit"]
    if limit and "seconds" in limit:
        _line(ax, limit["seconds"] / 60, _LIMIT, "--", f"per-case limit {limit['text']}")
    for name in ("mean", "median"):
        target = item["targets"].get(name)
        if target and (not limit or target["seconds"] != limit.get("seconds")):
            _line(ax, target["seconds"] / 60, _LIMIT, ":", f"{name} target {target['text']}")
    ax.set_ylabel("minutes")
    ax.set_xticks(x, _month_labels(months), fontsize=9)
    ax.set_title(title, fontsize=11)
    ax.grid(axis="y", alpha=0.3, zorder=0)
    top = max([v for v in (*means, *medians) if not math.isnan(v)] + [0])
    if limit and "seconds" in limit:
        top = max(top, limit["seconds"] / 60)
    ax.set_ylim(0, top * 1.15 or 1)
    _values_at_foot(ax, x, means, "{:.0f}")
    handles, labels = ax.get_legend_handles_labels()
    if limit is not None:
        twin = ax.twinx()
        compliance = [
            math.nan if m["compliance"] is None else m["compliance"] * 100 for m in months
        ]
        twin.plot(x, compliance, color=_COMPLIANCE, marker="s", linewidth=2, label="compliance (%)")
        goal = item["targets"].get("compliance_rate_min")
        if goal is not None:
            _line(twin, goal * 100, _COMPLIANCE, ":", f"compliance target ≥ {goal * 100:g} %")
        twin.set_ylim(0, 110)
        twin.set_ylabel("compliance (%)")
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    _legend_below(ax, handles, labels)


def _rate_panel(ax: Axes, item: dict[str, Any], title: str) -> None:
    months = item["months"]
    x = list(range(len(months)))
    rates = [math.nan if m["rate"] is None else m["rate"] * 100 for m in months]
    ax.bar(x, rates, color=_BAR, alpha=0.85, label="rate (%)", zorder=2)
    for name, label in (("rate_min", "target ≥"), ("rate_max", "target ≤")):
        goal = item["targets"].get(name)
        if goal is not None:
            _line(ax, goal * 100, _LIMIT, "--", f"{label} {goal * 100:g} %")
    ax.set_ylim(0, 110)
    _values_at_foot(ax, x, rates, "{:.0f}%")
    ax.set_ylabel("rate (%)")
    ax.set_xticks(x, _month_labels(months), fontsize=9)
    ax.set_title(title, fontsize=11)
    ax.grid(axis="y", alpha=0.3, zorder=0)
    _legend_below(ax, *ax.get_legend_handles_labels())


def _values_at_foot(ax: Axes, x: list[int], values: list[float], text: str) -> None:
    """Each bar's value written at its foot, where the lines above rarely pass."""
    low = ax.get_ylim()[1] * 0.025
    for position, value in zip(x, values, strict=True):
        if not math.isnan(value):
            ax.text(position, low, text.format(value), ha="center", va="bottom", color="white",
                    fontsize=9, fontweight="bold", zorder=5)  # fmt: skip


def _line(ax: Axes, y: float, color: str, style: str, label: str) -> None:
    """A threshold or target across the panel, above the bars."""
    ax.axhline(y, color=color, linestyle=style, linewidth=2, label=label, zorder=4)


def _legend_below(ax: Axes, handles: list[Any], labels: list[str]) -> None:
    ax.legend(
        handles,
        labels,
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncols=min(len(labels), 3),
        frameon=False,
    )
