"""The pathway engine as a change-event subscriber (entry point `greenchannel.subscribers:
pathways`): it publishes the pathway CodeSystems and SearchParameters into the store, then follows
the store's change events under its own cursor and applies each changed resource to the
patient's cases (`pathways.cases`). After each resolution and each change of a case (its facts,
arrival mode, status) the case hooks see it: the running clocks (`pathways.alerts`
AlertScheduler, run in its task group), the interval Observations (`pathways.intervals`) and
the installed `greenchannel.case_hooks`.

Delivery is at least once and every step is idempotent, so a restart replays at most the
uncommitted batch and changes nothing twice. Its own writes (time-node and interval
Observations, Provenance, the published CodeSystems and SearchParameters) are skipped, so it
never feeds on itself; a changed EpisodeOfCare only tells the hooks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import timedelta, tzinfo
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from engine.subscribers import SubscriberContext
from fhir_store import ChangeEvent, ChangeFeed, FhirStore, VersionConflict
from pathways.alert_journal import journalled_alert_keys
from pathways.alerts import AcceptInto, AlertScheduler, JournalledKeys
from pathways.case_store import OPEN_STATUSES, NotACase, load_case, load_open_timelines
from pathways.cases import Cases
from pathways.definitions import Pathways, load_pathways
from pathways.indicator_definitions import Catalogue
from pathways.indicator_loader import IndicatorDefinitions, indicator_definitions
from pathways.intervals import INTERVAL_PREFIX, IntervalWriter, rederive_intervals
from pathways.nodes import CaseHook, Nodes
from pathways.records import Records
from pathways.shapes import code_systems, search_parameters
from pathways.timeline import CaseTimeline
from pathways.vocabulary import Center

__all__ = ["CASE_HOOKS", "PathwaySubscriber", "PathwaySubscriberFactory", "publish"]

log = logging.getLogger(__name__)

# Entry point group of callables `async (CaseTimeline) -> None` run after a case's nodes are
# resolved: indicators and running clocks plug in here.
CASE_HOOKS = "greenchannel.case_hooks"
_PUBLISH_ATTEMPTS = 3  # a concurrent publisher of the same content wins a race at most once
_BATCH_ATTEMPTS = 3  # a batch whose case another writer changed meanwhile runs again
_OWN_TYPES = frozenset({"EpisodeOfCare", "Provenance", "CodeSystem", "SearchParameter"})
_NODE_PREFIX = "tn-"
_CANDIDATE_PREFIX = "tnc-"
_CLOCKS_RESTART_S = 5.0
DEFINITIONS_POLL_S = 5.0  # how often the indicator definition files are looked at


def is_own(event: ChangeEvent) -> bool:
    """Whether the change is one the pathway engine wrote itself (a candidate is handled on
    its own: see `PathwaySubscriber.handle`)."""
    if event.resource_type in _OWN_TYPES:
        return True
    return event.resource_type == "Observation" and event.resource_id.startswith(
        (_NODE_PREFIX, _CANDIDATE_PREFIX, INTERVAL_PREFIX)
    )


def is_candidate(event: ChangeEvent) -> bool:
    return event.resource_type == "Observation" and event.resource_id.startswith(_CANDIDATE_PREFIX)


async def publish(store: FhirStore, pathways: Pathways) -> None:
    """PUT the CodeSystems and SearchParameters (unchanged content makes no new version);
    a new SearchParameter reindexes the Observations written before it."""
    for system in code_systems(pathways):
        await _put_published(store, system)
    for parameter in search_parameters():
        if await _put_published(store, parameter):
            await store.reindex(parameter["base"])


async def _put_published(store: FhirStore, resource: dict[str, Any]) -> bool:
    """PUT one published resource; True when it was created. The subscriber and the cases
    router (on its first request) publish the same content at start: one that loses the write
    race writes again and finds it unchanged (the winner reindexes)."""
    for _ in range(_PUBLISH_ATTEMPTS - 1):
        try:
            _, created = await store.update(resource["resourceType"], resource["id"], resource)
            return bool(created)
        except VersionConflict:
            continue
    _, created = await store.update(resource["resourceType"], resource["id"], resource)
    return bool(created)


def installed_hooks() -> list[CaseHook]:
    hooks: list[CaseHook] = []
    for point in entry_points(group=CASE_HOOKS):
        hooks.append(point.load())
    return hooks


class PathwaySubscriber:
    """Follows the change events and keeps the center cases and their time nodes."""

    def __init__(
        self,
        database: AsyncEngine,
        *,
        name: str,
        timezone: tzinfo,
        pathways: Pathways,
        run_write: Callable[[Callable[[Any], Any]], Awaitable[Any]] | None = None,
        hooks: Sequence[CaseHook] = (),
        poll_interval_s: float = 1.0,
        accept: AcceptInto | None = None,
        journalled: JournalledKeys | None = None,
        indicators: Catalogue | IndicatorDefinitions | None = None,
        definitions_poll_s: float = DEFINITIONS_POLL_S,
    ) -> None:
        self._name = name
        self._pathways = pathways
        self._store = FhirStore(
            database,
            timezone=timezone,
            run_write=run_write,
            check_references=False,
            own_readers=True,  # one thread hop per search: most of what it does is read
        )
        self._feed = ChangeFeed(database, poll_interval_s=poll_interval_s, run_write=run_write)
        # The running clocks, when there is a channel to raise alerts into (`accept`).
        self.scheduler: AlertScheduler | None = None
        if accept is not None:
            self.scheduler = AlertScheduler(
                {center: pathway.clocks for center, pathway in pathways.by_center.items()},
                accept,
                open_timelines=lambda: load_open_timelines(self._store),
                journalled=journalled,
                timezone=timezone,
                late_after={
                    center: timedelta(minutes=pathway.alerts_late_after_min)
                    for center, pathway in pathways.by_center.items()
                },
            )
        records = Records(self._store, timezone)
        # the one loader the QC API reads too: an edited definition counts for both at once
        loader = indicators if indicators is not None else indicator_definitions()
        intervals = IntervalWriter(
            records, loader.current if isinstance(loader, IndicatorDefinitions) else lambda: loader
        )
        self._intervals = intervals
        self._definitions = loader if isinstance(loader, IndicatorDefinitions) else None
        self._definitions_poll_s = definitions_poll_s
        # one writer at a time: events and a re-derivation touch the same interval Observations
        self._writing = asyncio.Lock()
        own: list[CaseHook] = [self._clocks, intervals]
        self.cases = Cases(Nodes(records, pathways, [*own, *hooks]))
        self._kinds = pathways.resource_types()

    def pending(self) -> int:
        """Cases whose clocks the alert scheduler has still to look at (`/metrics`)."""
        return self.scheduler.pending() if self.scheduler is not None else 0

    async def start(self) -> None:
        """Publish the CodeSystems and SearchParameters."""
        await publish(self._store, self._pathways)

    async def run(self) -> None:
        """Publish, then process events from the committed cursor (and run the clocks) until
        cancelled."""
        await self.start()
        async with asyncio.TaskGroup() as group:
            if self.scheduler is not None:
                group.create_task(self._run_clocks(self.scheduler), name="alert-scheduler")
            if self._definitions is not None:
                group.create_task(
                    self._watch_definitions(self._definitions), name="indicator-definitions"
                )
            async for events in self._feed.follow(self._name):
                async with self._writing:
                    await self.handle_batch(events)
                await self._feed.commit(self._name, events[-1].sequence)

    async def _watch_definitions(self, loader: IndicatorDefinitions) -> None:
        """Re-derive every case's intervals when the indicator definitions are edited (the QC
        office saves a file): the stored intervals then say what the QC charts say."""
        seen = await asyncio.to_thread(loader.current)
        while True:
            await asyncio.sleep(self._definitions_poll_s)
            try:
                now = await asyncio.to_thread(loader.current)
                if now is seen:
                    continue  # unchanged, or an edit that did not load (the last good stays)
                seen = now
                cases = await self.rederive_intervals()
                log.info("pathways.intervals_rederived", extra={"cases": cases})
            except Exception:
                # the store away: the next edit, a case's next change or `case reindex` catch up
                log.error("pathways.intervals_rederive_failed", exc_info=True)

    async def rederive_intervals(self, center: Center | None = None) -> int:
        """Every case's interval Observations from the definitions now; returns the cases.
        Case by case, so events keep being handled in between."""

        async def write(timeline: CaseTimeline) -> None:
            async with self._writing:
                await self._intervals(timeline)

        return await rederive_intervals(self._store, write, center)

    async def _run_clocks(self, scheduler: AlertScheduler) -> None:
        """The scheduler, restarted after a failure (the alert channel not deployed, the
        database away): a clock problem must not stop node capture."""
        while True:
            try:
                await scheduler.run()
            except Exception:
                log.error("pathways.clocks_failed", exc_info=True)
            await asyncio.sleep(_CLOCKS_RESTART_S)

    async def _clocks(self, timeline: CaseTimeline) -> None:
        """The case hook of the running clocks: an open case's clocks are looked at again, a
        closed case's alerts resolved."""
        if self.scheduler is None:
            return
        if timeline.status in OPEN_STATUSES:
            self.scheduler.update(timeline)
        else:
            self.scheduler.remove(timeline.case_id)

    async def catch_up(self) -> int:
        """Process every event committed so far (after the cursor); returns how many."""
        after = await self._feed.start(self._name)
        handled = 0
        while events := await self._feed.read(after):
            await self.handle_batch(events)
            after = events[-1].sequence
            await self._feed.commit(self._name, after)
            handled += len(events)
        return handled

    async def handle_batch(self, events: Sequence[ChangeEvent]) -> None:
        """Handle one batch of events in order, with what they read (the changed resources,
        the cases they fed, their patients' open cases) read in a few searches up front and
        remembered until a write here changes it (`pathways.batch_memo`).

        A case changed by another writer (staff through the API) after this batch read it
        makes the write derived from the old version fail (VersionConflict) rather than undo
        that change: the batch then runs again from fresh reads (handling an event twice
        changes nothing)."""
        for attempt in range(1, _BATCH_ATTEMPTS + 1):
            try:
                with self.cases.records.batch():
                    await self.cases.prefetch(
                        [
                            f"{e.resource_type}/{e.resource_id}"
                            for e in events
                            if e.action != "delete"
                            and e.resource_type in self._kinds
                            and not is_own(e)
                        ]
                    )
                    for event in events:
                        await self.handle(event)
                return
            except VersionConflict:
                if attempt == _BATCH_ATTEMPTS:
                    raise
                log.info("pathways.batch_again", extra={"attempt": attempt, "events": len(events)})

    async def handle(self, event: ChangeEvent) -> None:
        if is_candidate(event) and event.action != "delete":
            # A candidate written by another writer (the API, another engine node) may have
            # raced with a resolution here: resolving its node once more converges. The node
            # is written only if it changes, so this never loops.
            await self.cases.candidate_changed(f"Observation/{event.resource_id}")
            return
        if event.resource_type == "EpisodeOfCare":
            if self.cases.records.memo is not None:  # perhaps another writer's: search again
                self.cases.records.memo.forget()
            await self.case_changed(event.resource_id)
            return
        if is_own(event):
            return
        reference = f"{event.resource_type}/{event.resource_id}"
        if event.action == "delete":
            await self.cases.changed(reference, deleted_version=int(event.version_id))
        elif event.resource_type in self._kinds:
            await self.cases.changed(reference)

    async def case_changed(self, case_id: str) -> None:
        """A case's facts, arrival mode or status changed (written here, by the API or by the
        HIS): the hooks see it as it now stands; a case that is gone closes its clocks. A case
        the HIS wrote is adopted first (`Cases.adopt`)."""
        await self.cases.adopt(case_id)
        try:
            stored = await load_case(self._store, case_id)
        except NotACase:
            if self.scheduler is not None:
                self.scheduler.remove(case_id)
            return
        await self.cases.nodes.notify(stored.timeline)

    async def aclose(self) -> None:
        await self._store.aclose()


class PathwaySubscriberFactory:
    """Registered under `greenchannel.subscribers` as `pathways`."""

    def __init__(self, folder: Path | None = None) -> None:
        self._folder = folder

    def build(self, context: SubscriberContext) -> PathwaySubscriber:
        async def journalled(case_ids: Collection[str]) -> set[str]:
            return await journalled_alert_keys(context.database, case_ids)

        return PathwaySubscriber(
            context.database,
            name=context.name,
            timezone=context.timezone,
            pathways=load_pathways(self._folder),
            run_write=context.run_write,
            hooks=installed_hooks(),
            accept=context.accept,
            journalled=journalled,
            indicators=indicator_definitions(self._folder),
        )
