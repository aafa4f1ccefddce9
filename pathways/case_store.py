"""Read center cases from the FHIR store into `CaseTimeline`s, as the pathway engine writes them.

The contract (interfaces.md §5, pathways.vocabulary):

- the case is an `EpisodeOfCare`: `type[].coding[]` {CENTER_SYSTEM, CENTER_TYPE_CODES[center]},
  `status`, `period.start`, `patient`, the arrival mode as extension ARRIVAL_MODE_EXTENSION
  (valueCode) and each case fact as a complex extension CASE_FACT_EXTENSION with
  sub-extensions `name` (valueCode) and `value` (value[x]);
- its authoritative time nodes are `Observation`s with status `final` or `amended`
  (`preliminary` ones are candidates, not nodes), category {OBSERVATION_CATEGORY_SYSTEM,
  TIME_NODE_CATEGORY}, code {TIME_NODE_SYSTEM, node key}, `valueDateTime` with its offset,
  `subject` the patient and extension CASE_EXTENSION valueReference `EpisodeOfCare/<id>`.

Observations are searched by subject and category and then filtered by the case extension, so
this works whether or not a search parameter on the extension exists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fhir_store import FhirStore, parse_search
from pathways.months import month_bucket, month_start, months_between, shift_month
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
    Center,
)

__all__ = [
    "EPISODE_MARGIN",
    "NotACase",
    "StoredCase",
    "load_case",
    "load_cases",
    "load_timeline",
    "load_timelines",
]

# Cases are first narrowed by EpisodeOfCare.period, then counted by the month of their door
# (R10); the door may precede the episode's start (activation) or follow it, by this much.
EPISODE_MARGIN = timedelta(days=7)
AUTHORITATIVE = frozenset({"final", "amended"})
# A case entered in error or cancelled (a false activation) is no case for the statistics.
NOT_COUNTED = frozenset({"entered-in-error", "cancelled"})
PAGE = 1000
PATIENTS_PER_SEARCH = 50
_CENTERS_BY_CODE = {code: center for center, code in CENTER_TYPE_CODES.items()}
_FACT_VALUES = ("valueCode", "valueBoolean", "valueInteger", "valueDecimal", "valueString")


class NotACase(LookupError):
    """The EpisodeOfCare does not exist or is not a center case (no center type)."""


@dataclass(frozen=True, slots=True)
class StoredCase:
    """A case's timeline and, per node key, the Observation it came from (`Observation/<id>`)."""

    timeline: CaseTimeline
    node_references: dict[str, str] = field(default_factory=dict)


async def load_timeline(store: FhirStore, case_id: str) -> CaseTimeline:
    """The timeline of one case; NotACase if there is no such center case."""
    return (await load_case(store, case_id)).timeline


async def load_case(store: FhirStore, case_id: str) -> StoredCase:
    """One case with its node references; NotACase if there is no such center case."""
    from fhir_store import FhirStoreError

    try:
        episode = await store.read("EpisodeOfCare", case_id)
    except FhirStoreError as error:
        if error.status in (404, 410):
            raise NotACase(f"no center case EpisodeOfCare/{case_id}") from error
        raise
    if _center(episode) is None:
        raise NotACase(f"EpisodeOfCare/{case_id} is not a chest pain, stroke or trauma case")
    (case,) = await _with_nodes(store, [episode])
    return case


async def load_timelines(
    store: FhirStore, center: Center, first_month: str, last_month: str
) -> list[CaseTimeline]:
    """Every case of `center` counted (R10) in the months `first_month`..`last_month`; cases
    entered in error or cancelled are left out."""
    return [case.timeline for case in await load_cases(store, center, first_month, last_month)]


async def load_cases(
    store: FhirStore, center: Center, first_month: str, last_month: str
) -> list[StoredCase]:
    """Like `load_timelines`, with each case's node references."""
    months = months_between(first_month, last_month)
    low = month_start(months[0]) - EPISODE_MARGIN
    high = month_start(shift_month(months[-1], 1)) + EPISODE_MARGIN
    episodes = await _search_all(
        store,
        "EpisodeOfCare",
        [
            ("type", f"{CENTER_SYSTEM}|{CENTER_TYPE_CODES[center]}"),
            ("date", f"ge{_fhir_instant(low)}"),
            ("date", f"le{_fhir_instant(high)}"),
        ],
    )
    counted = [e for e in episodes if _center(e) == center and e.get("status") not in NOT_COUNTED]
    cases = await _with_nodes(store, counted)
    wanted = set(months)
    return [case for case in cases if month_bucket(case.timeline) in wanted]


