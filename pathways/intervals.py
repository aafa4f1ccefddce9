"""A case's interval Observations (interfaces.md §5) kept in step with its time nodes and facts.

After the pathway engine resolves a case's nodes (a case hook) or a case's facts change, every
interval indicator of every standard version of its center is evaluated
(`pathways.indicators`) and written as an Observation with a deterministic id per case,
standard and indicator, `derivedFrom` the two time-node Observations. Only what changed is
written (no new version otherwise); an interval that no longer concerns the case (its
population changed, the case was entered in error) is deleted. An indicator whose node went is
`not_computable` and says so, without a value.

An edit of the indicator definitions re-derives every case's intervals at once
(`rederive_intervals`: the subscriber when its loader sees the edit, `greenchannel case reindex`
by hand), not only at each case's next change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from engine.mapping.functions import make_id
from pathways.case_store import NOT_COUNTED, search_all, stored_cases
from pathways.indicator_definitions import Catalogue
from pathways.indicators import evaluate_case, interval_observations
from pathways.nodes import ENGINE
from pathways.records import Records, content_of
from pathways.shapes import Note, case_center, node_id
from pathways.timeline import CaseTimeline
from pathways.vocabulary import (
    CENTER_SYSTEM,
    CENTER_TYPE_CODES,
    INTERVAL_CATEGORY,
    OBSERVATION_CATEGORY_SYSTEM,
    Center,
)

__all__ = ["INTERVAL_PREFIX", "IntervalWriter", "interval_id", "rederive_intervals"]

INTERVAL_PREFIX = "iv-"
_CATEGORY = f"{OBSERVATION_CATEGORY_SYSTEM}|{INTERVAL_CATEGORY}"
_CASES_PER_READ = 50  # cases whose nodes are read at a time by a re-derivation


def interval_id(case_id: str, standard: str, indicator: str) -> str:
    """One interval Observation per case, standard version and indicator."""
    return f"{INTERVAL_PREFIX}{make_id('interval', case_id, standard, indicator)}"


class IntervalWriter:
    """The case hook that writes the interval Observations of the indicator definitions."""

    def __init__(self, records: Records, definitions: Callable[[], Catalogue]) -> None:
        self.records = records
        # the definitions now (`IndicatorDefinitions.current`: an edited file counts at once)
        self.definitions = definitions

    def wanted(self, timeline: CaseTimeline, definitions: Catalogue) -> dict[str, dict[str, Any]]:
        """The interval Observations the case should have now, by id."""
        if timeline.status in NOT_COUNTED:
            return {}
        references = {
            key: f"Observation/{node_id(timeline.case_id, key)}" for key in timeline.nodes
        }
        wanted: dict[str, dict[str, Any]] = {}
        for standard in definitions.standards_for(timeline.center):
            results = evaluate_case(timeline, standard)
            for observation in interval_observations(timeline, results, references):
                indicator = observation["code"]["coding"][0]["code"]
                identifier = interval_id(timeline.case_id, standard.id, indicator)
                wanted[identifier] = {"resourceType": "Observation", "id": identifier} | {
                    k: v for k, v in observation.items() if k != "resourceType"
                }
        return wanted

    async def __call__(self, timeline: CaseTimeline) -> None:
        wanted = self.wanted(timeline, await asyncio.to_thread(self.definitions))
        held = {
            o["id"]: o
            for o in await search_all(
                self.records.store,
                "Observation",
                [("case", f"EpisodeOfCare/{timeline.case_id}"), ("category", _CATEGORY)],
            )
        }
        for identifier in sorted(held.keys() - wanted.keys()):
            await self.records.delete(f"Observation/{identifier}")
        for identifier, observation in wanted.items():
            current = held.get(identifier)
            if current is not None and content_of(current) == content_of(observation):
                continue
            await self.records.write(
                observation,
                Note(
                    activity="derive",
                    who=ENGINE,
                    entity=f"EpisodeOfCare/{timeline.case_id}",
                    reason="indicator interval from the case's time nodes and facts",
                ),
            )


async def rederive_intervals(
    store: Any,
    writer: Callable[[CaseTimeline], Awaitable[None]],
    center: Center | None = None,
) -> int:
    """Write again the interval Observations of every case (of `center`) from the definitions
    now: after an indicator definition edit, without waiting for each case's next change.
    Cancelled and erroneous cases lose theirs. Returns how many cases were looked at."""
    params = [("type", f"{CENTER_SYSTEM}|{CENTER_TYPE_CODES[center]}")] if center else []
    episodes = await search_all(store, "EpisodeOfCare", params)
    mine = [
        e for e in episodes if (found := case_center(e)) is not None and center in (None, found)
    ]
    for start in range(0, len(mine), _CASES_PER_READ):
        for case in await stored_cases(store, mine[start : start + _CASES_PER_READ]):
            await writer(case.timeline)
    return len(mine)
