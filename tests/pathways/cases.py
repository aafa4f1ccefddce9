"""Test cases for the indicators: CaseTimelines built from minutes after a start, and the FHIR
resources the pathway engine writes for them (EpisodeOfCare, time-node Observations)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from fhir_store import FhirStore
from pathways.timeline import CaseTimeline, FactValue
from pathways.vocabulary import (
    ARRIVAL_MODE_EXTENSION,
    CASE_EXTENSION,
    CASE_FACT_EXTENSION,
    CENTER_SYSTEM,
    CENTER_TYPE_CODES,
    OBSERVATION_CATEGORY_SYSTEM,
    TIME_NODE_CATEGORY,
    TIME_NODE_SYSTEM,
    ArrivalMode,
    Center,
)

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 3, 10, 8, 0, 0, tzinfo=CST)


def case(
    case_id: str = "c1",
    *,
    center: Center = "chest_pain",
    arrival: ArrivalMode | None = "ems",
    at: datetime = T0,
    seconds: Mapping[str, int] | None = None,
    facts: Mapping[str, FactValue] | None = None,
    **minutes: float,
) -> CaseTimeline:
    """A case whose nodes are `at` plus so many minutes (keyword) or seconds (`seconds`)."""
    nodes = {key: at + timedelta(minutes=value) for key, value in minutes.items()}
    nodes.update({key: at + timedelta(seconds=value) for key, value in (seconds or {}).items()})
    return CaseTimeline(
        case_id=case_id,
        center=center,
        patient_id=f"p-{case_id}",
        arrival_mode=arrival,
        nodes=nodes,
        facts=dict(facts or {}),
    )


def stemi_pci(case_id: str = "c1", d2w_seconds: int = 3600, **extra: Any) -> CaseTimeline:
    """A STEMI brought by 120 going to primary PCI, door to wire `d2w_seconds`."""
    facts = {"diagnosis": "STEMI", "reperfusion": "primary_pci", **extra.pop("facts", {})}
    return case(
        case_id,
        facts=facts,
        first_medical_contact=-30,
        door=0,
        seconds={"wire_crossing": d2w_seconds},
        **extra,
    )


def episode(timeline: CaseTimeline) -> dict[str, Any]:
    """The EpisodeOfCare of a case, as the pathway engine writes it."""
    extensions: list[dict[str, Any]] = []
    if timeline.arrival_mode is not None:
        extensions.append({"url": ARRIVAL_MODE_EXTENSION, "valueCode": timeline.arrival_mode})
    for name, value in timeline.facts.items():
        if isinstance(value, bool):
            element = {"valueBoolean": value}
        elif isinstance(value, int):
            element = {"valueInteger": value}
        elif isinstance(value, float):
            element = {"valueDecimal": value}
        else:
            element = {"valueCode": value}
        extensions.append(
            {
                "url": CASE_FACT_EXTENSION,
                "extension": [{"url": "name", "valueCode": name}, {"url": "value", **element}],
            }
        )
    start = min(timeline.nodes.values(), default=T0)
    return {
        "resourceType": "EpisodeOfCare",
        "id": timeline.case_id,
        "status": timeline.status,
        "type": [
            {"coding": [{"system": CENTER_SYSTEM, "code": CENTER_TYPE_CODES[timeline.center]}]}
        ],
        "patient": {"reference": f"Patient/{timeline.patient_id}"},
        "period": {"start": start.isoformat()},
        "extension": extensions,
    }


def time_node(
    timeline: CaseTimeline, key: str, at: datetime, *, status: str = "final", suffix: str = ""
) -> dict[str, Any]:
    """One time-node Observation of a case."""
    return {
        "resourceType": "Observation",
        "id": f"{timeline.case_id}-{key.replace('_', '-')}{suffix}",
        "status": status,
        "category": [
            {"coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": TIME_NODE_CATEGORY}]}
        ],
        "code": {"coding": [{"system": TIME_NODE_SYSTEM, "code": key}]},
        "subject": {"reference": f"Patient/{timeline.patient_id}"},
        "valueDateTime": at.isoformat(),
        "extension": [
            {
                "url": CASE_EXTENSION,
                "valueReference": {"reference": f"EpisodeOfCare/{timeline.case_id}"},
            }
        ],
    }


def case_bundle(timeline: CaseTimeline) -> dict[str, Any]:
    """A transaction Bundle with the case's patient, episode and final time nodes."""
    resources = [
        {"resourceType": "Patient", "id": timeline.patient_id},
        episode(timeline),
        *(time_node(timeline, key, at) for key, at in timeline.nodes.items()),
    ]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": resource,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
            }
            for resource in resources
        ],
    }


async def write_case(store: FhirStore, timeline: CaseTimeline) -> None:
    """Store a case as the pathway engine would: patient, episode, final time nodes."""
    await store.transaction(case_bundle(timeline))
