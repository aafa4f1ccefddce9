"""The QC chart for the monthly meeting: a PNG a QC office can put on a slide.

Per indicator, one panel: monthly mean (bars) and median (line) in minutes with n under each
month, the per-case limit (and a mean/median target) as horizontal lines, and the compliance
rate on a second axis against its target. Rate indicators show the monthly rate against its
target. matplotlib's object API on the Agg canvas (no pyplot state, safe in worker threads).

Titles, axes and legends are in Chinese with the English beside them, set in Noto Sans CJK SC:
the `noto-cjk-sans-otc` package ships Google's Noto Sans CJK collection (SIL OFL 1.1) from PyPI,
so a chart renders the same on any machine, with no system font to install.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from pathways.qc import QcReport
from pathways.vocabulary import CENTER_LABELS, CENTERS

__all__ = ["NothingToPlot", "build_figure", "render_plot"]

_BAR = "#4C72B0"
_MEDIAN = "#DD8452"
_LIMIT = "#C44E52"
_COMPLIANCE = "#55A868"
_CJK_FACE = "Noto Sans CJK SC"  # simplified Chinese forms; the collection holds JP/KR/TC/HK too
_FONT_LOCK = threading.Lock()


class NothingToPlot(ValueError):
    """No interval or rate indicator was asked for (or the reports are empty)."""


def render_plot(reports: Sequence[QcReport], indicators: Sequence[str] = ()) -> bytes:
    """A PNG with one panel per interval or rate indicator of the reports (or those named)."""
    figure = build_figure(reports, indicators)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def build_figure(reports: Sequence[QcReport], indicators: Sequence[str] = ()) -> Figure:
    """The chart `render_plot` draws, its texts set in the CJK face."""
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
        name = f"{item['name_zh']} {item['name']}" if item.get("name_zh") else item["name"]
        title = f"{item['id']}: {name}  [{report.standard.id}]"
        if not item["confirmed"]:
            title += "  (阈值未确认 unconfirmed)"
        if item["kind"] == "interval":
            _interval_panel(ax, item, title)
        else:
            _rate_panel(ax, item, title)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    first = reports[0]
    center = first.standard.center
    figure.suptitle(
        f"{_center_label(center)}质控指标  Quality indicators, {center.replace('_', ' ')} center, "
        f"{first.months[0]} – {first.months[-1]}",
        fontsize=16,  # not bold: the package ships the Regular weight only
    )
    families = [_cjk_family(), "DejaVu Sans"]  # DejaVu for what the CJK face lacks
    for text in figure.findobj(Text):
        text.set_fontfamily(families)
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    return figure


def _center_label(center: str) -> str:
    return next((CENTER_LABELS[c] for c in CENTERS if c == center), "")


@lru_cache(maxsize=1)
def _cjk_family() -> str:
    """Register the shipped Noto Sans CJK collection with matplotlib once; its SC face's name."""
    from matplotlib import font_manager
    from noto_cjk_sans_otc import FONT_PATH

    path = str(FONT_PATH)
    with _FONT_LOCK:
        known = font_manager.fontManager.ttflist
        if not any(entry.fname == path for entry in known):
            font_manager.fontManager.addfont(path)
        names = [entry.name for entry in known if entry.fname == path]
    # a matplotlib that reads only a collection's first face (JP) still has every hanzi
    return _CJK_FACE if _CJK_FACE in names else names[0]


def _month_labels(months: list[dict[str, Any]]) -> list[str]:
    return [f"{m['month']}\nn={m['n']}" for m in months]


def _minutes(value: float | None) -> float:
    return math.nan if value is None else value / 60


def _interval_panel(ax: Axes, item: dict[str, Any], title: str) -> None:
    months = item["months"]
    x = list(range(len(months)))
    means = [_minutes(m["mean_seconds"]) for m in months]
    medians = [_minutes(m["median_seconds"]) for m in months]
    ax.bar(x, means, color=_BAR, alpha=0.85, label="均值 mean (min)", zorder=2)
    ax.plot(x, medians, color=_MEDIAN, marker="o", linewidth=2, label="中位数 median (min)",
            zorder=3)  # fmt: skip
    limit = item["per_case_limit"]
    if limit and "seconds" in limit:
        _line(ax, limit["seconds"] / 60, _LIMIT, "--", f"单例时限 per-case limit {limit['text']}")
    for name, zh in (("mean", "均值"), ("median", "中位数")):
        target = item["targets"].get(name)
        if target and (not limit or target["seconds"] != limit.get("seconds")):
            _line(ax, target["seconds"] / 60, _LIMIT, ":",
                  f"{zh}目标 {name} target {target['text']}")  # fmt: skip
    ax.set_ylabel("分钟 minutes")
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
        twin.plot(x, compliance, color=_COMPLIANCE, marker="s", linewidth=2,
                  label="达标率 compliance (%)")  # fmt: skip
        goal = item["targets"].get("compliance_rate_min")
        if goal is not None:
            _line(twin, goal * 100, _COMPLIANCE, ":",
                  f"达标率目标 compliance target ≥ {goal * 100:g} %")  # fmt: skip
        twin.set_ylim(0, 110)
        twin.set_ylabel("达标率 compliance (%)")
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    _legend_below(ax, handles, labels)


def _rate_panel(ax: Axes, item: dict[str, Any], title: str) -> None:
    months = item["months"]
    x = list(range(len(months)))
    rates = [math.nan if m["rate"] is None else m["rate"] * 100 for m in months]
    ax.bar(x, rates, color=_BAR, alpha=0.85, label="比例 rate (%)", zorder=2)
    for name, label in (("rate_min", "目标 target ≥"), ("rate_max", "目标 target ≤")):
        goal = item["targets"].get(name)
        if goal is not None:
            _line(ax, goal * 100, _LIMIT, "--", f"{label} {goal * 100:g} %")
    ax.set_ylim(0, 110)
    _values_at_foot(ax, x, rates, "{:.0f}%")
    ax.set_ylabel("比例 rate (%)")
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
