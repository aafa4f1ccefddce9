"""The clinical sections of the archive from the stored resources: visits, vitals, ECGs, labs,
imaging, diagnoses, procedures, drugs and scores, each a list of plain JSON entries in time order.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from pathways._archive_values import (
    codings,
    concept_text,
    extension_value,
    has_coding,
    parse_instant,
    reference_key,
    show_when,
    value_number,
    value_text,
)
from pathways.vocabulary import (
    ASSESSMENT_PHASE_EXTENSION,
    CASE_EXTENSION,
    HL7_OBSERVATION_CATEGORY,
    LOINC,
    SCORE_POINTS_EXTENSION,
    SCORE_SYSTEM,
)

__all__ = [
    "conditions",
    "ecgs",
    "encounters",
    "imaging",
    "is_ecg",
    "labs",
    "medications",
    "procedures",
    "scores",
    "vital_readings",
    "vital_summaries",
]

Resource = Mapping[str, Any]
Entry = dict[str, Any]

PREHOSPITAL_CLASS = "FLD"


def encounters(resources: Sequence[Resource], zone: tzinfo) -> list[Entry]:
    """Each visit: class (FLD = the ambulance leg), period, where the patient was, and how the
    visit began and ended."""
    entries = []
    for encounter in resources:
        period = encounter.get("period") or {}
        stay = encounter.get("hospitalization") or {}
        entries.append(
            {
                "resource": f"Encounter/{encounter.get('id')}",
                "class": (encounter.get("class") or {}).get("code"),
                "status": encounter.get("status"),
                "start": show_when(period.get("start"), zone),
                "end": show_when(period.get("end"), zone),
                "identifiers": _identifiers(encounter),
                "admit_source": concept_text(stay.get("admitSource")),
                "discharge_disposition": _coded(stay.get("dischargeDisposition")),
                "participants": [
                    str(p["individual"]["display"])
                    for p in encounter.get("participant") or []
                    if isinstance(p.get("individual"), Mapping) and p["individual"].get("display")
                ],
                "locations": [
                    {
                        "location": (place.get("location") or {}).get("display")
                        or reference_key(place.get("location")),
                        "status": place.get("status"),
                        "start": show_when((place.get("period") or {}).get("start"), zone),
                        "end": show_when((place.get("period") or {}).get("end"), zone),
                    }
                    for place in encounter.get("location") or []
                ],
            }
        )
    return sorted(entries, key=lambda e: _order(e["start"]))


def prehospital_visits(resources: Sequence[Resource]) -> set[str]:
    """`Encounter/id` of the ambulance legs (class FLD)."""
    return {
        f"Encounter/{e.get('id')}"
        for e in resources
        if (e.get("class") or {}).get("code") == PREHOSPITAL_CLASS
    }


def _is_category(resource: Resource, code: str) -> bool:
    return any(
        has_coding(concept, HL7_OBSERVATION_CATEGORY, code)
        for concept in resource.get("category") or []
    )


def vital_readings(observations: Iterable[Resource], zone: tzinfo) -> list[Entry]:
    """Every vital-sign reading, in time order (the prehospital ones are few)."""
    readings = [
        {
            "time": show_when(_effective(o), zone),
            "name": concept_text(o.get("code")),
            "value": value_text(o, zone),
            "resource": f"Observation/{o.get('id')}",
        }
        for o in observations
        if _is_category(o, "vital-signs")
    ]
    return sorted(readings, key=lambda e: _order(e["time"]))


def vital_summaries(observations: Iterable[Resource], zone: tzinfo) -> list[Entry]:
    """Per kind of vital sign: how many readings, the first and last, the lowest and highest
    (a monitor sends one a minute; the archive shows what a clinician reads of them)."""
    kinds: dict[str, list[tuple[datetime, Resource]]] = {}
    names: dict[str, str | None] = {}
    for observation in observations:
        when = parse_instant(_effective(observation), zone)
        if not _is_category(observation, "vital-signs") or when is None:
            continue
        kind = _kind(observation.get("code"))
        kinds.setdefault(kind, []).append((when, observation))
        names.setdefault(kind, concept_text(observation.get("code")))
    summaries = []
    for kind, readings in kinds.items():
        readings.sort(key=lambda reading: reading[0])
        numeric = [r for r in readings if value_number(r[1]) is not None]

        def shown(reading: tuple[datetime, Resource]) -> Entry:
            return {
                "time": show_when(_effective(reading[1]), zone),
                "value": value_text(reading[1], zone),
            }

        summaries.append(
            {
                "code": kind,
                "name": names[kind],
                "count": len(readings),
                "first": shown(readings[0]),
                "last": shown(readings[-1]),
                "lowest": shown(min(numeric, key=lambda r: value_number(r[1]) or 0))
                if numeric
                else None,
                "highest": shown(max(numeric, key=lambda r: value_number(r[1]) or 0))
                if numeric
                else None,
            }
        )
    return sorted(summaries, key=lambda s: _order(s["first"]["time"]))


def is_ecg(resource: Resource, ecg_codes: Sequence[str]) -> bool:
    """An ECG Observation (by code) or an ECG DiagnosticReport (category EC)."""
    if resource.get("resourceType") == "DiagnosticReport":
        return any(
            has_coding(concept, "http://terminology.hl7.org/CodeSystem/v2-0074", "EC")
            for concept in resource.get("category") or []
        )
    return any(
        f"{c.get('system')}|{c.get('code')}" in ecg_codes for c in codings(resource.get("code"))
    )


def ecgs(
    observations: Iterable[Resource], reports: Iterable[Resource], zone: tzinfo
) -> list[Entry]:
    """Each ECG: when it was acquired and signed, the reading (machine or physician text), the
    conclusion codes and measurements; an ECG report is paired with the Observation it results."""
    by_result, loose = _by_target(reports, "result")
    entries = []
    used: set[int] = set()
    for observation in observations:
        paired = by_result.get(f"Observation/{observation.get('id')}")
        used.add(id(paired))
        entries.append(_ecg_entry(observation, paired, zone))
    for report in _unpaired(by_result, loose, used):
        entries.append(_ecg_entry(None, report, zone))
    return sorted(entries, key=lambda e: _order(e["acquired"]))


def _ecg_entry(observation: Resource | None, report: Resource | None, zone: tzinfo) -> Entry:
    main = observation if observation is not None else report
    assert main is not None
    concepts = [*(main.get("interpretation") or []), *((report or {}).get("conclusionCode") or [])]
    conclusions: list[str] = []
    for concept in concepts:
        text = concept_text(concept)
        if text and text not in conclusions:
            conclusions.append(text)
    reading = (observation or {}).get("valueString") or (report or {}).get("conclusion")
    return {
        "acquired": show_when(_effective(main), zone),
        "signed": show_when(main.get("issued") or (report or {}).get("issued"), zone),
        "reading": reading,
        "conclusions": conclusions,
        "measurements": [
            {"name": concept_text(part.get("code")), "value": value_text(part, zone)}
            for part in (observation or {}).get("component") or []
        ],
        "interpreter": next(
            (
                p.get("display")
                for p in [*main.get("performer", []), *(report or {}).get("resultsInterpreter", [])]
                if isinstance(p, Mapping) and p.get("display")
            ),
            None,
        ),
        "status": main.get("status"),
        "encounter": reference_key(main.get("encounter")),
        "resource": f"{main.get('resourceType')}/{main.get('id')}",
        "report": f"DiagnosticReport/{report.get('id')}" if report is not None else None,
    }


def labs(observations: Iterable[Resource], zone: tzinfo) -> list[Entry]:
    """Each lab result: collected (effective) and reported (issued) times, value and flag."""
    entries = [
        {
            "collected": show_when(_effective(o), zone),
            "reported": show_when(o.get("issued"), zone),
            "name": concept_text(o.get("code")),
            "value": value_text(o, zone),
            "flag": ", ".join(t for t in map(concept_text, o.get("interpretation") or []) if t)
            or None,
            "status": o.get("status"),
            "resource": f"Observation/{o.get('id')}",
        }
        for o in observations
        if _is_category(o, "laboratory")
    ]
    return sorted(entries, key=lambda e: _order(e["collected"]))


def imaging(studies: Iterable[Resource], reports: Iterable[Resource], zone: tzinfo) -> list[Entry]:
    """Each imaging study (CT, MR, DSA …) with its report, and reports without a study."""
    by_study, loose = _by_target(reports, "imagingStudy")
    entries = []
    used: set[int] = set()
    for study in studies:
        paired = by_study.get(f"ImagingStudy/{study.get('id')}")
        used.add(id(paired))
        entries.append(
            {
                "started": show_when(study.get("started"), zone),
                "modality": ", ".join(
                    str(c.get("code")) for m in study.get("modality") or [] for c in codings(m)
                )
                or None,
                "name": study.get("description")
                or next(map(concept_text, study.get("procedureCode") or []), None),
                "status": study.get("status"),
                "resource": f"ImagingStudy/{study.get('id')}",
                **_report_part(paired, zone),
            }
        )
    for report in _unpaired(by_study, loose, used):
        entries.append(
            {
                "started": show_when(_effective(report), zone),
                "modality": None,
                "name": concept_text(report.get("code")),
                "status": report.get("status"),
                "resource": None,
                **_report_part(report, zone),
            }
        )
    return sorted(entries, key=lambda e: _order(e["started"]))


def _by_target(
    reports: Iterable[Resource], element: str
) -> tuple[dict[str, Resource], list[Resource]]:
    """Reports by each `Type/id` they name in `element` (result, imagingStudy), and the reports
    that name none."""
    by_target: dict[str, Resource] = {}
    loose = []
    for report in reports:
        keys = [key for key in map(reference_key, report.get(element) or []) if key]
        for key in keys:
            by_target[key] = report
        if not keys:
            loose.append(report)
    return by_target, loose


def _unpaired(
    by_target: Mapping[str, Resource], loose: Sequence[Resource], used: set[int]
) -> list[Resource]:
    """The reports shown on their own: those naming no target, and those whose target is not
    in the archive (each once)."""
    unseen = {id(r): r for r in by_target.values() if id(r) not in used}
    return [*loose, *unseen.values()]


def _report_part(report: Resource | None, zone: tzinfo) -> Entry:
    if report is None:
        return {"reported": None, "conclusion": None, "report": None}
    conclusion = report.get("conclusion") or ", ".join(
        t for t in map(concept_text, report.get("conclusionCode") or []) if t
    )
    return {
        "reported": show_when(report.get("issued"), zone),
        "conclusion": conclusion or None,
        "report": f"DiagnosticReport/{report.get('id')}",
    }


def is_imaging_report(report: Resource) -> bool:
    """A radiology report: it names a study or has the LOINC Radiology category."""
    return bool(report.get("imagingStudy")) or any(
        has_coding(concept, LOINC, "LP29684-5") for concept in report.get("category") or []
    )


def conditions(resources: Iterable[Resource], zone: tzinfo) -> list[Entry]:
    """Each diagnosis: name and code, how sure (verification), when recorded."""
    entries = [
        {
            "name": concept_text(c.get("code")),
            "code": _coded(c.get("code")),
            "verification": _code(c.get("verificationStatus")),
            "clinical_status": _code(c.get("clinicalStatus")),
            "category": next(map(_code, c.get("category") or []), None),
            "recorded": show_when(c.get("recordedDate") or c.get("onsetDateTime"), zone),
            "encounter": reference_key(c.get("encounter")),
            "resource": f"Condition/{c.get('id')}",
        }
        for c in resources
        if c.get("verificationStatus") is None
        or _code(c["verificationStatus"]) != "entered-in-error"
    ]
    return sorted(entries, key=lambda e: _order(e["recorded"]))


def procedures(resources: Iterable[Resource], zone: tzinfo) -> list[Entry]:
    """Each procedure (PCI, puncture, thrombectomy …) with its start and end."""
    entries = []
    for procedure in resources:
        start, end = _start_end(procedure, "performed", zone)
        entries.append(
            {
                "name": concept_text(procedure.get("code")),
                "code": _coded(procedure.get("code")),
                "status": procedure.get("status"),
                "start": start,
                "end": end,
                "resource": f"Procedure/{procedure.get('id')}",
            }
        )
    return sorted(entries, key=lambda e: _order(e["start"]))


def medications(resources: Iterable[Resource], zone: tzinfo) -> list[Entry]:
    """Each drug given (aspirin, P2Y12, anticoagulant, lytic): what, how much, when."""
    entries = []
    for given in resources:
        start, end = _start_end(given, "effective", zone)
        dosage = given.get("dosage") or {}
        dose = dosage.get("dose") or {}
        medication = concept_text(given.get("medicationCodeableConcept")) or (
            given.get("medicationReference") or {}
        ).get("display")
        entries.append(
            {
                "name": medication,
                "code": _coded(given.get("medicationCodeableConcept")),
                "dose": value_text({"valueQuantity": dose}, zone) if dose else None,
                "route": concept_text(dosage.get("route")),
                "status": given.get("status"),
                "time": start,
                "end": end,
                "resource": f"MedicationAdministration/{given.get('id')}",
            }
        )
    return sorted(entries, key=lambda e: _order(e["time"]))


def is_score(observation: Resource, case_ref: str, score_codes: Container[str]) -> bool:
    """A score of this case: linked to it and coded in the score CodeSystem, or by one of the
    LOINC score codes (`score_codes`: NIHSS, GCS), so that a vital sign or an interval linked to
    the case is not taken for one."""
    if reference_key(extension_value(observation, CASE_EXTENSION)) != case_ref:
        return False
    return any(
        coding.get("system") == SCORE_SYSTEM
        or (coding.get("system") == LOINC and coding.get("code") in score_codes)
        for coding in codings(observation.get("code"))
    )


def scores(
    observations: Iterable[Resource], labels: Mapping[str, str], zone: tzinfo
) -> list[Entry]:
    """Each score: name, total (or why there is none), band, when, phase, version, and items."""
    entries = []
    for score in observations:
        code = score.get("code") or {}
        coding = next((c for c in codings(code) if c.get("system") in (SCORE_SYSTEM, LOINC)), {})
        total = score.get("valueInteger")
        if total is None:
            total = value_number(score)
        entries.append(
            {
                "name": code.get("text")
                or labels.get(str(coding.get("code")))
                or concept_text(code),
                "code": coding.get("code"),
                "system": coding.get("system"),
                "total": total,
                "value": value_text({k: v for k, v in score.items() if k != "component"}, zone),
                "absent_reason": concept_text(score.get("dataAbsentReason")),
                "band": ", ".join(
                    t for t in map(concept_text, score.get("interpretation") or []) if t
                )
                or None,
                "time": show_when(_effective(score), zone),
                "phase": extension_value(score, ASSESSMENT_PHASE_EXTENSION),
                "version": concept_text(score.get("method")),
                "items": [
                    {
                        "name": concept_text(part.get("code")),
                        "code": next((c.get("code") for c in codings(part.get("code"))), None),
                        "answer": value_text(part, zone),
                        "points": _points(part),
                    }
                    for part in score.get("component") or []
                ],
                "resource": f"Observation/{score.get('id')}",
            }
        )
    return sorted(entries, key=lambda e: _order(e["time"]))


def _points(part: Resource) -> int | float | None:
    """An item's points, from the points extension of the score's component (its value[x] is
    the answer as given)."""
    points = extension_value(part, SCORE_POINTS_EXTENSION)
    return points if isinstance(points, int | float) and not isinstance(points, bool) else None


def _start_end(resource: Resource, element: str, zone: tzinfo) -> tuple[str | None, str | None]:
    """When something was done, from `<element>DateTime` or `<element>Period`, as shown."""
    period = resource.get(f"{element}Period") or {}
    start = resource.get(f"{element}DateTime") or period.get("start")
    return show_when(start, zone), show_when(period.get("end"), zone)


def _effective(resource: Resource) -> Any:
    period = resource.get("effectivePeriod") or {}
    return (
        resource.get("effectiveDateTime") or resource.get("effectiveInstant") or period.get("start")
    )


def _kind(concept: object) -> str:
    found = list(codings(concept))
    loinc = [c for c in found if c.get("system") == LOINC]
    first = (loinc or found or [{}])[0]
    return f"{first.get('system', '')}|{first.get('code', '')}" if first else "|"


def _code(concept: object) -> str | None:
    code = next((c.get("code") for c in codings(concept)), None)
    return str(code) if isinstance(code, str) else None


def _coded(concept: object) -> Entry | None:
    first = next(iter(codings(concept)), None)
    if first is None:
        return None
    return {
        "system": first.get("system"),
        "code": first.get("code"),
        "display": first.get("display"),
    }


def _identifiers(resource: Resource) -> list[Entry]:
    return [
        {"system": i.get("system"), "value": i.get("value")}
        for i in resource.get("identifier") or []
        if isinstance(i, Mapping) and i.get("value")
    ]


def _order(text: object) -> str:
    """Sort key of a shown time: untimed entries last. Shown times share one offset."""
    return text if isinstance(text, str) else "~"
