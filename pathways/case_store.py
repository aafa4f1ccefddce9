"""Reading center cases from the FHIR store: the one reader of a case, its time nodes and of a
search's pages, for the pathway engine, the indicators and QC, the running clocks and the archive.

The contract (interfaces.md §5; the shapes are `pathways.shapes`, the URLs `pathways.vocabulary`):

- the case is an `EpisodeOfCare`: `type[].coding[]` {CENTER_SYSTEM, CENTER_TYPE_CODES[center]},
  `status`, `period.start` (the activation), `patient`, the arrival mode as extension
  ARRIVAL_MODE_EXTENSION (valueCode) and each case fact as a complex extension
  CASE_FACT_EXTENSION with sub-extensions `name` (valueCode) and `value` (value[x]);
- its authoritative time nodes are `Observation`s with status `final` or `amended`
  (`preliminary` ones are candidates, not nodes), category {OBSERVATION_CATEGORY_SYSTEM,
  TIME_NODE_CATEGORY}, code {TIME_NODE_SYSTEM, node key}, `valueDateTime` with its offset,
  `subject` the patient and extension CASE_EXTENSION valueReference `EpisodeOfCare/<id>`.

Observations are searched by subject and category and then filtered by the case extension, so
this works whether or not a search parameter on the extension exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fhir_store import FhirStore, Gone, NotFound, json_loads, parse_search
from pathways.months import month_bucket, month_start, months_between, shift_month
from pathways.shapes import (
    AUTHORITATIVE_STATUSES,
    case_center,
    case_of,
    node_key_of,
    parse_instant,
    timeline_of,
)
from pathways.timeline import CaseTimeline
from pathways.vocabulary import (
    CENTER_SYSTEM,
    CENTER_TYPE_CODES,
    OBSERVATION_CATEGORY_SYSTEM,
    TIME_NODE_CATEGORY,
    Center,
)

__all__ = [
    "EPISODE_MARGIN",
    "OPEN_STATUSES",
    "TIME_NODE_CATEGORY_PAIR",
    "NotACase",
    "StoredCase",
    "case_time_nodes",
    "load_case",
    "load_cases",
    "load_open_timelines",
    "load_timeline",
    "load_timelines",
    "search_all",
    "stored_cases",
]

# Cases are first narrowed by EpisodeOfCare.period, then counted by the month of their door
# (R10); the door may precede the episode's start (activation) or follow it, by this much.
EPISODE_MARGIN = timedelta(days=7)
# A case entered in error or cancelled (a false activation) is no case for the statistics.
NOT_COUNTED = frozenset({"entered-in-error", "cancelled"})
# EpisodeOfCare.status values of a case that is still open (finished, cancelled and
# entered-in-error are closed): the cases whose clocks run.
OPEN_STATUSES = ("planned", "waitlist", "active", "onhold")
TIME_NODE_CATEGORY_PAIR = ("category", f"{OBSERVATION_CATEGORY_SYSTEM}|{TIME_NODE_CATEGORY}")
PAGE = 500
PATIENTS_PER_SEARCH = 50


class NotACase(LookupError):
    """The EpisodeOfCare does not exist or is not a center case (no center type)."""


@dataclass(frozen=True, slots=True)
class StoredCase:
    """A case's timeline and, per node key, the Observation it came from (`Observation/<id>`)."""

    timeline: CaseTimeline
    node_references: dict[str, str] = field(default_factory=dict)