async def _with_nodes(store: FhirStore, episodes: Sequence[dict[str, Any]]) -> list[StoredCase]:
    """Each episode with its authoritative time nodes, a few patients per search."""
    nodes: dict[str, dict[str, tuple[datetime, str, str]]] = {e["id"]: {} for e in episodes}
    patients = sorted({_patient_id(e) for e in episodes} - {""})
    for start in range(0, len(patients), PATIENTS_PER_SEARCH):
        batch = patients[start : start + PATIENTS_PER_SEARCH]
        observations = await _search_all(
            store,
            "Observation",
            [
                ("subject", ",".join(f"Patient/{p}" for p in batch)),
                ("category", f"{OBSERVATION_CATEGORY_SYSTEM}|{TIME_NODE_CATEGORY}"),
            ],
        )
        for observation in observations:
            found = _time_node(observation)
            if found is None or found[0] not in nodes:
                continue
            case_id, key, instant = found
            updated = str(observation.get("meta", {}).get("lastUpdated", ""))
            reference = f"Observation/{observation['id']}"
            kept = nodes[case_id].get(key)
            # Two authoritative Observations of one node should not exist; if they do, the
            # one written last is the resolver's latest word.
            if kept is None or (updated, reference) > (kept[1], kept[2]):
                nodes[case_id][key] = (instant, updated, reference)
    return [_stored_case(episode, nodes[episode["id"]]) for episode in episodes]


def _stored_case(
    episode: dict[str, Any], nodes: dict[str, tuple[datetime, str, str]]
) -> StoredCase:
    center = _center(episode)
    assert center is not None
    arrival = None
    facts: dict[str, FactValue] = {}
    for extension in episode.get("extension", []):
        url = extension.get("url")
        if url == ARRIVAL_MODE_EXTENSION and extension.get("valueCode") in ARRIVAL_MODES:
            arrival = extension["valueCode"]
        elif url == CASE_FACT_EXTENSION:
            fact = _fact(extension)
            if fact is not None:
                facts[fact[0]] = fact[1]
    timeline = CaseTimeline(
        case_id=episode["id"],
        center=center,
        patient_id=_patient_id(episode),
        arrival_mode=arrival,
        nodes={key: value[0] for key, value in nodes.items()},
        facts=facts,
        status=str(episode.get("status", "active")),
    )
    return StoredCase(timeline, {key: value[2] for key, value in nodes.items()})


def _center(episode: dict[str, Any]) -> Center | None:
    for concept in episode.get("type", []):
        for coding in concept.get("coding", []):
            if coding.get("system") == CENTER_SYSTEM and coding.get("code") in _CENTERS_BY_CODE:
                return _CENTERS_BY_CODE[coding["code"]]
    return None


def _patient_id(episode: dict[str, Any]) -> str:
    reference = str(episode.get("patient", {}).get("reference", ""))
    return reference.removeprefix("Patient/") if reference.startswith("Patient/") else ""


def _fact(extension: dict[str, Any]) -> tuple[str, FactValue] | None:
    name: str | None = None
    value: FactValue | None = None
    for part in extension.get("extension", []):
        if part.get("url") == "name":
            name = part.get("valueCode")
        elif part.get("url") == "value":
            for element in _FACT_VALUES:
                if element in part:
                    value = part[element]
    if not isinstance(name, str) or not isinstance(value, str | bool | int | float):
        return None
    return name, value


def _time_node(observation: dict[str, Any]) -> tuple[str, str, datetime] | None:
    """(case id, node key, instant) of an authoritative time node, else None."""
    if observation.get("status") not in AUTHORITATIVE:
        return None
    key = next(
        (
            coding.get("code")
            for coding in observation.get("code", {}).get("coding", [])
            if coding.get("system") == TIME_NODE_SYSTEM
        ),
        None,
    )
    case = next(
        (
            str(extension.get("valueReference", {}).get("reference", ""))
            for extension in observation.get("extension", [])
            if extension.get("url") == CASE_EXTENSION
        ),
        "",
    )
    text = observation.get("valueDateTime")
    if (
        not isinstance(key, str)
        or not case.startswith("EpisodeOfCare/")
        or not isinstance(text, str)
    ):
        return None
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        return None  # a partial date (2026-01) is no instant
    if instant.tzinfo is None:
        return None  # never compare naive times; the store keeps offsets
    return case.removeprefix("EpisodeOfCare/"), key, instant


async def _search_all(
    store: FhirStore, resource_type: str, pairs: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Every match of a search, page by page (keyset cursors)."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query_pairs = [*pairs, ("_count", str(PAGE))]
        if cursor is not None:
            query_pairs.append(("_cursor", cursor))
        page = await store.search(parse_search(resource_type, query_pairs, strict=True))
        found += [json.loads(content) for content in page.contents]
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def _fhir_instant(instant: datetime) -> str:
    return instant.isoformat(timespec="seconds")
