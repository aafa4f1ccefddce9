"""QC reports as a readable table and as CSV, in minutes (R4: rounding at presentation only)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from pathways.qc import QcReport

__all__ = ["CSV_COLUMNS", "as_csv", "as_table"]

CSV_COLUMNS = (
    "standard", "indicator", "kind", "month", "n", "population", "mean_min", "median_min",
    "p90_min", "met", "compliance", "numerator", "rate", "excluded", "invalid",
    "not_computable", "completeness", "confirmed",
)  # fmt: skip


def _minutes(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 60:.1f}"


def _share(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


def _row(
    report: QcReport, indicator: dict[str, Any], month: str, f: dict[str, Any]
) -> dict[str, Any]:
    return {
        "standard": report.standard.id,
        "indicator": indicator["id"],
        "kind": indicator["kind"],
        "month": month,
        "n": f["n"],
        "population": f["population"],
        "mean_min": _number(f.get("mean_seconds"), 60),
        "median_min": _number(f.get("median_seconds"), 60),
        "p90_min": _number(f.get("p90_seconds"), 60),
        "met": f.get("met", ""),
        "compliance": _number(f.get("compliance"), 1),
        "numerator": f.get("numerator", ""),
        "rate": _number(f.get("rate"), 1),
        "excluded": f["excluded"],
        "invalid": f["invalid"],
        "not_computable": f["not_computable"],
        "completeness": _number(f.get("completeness"), 1),
        "confirmed": "yes" if indicator["confirmed"] else "no",
    }


def _number(value: float | None, divisor: int) -> str:
    return "" if value is None else f"{value / divisor:.4f}".rstrip("0").rstrip(".")


def as_csv(reports: Sequence[QcReport]) -> str:
    """One row per standard, indicator and month, and an `all` row per indicator."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for report in reports:
        for item in report.as_dict()["indicators"]:
            for month in item["months"]:
                writer.writerow(_row(report, item, month["month"], month))
            writer.writerow(_row(report, item, "all", item["total"]))
    return out.getvalue()


def as_table(reports: Sequence[QcReport]) -> str:
    """The report for a terminal: per indicator a line per month, then the data-quality queue."""
    lines: list[str] = []
    for report in reports:
        data = report.as_dict()
        lines.append(
            f"{data['center']} · standard {data['standard']} · {data['from']}..{data['to']} · "
            f"{data['cases']} cases"
        )
        for item in data["indicators"]:
            lines.append("")
            lines.extend(_indicator_lines(item))
        if data["data_quality"]:
            lines.append("")
            lines.append(f"data-quality queue ({len(data['data_quality'])}):")
            for entry in data["data_quality"]:
                what = entry["indicator"] or "node order"
                lines.append(
                    f"  {entry['case_id']}  {what}  {entry['start_node']} {entry['start']} -> "
                    f"{entry['end_node']} {entry['end']}: {entry['problem']}"
                )
        lines.append("")
    return "\n".join(lines)


_TARGET_NAMES = {
    "mean": "mean",
    "median": "median",
    "compliance_rate_min": "compliance",
    "rate_min": "rate",
    "rate_max": "rate",
}


def _target_text(name: str, target: Any) -> str:
    """`mean ≤ 90 min`, `compliance ≥ 75 %`, `rate ≥ 30 %`, `trend decreasing`."""
    if isinstance(target, dict):
        return f"{name} {target['text']}"
    if name == "trend":
        return f"trend {target}"
    symbol = "≤" if name == "rate_max" else "≥"
    return f"{_TARGET_NAMES[name]} {symbol} {target * 100:g} %"


def _verdict(figures: dict[str, Any]) -> str:
    """`met`, or which monthly targets were missed; empty without targets or figures."""
    targets = figures.get("targets_met", {})
    missed = [_TARGET_NAMES[name] for name, met in targets.items() if met is False]
    if missed:
        return "missed: " + ", ".join(missed)
    return "met" if targets else ""


def _indicator_lines(item: dict[str, Any]) -> list[str]:
    head = f"{item['id']}  {item['name']}"
    if item["kind"] == "interval":
        head += f"  ({item['start']} -> {item['end']}, minutes)"
    limits = []
    if item["per_case_limit"]:
        limit = item["per_case_limit"]
        limits.append(f"per case {limit.get('text') or limit.get('limits')}")
    for name, target in item["targets"].items():
        limits.append(_target_text(name, target))
    if limits:
        head += "  [" + "; ".join(limits) + "]"
    if not item["confirmed"]:
        head += "  (values not confirmed)"
    lines = [head]
    months = [*item["months"], {"month": "all", **item["total"]}]
    if item["kind"] == "interval":
        lines.append(
            f"  {'MONTH':<8}{'N':>5}{'MEAN':>8}{'MEDIAN':>8}{'P90':>8}{'COMPL':>8}"
            f"{'EXCL':>6}{'INVAL':>6}{'N/C':>5}{'COMPLETE':>10}  TARGETS"
        )
        for m in months:
            lines.append(
                f"  {m['month']:<8}{m['n']:>5}{_minutes(m['mean_seconds']):>8}"
                f"{_minutes(m['median_seconds']):>8}{_minutes(m['p90_seconds']):>8}"
                f"{_share(m['compliance']):>8}{m['excluded']:>6}{m['invalid']:>6}"
                f"{m['not_computable']:>5}{_share(m['completeness']):>10}  {_verdict(m)}"
            )
    elif item["kind"] == "rate":
        lines.append(f"  {'MONTH':<8}{'N':>5}{'NUMER':>7}{'RATE':>8}{'EXCL':>6}{'N/C':>5}  TARGETS")
        for m in months:
            lines.append(
                f"  {m['month']:<8}{m['n']:>5}{m['numerator']:>7}{_share(m['rate']):>8}"
                f"{m['excluded']:>6}{m['not_computable']:>5}  {_verdict(m)}"
            )
    else:
        edges = item["total"]["bins"]
        labels = [f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(edges) - 1)]
        lines.append(f"  {'MONTH':<8}{'N':>5}  " + "  ".join(f"{label:>7}" for label in labels))
        for m in months:
            counts = "  ".join(f"{c:>7}" for c in m["counts"])
            lines.append(f"  {m['month']:<8}{m['n']:>5}  {counts}")
    trend = item["trend"]
    if trend.get("direction") or trend.get("target"):
        text = f"  trend of the {trend['figure']}: {trend.get('direction') or 'too few months'}"
        if trend.get("target"):
            met = trend.get("target_met")
            verdict = "met" if met else "not met" if met is False else "undecided"
            text += f" (target {trend['target']}: {verdict})"
        lines.append(text)
    return lines