async def search_all(
    store: FhirStore, resource_type: str, pairs: list[tuple[str, str]], *, limit: int | None = None
) -> list[dict[str, Any]]:
    """Every match of a strict search, page by page (keyset cursors). With `limit`, at most
    `limit + 1` are read, so that a caller can tell a search cut at its bound from one that fit."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        size = PAGE if limit is None else min(PAGE, limit + 1 - len(found))
        query_pairs = [*pairs, ("_count", str(size))]
        if cursor is not None:
            query_pairs.append(("_cursor", cursor))
        page = await store.search(parse_search(resource_type, query_pairs, strict=True))
        found += [json_loads(content) for content in page.contents]
        if page.next_cursor is None or (limit is not None and len(found) > limit):
            return found
        cursor = page.next_cursor


async def case_time_nodes(
    store: FhirStore, episode: Mapping[str, Any], *, limit: int | None = None
) -> list[dict[str, Any]]:
    """Every time-node Observation of a case — candidates, retracted ones and its nodes — by
    the case's patient (no search parameter on the case extension needed)."""
    patient = _patient_id(episode)
    if not patient:
        return []
    found = await search_all(
        store,
        "Observation",
        [("subject", f"Patient/{patient}"), TIME_NODE_CATEGORY_PAIR],
        limit=limit,
    )
    return [o for o in found if case_of(o) == f"EpisodeOfCare/{episode['id']}"]


async def load_timeline(store: FhirStore, case_id: str) -> CaseTimeline:
    """The timeline of one case; NotACase if there is no such center case."""
    return (await load_case(store, case_id)).timeline


async def load_case(store: FhirStore, case_id: str) -> StoredCase:
    """One case with its node references; NotACase if there is no such center case."""
    try:
        episode = await store.read("EpisodeOfCare", case_id)
    except (NotFound, Gone) as error:
        raise NotACase(f"no center case EpisodeOfCare/{case_id}") from error
    if case_center(episode) is None:
        raise NotACase(f"EpisodeOfCare/{case_id} is not a chest pain, stroke or trauma case")
    (case,) = await stored_cases(store, [episode])
    return case


async def load_open_timelines(store: FhirStore) -> list[CaseTimeline]:
    """Every open case of every center with its nodes and facts (the running clocks' cases)."""
    episodes = await search_all(store, "EpisodeOfCare", [("status", ",".join(OPEN_STATUSES))])
    cases = await stored_cases(store, [e for e in episodes if case_center(e) is not None])
    return [case.timeline for case in cases]


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
    episodes = await search_all(
        store,
        "EpisodeOfCare",
        [
            ("type", f"{CENTER_SYSTEM}|{CENTER_TYPE_CODES[center]}"),
            ("date", f"ge{low.isoformat(timespec='seconds')}"),
            ("date", f"le{high.isoformat(timespec='seconds')}"),
        ],
    )
    counted = [
        e for e in episodes if case_center(e) == center and e.get("status") not in NOT_COUNTED
    ]
    cases = await stored_cases(store, counted)
    wanted = set(months)
    return [case for case in cases if month_bucket(case.timeline) in wanted]


async def stored_cases(store: FhirStore, episodes: Sequence[dict[str, Any]]) -> list[StoredCase]:
    """Each center case's episode with its authoritative time nodes, a few patients per search."""
    nodes: dict[str, dict[str, tuple[datetime, str, str]]] = {e["id"]: {} for e in episodes}
    patients = sorted({_patient_id(e) for e in episodes} - {""})
    for start in range(0, len(patients), PATIENTS_PER_SEARCH):
        batch = patients[start : start + PATIENTS_PER_SEARCH]
        observations = await search_all(
            store,
            "Observation",
            [("subject", ",".join(f"Patient/{p}" for p in batch)), TIME_NODE_CATEGORY_PAIR],
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
    return [
        StoredCase(
            timeline_of(episode, {key: value[0] for key, value in nodes[episode["id"]].items()}),
            {key: value[2] for key, value in nodes[episode["id"]].items()},
        )
        for episode in episodes
    ]


def _patient_id(episode: Mapping[str, Any]) -> str:
    reference = str(episode.get("patient", {}).get("reference", ""))
    return reference.removeprefix("Patient/") if reference.startswith("Patient/") else ""


def _time_node(observation: dict[str, Any]) -> tuple[str, str, datetime] | None:
    """(case id, node key, instant) of an authoritative time node, else None."""
    if observation.get("status") not in AUTHORITATIVE_STATUSES:
        return None
    key, case = node_key_of(observation), case_of(observation) or ""
    instant = parse_instant(observation.get("valueDateTime"))
    if key is None or not case.startswith("EpisodeOfCare/") or instant is None:
        return None
    return case.removeprefix("EpisodeOfCare/"), key, instant
