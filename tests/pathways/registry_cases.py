"""A complete chest pain case for the registry record tests: a STEMI brought by 120 with primary
PCI, written as the channels and the pathway engine write FHIR (tests/pathways/archive_cases.py
helpers), with every resource the CPC mapping reads, and the staff entries the platform needs
that no hospital system sends.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pathways._archive_records import CaseRecords
from pathways.case_store import StoredCase
from pathways.shapes import timeline_of
from pathways.vocabulary import DRUG_CLASS_SYSTEM, HL7_OBSERVATION_CATEGORY, LOINC, SCORE_SYSTEM
from tests.pathways.archive_cases import (
    Case,
    at,
    encounter,
    episode,
    iso,
    patient,
    score,
)

Resource = dict[str, Any]
ID_CARD = "urn:oid:2.16.156.10011.1.3"
LESION_SYSTEM = "https://greenchannel.example.org/fhir/CodeSystem/cath-lesion"
JPEG = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDAwMDAwMDAwMDAwMDAwMDAw="

# What registry staff enter (the platform's fields no hospital system sends), as overrides.
STAFF_ENTRIES: dict[str, object] = {
    "FirstAIDInfo.DISTRESS_CASE": "1",
    "FirstAIDInfo.CW_120_AMBULANCE_DEPARTMENT": "1",
    "FirstAIDInfo.CW_120_IS_TRANS_HOSPITAL": "0",
    "FirstAIDInfo.SCREENING": "2",
    "TreatmentInfo.IS_REMOTE_ECGTRAN": "1",
    "TreatmentPciInfo.INTRACAVITY_IMAGE": "4",
    "TreatmentPciInfo.FUNCTION_TEST": "3",
    "TreatmentPciInfo.IABP": "0",
    "TreatmentPciInfo.PACEMAKER": "0",
    "TreatmentPciInfo.ECMO": "0",
    "TreatmentPciInfo.AUXILIARY_DEVICE": "0",
    "OutComeInfo.IS_HEART_FAILURE": "0",
    "OutComeInfo.COMPLICATION": "99",
    "OutComeInfo.SMOKING": "0",
    "OutComeInfo.FAMILY_DISEASE": "0",
    "OutComeInfo.TOTAL_COST": 35210.5,
    "OutComeInfo.TREATMENT_RESULT_CODE": "2",
}
PARAMS = {"hospital_id": "HOSP-0001"}


def _observation(case: Case, obs_id: str, when: datetime, code: str, **value: Any) -> Resource:
    return {
        "resourceType": "Observation",
        "id": obs_id,
        "status": "final",
        "category": [{"coding": [{"system": HL7_OBSERVATION_CATEGORY, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{case.patient_id}"},
        "encounter": {"reference": "Encounter/reg-enc-120"},
        "effectiveDateTime": iso(when),
        **value,
    }


def _drug(case: Case, given_id: str, when: datetime, drug: str, dose: float, unit: str) -> Resource:
    return {
        "resourceType": "MedicationAdministration",
        "id": given_id,
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": DRUG_CLASS_SYSTEM, "code": drug}]},
        "subject": {"reference": f"Patient/{case.patient_id}"},
        "context": {"reference": "Encounter/reg-enc-ed"},
        "effectiveDateTime": iso(when),
        "dosage": {"dose": {"value": dose, "unit": unit}},
    }


def ecg_report(case: Case, report_id: str, taken: datetime, read: datetime) -> Resource:
    """An ECG report with its tracing as a JPEG (presentedForm), as the ECG channel writes it."""
    return {
        "resourceType": "DiagnosticReport",
        "id": report_id,
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "EC"}]}
        ],
        "code": {"coding": [{"system": LOINC, "code": "11524-6"}]},
        "subject": {"reference": f"Patient/{case.patient_id}"},
        "effectiveDateTime": iso(taken),
        "issued": iso(read),
        "presentedForm": [{"contentType": "image/jpeg", "data": JPEG}],
        "conclusion": "急性下壁ST段抬高型心肌梗死",
    }


def lesion(case: Case, lesion_id: str, *, culprit: bool, pci: bool, stents: int) -> Resource:
    """One coronary lesion from the cath-lab system (the mapping's cath-lesion convention)."""

    def component(code: str, **value: Any) -> Resource:
        return {"code": {"coding": [{"system": LESION_SYSTEM, "code": code}]}, **value}

    return {
        "resourceType": "Observation",
        "id": lesion_id,
        "status": "final",
        "code": {"coding": [{"system": LESION_SYSTEM, "code": "lesion"}]},
        "subject": {"reference": f"Patient/{case.patient_id}"},
        "encounter": {"reference": "Encounter/reg-enc-ed"},
        "effectiveDateTime": iso(at("2024-03-05 09:20:00")),
        "component": [
            component("segment", valueInteger=2 if culprit else 7),
            component("stenosis-grade", valueString="5" if culprit else "2"),
            component("timi-pre", valueInteger=0 if culprit else 3),
            component("stent-thrombosis", valueBoolean=False),
            component("bifurcation", valueBoolean=False),
            component("cto", valueBoolean=False),
            component("calcified", valueBoolean=not culprit),
            component("culprit", valueBoolean=culprit),
            component("pci", valueBoolean=pci),
            component("stents", valueInteger=stents),
            *([component("handling", valueString="1"), component("stent-type", valueString="2")]
              if pci else []),
        ],
    }  # fmt: skip


def complete_stemi(case_id: str = "cp-reg-1", patient_id: str = "p-reg-1") -> Case:
    """A 57-year-old man, inferior STEMI, 120, prehospital ECG transmitted, primary PCI through
    the right radial artery with one stent in the culprit RCA, discharged on day 7."""
    case = Case(case_id, patient_id)
    person = patient(patient_id, "王", "建国", "male", "1966-04-12")
    person["identifier"].append({"system": ID_CARD, "value": "110101196604120011"})
    person["telecom"] = [{"system": "phone", "value": "13800000000"}]
    case.add(person)
    facts: dict[str, str | bool] = {
        "diagnosis": "STEMI",
        "reperfusion": "primary_pci",
        "bypass_ed": True,
        "bypass_ccu": True,
        "remote_ecg_transmitted": True,
        "atrial_fibrillation": False,
        "outcome": "discharged",
    }
    case.add(
        episode(
            case, "chest-pain", at("2024-03-05 08:02:10"), at("2024-03-12 10:00:00"), "ems", facts
        )
    )
    case.resources[-1]["id"] = case_id
    for visit, klass, start, end in (
        ("reg-enc-120", "FLD", "2024-03-05 08:05:00", "2024-03-05 08:51:12"),
        ("reg-enc-ed", "EMER", "2024-03-05 08:51:12", "2024-03-05 10:10:00"),
        ("reg-enc-ward", "IMP", "2024-03-05 10:10:00", "2024-03-12 10:00:00"),
    ):
        case.add(encounter(case, visit, klass, at(start), at(end)))
    nodes = {
        "symptom_onset": "07:40:00",
        "call_for_help": "08:02:10",
        "first_medical_contact": "08:15:30",
        "first_physician_contact": "08:16:00",
        "first_ecg": "08:18:00",
        "remote_ecg_received": "08:20:10",
        "ecg_diagnosis": "08:24:45",
        "aspirin_given": "08:26:00",
        "p2y12_given": "08:27:30",
        "initial_diagnosis": "08:30:00",
        "cath_lab_activation_start": "08:31:00",
        "pci_decision": "08:30:30",
        "door": "08:51:12",
        "consent_start": "08:53:00",
        "consent_signed": "08:58:00",
        "cath_lab_activated": "08:59:00",
        "cath_lab_arrival": "09:05:40",
        "puncture": "09:09:05",
        "anticoagulant_given": "09:10:00",
        "angiography_start": "09:12:30",
        "wire_crossing": "09:31:20",
        "procedure_end": "10:02:00",
        "final_diagnosis": "10:30:00",
    }
    for key, clock in nodes.items():
        case.node(key, at(f"2024-03-05 {clock}"))
    case.node("discharge", at("2024-03-12 10:00:00"))
    when = at("2024-03-05 08:16:00")
    case.add(
        _observation(
            case, "reg-avpu", when, "80288-4",
            valueCodeableConcept={"coding": [{"system": LOINC, "code": "A"}]},
        )
    )  # fmt: skip
    for obs_id, code, value, unit in (
        ("reg-rr", "9279-1", 18, "/min"),
        ("reg-hr", "8867-4", 98, "/min"),
        ("reg-temp", "8310-5", 36.62, "Cel"),
    ):
        case.add(
            _observation(case, obs_id, when, code, valueQuantity={"value": value, "unit": unit})
        )
    case.add(
        _observation(
            case, "reg-bp", when, "85354-9",
            component=[
                {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                 "valueQuantity": {"value": 150, "unit": "mmHg"}},
                {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                 "valueQuantity": {"value": 90, "unit": "mmHg"}},
            ],
        )
    )  # fmt: skip
    case.add(ecg_report(case, "reg-ecg-1", at("2024-03-05 08:18:00"), at("2024-03-05 08:24:45")))
    case.add(
        {
            "resourceType": "Observation",
            "id": "reg-ctni-1",
            "status": "final",
            "category": [{"coding": [{"system": HL7_OBSERVATION_CATEGORY, "code": "laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": "89579-7"}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "encounter": {"reference": "Encounter/reg-enc-ed"},
            "effectiveDateTime": iso(at("2024-03-05 08:58:00")),
            "issued": iso(at("2024-03-05 09:20:00")),
            "valueQuantity": {"value": 2.3456, "unit": "ng/mL", "code": "ng/mL"},
            "interpretation": [{"coding": [{"code": "H"}]}],
        }
    )
    case.add(_drug(case, "reg-asa", at("2024-03-05 08:26:00"), "aspirin", 300, "mg"))
    case.add(_drug(case, "reg-tica", at("2024-03-05 08:27:30"), "ticagrelor", 180, "mg"))
    case.add(_drug(case, "reg-ufh", at("2024-03-05 09:10:00"), "ufh", 7000, "U"))
    case.add(
        {
            "resourceType": "Procedure",
            "id": "reg-pci",
            "status": "completed",
            "code": {
                "coding": [{"system": "http://snomed.info/sct", "code": "415070008"}],
                "text": "经皮冠状动脉介入治疗 (PCI)",
            },
            "subject": {"reference": f"Patient/{patient_id}"},
            "encounter": {"reference": "Encounter/reg-enc-ed"},
            "performedPeriod": {
                "start": iso(at("2024-03-05 09:09:05")),
                "end": iso(at("2024-03-05 10:02:00")),
            },
            "performer": [{"actor": {"display": "刘医生"}}],
            "bodySite": [{"text": "右桡动脉"}],
        }
    )
    case.add(lesion(case, "reg-lesion-rca", culprit=True, pci=True, stents=1))
    case.add(lesion(case, "reg-lesion-lad", culprit=False, pci=False, stents=0))
    case.add(
        {
            "resourceType": "Condition",
            "id": "reg-htn",
            "code": {"coding": [{"system": "urn:oid:2.16.156.10011.2.3.3.11", "code": "I10.x00"}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "encounter": {"reference": "Encounter/reg-enc-ward"},
            "recordedDate": iso(at("2024-03-05 11:00:00")),
        }
    )
    case.add(
        score(
            case, "reg-killip", at("2024-03-05 08:55:00"),
            {"system": SCORE_SYSTEM, "code": "killip"}, "Killip class", "killip-1967", 1, None, [],
        )
    )  # fmt: skip
    return case


def in_memory(case: Case) -> tuple[CaseRecords, StoredCase]:
    """The case as `gather_records` and `load_case` would read it, without a store: for the
    builder's pure tests."""
    by_type: dict[str, list[Resource]] = {}
    for resource in case.resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    episode_resource = next(r for r in by_type["EpisodeOfCare"] if r["id"] == case.case_id)
    nodes = [
        r
        for r in by_type.get("Observation", [])
        if r.get("status") == "final" and r["id"].startswith(f"{case.case_id}-")
    ]
    clinical = {
        kind: [r for r in found if r not in nodes and not r["id"].startswith(f"{case.case_id}-")]
        for kind, found in by_type.items()
        if kind not in ("EpisodeOfCare", "Patient", "Encounter")
    }
    records = CaseRecords(
        case=episode_resource,
        patient=by_type["Patient"][0],
        window_start=None,
        window_end=None,
        encounters=by_type.get("Encounter", []),
        time_nodes=nodes,
        clinical=clinical,
    )
    timeline = timeline_of(episode_resource, dict(case.nodes))
    refs = {key: f"Observation/{case.case_id}-{key}".replace("_", "-") for key in case.nodes}
    return records, StoredCase(timeline, refs)
