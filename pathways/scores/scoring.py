"""What every score shares: an item's points from its table, and the result in the shape of
scores.md §0 (`score`, `version`, `total`, `items`, `band`, `flags`, extras)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pathways.scores.tables import ItemSpec, ScoreTable, pick

__all__ = [
    "Answer",
    "Evaluation",
    "ScoredItem",
    "as_json_number",
    "evaluation",
    "item_points",
    "scored_inputs",
]

Answer = int | float | str | bool | list[str] | None


@dataclass(frozen=True, slots=True)
class ScoredItem:
    """One answer and what it scored: a key of `items` and one FHIR component."""

    key: str
    answer: Answer  # as given; None when the answer is absent (an ISS region without injury)
    points: int | Decimal | None  # None: not testable, or an answer that scores through another
    spec: ItemSpec | None = None  # unit, LOINC code and not-testable answer, when it has one
    in_items: bool = True  # False: stored with the score but not an entry of `items`
    code: str | None = None  # component code when not the key (NISS: the injury's region)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A computed score: the result JSON and the scored items it was made from."""

    table: ScoreTable
    result: dict[str, Any]
    items: tuple[ScoredItem, ...]


def item_points(spec: ItemSpec, value: Any) -> int:
    """The points one checked answer gives by its item's table."""
    if spec.type == "boolean":
        return (spec.if_true or 0) if value else 0
    if spec.type == "enum":
        return spec.value_points()[value]
    if spec.type == "list":
        measured = Decimal(len(value))
    elif isinstance(value, float):
        measured = Decimal(str(value))  # 1.2 is compared as 1.2, not as its binary neighbour
    else:
        measured = Decimal(value)
    if spec.points is None:
        return int(measured)  # the answer is the points (GCS, NIHSS, FAST-ED, HEART history)
    row = pick(spec.points, measured, f"items.{spec.type}.points")
    assert row.points is not None  # rows of a points table give points (checked at load)
    return row.points


def scored_inputs(table: ScoreTable, data: dict[str, Any]) -> list[ScoredItem]:
    """Each input item with its points, in the table's order."""
    return [
        ScoredItem(key, data[key], item_points(spec, data[key]), spec)
        for key, spec in table.items.items()
    ]


def as_json_number(value: int | Decimal | None) -> int | float | None:
    """Integers stay integers; a Decimal (RTS) becomes the float JSON carries."""
    return float(value) if isinstance(value, Decimal) else value


def evaluation(
    table: ScoreTable,
    items: Sequence[ScoredItem],
    total: int | Decimal | None,
    *,
    band: str | None,
    flags: Sequence[str] = (),
    **extras: Any,
) -> Evaluation:
    """The result of scores.md §0, with the scored items it was made from."""
    result: dict[str, Any] = {
        "score": table.name,
        "version": table.version,
        "total": as_json_number(total),
        "items": {item.key: as_json_number(item.points) for item in items if item.in_items},
        "band": band,
        "flags": list(flags),
        **extras,
    }
    return Evaluation(table, result, tuple(items))
