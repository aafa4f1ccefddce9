"""Chest pain scores: Killip, GRACE, TIMI (UA/NSTEMI and STEMI) and HEART (scores.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pathways.scores.scoring import (
    Evaluation,
    ScoredItem,
    evaluation,
    item_points,
    scored_inputs,
)
from pathways.scores.tables import ScoreTable, pick

__all__ = ["grace", "heart", "killip", "timi_stemi", "timi_ua"]

_ROMAN = ("I", "II", "III", "IV")
_MG_DL_PLACES = Decimal("0.001")


def killip(table: ScoreTable, data: dict[str, Any]) -> Evaluation:
    """The highest class whose finding is present (shock is IV whatever else is found).

    Each finding's item is the class it implies when present, 0 when absent.
    """
    items = scored_inputs(table, data)
    found = [int(item.points) for item in items if item.points]
    total = max(found, default=int(table.constant("no_finding_class")))
    return evaluation(
        table, items, total, band=None, **{"class": _ROMAN[total - 1], "cpc_code": str(total)}
    )


def grace(table: ScoreTable, data: dict[str, Any]) -> Evaluation:
    """The sum of the eight items; creatinine is banded in mg/dL on the unrounded value."""
    umol_l = Decimal(str(data["creatinine_umol_l"]))
    mg_dl = umol_l / table.constant("umol_l_per_mg_dl")
    creatinine = table.items["creatinine_umol_l"]
    creatinine_row = pick(creatinine.points or [], mg_dl, "GRACE.creatinine_umol_l.points")
    items = [
        ScoredItem(key, data[key], creatinine_row.points, spec)
        if key == "creatinine_umol_l"
        else ScoredItem(key, data[key], item_points(spec, data[key]), spec)
        for key, spec in table.items.items()
    ]
    total = sum(int(item.points or 0) for item in items)
    flags = []
    if umol_l < table.constant("creatinine_suspect_below_umol_l"):
        flags.append("creatinine_unit_suspect")
    return evaluation(
        table, items, total, band=table.band(total), flags=flags,
        creatinine_mg_dl=float(mg_dl.quantize(_MG_DL_PLACES)),
    )  # fmt: skip


def timi_ua(table: ScoreTable, data: dict[str, Any]) -> Evaluation:
    """One point per criterion; the 14-day event risk of the total."""
    items = scored_inputs(table, data)
    total = sum(int(item.points or 0) for item in items)
    risk = pick(table.tables["risk_14d_percent"], Decimal(total), "TIMI-UA.tables").percent
    return evaluation(table, items, total, band=None, risk_14d_percent=risk)


def timi_stemi(table: ScoreTable, data: dict[str, Any]) -> Evaluation:
    """The sum of the eight criteria; the 30-day mortality of the total."""
    items = scored_inputs(table, data)
    total = sum(int(item.points or 0) for item in items)
    rows = table.tables["mortality_30d_percent"]
    mortality = pick(rows, Decimal(total), "TIMI-STEMI.tables").percent
    return evaluation(table, items, total, band=None, mortality_30d_percent=mortality)


def heart(table: ScoreTable, data: dict[str, Any]) -> Evaluation:
    """History, ECG, Age, Risk factors, Troponin: 0–2 each.

    Known atherosclerotic disease is checked before the number of risk factors (a patient
    with prior PCI and one risk factor scores 2, not 1); it is stored as its own answer.
    """
    disease = table.items["atherosclerotic_disease"]
    items = []
    for key, spec in table.items.items():
        if key == "atherosclerotic_disease":
            items.append(ScoredItem(key, data[key], None, spec, in_items=False))
        elif key == "risk_factors" and data["atherosclerotic_disease"]:
            items.append(ScoredItem(key, data[key], item_points(disease, True), spec))
        else:
            items.append(ScoredItem(key, data[key], item_points(spec, data[key]), spec))
    total = sum(int(item.points or 0) for item in items)
    return evaluation(table, items, total, band=table.band(total))
