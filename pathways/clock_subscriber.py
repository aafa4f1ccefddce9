"""The change-event subscriber `pathway-clocks`: runs the `AlertScheduler` inside `greenchannel
serve` and feeds it from the FHIR store until the pathway engine does.

It loads the clock rules of every center (`config/pathways/clocks/<center>.yaml`), rebuilds the
open cases, then follows the store's change events under its own cursor: a changed
`EpisodeOfCare` or time-node `Observation` reloads that case and calls `update()` (or
`remove()` once the case is closed). When the pathway engine lands, it calls `update()` itself
after resolving a case's nodes, and this subscriber's event loop goes away (see docs/alerts.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from engine.errors import ConfigError
from engine.mapping import load_yaml
from engine.settings import content_root
from engine.subscribers import SubscriberContext
from fhir_store import ChangeEvent, ChangeFeed, FhirStore, Gone, NotFound
from pathways._case_reader import (
    OPEN_STATUSES,
    TIME_NODE_CATEGORY_PAIR,
    case_of_observation,
    load_open_timelines,
    load_timeline,
    search_all,
)
from pathways.alert_journal import journalled_alert_keys
from pathways.alerts import AlertScheduler
from pathways.clock_rules import ClockRule, parse_clock_rules
from pathways.timeline import CaseTimeline
from pathways.vocabulary import CENTERS

__all__ = ["ClockSubscriber", "ClockSubscriberFactory", "clock_rules_dir", "load_clock_rules"]

log = logging.getLogger(__name__)

RULES_FOLDER = Path("config") / "pathways" / "clocks"
_IDS_PER_SEARCH = 100


def clock_rules_dir() -> Path:
    """`config/pathways/clocks` of the working directory, else of the installed package."""
    return RULES_FOLDER if RULES_FOLDER.is_dir() else content_root() / RULES_FOLDER


def load_clock_rules(
    folder: Path, *, node_keys: Collection[str] | None = None
) -> dict[str, list[ClockRule]]:
    """The clock rules of each center that has a file `<center>.yaml` in `folder`."""
    rules: dict[str, list[ClockRule]] = {}
    for center in CENTERS:
        path = folder / f"{center}.yaml"
        if not path.is_file():
            continue
        data, positions = load_yaml(path)
        if not isinstance(data, dict):
            raise ConfigError("must be a mapping with a `clocks:` list", file=str(path))
        rules[center] = parse_clock_rules(
            data.get("clocks"), source=str(path), positions=positions, node_keys=node_keys
        )
    return rules


class ClockSubscriber:
    """Keeps the scheduler's cases in step with the FHIR store."""

    def __init__(
        self,
        context: SubscriberContext,
        rules: Mapping[str, Sequence[ClockRule]],
        *,
        poll_interval_s: float = 1.0,
    ) -> None:
        self._context = context
        self._store = FhirStore(
            context.database, timezone=context.timezone, run_write=context.run_write
        )
        self._feed = ChangeFeed(
            context.database, poll_interval_s=poll_interval_s, run_write=context.run_write
        )

        async def journalled(case_ids: Collection[str]) -> set[str]:
            return await journalled_alert_keys(context.database, case_ids)

        async def open_timelines() -> list[CaseTimeline]:
            return await load_open_timelines(self._store)

        self.scheduler = AlertScheduler(
            rules,
            context.accept,
            open_timelines=open_timelines,
            journalled=journalled,
            timezone=context.timezone,
        )

    async def run(self) -> None:
        """Start the scheduler and follow the change events until cancelled."""
        # The cursor is placed before the scheduler reads the open cases: a change committed
        # in between is an event after the cursor, not lost between the two.
        await self._feed.start(self._context.name, new="future")
        async with asyncio.TaskGroup() as group:
            group.create_task(self.scheduler.run(), name="alert-scheduler")
            await self.scheduler.started.wait()
            async for events in self._feed.follow(self._context.name):
                for case_id in sorted(await self._cases_of(events)):
                    await self._refresh(case_id)
                await self._feed.commit(self._context.name, events[-1].sequence)

    async def aclose(self) -> None:
        """Close the store's write connections."""
        await self._store.aclose()

    async def _cases_of(self, events: list[ChangeEvent]) -> set[str]:
        """The cases whose timeline the events may change: one search per batch finds the
        time-node Observations among the changed ones, so a lab feed costs little here."""
        cases = {e.resource_id for e in events if e.resource_type == "EpisodeOfCare"}
        changed = sorted(
            {e.resource_id for e in events if e.resource_type == "Observation"}
            - {e.resource_id for e in events if e.action == "delete"}
        )
        for start in range(0, len(changed), _IDS_PER_SEARCH):
            ids = ",".join(changed[start : start + _IDS_PER_SEARCH])
            async for observation in search_all(
                self._store, "Observation", [("_id", ids), TIME_NODE_CATEGORY_PAIR]
            ):
                case_id = case_of_observation(observation)
                if case_id:
                    cases.add(case_id)
        for event in events:
            if event.resource_type == "Observation" and event.action == "delete":
                # A deleted node's last content says which case lost it.
                case_id = await self._deleted_node_case(event)
                if case_id:
                    cases.add(case_id)
        return cases

    async def _deleted_node_case(self, event: ChangeEvent) -> str | None:
        if event.version_id < 2:
            return None
        try:
            observation = await self._store.vread(
                "Observation", event.resource_id, str(event.version_id - 1)
            )
        except (NotFound, Gone):
            return None
        return case_of_observation(observation)

    async def _refresh(self, case_id: str) -> None:
        timeline = await load_timeline(self._store, case_id)
        if timeline is None or timeline.status not in OPEN_STATUSES:
            self.scheduler.remove(case_id)
        else:
            self.scheduler.update(timeline)


class ClockSubscriberFactory:
    """Entry point `greenchannel.subscribers: pathway-clocks`."""

    def __init__(self, rules_dir: Path | None = None) -> None:
        self._rules_dir = rules_dir

    def build(self, context: SubscriberContext) -> ClockSubscriber:
        """The subscriber with the clock rules of every center; ConfigError if one is wrong."""
        rules = load_clock_rules(self._rules_dir or clock_rules_dir())
        return ClockSubscriber(context, rules)
