"""Registry records read from a real FHIR store (SQLite and PostgreSQL): the archive's gathering
finds every resource the mapping needs, an incomplete case names exactly what is missing, and a
month's check counts the cases the QC statistics count."""

from __future__ import annotations

import pytest

from fhir_store import FhirStore
from pathways.registry import (
    CaseNotFound,
    build_record,
    check_cases,
    registry_mapping,
    validate_record,
)
from tests.pathways.archive_cases import stemi_by_120_with_primary_pci, write
from tests.pathways.registry_cases import PARAMS, STAFF_ENTRIES, complete_stemi

pytestmark = pytest.mark.anyio

# What the archive tests' STEMI (a realistic case, but no vital signs panel, no staff entries,
# fewer nodes) lacks for the platform, in the mapping's order.
ARCHIVE_STEMI_MISSING = [
    "FirstAIDInfo.CONSCIOUSNESS_TYPE",
    "FirstAIDInfo.RESPIRATION_RATE",
    "FirstAIDInfo.BLOOD_PRESSURE",
    "FirstAIDInfo.DISTRESS_CASE",
    "FirstAIDInfo.CW_120_AMBULANCE_DEPARTMENT",
    "FirstAIDInfo.CW_120_FIRST_DOCTOR_TIME",
    "FirstAIDInfo.CW_120_IS_TRANS_HOSPITAL",
    "FirstAIDInfo.SCREENING",
    "TreatmentInfo.ECGS[1].ECGImageFiles",
    "TreatmentInfo.REMOTE_ECG_TRANSMISSION",
    "TreatmentInfo.STEMI_IS_BYPASS_EMERGENCY",
    "TreatmentInfo.STEMI_IS_BYPASS_CCU",
    "TreatmentInfo.STEMI_DECISION_OPERATION_TIME",
    "TreatmentInfo.STEMI_START_AGREE_TIME",
    "TreatmentInfo.STEMI_SIGN_AGREE_TIME",
    "TreatmentPciInfo.ACTIVATE_CONDUIT_TIME",
    "TreatmentPciInfo.ROUTE",
    "TreatmentPciInfo.INTRACAVITY_IMAGE",
    "TreatmentPciInfo.FUNCTION_TEST",
    "TreatmentPciInfo.IABP",
    "TreatmentPciInfo.PACEMAKER",
    "TreatmentPciInfo.ECMO",
    "TreatmentPciInfo.AUXILIARY_DEVICE",
    "OutComeInfo.DIAGNOSIS_TIME",
    "OutComeInfo.IS_HEART_FAILURE",
    "OutComeInfo.COMPLICATION",
    "OutComeInfo.SMOKING",
    "OutComeInfo.FAMILY_DISEASE",
    "OutComeInfo.AF",
    "OutComeInfo.TOTAL_COST",
    "OutComeInfo.OUTCOME_CODE",
]


async def test_a_complete_case_from_the_store_is_ready(store: FhirStore) -> None:
    await write(store, complete_stemi())
    record = await build_record(store, "cp-reg-1", overrides=STAFF_ENTRIES, params=PARAMS)
    assert validate_record(record) == []
    treatment = record.payload["TreatmentInfo"]
    assert treatment["ECGS"][0]["ECG_TIME"] == "2024-03-05T08:18:00"
    assert treatment["CTNTS"][0]["TYPE"] == "2"
    assert record.traces["TreatmentInfo.ECGS"].sources == ("DiagnosticReport/reg-ecg-1",)
    assert record.payload["TreatmentPciInfo"]["DTWOB_TIME"] == "40"


async def test_an_incomplete_case_names_exactly_what_is_missing(store: FhirStore) -> None:
    await write(store, stemi_by_120_with_primary_pci())
    record = await build_record(store, "cp-stemi-1", params=PARAMS)
    problems = validate_record(record)
    assert [p.key for p in problems] == ARCHIVE_STEMI_MISSING
    assert {p.kind for p in problems} == {"required"}
    first = problems[0]
    assert first.message == "急救信息:意识必填;" and "80288-4" in first.source
    # without the platform's hospital id the record is not ready either
    unset = validate_record(await build_record(store, "cp-stemi-1"))
    assert unset[0].key == "RegisterInfo.HOSPITAL_ID"


async def test_an_unknown_case_is_not_found(store: FhirStore) -> None:
    with pytest.raises(CaseNotFound, match="no center case EpisodeOfCare/nope"):
        await build_record(store, "nope")


async def test_a_months_check_reports_each_case_counted_in_it(store: FhirStore) -> None:
    await write(store, complete_stemi())
    await write(store, stemi_by_120_with_primary_pci())
    mapping = registry_mapping("cpc")
    reports = await check_cases(store, mapping, "chest_pain", month="2024-03", params=PARAMS)
    assert [(r["case_id"], r["ready"]) for r in reports] == [
        ("cp-reg-1", False),  # the staff entries are not stored: the upload workflow keeps them
        ("cp-stemi-1", False),
    ]
    assert reports[1]["errors"] == len(ARCHIVE_STEMI_MISSING)
    assert reports[1]["lines"][0].startswith(
        "ERROR FirstAIDInfo.CONSCIOUSNESS_TYPE: 急救信息:意识必填;"
    )
    assert await check_cases(store, mapping, "chest_pain", month="2024-04") == []
