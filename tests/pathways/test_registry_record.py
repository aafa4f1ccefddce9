"""The CPC record of a case and its local validation, from resources in memory: the complete
case is ready, each spec trap of registries.md A.5 is mapped the spec's way, and each rule the
platform applies (required, type, length, decimals, codes, range, list caps, time order, D2W,
sub-block) is caught here first, in the platform's `块:消息;` style."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from pathways.registry import (
    RegistryProblem,
    RegistryRecord,
    UnknownRegistryField,
    completeness_report,
    record_from_resources,
    registry_mapping,
    validate_record,
)
from pathways.shapes import set_arrival_mode, set_fact
from pathways.vocabulary import DRUG_CLASS_SYSTEM, SCORE_SYSTEM
from tests.pathways.archive_cases import Case, at, iso, score
from tests.pathways.registry_cases import (
    PARAMS,
    STAFF_ENTRIES,
    complete_stemi,
    ecg_report,
    in_memory,
    lesion,
)

MAPPING = registry_mapping("cpc")


def build(
    case: Case | None = None, overrides: dict[str, Any] | None = None, **facts: Any
) -> tuple[RegistryRecord, list[RegistryProblem]]:
    case = case or complete_stemi()
    episode = next(r for r in case.resources if r["resourceType"] == "EpisodeOfCare")
    for name, value in facts.items():
        if name == "arrival_mode":
            set_arrival_mode(episode, value)
        else:
            set_fact(episode, name, value, "test")
    records, stored = in_memory(case)
    record = record_from_resources(
        MAPPING, records, stored, overrides={**STAFF_ENTRIES, **(overrides or {})}, params=PARAMS
    )
    return record, validate_record(record, MAPPING)


def messages(problems: list[RegistryProblem]) -> dict[str, str]:
    return {p.key: p.message for p in problems}


def test_the_complete_case_is_ready() -> None:
    record, problems = build()
    assert problems == []
    first_aid = record.payload["FirstAIDInfo"]
    # Beijing time without offset (A.2), from the +08:00 node
    assert first_aid["CW_120_ARRIVED_HOSPITAL_TIME"] == "2024-03-05T08:51:12"
    assert first_aid["BLOOD_PRESSURE"] == "150/90"
    assert first_aid["TEMPERATURE"] == 36.6  # n(1)
    treatment = record.payload["TreatmentInfo"]
    assert treatment["CTNTS"][0]["VALUE"] == 2.346  # n(3)
    assert treatment["ECGS"][0]["ECGImageFiles"][0].startswith("data:image/jpeg;base64,")
    assert record.payload["RegisterInfo"]["AGE"] == 57
    assert record.payload["OutComeInfo"]["HOD"] == 7
    trace = record.traces["FirstAIDInfo.CW_120_ARRIVED_HOSPITAL_TIME"]
    assert (trace.origin, trace.sources) == ("node", ("Observation/cp-reg-1-door",))
    assert record.traces["FirstAIDInfo.DISTRESS_CASE"].origin == "override"
    assert record.traces["RegisterInfo.NAME"].sources == ("Patient/p-reg-1",)
    assert (record.mapping_version, record.spec_version) == (
        MAPPING.mapping_version,
        MAPPING.spec_version,
    )


def test_a_time_in_another_offset_is_sent_in_beijing_time() -> None:
    case = complete_stemi()
    case.nodes["symptom_onset"] = datetime.fromisoformat("2024-03-04T23:40:00+00:00")
    record, _ = build(case)
    assert record.payload["FirstAIDInfo"]["ATTACK_TIME"] == "2024-03-05T07:40:00"


# -- the spec traps of registries.md A.5 ---------------------------------------------------------


def test_trap_1_wire_crossing_fills_balloon_expansion_time_of_the_culprit_lesion() -> None:
    record, _ = build()
    lesions = record.payload["TreatmentPciInfo"]["CORONARY_ANGIOGRAPHIE_LIST"]
    culprit = next(item for item in lesions if item["CRIMINAL_SICK"] == "1")
    other = next(item for item in lesions if item["CRIMINAL_SICK"] == "0")
    assert culprit["BALLOON_EXPANSION_TIME"] == "2024-03-05T09:31:20"  # wire_crossing
    assert "BALLOON_EXPANSION_TIME" not in other
    assert (
        MAPPING.by_key["TreatmentPciInfo.CORONARY_ANGIOGRAPHIE_LIST.BALLOON_EXPANSION_TIME"].label
        == "导丝通过时间"
    )


def test_trap_2_feritin_is_hypertension_and_brian_vascellum_cerebrovascular() -> None:
    record, _ = build()
    outcome = record.payload["OutComeInfo"]
    assert (outcome["FERITIN"], outcome["BRIAN_VASCELLUM"]) == ("1", "0")  # I10 on file
    case = complete_stemi()
    htn = next(r for r in case.resources if r["id"] == "reg-htn")
    htn["code"]["coding"][0]["code"] = "I63.900"  # cerebral infarction, no hypertension
    record, _ = build(case)
    outcome = record.payload["OutComeInfo"]
    assert (outcome["FERITIN"], outcome["BRIAN_VASCELLUM"]) == ("0", "1")
    assert MAPPING.by_key["OutComeInfo.FERITIN"].label == "高血压"


@pytest.mark.parametrize(("stents", "code"), [(0, "1"), (1, "2"), (2, "3"), (3, "4"), (5, "4")])
def test_trap_3_bracket_num_codes_are_not_counts(stents: int, code: str) -> None:
    case = complete_stemi()
    case.resources = [r for r in case.resources if not r["id"].startswith("reg-lesion")]
    case.add(lesion(case, "reg-lesion-rca", culprit=True, pci=True, stents=stents))
    record, _ = build(case)
    (item,) = record.payload["TreatmentPciInfo"]["CORONARY_ANGIOGRAPHIE_LIST"]
    assert item["BRACKET_NUM"] == code


@pytest.mark.parametrize(("site", "code"), [("左桡动脉", "1"), ("右桡动脉", "2"), ("股动脉", "3")])
def test_trap_4_route_1_is_the_left_radial_artery(site: str, code: str) -> None:
    case = complete_stemi()
    next(r for r in case.resources if r["id"] == "reg-pci")["bodySite"] = [{"text": site}]
    record, _ = build(case)
    assert record.payload["TreatmentPciInfo"]["ROUTE"] == code


def test_trap_4_function_test_codes_are_not_sequential() -> None:
    codes = MAPPING.by_key["TreatmentPciInfo.FUNCTION_TEST"].codes
    assert codes is not None
    assert (codes["FFR"], codes["other"], codes["none"], codes["iFR"], codes["IMR"]) == (
        "1", "2", "3", "4", "5",
    )  # fmt: skip
    _, problems = build(overrides={"TreatmentPciInfo.FUNCTION_TEST": "4"})  # iFR: a value needed
    assert messages(problems) == {"TreatmentPciInfo.FUNCTION_TEST_VALUE": "导管室:功能检测值必填;"}
    _, problems = build(overrides={"TreatmentPciInfo.FUNCTION_TEST": "6"})
    assert messages(problems)["TreatmentPciInfo.FUNCTION_TEST"].startswith(
        "导管室:功能检测的值6不在值域内"
    )


def test_trap_5_diagnosis_codes_differ_between_blocks() -> None:
    record, problems = build(diagnosis="other", reperfusion=None)
    assert record.payload["TreatmentInfo"]["CP_DIAGNOSIS_CODE"] == "7"
    assert record.payload["OutComeInfo"]["CP_DIAGNOSIS_CODE"] == "9"
    record, problems = build(diagnosis="pending", reperfusion=None)
    assert record.payload["TreatmentInfo"]["CP_DIAGNOSIS_CODE"] == "8"
    # "pending" has no discharge code: staff must give the final diagnosis
    assert "OutComeInfo.CP_DIAGNOSIS_CODE" in messages(problems)
    _, problems = build(overrides={"OutComeInfo.CP_DIAGNOSIS_CODE": "7"})
    assert messages(problems)["OutComeInfo.CP_DIAGNOSIS_CODE"].startswith(
        "患者转归:出院诊断的值7不在值域内(1,2,3,4,5,6,9)"
    )


def test_trap_6_nacs_codes_are_padded_only_in_the_outcome() -> None:
    base = {"TreatmentInfo.NACS_TREATMENT_TYPE": "1"}
    _, problems = build(
        overrides={**base, "TreatmentInfo.NACS_TYPE": "1|3", "OutComeInfo.NACS_TYPE": "01|03"},
        diagnosis="non_acs",
        reperfusion=None,
    )
    assert not [p for p in problems if "NACS" in p.field]
    _, problems = build(
        overrides={**base, "TreatmentInfo.NACS_TYPE": "01", "OutComeInfo.NACS_TYPE": "1"},
        diagnosis="non_acs",
        reperfusion=None,
    )
    found = messages(problems)
    assert "的值01不在值域内" in found["TreatmentInfo.NACS_TYPE"]
    assert "的值1不在值域内" in found["OutComeInfo.NACS_TYPE"]


def test_trap_7_ua_grace_value_is_sent_whenever_computed() -> None:
    case = complete_stemi()
    case.add(
        score(
            case, "reg-grace", at("2024-03-05 09:00:00"),
            {"system": SCORE_SYSTEM, "code": "grace-inhospital"}, "GRACE", "grace-2003", 142,
            None, [],
        )
    )  # fmt: skip
    record, problems = build(case, diagnosis="UA", reperfusion=None)
    assert record.payload["TreatmentInfo"]["UA_GRACE_VALUE"] == "142"
    assert "TreatmentInfo.UA_GRACE_VALUE" not in messages(problems)
    # required (as written, for UA too) when a very-high-risk condition is ticked
    _, problems = build(
        overrides={"TreatmentInfo.UA_GRACE_HR_CONDITION": "2"}, diagnosis="UA", reperfusion=None
    )
    assert messages(problems)["TreatmentInfo.UA_GRACE_VALUE"] == "胸痛诊疗:Grace分值必填;"


def _discharge_drug(case: Case) -> None:
    case.add(
        {
            "resourceType": "MedicationRequest",
            "id": "reg-rx-asa",
            "status": "active",
            "intent": "order",
            "category": [{"coding": [{"code": "discharge"}]}],
            "medicationCodeableConcept": {
                "coding": [{"system": DRUG_CLASS_SYSTEM, "code": "aspirin"}]
            },
            "subject": {"reference": f"Patient/{case.patient_id}"},
            "authoredOn": iso(at("2024-03-12 09:00:00")),
            "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 100}}]}],
        }
    )


@pytest.mark.parametrize(("outcome", "sent"), [("discharged", True), ("transferred_out", True),
                                               ("ward_transfer", False)])  # fmt: skip
def test_trap_8_discharge_drugs_go_for_discharged_and_transferred(outcome: str, sent: bool) -> None:
    case = complete_stemi()
    _discharge_drug(case)
    record, problems = build(case, outcome=outcome)
    drugs = record.payload["OutComeInfo"].get("OUTDRUGDETAILS")
    if not sent:
        assert drugs is None
        return
    assert drugs == [{"TYPE": "1", "DOSE": 100}]
    # the drug name code per type is entered by staff (its lists are not in our spec copy)
    assert (
        messages(problems)["OutComeInfo.OUTDRUGDETAILS[1].NAME"]
        == "患者转归:出院带药第1条药物名称必填;"
    )


def test_trap_9_the_troponin_list_codes_tni_as_2_and_tnt_as_1() -> None:
    case = complete_stemi()
    tnt = dict(next(r for r in case.resources if r["id"] == "reg-ctni-1"))
    tnt.update(
        id="reg-ctnt-1", code={"coding": [{"system": "http://loinc.org", "code": "67151-1"}]}
    )
    tnt["effectiveDateTime"] = iso(at("2024-03-05 11:00:00"))
    case.add(tnt)
    record, _ = build(case)
    assert [t["TYPE"] for t in record.payload["TreatmentInfo"]["CTNTS"]] == ["2", "1"]


def test_trap_10_a_demo_only_field_cannot_be_set() -> None:
    with pytest.raises(UnknownRegistryField, match=r"RegisterInfo\.ID"):
        build(overrides={"RegisterInfo.ID": "x"})


def test_trap_11_remote_ecg_transmission_is_one_code() -> None:
    _, problems = build(overrides={"TreatmentInfo.REMOTE_ECG_TRANSMISSION": "1|2"})
    assert "的值1|2不在值域内" in messages(problems)["TreatmentInfo.REMOTE_ECG_TRANSMISSION"]


def test_trap_13_dtwob_time_is_whole_minutes_checked_against_the_record() -> None:
    record, _ = build()
    assert record.payload["TreatmentPciInfo"]["DTWOB_TIME"] == "40"  # 08:51:12 → 09:31:20
    _, problems = build(overrides={"TreatmentPciInfo.DTWOB_TIME": "45"})
    assert messages(problems) == {
        "TreatmentPciInfo.DTWOB_TIME": "导管室:D2W时间应为40分钟(按门-导丝的起止时间重新计算);"
    }


@pytest.mark.parametrize(
    ("mode", "door_field", "absent"),
    [
        ("ems", "CW_120_ARRIVED_HOSPITAL_TIME", "CW_ZXLY_ARRIVED_HOSPITAL_TIME"),
        ("self", "CW_ZXLY_ARRIVED_HOSPITAL_TIME", "CW_120_ARRIVED_HOSPITAL_TIME"),
        ("transfer", "CW_ZY_ARRIVED_HOSPITAL_TIME", "CW_120_HELP_TIME"),
    ],
)
def test_trap_14_the_door_goes_to_the_arrival_modes_field(
    mode: str, door_field: str, absent: str
) -> None:
    record, _ = build(arrival_mode=mode)
    first_aid = record.payload["FirstAIDInfo"]
    assert first_aid[door_field] == "2024-03-05T08:51:12"
    assert absent not in first_aid
    assert first_aid["CW_COMING_WAY_CODE"] == {"ems": "1", "transfer": "2", "self": "3"}[mode]


def test_trap_14_an_in_hospital_onset_sends_no_door() -> None:
    record, problems = build(arrival_mode="in_hospital")
    first_aid = record.payload["FirstAIDInfo"]
    assert not [key for key in first_aid if key.endswith("ARRIVED_HOSPITAL_TIME")]
    assert first_aid["CW_YNFB_FIRST_MC_TIME"] == "2024-03-05T08:15:30"
    assert messages(problems)["FirstAIDInfo.CW_YNFB_ATTACK_DEPARTMENT"] == "急救信息:发病科室必填;"


# -- validation rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("RegisterInfo.AGE", 300, "人口基本信息:年龄应在0到250之间;"),
        ("RegisterInfo.AGE", "57", "人口基本信息:年龄应为整数;"),
        ("RegisterInfo.WEIGHT", 70.25, "人口基本信息:体重最多保留1位小数;"),
        ("RegisterInfo.NAME", "王" * 51, "人口基本信息:姓名长度不能超过50;"),
        ("FirstAIDInfo.ATTACK_TIME", "2024-03-05T07:40:00+08:00",
         "急救信息:发病时间时间格式应为yyyy-MM-ddTHH:mm:ss(北京时间,不带时区);"),
        ("FirstAIDInfo.DISTRESS_CASE_DETAIL", "1|15", "急救信息:病情评估明细的值15不在值域内"),
        ("TreatmentPciInfo.FUNCTION_TEST_VALUE", 1.5, "导管室:功能检测值应在0到1之间;"),
    ],
)  # fmt: skip
def test_a_field_breaking_a_rule_is_reported(key: str, value: Any, message: str) -> None:
    _, problems = build(overrides={key: value})
    assert messages(problems)[key].startswith(message)


def test_a_field_removed_by_staff_is_required_again() -> None:
    record, problems = build(overrides={"FirstAIDInfo.CONSCIOUSNESS_TYPE": None})
    assert "CONSCIOUSNESS_TYPE" not in record.payload["FirstAIDInfo"]
    (problem,) = problems
    assert (problem.block, problem.field, problem.message) == (
        "FirstAIDInfo",
        "CONSCIOUSNESS_TYPE",
        "急救信息:意识必填;",
    )
    assert "80288-4" in problem.source  # which FHIR data would fill it


def test_times_out_of_order_are_reported_on_the_later_field() -> None:
    case = complete_stemi()
    case.nodes["symptom_onset"] = at("2024-03-05 08:10:00")  # after the call for help
    case.nodes["puncture"] = case.nodes["cath_lab_arrival"] - timedelta(minutes=2)
    _, problems = build(case)
    assert messages(problems) == {
        "FirstAIDInfo.CW_120_HELP_TIME": "急救信息:呼救时间不能早于发病时间;",
        "TreatmentPciInfo.START_PUNCTURE_TIME": "导管室:开始穿刺时间不能早于患者到达导管室时间;",
    }
    assert all(p.kind == "order" for p in problems)


def test_a_wire_before_the_door_breaks_the_order_and_the_d2w() -> None:
    case = complete_stemi()
    case.nodes["wire_crossing"] = at("2024-03-05 08:50:00")
    record, problems = build(case, overrides={"TreatmentPciInfo.DTWOB_TIME": "0"})
    found = messages(problems)
    assert found["TreatmentPciInfo.DTWOB_TIME"].startswith("导管室:D2W时间应为-2分钟")
    assert "TreatmentPciInfo.CORONARY_ANGIOGRAPHIE_LIST.BALLOON_EXPANSION_TIME" in found


def test_a_field_of_another_diagnosis_sub_block_is_reported() -> None:
    _, problems = build(overrides={"TreatmentInfo.NSTEMI_STRATEGY": "2"})
    assert messages(problems) == {
        "TreatmentInfo.NSTEMI_STRATEGY": "胸痛诊疗:治疗策略与初步诊断(1)不符,不应填写;"
    }


def test_only_the_first_three_ecgs_by_time_are_sent() -> None:
    case = complete_stemi()
    for number, minute in ((2, 40), (3, 10), (4, 20)):  # acquired 09:40, 09:10, 09:20
        case.add(
            ecg_report(
                case, f"reg-ecg-{number}", at(f"2024-03-05 09:{minute}:00"),
                at(f"2024-03-05 09:{minute + 5}:00"),
            )
        )  # fmt: skip
    record, problems = build(case)
    times = [e["ECG_TIME"][11:] for e in record.payload["TreatmentInfo"]["ECGS"]]
    assert times == ["08:18:00", "09:10:00", "09:20:00"]
    assert problems == []
    four = [*record.payload["TreatmentInfo"]["ECGS"], record.payload["TreatmentInfo"]["ECGS"][0]]
    _, problems = build(case, overrides={"TreatmentInfo.ECGS": four})
    assert messages(problems) == {"TreatmentInfo.ECGS": "胸痛诊疗:心电图最多3条;"}


def test_the_completeness_report_says_what_fills_each_missing_field() -> None:
    case = complete_stemi()
    case.resources = [r for r in case.resources if r["id"] not in ("reg-avpu", "reg-bp")]
    record, problems = build(case)
    report = completeness_report(record, problems)
    assert report["ready"] is False and report["errors"] == 2
    assert {m["field"]: m["fill"] for m in report["missing"]} == {
        "FirstAIDInfo.CONSCIOUSNESS_TYPE": MAPPING.by_key["FirstAIDInfo.CONSCIOUSNESS_TYPE"].fill,
        "FirstAIDInfo.BLOOD_PRESSURE": MAPPING.by_key["FirstAIDInfo.BLOOD_PRESSURE"].fill,
    }
    assert "85354-9" in report["missing"][1]["fill"]
    assert sorted(report["overridden"]) == sorted(STAFF_ENTRIES)
