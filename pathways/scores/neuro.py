"""Stroke and coma scores: GCS, NIHSS, FAST-ED, ASPECTS and mRS (scores.md)."""

from __future__ import annotations

from typing import Any

from pathways.scores.scoring import Evaluation, ScoredItem, evaluation, scored_inputs
from pathways.scores.tables import ScoreTable

__all__ = ["aspects", "fast_ed", "gcs", "mrs", "nihss"]


def gcs(table: ScoreTable, data: dict[str, Any]) -> Evaluation:
    """E + V + M. Verbal "T" (intubated) leaves total and band empty: no number is imputed."""
    eye, verbal, motor = data["eye"], data["verbal"], data["motor"]
    not_testable = table.items["verbal"].not_testable
    if verbal == not_testable:
        items = [
            ScoredItem("eye", eye, eye, table.items["eye"]),
            ScoredItem("verbal", verbal, None, table.items["verbal"]),
            ScoredItem("motor", motor, motor, table.items["motor"]),
        ]
        return evaluation(
            table, items, None, band=None, flags=["verbal_not_testable"],
            display=f"E{eye}V{verbal}M{motor}", eye_motor_sum=eye + motor,
        )  # fmt: skip
    total = eye + verbal + motor
    return evaluation(
        table, scored_inputs(table, data), total, band=table.band(total),
        display=f"E{eye}V{verbal}M{motor}", eye_motor_sum=eye + motor,
    )  # fmt: skip


def nihss(table: ScoreTable, data: dict[str, Any]) -> Evaluation:
    """The sum of the 15 items; "UN" adds 0 and is kept as UN. The coma convention is checked,
    not applied: the function never rewrites an assessor's answer."""
    items = []
    for key, spec in table.items.items():
        answer = data[key]
        untestable = answer == spec.not_testable
        items.append(ScoredItem(key, answer, None if untestable else answer, spec))
    un_items = [item.key for item in items if item.points is None]
    total = sum(int(item.points) for item in items if item.points is not None)
    flags = ["contains_un"] if un_items else []
    coma = int(table.constant("coma_1a"))
    if data["1a"] == coma and (
        data["8"] != int(table.constant("coma_8")) or data["9"] != int(table.constant("coma_9"))
    ):
        flags.append("coma_rule_mismatch")
    return evaluation(table, items, total, band=table.band(total), flags=flags, un_items=un_items)


def fast_ed(table: ScoreTable, data: dict[str, Any]) -> Evaluation:
    """The sum of the five items; `lvo_likely` when the total is in the lvo_likely band."""
    items = scored_inputs(table, data)
    total = sum(int(item.points or 0) for item in items)
    band = table.band(total)
    return evaluation(table, items, total, band=band, lvo_likely=band == "lvo_likely")


def aspects(table: ScoreTable, data: dict[str, Any]) -> Evaluation:
    """One point per region without early ischaemic change: 10 − the affected regions.

    The items are the ten regions (answer: affected or not), so the stored score keeps the set.
    """
    affected = set(data["affected_regions"])
    regions = table.items["affected_regions"].allowed_values()
    items = [
        ScoredItem(region, region in affected, int(region not in affected)) for region in regions
    ]
    total = sum(int(item.points or 0) for item in items)
    return evaluation(
        table, items, total, band=None,
        affected_regions=[region for region in regions if region in affected],
    )  # fmt: skip


def mrs(table: ScoreTable, data: dict[str, Any]) -> Evaluation:
    """The grade itself, at a time point (pre-stroke grades stop at 5)."""
    items = [
        ScoredItem("timepoint", data["timepoint"], None, table.items["timepoint"], in_items=False),
        ScoredItem("mrs", data["mrs"], data["mrs"], table.items["mrs"]),
    ]
    return evaluation(table, items, data["mrs"], band=None, timepoint=data["timepoint"])
