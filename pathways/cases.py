"""Center cases driven by FHIR resources: what one changed (or deleted) resource does to the
patient's cases — opens one (activation), sets facts, captures or retracts node candidates and
re-resolves the nodes — and manual activation, entry, correction and facts by staff.

Used by the change-event subscriber and the `/api/cases` router alike; every step is idempotent
(deterministic ids, writes only on change), so an event handled twice changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from fhir_store import NotFound
from pathways.capture import Captured, activations_in, captures_in, facts_in, patient_of
from pathways.case_store import case_time_nodes
from pathways.encounter_links import link_encounter
from pathways.nodes import ENGINE, Nodes
from pathways.records import content_of
from pathways.resolve import CORRECTION
from pathways.shapes import (
    Note,
    arrival_mode_of,
    case_center,
    case_episode,
    case_facts,
    case_id,
    case_of,
    node_key_of,
    parse_instant,
    provenance_id,
    set_arrival_mode,
    set_fact,
)
from pathways.vocabulary import ARRIVAL_MODES, CENTER_SYSTEM, CENTER_TYPE_CODES, ArrivalMode, Center

__all__ = ["MANUAL", "Cases"]

log = logging.getLogger(__name__)

MANUAL = "manual"  # the source of a fact or activation set by staff
_STAFF_KINDS = (MANUAL, CORRECTION)  # candidates typed in by staff
_OWN_CASE_PREFIX = "case-"  # the ids of the cases the engine opens (shapes.case_id)
_HISTORY_DEPTH = 20  # versions looked back for the engine's last write of a case
# Searches by `patient` find a resource type's patient; a Patient is found by its id.
_BY_ID = {"Patient": "_id"}


class Cases:
    """The pathway engine over one FHIR store."""

    def __init__(self, nodes: Nodes) -> None:
        self.nodes = nodes
        self.records = nodes.records
        self.pathways = nodes.pathways
        self.timezone: tzinfo = nodes.records.timezone
        # only their changes send a search for the resources pointing to them: most are not
        self._followed = self.pathways.followed_types()

    # -- driven by resources -------------------------------------------------------------------

    async def changed(self, reference: str, *, deleted_version: int | None = None) -> None:
        """Apply the current state of `Type/id` to the patient's cases; after a deletion (its
        tombstone `deleted_version`) the version before tells whose cases it fed."""
        memo = self.records.memo
        resource = memo.take_resource(reference) if memo is not None else None
        if resource is None:
            resource = await self.records.read(reference)
        if resource is None and deleted_version is not None and deleted_version > 1:
            before = await self.records.read(f"{reference}/_history/{deleted_version - 1}")
            patient = patient_of(before) if before is not None else None
        else:
            patient = patient_of(resource) if resource is not None else None
        if resource is None or self._withdrawn(resource):
            await self.withdrawn(reference)
            for case in await self.open_cases(patient) if patient else []:
                await self._drop_facts(case, reference)
            return
        if patient is None:
            return
        if resource["resourceType"] == "Patient":
            await self._merged(resource)
        await self._pointing_to(resource)
        opened, finished = await self._activate(resource, patient)
        for case in opened:
            await self._scan(case)
        cases = {c["id"]: c for c in await self.open_cases(patient)}
        cases |= {c["id"]: c for c in finished}
        # A closed case it fed (A13), or whose encounter it is of: the ward stay after the ED
        # visit whose end closed the case, the late results of that stay.
        closed_ones = set(await self.nodes.cases_fed_by(reference))
        closed_ones |= {
            link
            for link in await self._episodes_of_encounter(resource)
            if link.startswith("EpisodeOfCare/")  # not an absolute or contained reference
        }
        for fed in sorted(closed_ones):
            closed = await self.records.read(fed) if fed.split("/")[-1] not in cases else None
            if closed is None or case_center(closed) is None:
                continue  # not one of the centers' cases
            if closed.get("status") == "finished":  # not a cancelled one
                cases[closed["id"]] = closed
        for case in cases.values():
            await self._apply(case, resource)

    async def prefetch(self, references: Sequence[str]) -> None:
        """Within a batch (`Records.batch`): read the changed resources, the cases they fed and
        their patients' open cases in a few searches, for `changed` to take from the memo."""
        memo = self.records.memo
        if memo is None or not references:
            return
        patients: set[str] = set()
        for found in await self.records.read_many(list(dict.fromkeys(references))):
            memo.keep_resource(found)
            patient = patient_of(found)
            if patient is not None:
                patients.add(patient)
        await self.nodes.prefetch_fed_by(references)
        open_by_patient: dict[str, list[dict[str, Any]]] = {p: [] for p in patients}
        for case in await self.records.search_any(
            "EpisodeOfCare", "patient", sorted(patients), [("status", "active")]
        ):
            holder = str((case.get("patient") or {}).get("reference"))
            if holder in open_by_patient:
                open_by_patient[holder].append(case)
        for patient, cases in open_by_patient.items():
            memo.keep_open_cases(patient, cases)

    async def _merged(self, patient: Mapping[str, Any]) -> None:
        """ADT A40: a retired record (inactive, `replaced-by` the survivor) hands its cases to
        the survivor, so that one patient is not two cases in the denominators. When the
        survivor already has an open case of that center, both stay for review (logged)."""
        survivor = next(
            (
                link["other"].get("reference")
                for link in patient.get("link") or []
                if link.get("type") == "replaced-by" and isinstance(link.get("other"), Mapping)
            ),
            None,
        )
        if patient.get("active") is not False or not isinstance(survivor, str):
            return
        retired = f"Patient/{patient['id']}"
        taken = {self._center(c) for c in await self.open_cases(survivor)}
        for case in await self.records.search("EpisodeOfCare", [("patient", retired)]):
            center = self._center(case)
            if case.get("status") == "active" and center in taken:
                log.warning(
                    "pathways.merge_duplicate_case",
                    extra={"case": case["id"], "center": center},
                )
                continue
            moved = content_of(case)
            moved["patient"] = {"reference": survivor}
            await self.records.write(
                moved,
                Note(
                    activity="derive",
                    who=ENGINE,
                    entity=retired,
                    reason=f"patient merged into {survivor}",
                ),
            )

    async def candidate_changed(self, reference: str) -> None:
        """Resolve the node of a candidate again."""
        candidate = await self.records.read(reference)
        case_reference = case_of(candidate) if candidate is not None else None
        case = await self.records.read(case_reference) if case_reference else None
        key = node_key_of(candidate) if candidate is not None else None
        if case is not None and key is not None and case_center(case) is not None:
            await self.nodes.resolve(case, {key})
            await self._update_status(case, {key})

    async def _pointing_to(self, target: Mapping[str, Any]) -> None:
        """Re-derive the resources whose capture reads its time from `target` (the lab results
        of a Specimen whose collection time was corrected)."""
        if target["resourceType"] not in self._followed:
            return
        reference = f"{target['resourceType']}/{target['id']}"
        seen: set[str] = set()
        for pathway in self.pathways.by_center.values():
            for capture in pathway.captures():
                if target["resourceType"] not in capture.follow_types:
                    continue
                assert capture.follow_element is not None
                kind = capture.match.resource
                for found in await self.records.search(kind, [(capture.follow_element, reference)]):
                    source = f"{kind}/{found['id']}"
                    if source not in seen:
                        seen.add(source)
                        await self.changed(source)

    def _withdrawn(self, resource: Mapping[str, Any]) -> bool:
        """Entered in error, cancelled, revoked (or a Condition verified as entered-in-error)."""
        retracting = self.pathways.catalogue.retracting_statuses
        verification = (resource.get("verificationStatus") or {}).get("coding") or []
        codes = {resource.get("status"), *(c.get("code") for c in verification)}
        return bool(codes & retracting)

    async def withdrawn(self, reference: str) -> None:
        """A source is gone: retract its candidates and facts, re-resolve what they fed."""
        touched = await self.nodes.retract_source(reference)
        for case_reference, keys in touched.items():
            case = await self.records.read(case_reference)
            if case is not None:
                await self._drop_facts(case, reference)
                await self.nodes.resolve(case, keys)

    async def _apply(self, case: dict[str, Any], resource: Mapping[str, Any]) -> None:
        pathway = self.pathways.by_center[self._center(case)]
        reference = f"{resource['resourceType']}/{resource['id']}"
        await link_encounter(self.records, case, resource, pathway.lookback_h)
        mode = arrival_mode_of(case)
        case = await self._set_facts(case, facts_in(resource, pathway), reference)
        found = await captures_in(resource, pathway, self.timezone, self.records.read)
        found = await self._of_this_episode(case, resource, found)
        touched = await self.nodes.capture(case, resource, found)
        if arrival_mode_of(case) != mode:
            touched |= set(pathway.nodes)  # door variants (R1) depend on the arrival mode
        if touched:
            await self.nodes.resolve(case, touched)
            await self._update_status(case, touched)

    async def _activate(
        self, resource: Mapping[str, Any], patient: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Open a case for each center whose activation rule the resource meets and that has
        no open case for the patient; returns the new cases, and the finished cases the
        resource belongs to instead (opening none)."""
        opened, finished = [], []
        open_centers = {self._center(c) for c in await self.open_cases(patient)}
        reference = f"{resource['resourceType']}/{resource['id']}"
        for center, pathway in self.pathways.by_center.items():
            if center in open_centers:
                continue
            found = activations_in(resource, pathway, self.timezone)
            if not found:
                continue
            activation, start = found[0]
            owner = await self._finished_case_of(resource, patient, center, start)
            if owner is not None:
                finished.append(owner)
                continue
            episode = case_episode(
                case_id(center, patient, reference),
                center,
                patient,
                start,
                activation=activation.name,
            )
            opened.append(
                await self.records.write(
                    episode,
                    Note(
                        activity="derive",
                        who=ENGINE,
                        entity=reference,
                        reason=f"activation rule {activation.name}",
                    ),
                )
            )
        return opened, finished

    async def _finished_case_of(
        self, resource: Mapping[str, Any], patient: str, center: Center, instant: datetime
    ) -> dict[str, Any] | None:
        """The patient's finished case of `center` the resource belongs to: its instant within
        the case's period, or its encounter linked to the case. The discharge diagnosis of an
        ADT A03 (DG1-6 F) arrives after the A03's Encounter finished the case; it completes
        that case rather than opening another."""
        finished = await self.records.search(
            "EpisodeOfCare", [("patient", patient), ("status", "finished")]
        )
        episodes = await self._episodes_of_encounter(resource)
        for case in finished:
            if case_center(case) != center:
                continue
            if f"EpisodeOfCare/{case['id']}" in episodes or _within_period(instant, case):
                return case
        return None

    async def _of_this_episode(
        self, case: Mapping[str, Any], resource: Mapping[str, Any], found: list[Captured]
    ) -> list[Captured]:
        """What a finished case takes of `found`: times after its end belong to a later
        episode of the patient, unless the resource is of the case's own encounter or already
        feeds the case (a corrected discharge, a late discharge diagnosis of its visit)."""
        finished = case.get("status") == "finished"
        end = parse_instant((case.get("period") or {}).get("end")) if finished else None
        if end is None or all(item.instant <= end for item in found):
            return found
        reference = f"{resource['resourceType']}/{resource['id']}"
        ours = f"EpisodeOfCare/{case['id']}"
        if ours in await self._episodes_of_encounter(resource):
            return found
        if ours in await self.nodes.cases_fed_by(reference):
            return found
        return [item for item in found if item.instant <= end]

    async def _episodes_of_encounter(self, resource: Mapping[str, Any]) -> set[str]:
        """`EpisodeOfCare/id` references of the resource's encounter (or of the resource itself
        when it is an Encounter)."""
        encounter: Mapping[str, Any] | None = resource
        if resource.get("resourceType") != "Encounter":
            link = (resource.get("encounter") or {}).get("reference")
            encounter = await self.records.read(link) if isinstance(link, str) else None
        links = (encounter or {}).get("episodeOfCare") or []
        return {str(link.get("reference")) for link in links if isinstance(link, Mapping)}

    async def _scan(self, case: dict[str, Any]) -> None:
        """A new case: what the patient's record already holds (the ADT registration before
        the ECG that activated the case) is captured now."""
        pathway = self.pathways.by_center[self._center(case)]
        patient = case["patient"]["reference"]
        for kind in sorted(pathway.resource_types()):
            parameter = _BY_ID.get(kind, "patient")
            value = patient.removeprefix("Patient/") if parameter == "_id" else patient
            for resource in await self.records.search(kind, [(parameter, value)]):
                if self._withdrawn(resource):
                    continue
                current = await self.records.read(f"EpisodeOfCare/{case['id']}")
                assert current is not None
                await self._apply(current, resource)

    # -- cases the HIS opened ------------------------------------------------------------------

    async def adopt(self, case_id: str) -> None:
        """An EpisodeOfCare of a center that another system wrote (the HIS's green channel
        registration, ADT ZGC: activation where the message says so) is the patient's case.

        A version the engine did not write (no Provenance of ours) is adopted: the facts and
        arrival mode the engine had set before the HIS rewrote the whole resource are kept
        (its own arrival mode counts as the source of the arrival_mode fact, below staff); a
        case the engine opened itself for the same patient and center is cancelled, its staff
        facts and times carried over; and what the patient's record holds is captured."""
        reference = f"EpisodeOfCare/{case_id}"
        case = await self.records.read(reference)
        if case is None or case_center(case) is None or await self._written_here(case):
            return
        center = self._center(case)
        patient = str((case.get("patient") or {}).get("reference", ""))
        if not patient.startswith("Patient/"):
            return
        updated = content_of(case)
        before = await self._last_written_here(case)
        held = case_facts(before) if before is not None else {}
        for name, (value, source) in held.items():
            if name not in case_facts(updated):
                set_fact(updated, name, value, source)
        manual_mode = held.get("arrival_mode", ("", ""))
        his_mode = arrival_mode_of(case)
        if manual_mode[1] == MANUAL:
            set_arrival_mode(updated, _mode(manual_mode[0]))
        elif his_mode is not None:
            set_fact(updated, "arrival_mode", his_mode, reference)
        elif before is not None and arrival_mode_of(before) is not None:
            set_arrival_mode(updated, _mode(arrival_mode_of(before)))
        if case.get("status") == "active":
            for other in await self.open_cases(patient):
                opened_here = str(other["id"]).startswith(_OWN_CASE_PREFIX)
                if opened_here and other["id"] != case_id and self._center(other) == center:
                    updated = await self._supersede(other, updated, reference)
        stored = await self.records.write(
            updated,
            Note(
                activity="derive",
                who=ENGINE,
                entity=f"{reference}/_history/{case['meta']['versionId']}",
                reason="the HIS's green channel registration is the case",
            ),
        )
        if _start_of(stored) is None:
            log.warning("pathways.case_without_start", extra={"case": case_id})
            return
        await self._scan(stored)
        current = await self.records.read(reference)
        if current is not None:  # the arrival mode may have changed: every node again (R1)
            await self.nodes.resolve(current, self.pathways.by_center[center].nodes)
            if current.get("status") != "finished":  # a case the other system closed stays so
                await self._update_status(current, set(self.pathways.by_center[center].closes_on))

    async def _written_here(self, case: Mapping[str, Any]) -> bool:
        version = (case.get("meta") or {}).get("versionId")
        if version is None:
            return False
        prov = provenance_id(f"EpisodeOfCare/{case['id']}", version)
        return await self.records.read(f"Provenance/{prov}") is not None

    async def _last_written_here(self, case: Mapping[str, Any]) -> dict[str, Any] | None:
        """The latest earlier version the engine wrote (the HIS may have sent several)."""
        version = int(case["meta"]["versionId"])
        for earlier in range(version - 1, max(0, version - _HISTORY_DEPTH), -1):
            found = await self.records.read(f"EpisodeOfCare/{case['id']}/_history/{earlier}")
            if found is not None and await self._written_here(found):
                return found
        return None

    async def _supersede(
        self, own: dict[str, Any], his: dict[str, Any], his_reference: str
    ) -> dict[str, Any]:
        """The engine's case of the same patient and center gives way to the HIS's: cancelled,
        its staff facts and staff times carried over to `his` (returned)."""
        for name, (value, source) in case_facts(own).items():
            if source == MANUAL and case_facts(his).get(name, ("", ""))[1] != MANUAL:
                set_fact(his, name, value, MANUAL)
                if name == "arrival_mode":
                    set_arrival_mode(his, _mode(value))
        staff = [
            c
            for c in await case_time_nodes(self.records.store, own)
            if c.get("status") == "preliminary"
            and ((c.get("method") or {}).get("coding") or [{}])[0].get("code") in _STAFF_KINDS
        ]
        cancelled = content_of(own) | {"status": "cancelled"}
        await self.records.write(
            cancelled,
            Note(
                activity="derive",
                who=ENGINE,
                entity=his_reference,
                reason=f"superseded by {his_reference}, the HIS's green channel registration",
            ),
        )
        for candidate in staff:
            who = ((candidate.get("performer") or [{}])[0]).get("display") or ENGINE
            why = ((candidate.get("note") or [{}])[0]).get("text") or "carried over"
            kind = ((candidate.get("method") or {}).get("coding") or [{}])[0].get("code")
            await self.nodes.manual(
                his,
                str(node_key_of(candidate)),
                datetime.fromisoformat(candidate["valueDateTime"]),
                who=str(who),
                why=str(why),
                correction=kind == CORRECTION,
            )
        return his

    async def _set_facts(
        self, case: dict[str, Any], facts: Mapping[str, Any], source: str
    ) -> dict[str, Any]:
        held = case_facts(case)
        stale = [n for n, (_, given_by) in held.items() if given_by == source and n not in facts]
        if not facts and not stale:
            return case
        updated = content_of(case)
        for name in stale:  # the resource no longer says so (its code was corrected)
            set_fact(updated, name, None, source)
        overruling = {MANUAL, f"EpisodeOfCare/{case['id']}"}  # staff, or the HIS's case itself
        for name, value in facts.items():
            if held.get(name, ("", ""))[1] in overruling:
                continue  # staff (or the HIS registration) said so: a resource does not overrule
            if name == "arrival_mode":
                set_arrival_mode(updated, _mode(value))
            else:
                set_fact(updated, name, value, source)
        return await self.records.write(
            updated,
            Note(activity="derive", who=ENGINE, entity=source),
            base=case,  # staff may have set a fact meanwhile
        )

    async def _drop_facts(self, case: dict[str, Any], source: str) -> None:
        stale = [name for name, (_, held) in case_facts(case).items() if held == source]
        if not stale:
            return
        updated = content_of(case)
        for name in stale:
            set_fact(updated, name, None, source)
        await self.records.write(
            updated,
            Note(activity="derive", who=ENGINE, entity=source),
            base=case,
        )

    async def set_manual_fact(
        self, case: dict[str, Any], name: str, value: Any, *, who: str, why: str | None
    ) -> dict[str, Any]:
        """A fact set by staff (give_up_treatment ...); it wins over derived values.

        Set on the case as it is when written, not as the caller read it: what the subscriber
        derived in between (a corrected diagnosis) stays. Raises NotFound if the case is gone.
        """
        mode = _mode(value) if name == "arrival_mode" else None  # a bad value fails first

        async def with_fact(current: dict[str, Any]) -> tuple[dict[str, Any], Note]:
            updated = content_of(current)
            if mode is not None:
                set_arrival_mode(updated, mode)
            set_fact(updated, name, value, MANUAL)  # also marks a manual arrival mode as such
            return updated, Note(activity="manual-entry", who=who, reason=why)

        reference = f"EpisodeOfCare/{case['id']}"
        stored = await self.records.update(reference, with_fact)
        if stored is None:
            raise NotFound(f"{reference} no longer exists; the fact was not recorded")
        if name == "arrival_mode":  # door variants (R1) depend on it
            await self.nodes.resolve(stored, self.pathways.by_center[self._center(stored)].nodes)
        return stored

    # -- closing -------------------------------------------------------------------------------

    async def _update_status(self, case: dict[str, Any], touched: set[str]) -> None:
        """Finish the case when a `closes_on` node (discharge, death) resolves; open it again
        when that node goes (ADT A13 cancels the discharge)."""
        pathway = self.pathways.by_center[self._center(case)]
        if not touched & pathway.closes_on:
            return

        async def closed(current: dict[str, Any]) -> tuple[dict[str, Any], Note] | None:
            if current.get("status") not in ("active", "finished"):
                return None
            ends = [
                v.authoritative
                for v in await self.nodes.view(current)
                if v.key in pathway.closes_on
            ]
            instants = [a["valueDateTime"] for a in ends if a is not None]
            updated = content_of(current)
            period = {k: v for k, v in updated["period"].items() if k != "end"}
            if instants:
                updated["status"], updated["period"] = "finished", {**period, "end": max(instants)}
            else:
                updated["status"], updated["period"] = "active", period
            reason = "case closed" if instants else "case open again: its end was withdrawn"
            return updated, Note(activity="derive", who=ENGINE, reason=reason)

        # staff or the subscriber may change the case meanwhile: derived again from theirs
        await self.records.update(f"EpisodeOfCare/{case['id']}", closed)

    # -- staff ---------------------------------------------------------------------------------

    async def activate_manually(
        self,
        center: Center,
        patient: str,
        start: datetime,
        *,
        arrival_mode: ArrivalMode | None,
        who: str,
        why: str | None,
    ) -> tuple[dict[str, Any], bool]:
        """Open a case by hand; the patient's open case of that center if there is one.
        True when a case was opened."""
        for case in await self.open_cases(patient):
            if self._center(case) == center:
                return case, False
        episode = case_episode(
            case_id(center, patient, f"{MANUAL}/{start.isoformat()}"),
            center,
            patient,
            start,
            activation=MANUAL,
            arrival_mode=arrival_mode,
        )
        if arrival_mode is not None:
            set_fact(episode, "arrival_mode", arrival_mode, MANUAL)
        stored = await self.records.write(
            episode, Note(activity="manual-entry", who=who, reason=why or "manual activation")
        )
        await self._scan(stored)
        current = await self.records.read(f"EpisodeOfCare/{stored['id']}")
        assert current is not None
        return current, True

    async def enter_node(
        self,
        case: dict[str, Any],
        node: str,
        instant: datetime,
        *,
        who: str,
        why: str,
        correction: bool,
    ) -> None:
        """A node time by staff: an entry (a low-priority candidate) or a correction (wins)."""
        await self.nodes.manual(case, node, instant, who=who, why=why, correction=correction)
        await self.nodes.resolve(case, {node})
        await self._update_status(case, {node})

    async def open_cases(self, patient: str) -> list[dict[str, Any]]:
        memo = self.records.memo
        found = memo.open_cases(patient) if memo is not None else None
        if found is not None:
            return found
        found = await self.records.search(
            "EpisodeOfCare", [("patient", patient), ("status", "active")]
        )
        if memo is not None:
            memo.keep_open_cases(patient, found)
        return found

    async def list_cases(self, center: Center | None, status: str | None) -> list[dict[str, Any]]:
        pairs: list[tuple[str, str]] = [("_sort", "-date")]
        if center is not None:
            pairs.append(("type", f"{CENTER_SYSTEM}|{CENTER_TYPE_CODES[center]}"))
        if status is not None:
            pairs.append(("status", status))
        return await self.records.search("EpisodeOfCare", pairs)

    def _center(self, case: Mapping[str, Any]) -> Center:
        center = case_center(case)
        assert center is not None, "not a center case"
        return center


def _start_of(case: Mapping[str, Any]) -> str | None:
    start = (case.get("period") or {}).get("start")
    return start if isinstance(start, str) and "T" in start else None


def _within_period(instant: datetime, case: Mapping[str, Any]) -> bool:
    """The instant lies in the case's period (start and end with date and time)."""
    period = case.get("period") or {}
    start, end = period.get("start"), period.get("end")
    if not (isinstance(start, str) and "T" in start and isinstance(end, str) and "T" in end):
        return False
    return datetime.fromisoformat(start) <= instant <= datetime.fromisoformat(end)


def _mode(value: Any) -> ArrivalMode:
    for mode in ARRIVAL_MODES:
        if mode == value:
            return mode
    raise ValueError(f"arrival mode {value!r} is not one of {', '.join(ARRIVAL_MODES)}")
