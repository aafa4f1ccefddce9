"""FHIR resources shaped as the shipped HL7 v2 mappings write them (adt, oru_ecg, oru_lab), and
as other feeds POST them (ambulance leg, cath lab Procedure), for the pathway tests."""

from __future__ import annotations

from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def patient(pid: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "male", "birthDate": "1958-03-12"}


def ed_visit(vid: str = "v1", pid: str = "p1", start: str = "2026-11-25T08:28:00+08:00",
             **extra: Any) -> dict[str, Any]:  # fmt: skip
    """ADT A04: PV1-2 E, PV1-44 registration time."""
    return {
        "resourceType": "Encounter", "id": vid, "status": "in-progress",
        "class": {"system": ACT, "code": "EMER"},
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": start},
    } | extra  # fmt: skip


def diagnosis(cid: str = "dx1", pid: str = "p1", icd10: str = "I21.1") -> dict[str, Any]:
    """A provisional ICD-10 diagnosis recorded at 08:30 (I21.1: STEMI, opens a chest pain case)."""
    return {
        "resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": icd10}]},
        "verificationStatus": {"coding": [{"code": "provisional"}]},
        "recordedDate": "2026-11-25T08:30:00+08:00",
    }  # fmt: skip


def ambulance_leg(eid: str = "amb1", pid: str = "p1", start: str = "2026-11-25T07:50:00+08:00",
                  end: str = "2026-11-25T08:20:00+08:00") -> dict[str, Any]:  # fmt: skip
    return {
        "resourceType": "Encounter", "id": eid, "status": "finished",
        "class": {"system": ACT, "code": "FLD"},
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": start, "end": end},
    }  # fmt: skip


def ecg(oid: str = "ecg1", pid: str = "p1", acquired: str = "2026-11-25T08:03:00+08:00",
        stemi: bool = True, vid: str | None = "v1") -> dict[str, Any]:  # fmt: skip
    """ORU^R01 from the ECG system: OBR-7 acquisition as effectiveDateTime."""
    resource: dict[str, Any] = {
        "resourceType": "Observation", "id": oid, "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "11524-6"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": acquired, "issued": "2026-11-25T08:12:00+08:00",
        "valueString": "急性下壁ST段抬高型心肌梗死",
    }  # fmt: skip
    if vid:
        resource["encounter"] = {"reference": f"Encounter/{vid}"}
    if stemi:
        resource["interpretation"] = [{"coding": [{"system": SNOMED, "code": "401303003"}]}]
    return resource


def ecg_report(
    rid: str = "ecgr1", pid: str = "p1", signed: str = "2026-11-25T08:12:00+08:00"
) -> dict[str, Any]:
    return {
        "resourceType": "DiagnosticReport", "id": rid, "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "11524-6"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-11-25T08:03:00+08:00", "issued": signed,
    }  # fmt: skip


def troponin(
    n: int = 1,
    pid: str = "p1",
    collected: str = "2026-11-25T08:40:00+08:00",
    reported: str = "2026-11-25T09:05:00+08:00",
    status: str = "final",
) -> list[dict[str, Any]]:
    """ORU^R01 from the LIS: Specimen (OBR-7 collection), Observation, DiagnosticReport (OBR-22)."""
    code = {"coding": [{"system": LOINC, "code": "89579-7"}]}
    subject = {"reference": f"Patient/{pid}"}
    return [
        {"resourceType": "Specimen", "id": f"spm{n}", "subject": subject,
         "collection": {"collectedDateTime": collected}},
        {"resourceType": "Observation", "id": f"tni{n}", "status": status, "code": code,
         "subject": subject, "specimen": {"reference": f"Specimen/spm{n}"},
         "effectiveDateTime": reported, "valueQuantity": {"value": 52.3, "unit": "ng/L"}},
        {"resourceType": "DiagnosticReport", "id": f"tnir{n}", "status": status, "code": code,
         "subject": subject, "effectiveDateTime": collected, "issued": reported,
         "result": [{"reference": f"Observation/tni{n}"}]},
    ]  # fmt: skip


def uwb_gate(
    vid: str = "v1", pid: str = "p1", entered: str = "2026-11-25T08:21:30+08:00"
) -> dict[str, Any]:
    """The ED visit with the UWB gate zone in its location history."""
    zone = {"system": "urn:greenchannel:uwb-zone", "value": "gate"}
    stay = {"start": entered, "end": entered}
    return ed_visit(
        vid,
        pid,
        location=[{"location": {"display": "大门", "identifier": zone}, "status": "completed",
                   "period": stay}],
    )  # fmt: skip
