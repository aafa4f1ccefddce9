"""Trauma scores: ISS and NISS from AIS, RTS and T-RTS, TS, CRAMS, PHI and TI (scores.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pathways.scores.scoring import Evaluation, ScoredItem, evaluation, scored_inputs
from pathways.scores.tables import ScoreTable

__all__ = ["crams", "iss", "niss", "rts", "summed", "t_rts"]

_RTS_PLACES = Decimal("0.0001")


def iss(table: ScoreTable, data: dict[str, Any]) -> Evaluation:
    """Sum of squares of the highest AIS of the three most severely injured regions; any AIS 6
    gives the maximum (75). The items are the six regions: their highest AIS and its square
    when the region counts, 0 when it does not."""
    regions = (table.items["ais"].fields or {})["region"].allowed_values()
    highest: dict[str, int] = {}
    for injury in data["ais"]:
        region = injury["region"]
        highest[region] = max(highest.get(region, 0), injury["severity"])
    # Ties keep the region order of the table (stable sort), as scores.md asks.
    ranked = sorted((region for region in regions if region in highest), key=lambda r: -highest[r])
    used = ranked[: int(table.constant("regions_counted"))]
    ais6 = any(severity >= table.constant("maximal_ais") for severity in highest.values())
    total = int(table.constant("maximal_score")) if ais6 else sum(highest[r] ** 2 for r in used)
    items = [
        ScoredItem(region, highest.get(region), highest[region] ** 2 if region in used else 0)
        for region in regions
    ]
    return evaluation(
        table, items, total, band=table.band(total), ais6=ais6,
        regions_used=[{"region": region, "severity": highest[region]} for region in used],
    )  # fmt: skip


def niss(table: ScoreTable, data: dict[str, Any]) -> Evaluation:
    """Sum of squares of the three highest AIS severities, whatever their regions; any AIS 6
    gives 75. The items are the injuries (`ais[0]`, …): each one's square when it counts; each
    is stored as its region's component with the severity as answer."""
    injuries = data["ais"]
    order = sorted(range(len(injuries)), key=lambda n: -injuries[n]["severity"])
    counted = set(order[: int(table.constant("injuries_counted"))])
    severities_used = [injuries[n]["severity"] for n in order if n in counted]
    ais6 = any(s >= table.constant("maximal_ais") for s in severities_used)
    total = int(table.constant("maximal_score")) if ais6 else sum(s**2 for s in severities_used)
    items = [
        ScoredItem(
            f"ais[{n}]",
            injury["severity"],
            injury["severity"] ** 2 if n in counted else 0,
            code=injury["region"],
        )
        for n, injury in enumerate(injuries)
    ]
    return evaluation(
        table, items, total, band=table.band(total), ais6=ais6, severities_used=severities_used
    )


def rts(table: ScoreTable, data: dict[str, Any]) -> Evaluation:
    """Σ weight × coded value, rounded to 4 decimals; each item is its weighted part."""
    coded = {item.key: int(item.points or 0) for item in scored_inputs(table, data)}
    parts = {key: table.constant(f"weight_{key}") * code for key, code in coded.items()}
    items = [
        ScoredItem(key, data[key], parts[key].quantize(_RTS_PLACES), spec)
        for key, spec in table.items.items()
    ]
    total = sum(parts.values(), Decimal(0)).quantize(_RTS_PLACES)
    return evaluation(table, items, total, band=None, coded=coded)


def t_rts(table: ScoreTable, data: dict[str, Any]) -> Evaluation:
    """The sum of the RTS coded values (0–12)."""
    items = scored_inputs(table, data)
    coded = {item.key: int(item.points or 0) for item in items}
    total = sum(coded.values())
    return evaluation(table, items, total, band=table.band(total), coded=coded)


def summed(table: ScoreTable, data: dict[str, Any]) -> Evaluation:
    """The sum of the items' points (TS, PHI, TI)."""
    items = scored_inputs(table, data)
    total = sum(int(item.points or 0) for item in items)
    return evaluation(table, items, total, band=table.band(total))


def crams(table: ScoreTable, data: dict[str, Any]) -> Evaluation:
    """Circulation is the smaller of the refill and the SBP points; then the four others."""
    answers = {item.key: item for item in scored_inputs(table, data)}
    refill, sbp = answers.pop("capillary_refill"), answers.pop("sbp")
    circulation = min(int(refill.points or 0), int(sbp.points or 0))
    items = [
        ScoredItem(refill.key, refill.answer, refill.points, refill.spec, in_items=False),
        ScoredItem(sbp.key, sbp.answer, sbp.points, sbp.spec, in_items=False),
        ScoredItem("circulation", None, circulation),
        *answers.values(),
    ]
    total = sum(int(item.points or 0) for item in items if item.in_items)
    return evaluation(table, items, total, band=table.band(total))
