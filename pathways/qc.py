"""Monthly QC statistics per center and standard version (indicators.md §1).

For each indicator and month (R10): n (`ok` cases), mean, median and P90 in seconds, the
compliance rate (达标率: `ok` cases meeting the per-case limit ÷ `ok` cases), excluded, invalid
and not-computable counts, completeness (1 − not_computable ÷ population, where the population
is every case of the indicator that is not excluded), rates for rate indicators, the shares
within configured times, a trend over the last 12 months, whether each aggregate target was met,
and the data-quality queue (every invalid case with both instants). Statistics use numpy;
nothing is rounded here (R4: presentation rounds).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pathways.indicator_definitions import IndicatorDefinition, Standard
from pathways.indicators import IndicatorResult, evaluate_indicator, order_problems
from pathways.months import month_bucket
from pathways.timeline import CaseTimeline

__all__ = ["TREND_MONTHS", "IndicatorReport", "QcReport", "figures", "qc_report"]

TREND_MONTHS = 12
# A monthly slope within this share of the mean value (per month) counts as stable.
STABLE_SLOPE_SHARE = 0.02


@dataclass(slots=True)
class IndicatorReport:
    """One indicator over the months of a report."""

    definition: IndicatorDefinition
    headline: str  # mean | median | rate | distribution: the figure the trend follows
    months: list[dict[str, Any]]
    total: dict[str, Any]
    trend: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        d = self.definition
        aggregate = d.aggregate
        targets: dict[str, Any] = {}
        for name, limit in (("mean", aggregate.mean), ("median", aggregate.median)):
            if limit is not None:
                targets[name] = {"op": limit.op, "seconds": limit.seconds, "text": limit.describe()}
        for name in ("compliance_rate_min", "rate_min", "rate_max", "trend"):
            if getattr(aggregate, name) is not None:
                targets[name] = getattr(aggregate, name)
        per_case: dict[str, Any] | None = None
        if d.per_case is not None:
            if d.per_case.default is not None:
                per_case = {
                    "op": d.per_case.default.op,
                    "seconds": d.per_case.default.seconds,
                    "text": d.per_case.default.describe(),
                }
            else:
                per_case = {
                    "by_fact": d.per_case.by_fact,
                    "limits": {k: v.describe() for k, v in d.per_case.limits.items()},
                }
        return {
            "id": d.id,
            "name": d.name,
            "name_zh": d.name_zh,
            "kind": d.kind,
            "start": d.start.describe() if d.start else None,
            "end": d.end.describe() if d.end else None,
            "per_case_limit": per_case,
            "targets": targets,
            "confidence": d.confidence,
            "confirmed": d.confirmed,
            "source": d.source,
            "headline": self.headline,
            "months": self.months,
            "total": self.total,
            "trend": self.trend,
        }


@dataclass(slots=True)
class QcReport:
    """The QC report of one center, standard version and month range."""

    standard: Standard
    months: list[str]
    cases: int
    indicators: list[IndicatorReport]
    data_quality: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "center": self.standard.center,
            "standard": self.standard.id,
            "title": self.standard.title,
            "from": self.months[0],
            "to": self.months[-1],
            "months": self.months,
            "cases": self.cases,
            "indicators": [report.as_dict() for report in self.indicators],
            "data_quality": self.data_quality,
        }


def qc_report(
    cases: Iterable[CaseTimeline],
    standard: Standard,
    months: Sequence[str],
    indicator_ids: Sequence[str] = (),
    node_order: Sequence[Sequence[str]] = (),
) -> QcReport:
    """Evaluate every case counted in `months` against `standard` and sum up per month.

    The data-quality queue lists every invalid interval and, with `node_order` (the R11 chains
    of the center), every pair of nodes out of their expected order.
    """
    by_month: dict[str, list[CaseTimeline]] = defaultdict(list)
    for case in cases:
        if case.center != standard.center:
            continue
        bucket = month_bucket(case)
        if bucket is not None and bucket in months:
            by_month[bucket].append(case)
    definitions = (
        [standard.indicator(i) for i in indicator_ids] if indicator_ids else standard.indicators
    )
    reports: list[IndicatorReport] = []
    queue: list[dict[str, Any]] = []
    for definition in definitions:
        per_month: list[dict[str, Any]] = []
        every: list[IndicatorResult] = []
        for month in months:
            results = [evaluate_indicator(case, definition) for case in by_month.get(month, [])]
            every += results
            per_month.append({"month": month, **figures(results, definition)})
            for case, result in zip(by_month.get(month, []), results, strict=True):
                if result.status == "invalid":
                    queue.append(_quality_entry(case, month, result))
        headline = _headline(definition)
        reports.append(
            IndicatorReport(
                definition=definition,
                headline=headline,
                months=per_month,
                total=figures(every, definition),
                trend=_trend(per_month[-TREND_MONTHS:], headline, definition.aggregate.trend),
            )
        )
    for month in months:
        for case in by_month.get(month, []):
            for earlier, later in order_problems(case, node_order):
                queue.append(
                    {
                        "kind": "node_order",
                        "case_id": case.case_id,
                        "month": month,
                        "indicator": None,
                        "standard": standard.id,
                        "start_node": earlier.key,
                        "start": earlier.instant.isoformat(),
                        "end_node": later.key,
                        "end": later.instant.isoformat(),
                        "seconds": int((later.instant - earlier.instant).total_seconds()),
                        "problem": f"{later.key} is before {earlier.key} (R11 order)",
                    }
                )
    return QcReport(
        standard=standard,
        months=list(months),
        cases=sum(len(v) for v in by_month.values()),
        indicators=reports,
        data_quality=queue,
    )


def figures(results: Sequence[IndicatorResult], definition: IndicatorDefinition) -> dict[str, Any]:
    """The statistics of one indicator over some cases' results (one month, or all)."""
    statuses = Counter(
        "excluded" if r.status.startswith("excluded:") else r.status for r in results
    )
    ok = [r for r in results if r.status == "ok"]
    population = len(ok) + statuses["not_computable"] + statuses["invalid"]
    out: dict[str, Any] = {
        "n": len(ok),
        "population": population,
        "excluded": statuses["excluded"],
        "invalid": statuses["invalid"],
        "not_computable": statuses["not_computable"],
        "completeness": 1 - statuses["not_computable"] / population if population else None,
        "exclusions": dict(
            Counter(
                r.status.removeprefix("excluded:")
                for r in results
                if r.status.startswith("excluded:")
            )
        ),
    }
    aggregate = definition.aggregate
    if definition.kind == "interval":
        values = np.array([r.seconds for r in ok], dtype=np.float64)
        have = values.size > 0
        out["mean_seconds"] = float(np.mean(values)) if have else None
        out["median_seconds"] = float(np.median(values)) if have else None
        out["p90_seconds"] = float(np.percentile(values, 90)) if have else None
        limited = [r for r in ok if r.met is not None]
        out["met"] = sum(1 for r in limited if r.met)
        out["compliance"] = out["met"] / len(limited) if limited else None
        if definition.per_case is not None and definition.per_case.by_fact is not None:
            # e.g. NSTE-ACS invasive timing: the compliance of each risk stratum on its own
            out["by_group"] = _by_group(limited)
        out["shares"] = {
            str(limit // 60): float(np.mean(values <= limit)) if have else None
            for limit in definition.shares_within_seconds
        }
        out["targets_met"] = {
            "mean": _holds(aggregate.mean, out["mean_seconds"]),
            "median": _holds(aggregate.median, out["median_seconds"]),
            "compliance_rate_min": _at_least(aggregate.compliance_rate_min, out["compliance"]),
        }
    elif definition.kind == "rate":
        numerator = sum(1 for r in ok if r.met)
        out["numerator"] = numerator
        out["rate"] = numerator / len(ok) if ok else None
        out["targets_met"] = {
            "rate_min": _at_least(aggregate.rate_min, out["rate"]),
            "rate_max": None
            if aggregate.rate_max is None or out["rate"] is None
            else out["rate"] <= aggregate.rate_max,
        }
    else:
        values = np.array([r.value for r in ok], dtype=np.float64)
        counts, _ = np.histogram(values, bins=np.array(definition.bins))
        out["bins"] = list(definition.bins)
        out["counts"] = [int(c) for c in counts]
    out["targets_met"] = {k: v for k, v in out.get("targets_met", {}).items() if v is not None}
    return out


def _by_group(limited: Sequence[IndicatorResult]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[IndicatorResult]] = defaultdict(list)
    for result in limited:
        groups[str(result.group)].append(result)
    return {
        group: {
            "n": len(members),
            "met": sum(1 for r in members if r.met),
            "compliance": sum(1 for r in members if r.met) / len(members),
        }
        for group, members in sorted(groups.items())
    }


def _holds(limit: Any, value: float | None) -> bool | None:
    if limit is None or value is None:
        return None
    return bool(limit.holds(value))


def _at_least(minimum: float | None, value: float | None) -> bool | None:
    if minimum is None or value is None:
        return None
    return value >= minimum


def _headline(definition: IndicatorDefinition) -> str:
    if definition.kind != "interval":
        return "rate" if definition.kind == "rate" else "distribution"
    aggregate = definition.aggregate
    if aggregate.mean is not None:
        return "mean"
    return "median"


def _trend(months: list[dict[str, Any]], headline: str, target: str | None) -> dict[str, Any]:
    """The direction of the headline figure over the months that have one (least squares)."""
    key = {"mean": "mean_seconds", "median": "median_seconds", "rate": "rate"}.get(headline)
    points = [(i, m[key]) for i, m in enumerate(months) if key and m.get(key) is not None]
    series = [{"month": m["month"], "value": m.get(key) if key else None} for m in months]
    trend: dict[str, Any] = {"figure": headline, "series": series, "direction": None}
    if len(points) >= 3:
        x = np.array([p[0] for p in points], dtype=np.float64)
        y = np.array([p[1] for p in points], dtype=np.float64)
        slope = float(np.polyfit(x, y, 1)[0])
        scale = abs(float(np.mean(y))) or 1.0
        trend["slope_per_month"] = slope
        if abs(slope) <= STABLE_SLOPE_SHARE * scale:
            trend["direction"] = "stable"
        else:
            trend["direction"] = "increasing" if slope > 0 else "decreasing"
    if target is not None:
        trend["target"] = target
        direction = trend["direction"]
        trend["target_met"] = None if direction is None else direction in target.split("_or_")
    return trend


def _quality_entry(case: CaseTimeline, month: str, result: IndicatorResult) -> dict[str, Any]:
    assert result.start is not None and result.end is not None
    return {
        "kind": "invalid_interval",
        "case_id": case.case_id,
        "month": month,
        "indicator": result.indicator,
        "standard": result.standard,
        "start_node": result.start.key,
        "start": result.start.instant.isoformat(),
        "end_node": result.end.key,
        "end": result.end.instant.isoformat(),
        "seconds": result.seconds,
        "problem": result.problem,
    }
