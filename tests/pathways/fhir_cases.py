"""Center cases written to the FHIR store in the shapes of interfaces.md §5, for tests that need
a case the way the pathway engine will write it (EpisodeOfCare + time-node Observations)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fhir_store import FhirStore
from pathways.vocabulary import (
    ARRIVAL_MODE_EXTENSION,
    CASE_EXTENSION,
    CASE_FACT_EXTENSION,
    CENTER_SYSTEM,
    CENTER_TYPE_CODES,
    OBSERVATION_CATEGORY_SYSTEM,
    TIME_NODE_SYSTEM,
    Center,
)


async def write_case(
    store: FhirStore,
    center: Center,
    *,
    mode: str,
    facts: Mapping[str, str | bool | int] = {},
    status: str = "active",
    opened: datetime | None = None,
) -> dict[str, Any]:
    """A patient and an EpisodeOfCare of `center` with its arrival mode and facts."""
    patient = await store.create({"resourceType": "Patient"})
    extensions: list[dict[str, Any]] = [{"url": ARRIVAL_MODE_EXTENSION, "valueCode": mode}]
    for name, value in facts.items():
        element = {bool: "valueBoolean", int: "valueInteger"}.get(type(value), "valueCode")
        extensions.append(
            {
                "url": CASE_FACT_EXTENSION,
                "extension": [
                    {"url": "name", "valueCode": name},
                    {"url": "value", element: value},
                ],
            }
        )
    episode: dict[str, Any] = {
        "resourceType": "EpisodeOfCare",
        "status": status,
        "type": [{"coding": [{"system": CENTER_SYSTEM, "code": CENTER_TYPE_CODES[center]}]}],
        "patient": {"reference": f"Patient/{patient['id']}"},
        "extension": extensions,
    }
    if opened is not None:
        episode["period"] = {"start": opened.isoformat()}
    return await store.create(episode)


async def write_node(
    store: FhirStore,
    episode: dict[str, Any],
    key: str,
    at: datetime | str,
    *,
    status: str = "final",
) -> dict[str, Any]:
    """A time-node Observation of the case (`final`: the authoritative node)."""
    return await store.create(
        {
            "resourceType": "Observation",
            "status": status,
            "category": [
                {"coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": "time-node"}]}
            ],
            "code": {"coding": [{"system": TIME_NODE_SYSTEM, "code": key}]},
            "subject": episode["patient"],
            "valueDateTime": at if isinstance(at, str) else at.isoformat(timespec="seconds"),
            "extension": [
                {
                    "url": CASE_EXTENSION,
                    "valueReference": {"reference": f"EpisodeOfCare/{episode['id']}"},
                }
            ],
        }
    )
