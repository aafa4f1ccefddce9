"""Realistic center cases written as FHIR resources, for the patient archive tests.

A STEMI brought by 120 with primary PCI and a stroke that came by itself and was lysed: the
resources the channels and the pathway engine write (interfaces.md §5, mappings/hl7v2/*.yaml),
with the instants kept here so that tests compute the expected intervals from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from pathways.vocabulary import (
    ARRIVAL_MODE_EXTENSION,
    ASSESSMENT_PHASE_EXTENSION,
    CASE_EXTENSION,
    CASE_FACT_EXTENSION,
    CENTER_SYSTEM,
    HL7_OBSERVATION_CATEGORY,
    LOINC,
    OBSERVATION_CATEGORY_SYSTEM,
    SCORE_BAND_SYSTEM,
    SCORE_POINTS_EXTENSION,
    SCORE_SYSTEM,
    SCORE_VERSION_SYSTEM,
    SOURCE_KIND_SYSTEM,
    TIME_NODE_CATEGORY,
    TIME_NODE_SYSTEM,
)

CST = timezone(timedelta(hours=8))
HL7_CATEGORY = HL7_OBSERVATION_CATEGORY
REGISTRY_ID = "https://greenchannel.example.org/fhir/NamingSystem/cpc-register-id"

Resource = dict[str, Any]


def at(text: str) -> datetime:
    """An instant in +08:00 from `2024-03-05 08:51:12`."""
    return datetime.fromisoformat(text).replace(tzinfo=CST)


def iso(instant: datetime) -> str:
    return instant.isoformat(timespec="seconds")


@dataclass
class Case:
    """The resources of one case, in an order the store accepts, and its authoritative nodes."""

    case_id: str
    patient_id: str
    nodes: dict[str, datetime] = field(default_factory=dict)
    resources: list[Resource] = field(default_factory=list)

    def add(self, resource: Resource) -> Resource:
        self.resources.append(resource)
        return resource

    def node(
        self,
        key: str,
        instant: datetime,
        *,
        encounter: str | None = None,
        source: str = "hl7v2",
        candidates: tuple[tuple[str, datetime], ...] = (),
    ) -> None:
        """An authoritative node and its candidates (one at the same instant from `source`)."""
        self.nodes[key] = instant
        ids = []
        for number, (kind, when) in enumerate(((source, instant), *candidates), 1):
            ids.append(f"{self.case_id}-{key}-c{number}".replace("_", "-"))
            self.add(
                time_node(self, ids[-1], key, when, "preliminary", kind, encounter, derived=())
            )
        self.add(
            time_node(
                self,
                f"{self.case_id}-{key}".replace("_", "-"),
                key,
                instant,
                "final",
                "priority",
                encounter,
                derived=ids[:1],
            )
        )


def time_node(
    case: Case,
    resource_id: str,
    key: str,
    instant: datetime,
    status: str,
    method: str,
    encounter: str | None,
    derived: list[str] | tuple[str, ...],
) -> Resource:
    observation: Resource = {
        "resourceType": "Observation",
        "id": resource_id,
        "extension": [
            {
                "url": CASE_EXTENSION,
                "valueReference": {"reference": f"EpisodeOfCare/{case.case_id}"},
            }
        ],
        "status": status,
        "category": [
            {"coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": TIME_NODE_CATEGORY}]}
        ],
        "code": {"coding": [{"system": TIME_NODE_SYSTEM, "code": key}]},
        "subject": {"reference": f"Patient/{case.patient_id}"},
        "valueDateTime": iso(instant),
        "method": {"coding": [{"system": SOURCE_KIND_SYSTEM, "code": method}]},
    }
    if encounter:
        observation["encounter"] = {"reference": f"Encounter/{encounter}"}
    if derived:
        observation["derivedFrom"] = [{"reference": f"Observation/{i}"} for i in derived]
    return observation


def patient(patient_id: str, family: str, given: str, gender: str, born: str) -> Resource:
    return {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [{"system": "urn:greenchannel:mrn:HIS", "value": f"MRN-{patient_id}"}],
        "name": [{"family": family, "given": [given]}],
        "gender": gender,
        "birthDate": born,
    }


def episode(
    case: Case,
    center: str,
    start: datetime,
    end: datetime | None,
    mode: str | None,
    facts: dict[str, str | bool],
) -> Resource:
    resource: Resource = {
        "resourceType": "EpisodeOfCare",
        "id": case.case_id,
        "identifier": [{"system": REGISTRY_ID, "value": f"CPC-{case.case_id}"}],
        "extension": [
            {
                "url": CASE_FACT_EXTENSION,
                "extension": [
                    {"url": "name", "valueCode": name},
                    {
                        "url": "value",
                        "valueBoolean" if isinstance(value, bool) else "valueCode": value,
                    },
                ],
            }
            for name, value in facts.items()
        ],
        "status": "finished" if end else "active",
        "type": [{"coding": [{"system": CENTER_SYSTEM, "code": center}]}],
        "patient": {"reference": f"Patient/{case.patient_id}"},
        "period": {"start": iso(start), **({"end": iso(end)} if end else {})},
    }
    if mode:
        resource["extension"].append({"url": ARRIVAL_MODE_EXTENSION, "valueCode": mode})
    return resource


def encounter(
    case: Case,
    encounter_id: str,
    klass: str,
    start: datetime,
    end: datetime | None,
    *,
    locations: tuple[tuple[str, datetime, datetime | None], ...] = (),
    disposition: tuple[str, str] | None = None,
    identifier: tuple[str, str] | None = None,
    doctor: str | None = None,
) -> Resource:
    resource: Resource = {
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": "finished" if end else "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass},
        "subject": {"reference": f"Patient/{case.patient_id}"},
        "episodeOfCare": [{"reference": f"EpisodeOfCare/{case.case_id}"}],
        "period": {"start": iso(start), **({"end": iso(end)} if end else {})},
    }
    if identifier:
        system, value = identifier
        resource["identifier"] = [{"system": system, "value": value}]
    if doctor:
        resource["participant"] = [{"individual": {"display": doctor}}]
    if locations:
        resource["location"] = [
            {
                "location": {"display": name},
                "status": "completed" if until else "active",
                "period": {"start": iso(since), **({"end": iso(until)} if until else {})},
            }
            for name, since, until in locations
        ]
    if disposition:
        code, display = disposition
        resource["hospitalization"] = {
            "dischargeDisposition": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/discharge-disposition",
                        "code": code,
                        "display": display,
                    }
                ]
            }
        }
    return resource


def vital(
    case: Case, vital_id: str, encounter_id: str, when: datetime, loinc: str, name: str,
    value: float, unit: str,
) -> Resource:  # fmt: skip
    return {
        "resourceType": "Observation",
        "id": vital_id,
        "status": "final",
        "category": [{"coding": [{"system": HL7_CATEGORY, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": name}], "text": name},
        "subject": {"reference": f"Patient/{case.patient_id}"},
        "encounter": {"reference": f"Encounter/{encounter_id}"},
        "effectiveDateTime": iso(when),
        "valueQuantity": {"value": value, "unit": unit},
    }


def lab(
    case: Case, lab_id: str, encounter_id: str, drawn: datetime, reported: datetime, name: str,
    value: float, unit: str, flag: str | None = None,
) -> Resource:  # fmt: skip
    resource: Resource = {
        "resourceType": "Observation",
        "id": lab_id,
        "status": "final",
        "category": [{"coding": [{"system": HL7_CATEGORY, "code": "laboratory"}]}],
        "code": {"coding": [{"system": "urn:greenchannel:lis:LIS", "code": lab_id}], "text": name},
        "subject": {"reference": f"Patient/{case.patient_id}"},
        "encounter": {"reference": f"Encounter/{encounter_id}"},
        "effectiveDateTime": iso(drawn),
        "issued": iso(reported),
        "valueQuantity": {"value": value, "unit": unit},
    }
    if flag:
        resource["interpretation"] = [{"coding": [{"code": flag}], "text": flag}]
    return resource


def medication(
    case: Case, given_id: str, encounter_id: str, when: datetime, name: str, dose: float,
    unit: str,
) -> Resource:  # fmt: skip
    return {
        "resourceType": "MedicationAdministration",
        "id": given_id,
        "status": "completed",
        "medicationCodeableConcept": {"text": name},
        "subject": {"reference": f"Patient/{case.patient_id}"},
        "context": {"reference": f"Encounter/{encounter_id}"},
        "effectiveDateTime": iso(when),
        "dosage": {"dose": {"value": dose, "unit": unit}},
    }


def score(
    case: Case, score_id: str, when: datetime, code: dict[str, str], title: str, version: str,
    total: int, band: str | None, items: list[tuple[dict[str, str], str, Any, int]],
) -> Resource:  # fmt: skip
    """A score as pathways.scores stores it (interfaces.md §5): the total as valueInteger, the
    version as method, the band as interpretation, one component per item with the answer as
    its value and the points in an extension."""
    resource: Resource = {
        "resourceType": "Observation",
        "id": score_id,
        "extension": [
            {"url": ASSESSMENT_PHASE_EXTENSION, "valueCode": "admission"},
            {
                "url": CASE_EXTENSION,
                "valueReference": {"reference": f"EpisodeOfCare/{case.case_id}"},
            },
        ],
        "status": "final",
        "category": [{"coding": [{"system": HL7_CATEGORY, "code": "survey"}]}],
        "code": {"coding": [code], "text": title},
        "subject": {"reference": f"Patient/{case.patient_id}"},
        "effectiveDateTime": iso(when),
        "valueInteger": total,
        "method": {"coding": [{"system": SCORE_VERSION_SYSTEM, "code": version}], "text": version},
        "component": [
            {
                "code": {"coding": [item], "text": key},
                **_answer(answer),
                "extension": [{"url": SCORE_POINTS_EXTENSION, "valueInteger": points}],
            }
            for item, key, answer, points in items
        ],
    }
    if band:
        resource["interpretation"] = [{"coding": [{"system": SCORE_BAND_SYSTEM, "code": band}]}]
    return resource


def _answer(answer: Any) -> Resource:
    if isinstance(answer, bool):
        return {"valueBoolean": answer}
    return {"valueInteger": answer} if isinstance(answer, int) else {"valueString": answer}


def stemi_by_120_with_primary_pci() -> Case:
    """A 58-year-old man with an inferior STEMI: 120 call, ECG and loading doses in the ambulance,
    primary PCI, discharged home a week later. Two earlier records of his must stay out."""
    case = Case("cp-stemi-1", "p-stemi")
    case.add(patient("p-stemi", "王", "建国", "male", "1966-04-12"))
    case.add(
        episode(
            case,
            "chest-pain",
            at("2024-03-05 08:02:10"),
            at("2024-03-12 10:00:00"),
            "ems",
            {"diagnosis": "STEMI", "reperfusion": "primary_pci"},
        )
    )
    case.add(
        encounter(
            case,
            "enc-120",
            "FLD",
            at("2024-03-05 08:05:00"),
            at("2024-03-05 08:51:12"),
            identifier=("urn:greenchannel:120-task", "120-20240305-0042"),
        )
    )
    case.add(
        encounter(
            case,
            "enc-ed",
            "EMER",
            at("2024-03-05 08:51:12"),
            at("2024-03-05 10:10:00"),
            identifier=("urn:greenchannel:visit:HIS", "V20240305-0107"),
            doctor="张医生",
            locations=(
                ("急诊抢救室", at("2024-03-05 08:51:12"), at("2024-03-05 09:03:00")),
                ("导管室", at("2024-03-05 09:05:40"), at("2024-03-05 10:10:00")),
            ),
        )
    )
    case.add(
        encounter(
            case,
            "enc-ward",
            "IMP",
            at("2024-03-05 10:10:00"),
            at("2024-03-12 10:00:00"),
            disposition=("home", "Home"),
        )
    )
    case.node("symptom_onset", at("2024-03-05 07:40:00"), source="manual")
    case.node("call_for_help", at("2024-03-05 08:02:10"), source="dispatch")
    case.node("first_medical_contact", at("2024-03-05 08:15:30"), source="dispatch")
    case.node("first_ecg", at("2024-03-05 08:18:00"), encounter="enc-120")
    case.node("ecg_diagnosis", at("2024-03-05 08:24:45"), encounter="enc-120")
    case.node("aspirin_given", at("2024-03-05 08:26:00"), source="dispatch")
    case.node("initial_diagnosis", at("2024-03-05 08:30:00"), source="manual")
    case.node("cath_lab_activation_start", at("2024-03-05 08:31:00"), source="manual")
    # door: the UWB gate wins; the HIS registration came almost four minutes later
    case.node(
        "door",
        at("2024-03-05 08:51:12"),
        encounter="enc-ed",
        source="uwb",
        candidates=(("hl7v2", at("2024-03-05 08:55:03")),),
    )
    case.node("cath_lab_arrival", at("2024-03-05 09:05:40"), source="uwb")
    case.node("puncture", at("2024-03-05 09:09:05"), source="manual")
    case.node("wire_crossing", at("2024-03-05 09:31:20"), source="manual")
    case.node("procedure_end", at("2024-03-05 10:02:00"), source="manual")
    case.node("discharge", at("2024-03-12 10:00:00"))
    # vitals: two in the ambulance, three on the monitor in the ED
    case.add(
        vital(case, "v-120-hr", "enc-120", at("2024-03-05 08:16:00"), "8867-4", "心率", 98, "/min")
    )
    case.add(
        vital(
            case, "v-120-sbp", "enc-120", at("2024-03-05 08:16:00"), "8480-6", "收缩压", 150, "mmHg"
        )
    )
    for minute, rate in (("08:53:00", 104), ("09:00:00", 88), ("09:30:00", 112)):
        case.add(
            vital(
                case,
                f"v-ed-hr-{minute[3:5]}",
                "enc-ed",
                at(f"2024-03-05 {minute}"),
                "8867-4",
                "心率",
                rate,
                "/min",
            )
        )
    # the ECG acquired in the ambulance, read by the ECG network's physician
    case.add(
        {
            "resourceType": "Observation",
            "id": "ecg-1",
            "status": "final",
            "category": [{"coding": [{"system": HL7_CATEGORY, "code": "procedure"}]}],
            "code": {"coding": [{"system": LOINC, "code": "11524-6"}], "text": "十二导联心电图"},
            "subject": {"reference": "Patient/p-stemi"},
            "encounter": {"reference": "Encounter/enc-120"},
            "effectiveDateTime": iso(at("2024-03-05 08:18:00")),
            "issued": iso(at("2024-03-05 08:24:45")),
            "valueString": "窦性心律；急性下壁ST段抬高型心肌梗死",
            "interpretation": [
                {
                    "coding": [{"system": "http://snomed.info/sct", "code": "401303003"}],
                    "text": "STEMI",
                }
            ],
            "component": [
                {"code": {"text": "心率"}, "valueQuantity": {"value": 96, "unit": "/min"}},
            ],
        }
    )
    case.add(
        {
            "resourceType": "DiagnosticReport",
            "id": "ecg-report-1",
            "status": "final",
            "category": [
                {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "EC"}
                    ]
                }
            ],
            "code": {"coding": [{"system": LOINC, "code": "11524-6"}]},
            "subject": {"reference": "Patient/p-stemi"},
            "encounter": {"reference": "Encounter/enc-120"},
            "effectiveDateTime": iso(at("2024-03-05 08:18:00")),
            "issued": iso(at("2024-03-05 08:24:45")),
            "resultsInterpreter": [{"display": "李医生"}],
            "result": [{"reference": "Observation/ecg-1"}],
            "conclusion": "急性下壁ST段抬高型心肌梗死",
        }
    )
    case.add(
        lab(
            case,
            "ctni-1",
            "enc-ed",
            at("2024-03-05 08:58:00"),
            at("2024-03-05 09:20:00"),
            "肌钙蛋白I",
            2.35,
            "ng/mL",
            "H",
        )
    )
    case.add(
        {
            "resourceType": "Condition",
            "id": "dx-stemi",
            "verificationStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                        "code": "confirmed",
                    }
                ]
            },
            "code": {
                "coding": [{"system": "urn:oid:2.16.156.10011.2.3.3.11", "code": "I21.101"}],
                "text": "急性下壁ST段抬高型心肌梗死",
            },
            "subject": {"reference": "Patient/p-stemi"},
            "encounter": {"reference": "Encounter/enc-ed"},
            "recordedDate": iso(at("2024-03-05 08:30:00")),
        }
    )
    case.add(
        {
            "resourceType": "Procedure",
            "id": "pci-1",
            "status": "completed",
            "code": {"text": "经皮冠状动脉介入治疗 (PCI)"},
            "subject": {"reference": "Patient/p-stemi"},
            "encounter": {"reference": "Encounter/enc-ed"},
            "performedPeriod": {
                "start": iso(at("2024-03-05 09:09:05")),
                "end": iso(at("2024-03-05 10:02:00")),
            },
        }
    )
    case.add(medication(case, "asa-1", "enc-120", at("2024-03-05 08:26:00"), "阿司匹林", 300, "mg"))
    case.add(
        medication(case, "tica-1", "enc-120", at("2024-03-05 08:27:30"), "替格瑞洛", 180, "mg")
    )
    case.add(medication(case, "ufh-1", "enc-ed", at("2024-03-05 09:10:00"), "普通肝素", 7000, "U"))
    case.add(
        score(
            case, "killip-1", at("2024-03-05 08:55:00"),
            {"system": SCORE_SYSTEM, "code": "killip"}, "Killip class", "killip-1967", 1, None,
            [
                ({"system": SCORE_SYSTEM, "code": "killip.cardiogenic_shock"},
                 "cardiogenic_shock", False, 0),
                ({"system": SCORE_SYSTEM, "code": "killip.acute_pulmonary_edema"},
                 "acute_pulmonary_edema", False, 0),
            ],
        )
    )  # fmt: skip
    # not this case's: an older case of the patient with its own door, and an old result
    older = Case("cp-stemi-old", "p-stemi")
    case.add(
        episode(
            older, "chest-pain", at("2022-01-10 20:00:00"), at("2022-01-15 09:00:00"), "self", {}
        )
    )
    case.add(
        time_node(older, "old-door", "door", at("2022-01-10 20:05:00"), "final", "uwb", None, ())
    )
    case.add(
        lab(
            older,
            "old-ctni",
            "enc-ed",
            at("2024-02-01 10:00:00"),
            at("2024-02-01 10:30:00"),
            "肌钙蛋白I",
            0.01,
            "ng/mL",
        )
    )
    case.resources[-1].pop("encounter")
    return case


def stroke_with_lysis() -> Case:
    """A 71-year-old woman with an ischaemic stroke who came by herself: CT, NIHSS 8, alteplase."""
    case = Case("st-lysis-1", "p-stroke")
    case.add(patient("p-stroke", "李", "秀英", "female", "1953-09-30"))
    case.add(
        episode(
            case,
            "stroke",
            at("2024-06-18 14:20:00"),
            None,
            "self",
            {"diagnosis": "AIS", "ivt": True},
        )
    )
    case.add(
        encounter(
            case,
            "enc-st-ed",
            "EMER",
            at("2024-06-18 14:20:00"),
            None,
            locations=(("CT室", at("2024-06-18 14:33:00"), at("2024-06-18 14:45:00")),),
        )
    )
    case.node("symptom_onset", at("2024-06-18 13:05:00"), source="manual")
    case.node("door", at("2024-06-18 14:20:00"), source="uwb")
    case.node("nihss_first", at("2024-06-18 14:28:30"), source="fhir")
    case.node("ct_start", at("2024-06-18 14:35:10"), source="hl7v2")
    case.node("ct_read", at("2024-06-18 14:48:00"), source="hl7v2")
    case.node("lytic_start", at("2024-06-18 14:58:30"), source="manual")
    case.node("lytic_end", at("2024-06-18 15:58:30"), source="manual")
    case.add(
        vital(
            case,
            "v-st-sbp",
            "enc-st-ed",
            at("2024-06-18 14:22:00"),
            "8480-6",
            "收缩压",
            172,
            "mmHg",
        )
    )
    case.add(
        {
            "resourceType": "ImagingStudy",
            "id": "ct-head-1",
            "status": "available",
            "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}],
            "subject": {"reference": "Patient/p-stroke"},
            "encounter": {"reference": "Encounter/enc-st-ed"},
            "started": iso(at("2024-06-18 14:35:10")),
            "description": "头颅CT平扫",
        }
    )
    case.add(
        {
            "resourceType": "DiagnosticReport",
            "id": "ct-head-report-1",
            "status": "final",
            "category": [{"coding": [{"system": LOINC, "code": "LP29684-5"}]}],
            "code": {"text": "头颅CT平扫"},
            "subject": {"reference": "Patient/p-stroke"},
            "encounter": {"reference": "Encounter/enc-st-ed"},
            "effectiveDateTime": iso(at("2024-06-18 14:35:10")),
            "issued": iso(at("2024-06-18 14:48:00")),
            "imagingStudy": [{"reference": "ImagingStudy/ct-head-1"}],
            "conclusion": "未见颅内出血",
        }
    )
    case.add(
        medication(case, "rtpa-1", "enc-st-ed", at("2024-06-18 14:58:30"), "阿替普酶", 54, "mg")
    )
    case.add(
        score(
            case, "nihss-1", at("2024-06-18 14:28:30"), {"system": LOINC, "code": "72089-6"},
            "NIH Stroke Scale", "nihss-15item", 8, "moderate",
            [
                ({"system": LOINC, "code": "70184-7"}, "1a", 1, 1),
                ({"system": LOINC, "code": "70190-4"}, "5a", 3, 3),
                ({"system": LOINC, "code": "70191-2"}, "6a", 4, 4),
            ],
        )
    )  # fmt: skip
    return case


def few_data_case() -> Case:
    """A chest pain case just opened: the patient and the EpisodeOfCare, nothing else yet."""
    case = Case("cp-new", "p-new")
    case.add(patient("p-new", "赵", "强", "male", "1980-01-01"))
    case.add(episode(case, "chest-pain", at("2024-07-01 02:10:00"), None, None, {}))
    return case


async def write(store: Any, case: Case) -> None:
    """PUT every resource of the case, in order, as the channels and the pathway engine would."""
    for resource in case.resources:
        await store.update(resource["resourceType"], resource["id"], resource)
