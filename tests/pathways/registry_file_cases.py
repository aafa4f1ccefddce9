"""Complete stroke and trauma cases for the file-template registries (WSO, regional trauma),
written as the channels and the pathway engine write FHIR (tests/pathways/archive_cases.py
helpers), with the instants kept here so the tests compute each column's value from them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pathways.vocabulary import (
    ASSESSMENT_PHASE_EXTENSION,
    CASE_FACT_EXTENSION,
    DRUG_CLASS_SYSTEM,
    LOINC,
    SCORE_SYSTEM,
)
from tests.pathways.archive_cases import Case, at, encounter, episode, iso, patient, score, vital

Resource = dict[str, Any]
ATC = "http://www.whocc.no/atc"
EVENT = "https://greenchannel.example.org/fhir/CodeSystem/pathway-event"
ICD10 = "http://hl7.org/fhir/sid/icd-10"

STROKE_NODES = {
    "symptom_onset": at("2026-10-08 06:40:00"),
    "call_for_help": at("2026-10-08 06:52:00"),
    "prehospital_notification": at("2026-10-08 07:15:00"),
    "door": at("2026-10-08 07:31:20"),
    "nihss_first": at("2026-10-08 07:36:00"),
    "ct_start": at("2026-10-08 07:44:10"),
    "lytic_start": at("2026-10-08 08:05:30"),
    "groin_puncture": at("2026-10-08 08:41:00"),
    "recanalization": at("2026-10-08 09:12:45"),
    "dysphagia_screen": at("2026-10-08 11:00:00"),
    "discharge": at("2026-10-17 09:30:00"),
}


def _phased(resource: Resource, phase: str) -> Resource:
    for extension in resource["extension"]:
        if extension["url"] == ASSESSMENT_PHASE_EXTENSION:
            extension["valueCode"] = phase
    return resource


def _condition(case: Case, condition_id: str, code: str, when: datetime) -> Resource:
    return {
        "resourceType": "Condition",
        "id": condition_id,
        "code": {"coding": [{"system": ICD10, "code": code}]},
        "subject": {"reference": f"Patient/{case.patient_id}"},
        "recordedDate": iso(when),
    }


def _discharge_drug(case: Case, request_id: str, drug: str, when: datetime) -> Resource:
    return {
        "resourceType": "MedicationRequest",
        "id": request_id,
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{"code": "discharge"}]}],
        "medicationCodeableConcept": {"coding": [{"system": DRUG_CLASS_SYSTEM, "code": drug}]},
        "subject": {"reference": f"Patient/{case.patient_id}"},
        "authoredOn": iso(when),
    }


def complete_stroke(case_id: str = "st-wso-1", patient_id: str = "p-wso-1") -> Case:
    """A 68-year-old man with an anterior ischaemic stroke brought by 120 after a
    pre-notification: CT, NIHSS 14, alteplase, thrombectomy to mTICI 2b, home on day 9 with
    NIHSS 3 and mRS 2, on aspirin and a statin."""
    case = Case(case_id, patient_id)
    case.add(patient(patient_id, "张", "国强", "male", "1958-05-20"))
    facts: dict[str, str | bool] = {
        "diagnosis": "AIS",
        "ivt": True,
        "evt": True,
        "mtici": "2b",
        "sich": False,
        "atrial_fibrillation": False,
        "discharge_statin": True,
        "discharge_anticoagulant": False,
        "rehab_assessed": True,
        "outcome": "discharged",
    }
    case.add(episode(case, "stroke", STROKE_NODES["door"], STROKE_NODES["discharge"], "ems", facts))
    case.add(encounter(case, "wso-enc-120", "FLD", at("2026-10-08 07:01:00"), STROKE_NODES["door"]))
    case.add(encounter(case, "wso-enc-ed", "EMER", STROKE_NODES["door"], at("2026-10-08 09:40:00")))
    case.add(
        encounter(case, "wso-enc-ward", "IMP", at("2026-10-08 09:40:00"), STROKE_NODES["discharge"])
    )
    for key, instant in STROKE_NODES.items():
        case.node(key, instant)
    case.add(
        {
            "resourceType": "Communication",
            "id": "wso-prenotify",
            "status": "completed",
            "category": [{"coding": [{"system": EVENT, "code": "stroke-prenotification"}]}],
            "subject": {"reference": f"Patient/{patient_id}"},
            "sent": iso(STROKE_NODES["prehospital_notification"]),
        }
    )
    case.add(vital(case, "wso-sbp", "wso-enc-ed", at("2026-10-08 07:33:00"), "8480-6", "收缩压",
                   168, "mm[Hg]"))  # fmt: skip
    case.add(vital(case, "wso-dbp", "wso-enc-ed", at("2026-10-08 07:33:00"), "8462-4", "舒张压",
                   94, "mm[Hg]"))  # fmt: skip
    case.add(vital(case, "wso-sbp-2", "wso-enc-ed", at("2026-10-08 08:30:00"), "8480-6", "收缩压",
                   150, "mm[Hg]"))  # fmt: skip
    case.add(
        {
            "resourceType": "ImagingStudy",
            "id": "wso-ct",
            "status": "available",
            "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}],
            "subject": {"reference": f"Patient/{patient_id}"},
            "started": iso(STROKE_NODES["ct_start"]),
        }
    )
    case.add(
        {
            "resourceType": "MedicationAdministration",
            "id": "wso-rtpa",
            "status": "completed",
            "medicationCodeableConcept": {
                "coding": [{"system": ATC, "code": "B01AD02", "display": "alteplase"}],
                "text": "阿替普酶",
            },
            "subject": {"reference": f"Patient/{patient_id}"},
            "effectiveDateTime": iso(STROKE_NODES["lytic_start"]),
            "dosage": {"dose": {"value": 63, "unit": "mg"}},
        }
    )
    nihss = {"system": LOINC, "code": "72089-6"}
    case.add(score(case, "wso-nihss-1", STROKE_NODES["nihss_first"], nihss, "NIHSS",
                   "nihss-15item", 14, "moderate", []))  # fmt: skip
    case.add(score(case, "wso-aspects", at("2026-10-08 07:50:00"),
                   {"system": SCORE_SYSTEM, "code": "aspects"}, "ASPECTS", "aspects", 8, None,
                   []))  # fmt: skip
    case.add(_phased(score(case, "wso-mrs-pre", at("2026-10-08 07:40:00"),
                           {"system": SCORE_SYSTEM, "code": "mrs"}, "mRS", "mrs", 0, None, []),
                     "pre-stroke"))  # fmt: skip
    case.add(_phased(score(case, "wso-nihss-dc", at("2026-10-17 08:00:00"), nihss, "NIHSS",
                           "nihss-15item", 3, "minor", []), "discharge"))  # fmt: skip
    case.add(_phased(score(case, "wso-mrs-dc", at("2026-10-17 08:05:00"),
                           {"system": SCORE_SYSTEM, "code": "mrs"}, "mRS", "mrs", 2, None, []),
                     "discharge"))  # fmt: skip
    case.add(_condition(case, "wso-htn", "I10.x00", at("2026-10-08 10:00:00")))
    case.add(_condition(case, "wso-ais", "I63.901", at("2026-10-08 10:00:00")))
    case.add(_discharge_drug(case, "wso-dc-asa", "aspirin", at("2026-10-17 08:30:00")))
    case.add(_discharge_drug(case, "wso-dc-statin", "statin", at("2026-10-17 08:30:00")))
    return case


TRAUMA_NODES = {
    "injury": at("2026-10-12 21:05:00"),
    "call_for_help": at("2026-10-12 21:08:30"),
    "ems_arrive_scene": at("2026-10-12 21:19:00"),
    "prehospital_alert": at("2026-10-12 21:30:00"),
    "trauma_team_activated": at("2026-10-12 21:31:00"),
    "door": at("2026-10-12 21:46:40"),
    "ed_arrival": at("2026-10-12 21:47:10"),
    "resus_room_in": at("2026-10-12 21:48:00"),
    "transfusion_started": at("2026-10-12 22:02:00"),
    "ct_start": at("2026-10-12 22:05:00"),
    "wbct_done": at("2026-10-12 22:16:40"),
    "ct_read": at("2026-10-12 22:30:00"),
    "iss_scored": at("2026-10-12 23:00:00"),
    "surgery_start": at("2026-10-12 23:20:00"),
}
TRAUMA_LEFT = at("2026-10-30 10:15:00")


def complete_trauma(case_id: str = "tr-reg-1", patient_id: str = "p-tr-1") -> Case:
    """A 34-year-old woman hurt in a road crash, brought by 120: GCS 13, RTS 7.1082, ISS 25,
    whole-body CT, transfused, operated on the same night, discharged home on day 18."""
    case = Case(case_id, patient_id)
    case.add(patient(patient_id, "陈", "丽", "female", "1992-02-29"))
    facts: dict[str, str | bool] = {
        "diagnosis": "trauma",
        "transfused": True,
        "emergency_surgery": True,
        "icu_admitted": False,
        "wbct": True,
        "outcome": "discharged",
    }
    care = case.add(episode(case, "trauma", TRAUMA_NODES["door"], TRAUMA_LEFT, "ems", facts))
    care["extension"].append(  # the pathway engine's iss fact, from the ISS Observation
        {
            "url": CASE_FACT_EXTENSION,
            "extension": [
                {"url": "name", "valueCode": "iss"},
                {"url": "value", "valueInteger": 25},
            ],
        }
    )
    case.add(encounter(case, "tr-enc-120", "FLD", TRAUMA_NODES["ems_arrive_scene"],
                       TRAUMA_NODES["door"]))  # fmt: skip
    case.add(encounter(case, "tr-enc-ed", "EMER", TRAUMA_NODES["door"], at("2026-10-12 23:10:00")))
    case.add(encounter(case, "tr-enc-ward", "IMP", at("2026-10-12 23:10:00"), TRAUMA_LEFT))
    for key, instant in TRAUMA_NODES.items():
        case.node(key, instant)
    case.add(score(case, "tr-gcs", at("2026-10-12 21:49:00"), {"system": LOINC, "code": "9269-2"},
                   "GCS", "gcs-1974", 13, "mild", []))  # fmt: skip
    rts = score(case, "tr-rts", at("2026-10-12 21:49:00"), {"system": SCORE_SYSTEM, "code": "rts"},
                "RTS", "rts-1989", 0, None, [])  # fmt: skip
    del rts["valueInteger"]
    rts["valueQuantity"] = {"value": 7.1082, "unit": "{score}"}
    case.add(rts)
    case.add(score(case, "tr-iss", TRAUMA_NODES["iss_scored"],
                   {"system": SCORE_SYSTEM, "code": "iss"}, "ISS", "iss-1974", 25, "severe",
                   []))  # fmt: skip
    return case
