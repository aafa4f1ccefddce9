"""A computed score as the FHIR `Observation` of interfaces.md §5 "Score".

The total is `valueInteger` (RTS: `valueQuantity` with 4 decimals; GCS with verbal "T": no
value and `dataAbsentReason` not-applicable); one component per scored item carries the
answer as given and, in an extension, its points; `method` is the table's version id, so a
result is never confused with one of another version.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pathways.scores.scoring import Evaluation, ScoredItem
from pathways.vocabulary import (
    ASSESSMENT_PHASE_EXTENSION,
    CASE_EXTENSION,
    DATA_ABSENT_REASON,
    HL7_OBSERVATION_CATEGORY,
    LOINC,
    SCORE_ANSWER_SYSTEM,
    SCORE_BAND_SYSTEM,
    SCORE_POINTS_EXTENSION,
    SCORE_SYSTEM,
    SCORE_VERSION_SYSTEM,
    UCUM,
)

__all__ = ["score_observation"]


def score_observation(
    evaluation: Evaluation,
    *,
    subject: str,
    effective: datetime,
    case: str | None = None,
    phase: str | None = None,
    performer: str | None = None,
) -> dict[str, Any]:
    """The Observation to store for one evaluation. `subject`, `case` and `performer` are
    references (`Patient/123`, `EpisodeOfCare/9`); `effective` must carry its offset."""
    if effective.tzinfo is None:
        raise ValueError("effective must be timezone-aware (+08:00)")
    table, result = evaluation.table, evaluation.result
    code = (
        {"system": LOINC, "code": table.loinc}
        if table.loinc
        else {"system": SCORE_SYSTEM, "code": table.code}
    )
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": HL7_OBSERVATION_CATEGORY, "code": "survey"}]}],
        "code": {"coding": [code], "text": table.title},
        "subject": {"reference": subject},
        "effectiveDateTime": effective.replace(microsecond=0).isoformat(),
    }
    extensions: list[dict[str, Any]] = []
    if phase is not None:
        extensions.append({"url": ASSESSMENT_PHASE_EXTENSION, "valueCode": phase})
    if case is not None:
        extensions.append({"url": CASE_EXTENSION, "valueReference": {"reference": case}})
    if extensions:
        observation["extension"] = extensions
    if performer is not None:
        observation["performer"] = [{"reference": performer}]
    total = result["total"]
    if total is None:
        observation["dataAbsentReason"] = {
            "coding": [{"system": DATA_ABSENT_REASON, "code": "not-applicable"}]
        }
    elif isinstance(total, float):
        observation["valueQuantity"] = {
            "value": total,
            "unit": "{score}",
            "system": UCUM,
            "code": "{score}",
        }
    else:
        observation["valueInteger"] = total
    if result["band"] is not None:
        observation["interpretation"] = [
            {"coding": [{"system": SCORE_BAND_SYSTEM, "code": result["band"]}]}
        ]
    observation["method"] = {
        "coding": [{"system": SCORE_VERSION_SYSTEM, "code": table.version}],
        "text": table.version,
    }
    observation["component"] = [_component(table.code, item) for item in evaluation.items]
    return observation


def _component(score_code: str, item: ScoredItem) -> dict[str, Any]:
    spec = item.spec
    if spec is not None and spec.loinc:
        coding = {"system": LOINC, "code": spec.loinc}
    else:
        coding = {"system": SCORE_SYSTEM, "code": f"{score_code}.{item.code or item.key}"}
    component: dict[str, Any] = {"code": {"coding": [coding], "text": item.key}}
    component.update(_answer(item))
    if isinstance(item.points, Decimal):
        points: dict[str, Any] = {"valueDecimal": float(item.points)}
    elif item.points is not None:
        points = {"valueInteger": item.points}
    else:
        points = {}
    if points:
        component["extension"] = [{"url": SCORE_POINTS_EXTENSION, **points}]
    return component


def _answer(item: ScoredItem) -> dict[str, Any]:
    """The answer as given, as the component's value[x]."""
    answer, spec = item.answer, item.spec
    if spec is not None and spec.not_testable is not None and answer == spec.not_testable:
        # Not testable is its own answer, never 0 (scores.md §0).
        coding = (
            {"system": LOINC, "code": spec.un_answer}
            if spec.un_answer
            else {"system": SCORE_ANSWER_SYSTEM, "code": answer}
        )
        return {"valueCodeableConcept": {"coding": [coding], "text": answer}}
    if answer is None:
        return {}
    if isinstance(answer, bool):
        return {"valueBoolean": answer}
    if isinstance(answer, int | float):
        if spec is not None and spec.unit is not None:
            return {
                "valueQuantity": {
                    "value": answer,
                    "unit": spec.unit,
                    "system": UCUM,
                    "code": spec.unit,
                }
            }
        if isinstance(answer, int):
            return {"valueInteger": answer}
        return {"valueQuantity": {"value": answer}}
    if isinstance(answer, list):
        return {"valueString": ", ".join(answer) or "none"}
    return {"valueString": answer}
