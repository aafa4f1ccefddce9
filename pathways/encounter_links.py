"""The Encounters of a case point to it (`Encounter.episodeOfCare`), so that front ends find a
case's visits, and a visit's case, with plain FHIR: the visit the HIS registered the case in
already does (ADT ZGC); the engine links the others (the ambulance leg, a visit the engine
opened the case from, a UWB or device Encounter).

A visit belongs to the case when it is the patient's and its period meets the case's (from
`lookback_h` before the case's start to its end). The link is written like every pathway write
(Records: If-Match, Provenance) and carries the `case-link` extension, by which the ADT mapping
keeps it when an A08 rewrites the Encounter
(`merge: keep: episodeOfCare.where(extension.url = '…/case-link')`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pathways.nodes import ENGINE
from pathways.records import Records
from pathways.shapes import Note, parse_instant
from pathways.vocabulary import CASE_LINK_EXTENSION

__all__ = ["encounter_of", "link_encounter"]

_WITHDRAWN = frozenset({"entered-in-error", "cancelled"})


def encounter_of(resource: Mapping[str, Any]) -> str | None:
    """The `Encounter/id` a resource belongs to (itself for an Encounter), else None."""
    if resource.get("resourceType") == "Encounter":
        return f"Encounter/{resource['id']}"
    link = (resource.get("encounter") or {}).get("reference")
    return link if isinstance(link, str) and link.startswith("Encounter/") else None


async def link_encounter(
    records: Records, case: Mapping[str, Any], resource: Mapping[str, Any], lookback_h: int
) -> None:
    """Point the resource's Encounter to `case` when the visit is part of it; nothing when
    it already does (an event handled twice writes nothing)."""
    reference = encounter_of(resource)
    if reference is None:
        return
    encounter = (
        dict(resource) if resource.get("resourceType") == "Encounter" else None
    ) or await records.read(reference)
    target = f"EpisodeOfCare/{case['id']}"
    if encounter is None or not _belongs(encounter, case, target, lookback_h):
        return  # (the event's version says so: no read of the latest)

    async def linked(current: dict[str, Any]) -> tuple[dict[str, Any], Note] | None:
        # the latest version, not the event's: the HIS may have moved on since
        if not _belongs(current, case, target, lookback_h):
            return None
        updated = {k: v for k, v in current.items() if k != "meta"}
        link = {
            "extension": [{"url": CASE_LINK_EXTENSION, "valueCode": "pathway-engine"}],
            "reference": target,
        }
        updated["episodeOfCare"] = [*(current.get("episodeOfCare") or []), link]
        note = Note(
            activity="derive", who=ENGINE, entity=target, reason="the visit is part of the case"
        )
        return updated, note

    await records.update(reference, linked)


def _belongs(
    encounter: Mapping[str, Any], case: Mapping[str, Any], target: str, lookback_h: int
) -> bool:
    """The visit is the case patient's, not withdrawn, meets the case, and is not linked yet."""
    if encounter.get("status") in _WITHDRAWN:
        return False
    patient = (case.get("patient") or {}).get("reference")
    if (encounter.get("subject") or {}).get("reference") != patient:
        return False
    links = [link for link in encounter.get("episodeOfCare") or [] if isinstance(link, Mapping)]
    if any(link.get("reference") == target for link in links):
        return False
    return _meets(encounter, case, timedelta(hours=lookback_h))


def _meets(encounter: Mapping[str, Any], case: Mapping[str, Any], lookback: timedelta) -> bool:
    """The visit's period meets the case's, widened by `lookback` before its start."""
    case_start = parse_instant((case.get("period") or {}).get("start"))
    case_end = parse_instant((case.get("period") or {}).get("end"))
    visit_start = parse_instant((encounter.get("period") or {}).get("start"))
    visit_end = parse_instant((encounter.get("period") or {}).get("end"))
    if case_start is None:
        return False
    if visit_end is not None and visit_end < case_start - lookback:
        return False
    return not (case_end is not None and visit_start is not None and visit_start > case_end)
