"""Everything the FHIR store holds for one center case: the case, its patient, its visits, and
the clinical resources of the patient within the case's period or linked to its visits.

Reads only, through the FhirStore public API (searches followed page by page up to a bound).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from fhir_store import FhirStore, Gone, NotFound
from pathways._archive_values import has_coding, parse_instant, reference_key
from pathways.case_store import TIME_NODE_CATEGORY_PAIR, search_all
from pathways.shapes import case_center, case_of
from pathways.vocabulary import (
    CENTER_SYSTEM,
    HL7_OBSERVATION_CATEGORY,
    OBSERVATION_CATEGORY_SYSTEM,
    TIME_NODE_CATEGORY,
    TIME_NODE_SYSTEM,
)

__all__ = ["CaseNotFound", "CaseRecords", "gather_records"]

Resource = dict[str, Any]

MAX_PER_SEARCH = 5000  # a bound on one archive's memory; a cut search is reported, not hidden
DEFAULT_LOOKBACK = timedelta(hours=6)  # prehospital care before the case opened (120, FMC)

_VITALS = f"{HL7_OBSERVATION_CATEGORY}|vital-signs"

# What is searched per type: the date parameter of the patient's resources in the case's
# window, the parameter that links them to a visit, and more parameters. Vital signs are
# searched apart, earliest first: a monitor sends one a minute, and if a long stay has more
# than the bound, the cut keeps the acute phase and leaves the other results whole.
_CLINICAL_SEARCHES: tuple[tuple[str, str, str | None, str, tuple[tuple[str, str], ...]], ...] = (
    ("vital signs", "Observation", "date", "encounter", (("category", _VITALS), ("_sort", "date"))),
    ("observations", "Observation", "date", "encounter", (("category:not", _VITALS),)),
    ("reports", "DiagnosticReport", "date", "encounter", ()),
    ("imaging studies", "ImagingStudy", "started", "encounter", ()),
    ("procedures", "Procedure", "date", "encounter", ()),
    ("drugs given", "MedicationAdministration", "effective-time", "context", ()),
    # discharge prescriptions (出院带药) for the registry records
    ("prescriptions", "MedicationRequest", "authoredon", "encounter", ()),
    # recorded or onset: checked here, not by the store
    ("diagnoses", "Condition", None, "encounter", ()),
)


class CaseNotFound(LookupError):
    """No center case (EpisodeOfCare of a center) with this id; the API answers 404."""

    def __init__(self, case_id: str, reason: str) -> None:
        super().__init__(f"no center case EpisodeOfCare/{case_id}: {reason}")
        self.case_id = case_id
        self.reason = reason


@dataclass(slots=True)
class CaseRecords:
    """The resources of one case, by kind, as stored (FHIR JSON)."""

    case: Resource
    patient: Resource | None
    window_start: datetime | None
    window_end: datetime | None
    encounters: list[Resource] = field(default_factory=list)
    time_nodes: list[Resource] = field(default_factory=list)  # authoritative and candidates
    clinical: dict[str, list[Resource]] = field(default_factory=dict)  # by resource type
    node_codesystem: Resource | None = None  # the time-node CodeSystem, if published
    cut_searches: list[str] = field(default_factory=list)  # what hit the bound, and how
    max_per_search: int = MAX_PER_SEARCH

    def of_type(self, resource_type: str) -> list[Resource]:
        return self.clinical.get(resource_type, [])


async def gather_records(
    store: FhirStore,
    case_id: str,
    zone: tzinfo,
    *,
    lookback: timedelta = DEFAULT_LOOKBACK,
    max_per_search: int = MAX_PER_SEARCH,
) -> CaseRecords:
    """Read the case and everything that belongs to it; CaseNotFound if there is no such case.

    Each search reads at most `max_per_search` resources; a search cut there is recorded."""
    case = await _read_case(store, case_id)
    patient_key = reference_key(case.get("patient"))
    patient = await _read_optional(store, patient_key) if patient_key else None
    records = CaseRecords(
        case=case,
        patient=patient,
        window_start=None,
        window_end=None,
        max_per_search=max_per_search,
    )
    records.node_codesystem = await _time_node_codesystem(store, records)
    if patient_key is None or not patient_key.startswith("Patient/"):
        return records
    case_ref = f"EpisodeOfCare/{case_id}"
    nodes = await _search(
        store,
        records,
        "time nodes",
        "Observation",
        [("subject", patient_key), TIME_NODE_CATEGORY_PAIR],
    )
    records.time_nodes = [n for n in nodes if case_of(n) == case_ref]
    records.window_start, records.window_end = _window(case, records.time_nodes, zone, lookback)
    records.encounters = await _encounters(store, records, patient_key, case_ref)
    visit_keys = [f"Encounter/{e['id']}" for e in records.encounters]
    for what, resource_type, date_param, visit_param, more in _CLINICAL_SEARCHES:
        found: dict[str, Resource] = {}
        pairs: list[tuple[str, str]] = [("subject", patient_key), *more]
        if date_param is not None and records.window_start is not None:
            pairs.append((date_param, f"ge{records.window_start.isoformat()}"))
            if records.window_end is not None:
                pairs.append((date_param, f"le{records.window_end.isoformat()}"))
            _add(found, await _search(store, records, what, resource_type, pairs))
        elif date_param is None:
            candidates = await _search(store, records, what, resource_type, pairs)
            _add(found, (r for r in candidates if _dated_within(r, records, zone)))
        if visit_keys:
            linked = [(visit_param, ",".join(visit_keys)), *more]
            _add(found, await _search(store, records, what, resource_type, linked))
        records.clinical.setdefault(resource_type, []).extend(
            r for r in found.values() if case_of(r) in (None, case_ref) and not _is_time_node(r)
        )
    return records


async def _read_case(store: FhirStore, case_id: str) -> Resource:
    try:
        case = await store.read("EpisodeOfCare", case_id)
    except NotFound:
        raise CaseNotFound(case_id, "the FHIR store has no EpisodeOfCare with this id") from None
    except Gone:
        raise CaseNotFound(case_id, "this EpisodeOfCare was deleted") from None
    if case_center(case) is None:
        raise CaseNotFound(case_id, f"the EpisodeOfCare has no type from {CENTER_SYSTEM}")
    return case


async def _read_optional(store: FhirStore, key: str) -> Resource | None:
    resource_type, _, resource_id = key.partition("/")
    try:
        return await store.read(resource_type, resource_id)
    except (NotFound, Gone):
        return None


async def _time_node_codesystem(store: FhirStore, records: CaseRecords) -> Resource | None:
    found = await _search(store, records, "code systems", "CodeSystem", [("url", TIME_NODE_SYSTEM)])
    return found[0] if found else None


async def _encounters(
    store: FhirStore, records: CaseRecords, patient_key: str, case_ref: str
) -> list[Resource]:
    """The visits linked to the case, and the patient's visits overlapping its window."""
    chosen = []
    for encounter in await _search(
        store, records, "visits", "Encounter", [("subject", patient_key)]
    ):
        linked = any(
            reference_key(link) == case_ref for link in encounter.get("episodeOfCare") or []
        )
        if linked or _overlaps(encounter.get("period") or {}, records):
            chosen.append(encounter)
    return chosen


