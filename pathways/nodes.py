"""A case's time nodes in the store: candidates from sources and staff, their retraction, and
the authoritative node resolved from them (time-nodes.md R6, R7; interfaces.md §5).

After a case's nodes are resolved, every registered hook gets the case's `CaseTimeline`: the
place for indicator computation and running clocks to plug in.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pathways.capture import Captured
from pathways.case_store import case_time_nodes
from pathways.definitions import NodeDefinition, Pathway, Pathways
from pathways.records import Records, content_of
from pathways.resolve import CORRECTION, Candidate, Resolution, resolve
from pathways.shapes import (
    AUTHORITATIVE_STATUSES,
    Note,
    arrival_mode_of,
    candidate_id,
    candidate_observation,
    case_center,
    case_of,
    node_id,
    node_key_of,
    node_observation,
    read_candidate,
    timeline_of,
)
from pathways.timeline import CaseTimeline
from pathways.vocabulary import OBSERVATION_CATEGORY_SYSTEM, TIME_NODE_CATEGORY

__all__ = ["CaseHook", "NodeView", "Nodes"]

log = logging.getLogger(__name__)

CaseHook = Callable[[CaseTimeline], Awaitable[None]]
_CATEGORY = f"{OBSERVATION_CATEGORY_SYSTEM}|{TIME_NODE_CATEGORY}"
ENGINE = "greenchannel pathways"


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node of a case as the API shows it."""

    key: str
    label: str
    authoritative: Mapping[str, Any] | None
    candidates: Sequence[Mapping[str, Any]]


