"""The patient archive (病例档案) of one center case: its complete record assembled from the FHIR
store, as one JSON document of a stable shape (docs/patient-archive.md).

Sections: the case and patient, emergency information (arrival, prehospital care, visits, vitals,
ECGs, labs, imaging), diagnosis, treatment, outcome, the timeline of authoritative time nodes
with their intervals, the scores, and what is missing. Served by `GET /api/cases/{id}/archive`
(`pathways.archive_api`) and printed by `greenchannel case show` (`pathways.archive_command`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from fhir_store import FhirStore
from pathways import _archive_clinical as clinical
from pathways._archive_records import (
    DEFAULT_LOOKBACK,
    MAX_PER_SEARCH,
    CaseNotFound,
    CaseRecords,
    gather_records,
)
from pathways._archive_timeline import build_timeline
from pathways._archive_values import (
    codings,
    concept_text,
    extension_value,
    parse_instant,
    reference_key,
    show_time,
    show_when,
)
from pathways.archive_config import (
    NODE_CATALOGUE,
    SECTIONS,
    ArchiveConfig,
    default_config,
    fact_key,
    node_labels,
)
from pathways.shapes import case_facts
from pathways.vocabulary import (
    ARRIVAL_MODE_EXTENSION,
    CENTER_SYSTEM,
    CENTER_TYPE_CODES,
)

__all__ = ["ARCHIVE_VERSION", "LOCAL_TIME", "CaseNotFound", "build_archive"]

ARCHIVE_VERSION = 1  # raised when a key changes meaning or goes; new keys keep the version
LOCAL_TIME = timezone(timedelta(hours=8))
DECEASED_DISPOSITIONS = frozenset({"exp"})  # discharge-disposition "Expired"

Archive = dict[str, Any]


async def build_archive(
    store: FhirStore,
    case_id: str,
    *,
    zone: tzinfo = LOCAL_TIME,
    config: ArchiveConfig | None = None,
    lookback: timedelta = DEFAULT_LOOKBACK,
    max_per_search: int = MAX_PER_SEARCH,
    now: datetime | None = None,
) -> Archive:
    """The archive of `EpisodeOfCare/case_id`; CaseNotFound if it is not a center case.

    A case with few data still gives every section (empty lists, nulls); what a case of its
    center should have and does not is listed under `missing`. `lookback`: how long before the
    case's start the patient's results still count (prehospital care); `max_per_search`: how
    many resources one search reads at most (a cut is listed under `missing`).
    """
    config = config or default_config()
    records = await gather_records(
        store, case_id, zone, lookback=lookback, max_per_search=max_per_search
    )
    labels, labels_from = _node_labels(records)
    case = _case_section(records, config, zone)
    case_ref = f"EpisodeOfCare/{case_id}"
    observations = records.of_type("Observation")
    reports = records.of_type("DiagnosticReport")
    ecg_obs = [o for o in observations if clinical.is_ecg(o, config.ecg_codes)]
    ecg_reports = [r for r in reports if clinical.is_ecg(r, config.ecg_codes)]
    other_reports = [r for r in reports if not clinical.is_ecg(r, config.ecg_codes)]
    field_visits = clinical.prehospital_visits(records.encounters)
    at_scene = [o for o in observations if reference_key(o.get("encounter")) in field_visits]
    in_hospital = [o for o in observations if reference_key(o.get("encounter")) not in field_visits]
    timeline = build_timeline(records.time_nodes, labels, config.references, zone)
    timeline["labels_from"] = labels_from
    all_ecgs = clinical.ecgs(ecg_obs, ecg_reports, zone)
    archive: Archive = {
        "archive_version": ARCHIVE_VERSION,
        "generated_at": show_time(now or datetime.now(zone), zone),
        "case": case,
        "patient": _patient_section(records.patient, zone),
        "emergency": {
            "arrival_mode": case["arrival_mode"],
            "arrival_mode_label": case["arrival_mode_label"],
            "prehospital": {
                "visits": sorted(field_visits),
                "nodes": [
                    _brief(node)
                    for node in timeline["nodes"]
                    if node["key"] in config.prehospital_nodes
                ],
                "vitals": clinical.vital_readings(at_scene, zone),
                "ecgs": [e for e in all_ecgs if e["encounter"] in field_visits],
            },
            "visits": clinical.encounters(records.encounters, zone),
            "vitals": clinical.vital_summaries(in_hospital, zone),
            "ecgs": all_ecgs,
            "labs": clinical.labs(observations, zone),
            "imaging": clinical.imaging(
                records.of_type("ImagingStudy"),
                [r for r in other_reports if clinical.is_imaging_report(r)],
                zone,
            ),
        },
        "diagnosis": {
            "case_diagnosis": case["facts"].get("diagnosis"),
            "conditions": clinical.conditions(records.of_type("Condition"), zone),
        },
        "treatment": {
            "reperfusion": case["facts"].get("reperfusion"),
            "procedures": clinical.procedures(records.of_type("Procedure"), zone),
            "medications": clinical.medications(records.of_type("MedicationAdministration"), zone),
        },
        "outcome": _outcome(records, timeline, zone),
        "timeline": timeline,
        "scores": clinical.scores(
            [o for o in observations if clinical.is_score(o, case_ref, config.score_labels)],
            config.score_labels,
            zone,
        ),
    }
    archive["missing"] = _missing(archive, records, config, labels)
    return archive


def _node_labels(records: CaseRecords) -> tuple[dict[str, str], str]:
    """中文 labels: the published time-node CodeSystem where it has one, else the node
    catalogue it is published from."""
    labels = dict(node_labels())
    codesystem = records.node_codesystem
    published = _codesystem_labels(codesystem.get("concept") or []) if codesystem else {}
    labels.update(published)
    if published:
        return labels, f"CodeSystem/{codesystem.get('id') if codesystem else ''}"
    return labels, NODE_CATALOGUE


def _codesystem_labels(concepts: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for concept in concepts:
        code = concept.get("code")
        chinese = [
            d.get("value")
            for d in concept.get("designation") or []
            if str(d.get("language", "")).startswith("zh") and d.get("value")
        ]
        display = concept.get("display")
        if isinstance(display, str) and any("\u4e00" <= ch <= "\u9fff" for ch in display):
            chinese.append(display)
        if isinstance(code, str) and chinese:
            labels[code] = str(chinese[0])
        labels.update(_codesystem_labels(concept.get("concept") or []))
    return labels


def _case_section(records: CaseRecords, config: ArchiveConfig, zone: tzinfo) -> dict[str, Any]:
    case = records.case
    center_codes = {code: key for key, code in CENTER_TYPE_CODES.items()}
    center = next(
        (
            center_codes.get(str(c.get("code")))
            for concept in case.get("type") or []
            for c in codings(concept)
            if c.get("system") == CENTER_SYSTEM
        ),
        None,
    )
    mode = extension_value(case, ARRIVAL_MODE_EXTENSION)
    period = case.get("period") or {}
    return {
        "resource": f"EpisodeOfCare/{case.get('id')}",
        "id": case.get("id"),
        "center": center,
        "center_label": config.centers.get(center) if center else None,
        "status": case.get("status"),
        "start": show_when(period.get("start"), zone),
        "end": show_when(period.get("end"), zone),
        "arrival_mode": mode if isinstance(mode, str) else None,
        "arrival_mode_label": config.arrival_modes.get(mode) if isinstance(mode, str) else None,  # type: ignore[call-overload]
        "facts": _facts(case),
        "identifiers": [
            {"system": i.get("system"), "value": i.get("value")}
            for i in case.get("identifier") or []
            if i.get("value")
        ],
        "window": {
            "start": show_time(records.window_start, zone) if records.window_start else None,
            "end": show_time(records.window_end, zone) if records.window_end else None,
        },
    }


def _facts(case: Mapping[str, Any]) -> dict[str, Any]:
    """The case facts (diagnosis, reperfusion, flags …): name -> value as JSON."""
    return {name: value for name, (value, _) in case_facts(case).items()}


def _patient_section(patient: Mapping[str, Any] | None, zone: tzinfo) -> dict[str, Any] | None:
    if patient is None:
        return None
    names = patient.get("name") or [{}]
    name = names[0]
    text = name.get("text") or "".join([name.get("family", ""), *name.get("given", [])]) or None
    return {
        "resource": f"Patient/{patient.get('id')}",
        "name": text,
        "gender": patient.get("gender"),
        "birth_date": patient.get("birthDate"),
        "identifiers": [
            {"system": i.get("system"), "value": i.get("value")}
            for i in patient.get("identifier") or []
            if i.get("value")
        ],
        "deceased": bool(patient.get("deceasedBoolean") or patient.get("deceasedDateTime")),
        "deceased_time": show_when(patient.get("deceasedDateTime"), zone),
    }


def _outcome(records: CaseRecords, timeline: Mapping[str, Any], zone: tzinfo) -> dict[str, Any]:
    """How the case ended: discharge (node, else the last visit's end), disposition, death."""
    nodes = {node["key"]: node["time"] for node in timeline["nodes"]}
    visits = [
        (parse_instant((e.get("period") or {}).get("end"), zone), e)
        for e in records.encounters
        if (e.get("class") or {}).get("code") != clinical.PREHOSPITAL_CLASS
    ]
    ended = sorted(((end, e) for end, e in visits if end is not None), key=lambda pair: pair[0])
    last_end = show_time(ended[-1][0], zone) if ended else None
    dispositions = [
        (e.get("hospitalization") or {}).get("dischargeDisposition")
        for _, e in ended
        if (e.get("hospitalization") or {}).get("dischargeDisposition")
    ]
    disposition = dispositions[-1] if dispositions else None
    coding = next(codings(disposition), None) if disposition else None
    patient = records.patient or {}
    died = bool(
        "death" in nodes
        or patient.get("deceasedBoolean")
        or patient.get("deceasedDateTime")
        or (coding is not None and coding.get("code") in DECEASED_DISPOSITIONS)
    )
    return {
        "case_status": records.case.get("status"),
        "discharge_time": nodes.get("discharge") or last_end,
        "disposition": {
            "code": coding.get("code") if coding else None,
            "display": concept_text(disposition),
        }
        if disposition
        else None,
        "died": died,
        "death_time": nodes.get("death") or show_when(patient.get("deceasedDateTime"), zone),
    }


def _brief(node: Mapping[str, Any]) -> dict[str, Any]:
    return {key: node[key] for key in ("key", "label", "time", "sources")}


def _missing(
    archive: Mapping[str, Any],
    records: CaseRecords,
    config: ArchiveConfig,
    labels: Mapping[str, str],
) -> list[dict[str, str]]:
    """What a case of its center should have and this one does not, each with why."""
    missing: list[dict[str, str]] = []
    case = archive["case"]

    def add(item: str, reason: str) -> None:
        missing.append({"item": item, "reason": reason})

    if archive["patient"] is None:
        add("patient", "the case names no Patient, or the store has none with its id")
    if case["start"] is None:
        add("case.period", "the case has no start; visits and results were found by link only")
    if case["arrival_mode"] is None:
        add("arrival_mode", f"the case has no {ARRIVAL_MODE_EXTENSION} extension")
    timeline = archive["timeline"]
    present = {node["key"] for node in timeline["nodes"]}
    pending = {entry["key"] for entry in timeline["unresolved"]}
    expected = list(config.expected_nodes.get(case["center"], ()))
    for fact, by_value in config.expected_by_fact.items():
        expected += by_value.get(fact_key(case["facts"].get(fact)), ())
    onset_keys = set(config.references.onset)
    for key in dict.fromkeys(expected):
        if key in present:
            continue
        if key in config.references.door and case["arrival_mode"] == "in_hospital":
            continue  # no door for an in-hospital onset (time-nodes.md R1)
        if key in onset_keys and timeline["references"]["onset"] is not None:
            continue  # last known well or the injury stands in for the onset
        label = labels.get(key, key)
        why = "candidates wait for resolution" if key in pending else "no authoritative time node"
        add(f"timeline.{key}", f"{label}: {why}")
    if archive["diagnosis"]["case_diagnosis"] is None and not archive["diagnosis"]["conditions"]:
        add("diagnosis", "no diagnosis fact on the case and no Condition for the patient")
    lists = {
        "vitals": archive["emergency"]["vitals"] or archive["emergency"]["prehospital"]["vitals"],
        "ecgs": archive["emergency"]["ecgs"],
        "labs": archive["emergency"]["labs"],
        "imaging": archive["emergency"]["imaging"],
        "procedures": archive["treatment"]["procedures"],
        "medications": archive["treatment"]["medications"],
        "scores": archive["scores"],
    }
    assert set(lists) == set(SECTIONS)
    for section in config.expected_sections.get(case["center"], ()):
        if not lists[section]:
            add(section, "nothing of this kind in the store for the case's patient and visits")
    if case["status"] in ("finished", "cancelled") and archive["outcome"]["discharge_time"] is None:
        add("outcome.discharge_time", "the case is closed but no visit has an end")
    for cut in records.cut_searches:
        add("store", cut)
    return missing