def _overlaps(period: dict[str, Any], records: CaseRecords) -> bool:
    if records.window_start is None:
        return False
    zone = records.window_start.tzinfo
    assert zone is not None
    start = parse_instant(period.get("start"), zone)
    end = parse_instant(period.get("end"), zone)
    if start is None and end is None:
        return False
    if end is not None and end < records.window_start:
        return False
    return not (start is not None and records.window_end is not None and start > records.window_end)


def _window(
    case: Resource, nodes: list[Resource], zone: tzinfo, lookback: timedelta
) -> tuple[datetime | None, datetime | None]:
    """From the case's start (else its first node) less `lookback`, to its end (else open)."""
    period = case.get("period") or {}
    start = parse_instant(period.get("start"), zone)
    end = parse_instant(period.get("end"), zone)
    if start is None:
        instants = [parse_instant(n.get("valueDateTime"), zone) for n in nodes]
        known = [i for i in instants if i is not None]
        start = min(known) if known else None
    return (start - lookback if start is not None else None), end


def _dated_within(resource: Resource, records: CaseRecords, zone: tzinfo) -> bool:
    if records.window_start is None:
        return False
    for key in ("recordedDate", "onsetDateTime"):
        instant = parse_instant(resource.get(key), zone)
        if instant is not None:
            return instant >= records.window_start and (
                records.window_end is None or instant <= records.window_end
            )
    return False


def _is_time_node(resource: Resource) -> bool:
    if resource.get("resourceType") != "Observation":
        return False
    return has_coding(resource.get("code"), TIME_NODE_SYSTEM) or any(
        has_coding(concept, OBSERVATION_CATEGORY_SYSTEM, TIME_NODE_CATEGORY)
        for concept in resource.get("category") or []
    )


def _add(found: dict[str, Resource], resources: Iterable[Resource]) -> None:
    for resource in resources:
        found.setdefault(str(resource.get("id")), resource)


async def _search(
    store: FhirStore,
    records: CaseRecords,
    what: str,
    resource_type: str,
    pairs: list[tuple[str, str]],
) -> list[Resource]:
    """Every match of a search, page after page, up to the records' bound (a cut is recorded)."""
    bound = records.max_per_search
    found = await search_all(store, resource_type, pairs, limit=bound)
    if len(found) > bound:
        which = "the earliest " if any(k == "_sort" for k, _ in pairs) else ""
        cut = f"{what} ({resource_type}): more than {bound}; the archive has {which}{bound}"
        if cut not in records.cut_searches:
            records.cut_searches.append(cut)
        return found[:bound]
    return found
