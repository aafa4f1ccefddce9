"""A minimal reader of open center cases from the FHIR store, for the running clocks until the
shared `pathways.case_store` lands: an `EpisodeOfCare` and its authoritative time-node
`Observation`s (interfaces.md §5, the URLs of `pathways.vocabulary`) as a `CaseTimeline`.

The case's `activation` (its `period.start`) is put among the nodes under that key, which is
how clock rules start at the activation. To be replaced by `case_store.load_timeline(s)`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

from fhir_store import FhirStore, Gone, NotFound, parse_search
from pathways.clock_rules import ACTIVATION
from pathways.timeline import CaseTimeline, FactValue
from pathways.vocabulary import (
    ARRIVAL_MODE_EXTENSION,
    ARRIVAL_MODES,
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

__all__ = [
    "OPEN_STATUSES",
    "TIME_NODE_CATEGORY_PAIR",
    "case_of_observation",
    "load_open_timelines",
    "load_timeline",
    "search_all",
]

# EpisodeOfCare.status values of a case that is still open (finished, cancelled and
# entered-in-error are closed).
OPEN_STATUSES = ("planned", "waitlist", "active", "onhold")
NODE_STATUSES = "final,amended"
TIME_NODE_CATEGORY_PAIR = ("category", f"{OBSERVATION_CATEGORY_SYSTEM}|{TIME_NODE_CATEGORY}")
_PAGE = 500
_CENTER_BY_CODE: dict[str, Center] = {code: center for center, code in CENTER_TYPE_CODES.items()}


async def load_open_timelines(store: FhirStore) -> list[CaseTimeline]:
    """Every open case of every center with its nodes and facts."""
    timelines = []
    pairs = [("status", ",".join(OPEN_STATUSES))]
    async for episode in search_all(store, "EpisodeOfCare", pairs):
        timeline = await _timeline(store, episode)
        if timeline is not None:
            timelines.append(timeline)
    return timelines


async def load_timeline(store: FhirStore, case_id: str) -> CaseTimeline | None:
    """The case as it is now; None when it is gone or not a center case."""
    try:
        episode = await store.read("EpisodeOfCare", case_id)
    except (NotFound, Gone):
        return None
    return await _timeline(store, episode)


def case_of_observation(observation: dict[str, Any]) -> str | None:
    """The EpisodeOfCare id a time-node Observation belongs to; None for other Observations."""
    categories = observation.get("category") or []
    is_node = any(
        c.get("system") == OBSERVATION_CATEGORY_SYSTEM and c.get("code") == TIME_NODE_CATEGORY
        for category in categories
        for c in category.get("coding") or []
    )
    if not is_node:
        return None
    for extension in observation.get("extension") or []:
        if extension.get("url") == CASE_EXTENSION:
            reference = (extension.get("valueReference") or {}).get("reference", "")
            kind, _, case_id = str(reference).partition("/")
            if kind == "EpisodeOfCare" and case_id:
                return case_id
    return None


async def _timeline(store: FhirStore, episode: dict[str, Any]) -> CaseTimeline | None:
    center = _center(episode)
    if center is None:
        return None
    case_id = str(episode["id"])
    patient = str((episode.get("patient") or {}).get("reference", "")).removeprefix("Patient/")
    nodes: dict[str, datetime] = {}
    activated = _instant((episode.get("period") or {}).get("start"))
    if activated is not None:
        nodes[ACTIVATION] = activated
    if patient:
        pairs = [
            ("subject", f"Patient/{patient}"),
            TIME_NODE_CATEGORY_PAIR,
            ("status", NODE_STATUSES),
        ]
        async for observation in search_all(store, "Observation", pairs):
            if case_of_observation(observation) != case_id:
                continue
            key = _node_key(observation)
            at = _instant(observation.get("valueDateTime"))
            if key is not None and at is not None:
                nodes[key] = at
    return CaseTimeline(
        case_id=case_id,
        center=center,
        patient_id=patient,
        arrival_mode=_arrival_mode(episode),
        nodes=nodes,
        facts=dict(_facts(episode)),
        status=str(episode.get("status", "active")),
    )


async def search_all(
    store: FhirStore, resource_type: str, pairs: list[tuple[str, str]]
) -> AsyncIterator[dict[str, Any]]:
    """Every match of a strict search, page after page."""
    offset = 0
    while True:
        query = parse_search(
            resource_type,
            [*pairs, ("_count", str(_PAGE)), ("_offset", str(offset))],
            strict=True,
        )
        page = await store.search(query)
        for content in page.contents:
            yield json.loads(content)
        if not page.more:
            return
        offset += _PAGE


def _center(episode: dict[str, Any]) -> Center | None:
    for concept in episode.get("type") or []:
        for coding in concept.get("coding") or []:
            if coding.get("system") == CENTER_SYSTEM and coding.get("code") in _CENTER_BY_CODE:
                return _CENTER_BY_CODE[coding["code"]]
    return None


def _arrival_mode(episode: dict[str, Any]) -> ArrivalMode | None:
    for extension in episode.get("extension") or []:
        if extension.get("url") == ARRIVAL_MODE_EXTENSION:
            code = extension.get("valueCode")
            for mode in ARRIVAL_MODES:
                if code == mode:
                    return mode
    return None


def _facts(episode: dict[str, Any]) -> Iterator[tuple[str, FactValue]]:
    for extension in episode.get("extension") or []:
        if extension.get("url") != CASE_FACT_EXTENSION:
            continue
        parts = {e.get("url"): e for e in extension.get("extension") or []}
        name = (parts.get("name") or {}).get("valueCode")
        value_part = parts.get("value") or {}
        for element in ("valueCode", "valueString", "valueBoolean", "valueInteger", "valueDecimal"):
            if element in value_part and isinstance(name, str):
                yield name, value_part[element]
                break


def _node_key(observation: dict[str, Any]) -> str | None:
    for coding in (observation.get("code") or {}).get("coding") or []:
        if coding.get("system") == TIME_NODE_SYSTEM and coding.get("code"):
            return str(coding["code"])
    return None


def _instant(value: object) -> datetime | None:
    """A FHIR dateTime with a time and an offset; anything less is not an instant."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else None