class Nodes:
    """Writes candidates and resolves nodes for the cases of one store."""

    def __init__(
        self, records: Records, pathways: Pathways, hooks: Sequence[CaseHook] = ()
    ) -> None:
        self.records = records
        self.pathways = pathways
        self.hooks = list(hooks)

    # -- candidates ----------------------------------------------------------------------------

    async def capture(
        self, case: Mapping[str, Any], source: Mapping[str, Any], found: Iterable[Captured]
    ) -> set[str]:
        """Make the case's candidates from `source` exactly `found`: new or changed ones are
        written, ones it no longer gives are retracted. Returns the nodes touched."""
        pathway = self._pathway(case)
        reference = f"{source['resourceType']}/{source['id']}"
        earliest = _case_start(case) - timedelta(hours=pathway.lookback_h)
        existing = {c["id"]: c for c in await self._candidates_from(case, reference)}
        touched: set[str] = set()
        wanted: set[str] = set()
        for item in found:
            if item.instant < earliest:
                continue  # an earlier episode's resource
            capture = item.capture
            identifier = candidate_id(case["id"], capture.node, capture.rule_id, reference)
            wanted.add(identifier)
            instant = item.instant
            held = existing.get(identifier)
            if capture.keep_earliest and held is not None and held.get("status") == "preliminary":
                instant = min(instant, datetime.fromisoformat(held["valueDateTime"]))
            observation = candidate_observation(
                identifier,
                case,
                capture.node,
                self.pathways.catalogue.labels[capture.node],
                instant,
                source_kind=capture.source,
                priority=capture.priority,
                rule=capture.rule_id,
                derived_from=reference,
                encounter=_encounter_of(source),
                performer=item.performer,
                proxy=capture.proxy,
            )
            stored = await self.records.write(
                observation,
                Note(activity="derive", who=ENGINE, entity=reference, priority=capture.priority),
            )
            if stored.get("meta", {}).get("versionId") != (held or {}).get("meta", {}).get(
                "versionId"
            ):
                touched.add(capture.node)
        for identifier, held in existing.items():
            if identifier not in wanted and held.get("status") == "preliminary":
                await self._retract(held, reference)
                touched.add(_node_of(held))
        return touched

    async def cases_fed_by(self, reference: str) -> set[str]:
        """`EpisodeOfCare/<id>` of every case with a live candidate from `reference`."""
        memo = self.records.memo
        known = memo.fed_by(reference) if memo is not None else None
        if known is not None:
            return known
        return (await self._fed_by([reference]))[reference]

    async def prefetch_fed_by(self, references: Sequence[str]) -> None:
        """Within a batch (`Records.batch`): the cases fed by each of `references`, in one
        search rather than one per change."""
        if self.records.memo is not None and references:
            await self._fed_by(references)

    async def _fed_by(self, references: Sequence[str]) -> dict[str, set[str]]:
        wanted = list(dict.fromkeys(references))
        fed: dict[str, set[str]] = {reference: set() for reference in wanted}
        found = await self.records.search_any(
            "Observation", "derived-from", wanted, [("category", _CATEGORY)]
        )
        for observation in found:
            if observation.get("status") != "preliminary":
                continue
            for link in observation.get("derivedFrom") or []:
                source = link.get("reference") if isinstance(link, Mapping) else None
                if source in fed:
                    fed[source].add(_case_of(observation))
        if self.records.memo is not None:
            for reference, cases in fed.items():
                self.records.memo.keep_fed_by(reference, cases)
        return fed

    async def retract_source(self, reference: str) -> dict[str, set[str]]:
        """Retract every live candidate derived from `reference` (deleted, entered in error,
        cancelled); returns the touched nodes by case id."""
        touched: dict[str, set[str]] = {}
        for held in await self.records.search(
            "Observation", [("derived-from", reference), ("category", _CATEGORY)]
        ):
            if held.get("status") != "preliminary":
                continue
            await self._retract(held, reference)
            touched.setdefault(_case_of(held), set()).add(_node_of(held))
        return touched

    async def _retract(self, held: Mapping[str, Any], reference: str) -> None:
        retracted = content_of(held)
        retracted["status"] = "cancelled"
        await self.records.write(
            retracted,
            Note(
                activity="derive",
                who=ENGINE,
                entity=reference,
                reason="the source was withdrawn or no longer gives this time",
            ),
        )

    async def manual(
        self,
        case: Mapping[str, Any],
        node: str,
        instant: datetime,
        *,
        who: str,
        why: str,
        correction: bool,
    ) -> None:
        """A time typed in by staff: a low-priority candidate, or a correction that wins."""
        kind = CORRECTION if correction else "manual"
        priority = self.pathways.catalogue.source_kinds.get(kind, ("", 0))[1]
        observation = candidate_observation(
            candidate_id(case["id"], node, kind, kind),
            case,
            node,
            self.pathways.catalogue.labels[node],
            instant,
            source_kind=kind,
            priority=priority,
            rule=None,
            derived_from=None,
            performer={"display": who},
            note=why,
        )
        activity = "correction" if correction else "manual-entry"
        await self.records.write(
            observation, Note(activity=activity, who=who, reason=why, priority=priority)
        )

    # -- resolution ----------------------------------------------------------------------------

    async def resolve(self, case: Mapping[str, Any], touched: Iterable[str]) -> None:
        """Resolve the touched nodes (and the nodes whose `after` depends on them), then tell
        the hooks."""
        pathway = self._pathway(case)
        pending = set(touched)
        pending |= {k for k, n in pathway.nodes.items() if n.after is not None}
        candidates = await self._candidates_of(case)
        resolved = await self._authoritative(case)
        # `after` nodes first, so that R7 bounds use the new instants
        order = sorted(pending, key=lambda k: _depth(pathway, k))
        for key in order:
            definition = self._definition(pathway, key)
            after = None
            if definition.after is not None and definition.after in resolved:
                after = resolved[definition.after]
            resolution = resolve(
                definition,
                [c for c in candidates if c.node == key],
                arrival_mode=arrival_mode_of(case),
                after=after,
            )
            instant = await self._write_node(case, definition, resolution, candidates)
            if instant is None:
                resolved.pop(key, None)
            else:
                resolved[key] = instant
        await self.notify(timeline_of(case, resolved))

    async def notify(self, timeline: CaseTimeline) -> None:
        """Tell every hook the case as it now stands."""
        for hook in self.hooks:
            try:
                await hook(timeline)
            except Exception:  # one failing hook must not stop node capture
                log.error("pathways.hook_failed", extra={"case": timeline.case_id}, exc_info=True)

    async def _write_node(
        self,
        case: Mapping[str, Any],
        definition: NodeDefinition,
        resolution: Resolution | None,
        candidates: list[Candidate],
    ) -> datetime | None:
        identifier = node_id(case["id"], definition.key)
        if resolution is None:
            current = await self.records.read(f"Observation/{identifier}")
            if current is not None:
                await self.records.delete(f"Observation/{identifier}")
            return None
        winners = await self._read_all(w.id for w in resolution.winners)
        performers = [p for w in winners for p in w.get("performer") or []]
        encounter = next((w["encounter"]["reference"] for w in winners if "encounter" in w), None)
        observation = node_observation(
            case,
            definition.key,
            definition.label,
            resolution,
            encounter=encounter,
            performer=performers or None,
        )
        entity = f"Observation/{resolution.winners[0].id}"
        await self.records.write(
            observation,
            Note(
                activity="correction" if resolution.corrected else "derive",
                who=ENGINE,
                entity=entity,
                priority=resolution.winners[0].priority,
            ),
        )
        return resolution.instant

    # -- reading -------------------------------------------------------------------------------

    async def view(self, case: Mapping[str, Any]) -> list[NodeView]:
        """Every node of the case with its authoritative time and all its candidates."""
        center = case_center(case)
        assert center is not None
        observations = await self._time_nodes(case)
        views = []
        for key in self.pathways.node_keys(center):
            mine = [o for o in observations if _node_of(o) == key]
            authoritative = next(
                (o for o in mine if o.get("status") in AUTHORITATIVE_STATUSES), None
            )
            others = [o for o in mine if o is not authoritative]
            if authoritative is not None or others:
                views.append(
                    NodeView(key, self.pathways.catalogue.labels[key], authoritative, others)
                )
        return views

    async def _time_nodes(self, case: Mapping[str, Any]) -> list[dict[str, Any]]:
        return await case_time_nodes(self.records.store, case)

    async def _candidates_of(self, case: Mapping[str, Any]) -> list[Candidate]:
        found = (read_candidate(o) for o in await self._time_nodes(case))
        return [c for c in found if c is not None]

    async def _authoritative(self, case: Mapping[str, Any]) -> dict[str, datetime]:
        return {
            str(_node_of(o)): datetime.fromisoformat(o["valueDateTime"])
            for o in await self._time_nodes(case)
            if o.get("status") in AUTHORITATIVE_STATUSES
        }

    async def _candidates_from(
        self, case: Mapping[str, Any], reference: str
    ) -> list[dict[str, Any]]:
        return [
            o
            for o in await self.records.search(
                "Observation", [("derived-from", reference), ("category", _CATEGORY)]
            )
            if _case_of(o) == f"EpisodeOfCare/{case['id']}"
        ]

    async def _read_all(self, identifiers: Iterable[str]) -> list[dict[str, Any]]:
        found = []
        for identifier in identifiers:
            resource = await self.records.read(f"Observation/{identifier}")
            if resource is not None:
                found.append(resource)
        return found

    def _pathway(self, case: Mapping[str, Any]) -> Pathway:
        center = case_center(case)
        assert center is not None, "not a center case"
        return self.pathways.by_center[center]

    def _definition(self, pathway: Pathway, key: str) -> NodeDefinition:
        """The pathway's node, or a manual-only one for catalogue nodes it does not capture."""
        definition = pathway.nodes.get(key)
        if definition is not None:
            return definition
        return NodeDefinition(
            key, self.pathways.catalogue.labels[key], "first", None, None, pathway.tolerance_s, ()
        )


def _depth(pathway: Pathway, key: str) -> int:
    depth, seen = 0, {key}
    node = pathway.nodes.get(key)
    while node is not None and node.after is not None and node.after not in seen:
        depth += 1
        seen.add(node.after)
        node = pathway.nodes.get(node.after)
    return depth


def _case_start(case: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(case["period"]["start"])


def _encounter_of(resource: Mapping[str, Any]) -> str | None:
    if resource.get("resourceType") == "Encounter":
        return f"Encounter/{resource['id']}"
    reference = (resource.get("encounter") or resource.get("context") or {}).get("reference")
    return reference if isinstance(reference, str) and reference.startswith("Encounter/") else None


def _node_of(observation: Mapping[str, Any]) -> str:
    return node_key_of(observation) or ""


def _case_of(observation: Mapping[str, Any]) -> str:
    return case_of(observation) or ""
