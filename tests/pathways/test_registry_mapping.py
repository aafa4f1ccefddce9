"""Registry mapping files: the shipped CPC 2.1 file covers the spec's fields, and a mistake in a
file is refused with `file:line key: message` before anything is built."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError
from pathways.registry import load_registry_mapping, registry_mapping

ROOT = Path(__file__).resolve().parents[2]

# registries.md A.4 (and A.4.1, A.5 #6): every field name as the spec (or its demo) spells it.
SPEC_FIELDS = {
    "RegisterInfo": """REGISTER_ID HOSPITAL_ID NAME GENDER AGE BIRTHDAY CREDENTIALS_TYPE IDCARD
        NATION CONTACT_PHONE JOB CULTUREDEGREE MARITALSTATUS HEIGHT WEIGHT STATUS""",
    "FirstAIDInfo": """INPATIENT_ID OUTPATIENT_ID ATTACK_TIME IS_NULL_ATTACK_DETAIL_TIME
        ATTACK_ZONE MEDICAL_INSURANCE_TYPE CONSCIOUSNESS_TYPE RESPIRATION_RATE PULSE_RATE
        HEART_RATE BLOOD_PRESSURE TEMPERATURE DISTRESS_CASE DISTRESS_CASE_DETAIL
        CW_COMING_WAY_CODE CW_120_AMBULANCE_DEPARTMENT CW_120_HELP_TIME CW_120_FIRST_MC_TIME
        CW_120_FIRST_DOCTOR_TIME CW_120_ARRIVED_HOSPITAL_TIME CW_120_IS_TRANS_HOSPITAL
        CW_ZY_TRANS_TYPE CW_ZY_TRANS_HOSPITAL_NAME CW_ZY_FIRST_MC_TIME
        CW_ZY_OUTHOSPITAL_VISIT_TIME CW_ZY_TRANSFER_TIME CW_ZY_LEAVE_OUTHOSPITAL_TIME
        CW_ZY_ARRIVED_HOSPITAL_TIME CW_ZY_ADMISSION_TIME CW_ZXLY_ARRIVED_HOSPITAL_TIME
        CW_ZXLY_FIRST_MC_TIME CW_ZXLY_FIRST_DOCTOR_TIME CW_YNFB_ATTACK_DEPARTMENT
        CW_YNFB_FIRST_MC_TIME CW_YNFB_CONSULTATION_TIME CW_YNFB_LEAVE_DEPARTMENT_TIME SCREENING
        IS_THROMBOLYSIS IS_DIRECT THROM_TREATMENT_PLACE START_AGREE_TIME SIGN_AGREE_TIME
        THROM_START_TIME THROM_END_TIME THROM_DRUG_TYPE THROM_DRUG_CODE IS_REPATENCY
        START_RADIOGRAPHY_TIME IS_REPCI OPERATION_TIME HOSPITAL_POSITION PATIENT_REMARK""",
    "TreatmentInfo": """HAS_ECG_IMAGE NO_ECG_IMAGE_REASON ECGS REMOTE_ECG_TRANSMISSION TRAN_TIME
        IS_REMOTE_ECGTRAN IS_CTNT CTNTS IS_CR CR_VALUE IS_Ddimer Ddimer_VALUE Ddimer_UNIT IS_BNP
        BNP_VALUE IS_NTproBNP NTproBNP_VALUE IS_MYO MYO_VALUE MYO_UNIT IS_CKMB CKMB_VALUE
        CKMB_UNIT IS_NOTICE_IMCD IMCD_TYPE NOTICE_IMCD_TIME CONSULTATION_TIME CP_DIAGNOSIS_CODE
        STEMI_GIVE_UP_TREATMENT STEMI_DIAGNOSIS_TIME STEMI_KILLIP_LEVEL STEMI_IS_BYPASS_EMERGENCY
        STEMI_IS_BYPASS_CCU STEMI_IS_DRUG STEMI_ASPIRIN_DOSE STEMI_ASPIRIN_TIME
        STEMI_CLOPIDOGREL_DOSE STEMI_CLOPIDOGREL_TIME STEMI_TICAGRELOR_DOSE
        STEMI_TICAGRELOR_TIME STEMI_IS_ANTICOAGULATION STEMI_ANTICOAGULATION_DRUG
        STEMI_ANTICOAGULATION_DOSE STEMI_ANTICOAGULATION_TIME STEMI_INTENSIFY_STATINS_TREAT
        STEMI_RECEPTOR_RETARDANT_USING STEMI_IS_REPERFUSION STEMI_NO_REPERFUSION_REASON
        STEMI_MEASURES STEMI_MEASURES_THROMBOLYSIS STEMI_DECISION_OPERATION_TIME
        STEMI_START_CONDUIT_TIME STEMI_START_AGREE_TIME STEMI_SIGN_AGREE_TIME
        STEMI_START_RADIOGRAPHY_TIME STEMI_DECISION_CABG_TIME STEMI_START_CABG_TIME
        STEMI_TPCI_TYPE STEMI_SCREENING STEMI_IS_THROMBOLYSIS STEMI_IS_DIRECT
        STEMI_DIAGNOSIS_UNIT_CODE_DT STEMI_THROM_START_AGREE_TIME STEMI_THROM_SIGN_AGREE_TIME
        STEMI_THROM_START_TIME_DT STEMI_THROM_END_TIME_DT STEMI_THROM_DRUG_TYPE_DT
        STEMI_THROM_DRUG_CODE_DT STEMI_IS_REPATENCY_DT NSTEMI_GRACE_ESTIMATE
        NSTEMI_GRACE_HR_CONDITION NSTEMI_GRACE_VALUE NSTEMI_RISK_LAMINATION
        NSTEMI_RISK_LAMINATION_AG NSTEMI_RISK_LAMINATION_AG_TIME NSTEMI_STRATEGY
        NSTEMI_INVASIVE_STRATEGY NSTEMI_DECISION_OPERATION_TIME NSTEMI_START_CONDUIT_TIME
        NSTEMI_START_AGREE_TIME NSTEMI_SIGN_AGREE_TIME NSTEMI_ACTUAL_INTERVENT_TIME
        NSTEMI_IS_BETA_BLOCKER UA_GRACE_VALUE UA_ACTUAL_INTERVENTION_TIME
        UA_RECEPTOR_RETARDANT_USING AD_IMG_EXAMINATION AD_CT_NOTICE_TIME AD_CT_FINISH_TIME
        AD_CT_SCAN_TIME AD_CT_REPORT_TIME AD_INTERLAYER_TYPE AD_TREATMENT_STRATEGY_CODE
        PE_CT_NOTICE_TIME PE_CT_FINISH_TIME PE_CT_SCAN_TIME PE_CT_REPORT_TIME PE_RISK_LAMINATION
        PE_ANTI_TREATMENT_TIME PE_SCREENING PE_IS_THROMBOLYSIS NACS_TYPE NACS_TREATMENT_TYPE
        OTHER_TYPE OTHER_TREATMENT_TYPE AWAIT_TYPE AWAIT_TREATMENT_TYPE""",
    "TreatmentPciInfo": """ACTIVATE_CONDUIT_TIME PATIENT_ARRIVED_CONDUIT_TIME INTERVENTION_PERSON
        START_PUNCTURE_TIME START_RADIOGRAPHY_TIME ANTICOAGULATION_TIME ANTICOAGULATION_DRUG
        ANTICOAGULATION_DOSE ANTICOAGULATION_UNIT END_OPERATION_TIME DTWOB_TIME IS_DELAY
        DELAY_REASON ROUTE CORONARY_ANGIOGRAPHIE_LIST INTRACAVITY_IMAGE FUNCTION_TEST
        FUNCTION_TEST_VALUE IABP PACEMAKER ECMO AUXILIARY_DEVICE COMPLICATION""",
    "OutComeInfo": """CP_DIAGNOSIS_CODE DIAGNOSIS_TIME IS_HEART_FAILURE COMPLICATION FERITIN
        HYPERLIPEMIA DIABETES SMOKING SMOKING_STATUS OBESITY FAMILY_DISEASE CHD
        PREVIOUS_REVASCULARIZATION AF AF_TYPE SLOW_HEART_FAILURE NYHA_LEVEL AVHD BRIAN_VASCELLUM
        BRIAN_VASCELLUM_DESC PERIPHERAL_ARTERY_DISEASE AORTIC_ANEURYSM COPD
        CHRONIC_KIDNEY_DISEASE ANEMIA PEPTIC_ULCER THYROID_DISEASE TROPONIN_72H
        TROPONIN_72H_TYPE CTNI_MAX_VALUE BNP BNP_TYPE BNP_VALUE TC TC_VALUE TG TG_VALUE HDL_C
        HDL_C_VALUE LDL_C LDL_C_VALUE UCG LVEF VNTRICULAR_ANEURYSM PART_VNTRICULAR HOD
        TOTAL_COST OUTCOME_CODE LEAVE_TIME TREATMENT_RESULT_CODE OUTDRUGDETAILS HAND_TIME
        HOSPITAL_NAME IS_NET_HOSPITAL IS_TRANS_PCI IS_DIRECT_CATHETER DECISION_OPERATION_TIME
        REMOTE_ECG_TRANSMISSION TRANS_ECG_TIME TRANS_WAY AFTER_THROMBOLYSIS_RADIOGRAPHY
        START_RADIOGRAPHY_TIME TRANSFER_DATE ADMISSION_DEPT TRANSFER_REASON DEATH_TIME
        DEATH_CAUSE_CODE DEATH_CAUSE_DESC NACS_TYPE OTHER_NACS_TYPE""",
}
LIST_ITEMS = {
    "TreatmentInfo.ECGS": "ECG_TIME ECG_DIAGNOSE_TIME ECGImageFiles",
    "TreatmentInfo.CTNTS": "TYPE VALUE UNIT STATUS BLOOD_TIME REPORT_TIME",
    "TreatmentPciInfo.CORONARY_ANGIOGRAPHIE_LIST": """POSITION NARROW_LEVEL
        PREOPERATIVE_TIMI_LEVEL BRACKET_THROMBUS BRANCHING_SICK CTO CA_SICK CRIMINAL_SICK PCI
        INTRAOPERATIVE_HANDLE BALLOON_EXPANSION_TIME BRACKET_NUM BRAKET_TYPE""",
    "OutComeInfo.OUTDRUGDETAILS": "TYPE NAME DOSE",
}


def test_the_cpc_mapping_maps_every_field_of_the_spec() -> None:
    mapping = registry_mapping("cpc")
    wanted = {f"{block}.{name}" for block, names in SPEC_FIELDS.items() for name in names.split()}
    wanted |= {f"{key}.{item}" for key, items in LIST_ITEMS.items() for item in items.split()}
    assert sorted(wanted - set(mapping.by_key)) == []
    assert mapping.mapping_version and mapping.spec_version.startswith("2.1")
    assert mapping.file.endswith("cpc-2.1.yaml")


def test_demo_only_fields_are_not_mapped() -> None:
    """Trap A.5 #10: the demo request's RegisterInfo.ID and *_DOSE_DESC are not in the tables."""
    mapping = registry_mapping("cpc")
    assert mapping.field("RegisterInfo.ID") is None
    assert not [key for key in mapping.by_key if key.endswith("_DOSE_DESC")]
    assert mapping.field("OutComeInfo.OUTDRUGDETAILS.RETE_COUNT") is None  # trap A.5 #8


def _file(tmp_path: Path, fields: str, *, extra: str = "") -> Path:
    (tmp_path / "tables").mkdir(exist_ok=True)
    (tmp_path / "tables" / "sex.csv").write_text("code,target\nmale,1\nfemale,2\n")
    path = tmp_path / "reg-1.yaml"
    path.write_text(
        "registry: reg\nmapping_version: '1'\nspec: test\nspec_version: '1'\ncenter: chest_pain\n"
        "blocks:\n  A: {label: 甲}\n"
        f"fields:\n{fields}{extra}",
        encoding="utf-8",
    )
    return path


def _error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_registry_mapping(path)
    return caught.value


def test_a_small_file_loads(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "  - {target: A.SEX, label: 性别, type: string, table: sex,\n"
        "     source: {fhirpath: Patient.gender}}\n",
    )
    mapping = load_registry_mapping(path)
    field = mapping.field("A.SEX")
    assert field is not None and field.domain == {"1", "2"}


def test_an_unknown_key_is_named_with_its_line(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "  - target: A.SEX\n    label: 性别\n    type: string\n    sorce: {node: door}\n",
    )
    error = _error(path)
    assert (error.file, error.line, error.key) == (str(path), 12, "fields[0].sorce")
    assert "not a known key" in str(error)


def test_a_bad_fhirpath_is_refused_before_anything_runs(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "  - target: A.SEX\n    label: 性别\n    type: string\n"
        '    source:\n      fhirpath: "Patient.gender.where("\n',
    )
    error = _error(path)
    assert error.key == "fields[0].source.fhirpath"
    assert "not a valid FHIRPath" in str(error)


def test_an_unknown_table_is_named(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "  - target: A.SEX\n    label: 性别\n    type: string\n    table: gender\n",
    )
    error = _error(path)
    assert (error.line, error.key) == (12, "fields[0].table")
    assert "unknown table 'gender'" in str(error)


@pytest.mark.parametrize(
    ("field", "key", "message"),
    [
        ("{target: A.T, label: t, type: datetime, source: {node: doorr}}", "fields[0].source.node",
         "'doorr' is not a time-node key"),
        ("{target: B.T, label: t, type: string}", "fields[0].target", "no block 'B'"),
        ("{target: A.T, label: t, type: string, when: \"B.X == '1'\"}", "fields[0].when",
         "'B.X' names no block"),
        ("{target: A.T, label: t, type: string, required_when: \"A.X ==\"}",
         "fields[0].required_when", "expected a value"),
        ("{target: A.T, label: t, type: string, source: {node: door, fact: diagnosis}}",
         "fields[0].source", "give exactly one of"),
        ("{target: A.T, label: t, type: list, items: [{target: X, label: x, type: string}]}",
         "fields[0]", "needs `each`"),
        ("{target: A.T, label: t, type: string, decimals: 2}", "fields[0]", "decimal fields only"),
        ("{target: A.T, label: t, type: strin}", "fields[0].type", "string"),
    ],
)  # fmt: skip
def test_mistakes_name_the_key(tmp_path: Path, field: str, key: str, message: str) -> None:
    error = _error(_file(tmp_path, f"  - {field}\n"))
    assert error.key == key and error.line is not None
    assert message in str(error)


def test_time_order_names_only_datetime_fields(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "  - {target: A.T, label: t, type: datetime, source: {node: door}}\n"
        "  - {target: A.S, label: s, type: string}\n",
        extra="time_order:\n  - [A.T, A.S]\n",
    )
    error = _error(path)
    assert error.key == "time_order[0][1]" and "A.S is not a datetime field" in str(error)


def test_twice_the_same_target_is_refused(tmp_path: Path) -> None:
    field = "  - {target: A.T, label: t, type: string}\n"
    error = _error(_file(tmp_path, field * 2))
    assert error.key == "fields[1].target" and "mapped twice" in str(error)


_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=12),
    st.sampled_from(["A.T", "door", "Patient.gender", "string", "datetime", "list", "cpc"]),
)  # fmt: skip
_KEYS = st.sampled_from(
    ["target", "label", "type", "source", "fhirpath", "node", "when", "required_when", "items",
     "each", "table", "values", "enum_map", "decimals", "length", "fields", "blocks", "registry",
     "mapping_version", "spec", "spec_version", "center", "time_order", "A", "x"]
)  # fmt: skip
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=6),
    max_leaves=30,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=_DOCUMENTS, text=st.text(max_size=200))
def test_the_loader_never_crashes(tmp_path: Path, document: object, text: str) -> None:
    """Any YAML (structured or not): a mapping or a ConfigError, never another exception."""
    for content in (yaml.safe_dump(document, allow_unicode=True), text):
        path = tmp_path / f"fuzz-{abs(hash(content))}.yaml"  # no stale cache entry
        path.write_text(content, encoding="utf-8")
        try:
            load_registry_mapping(path)
        except ConfigError:
            pass


def test_the_docs_example_is_a_valid_mapping_file(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "registry.md").read_text(encoding="utf-8")
    template, api = [b.split("```")[0] for b in text.split("```yaml\n")[1:] if "registry:" in b]
    (tmp_path / "tables").symlink_to(ROOT / "mappings" / "registry" / "tables")
    path = tmp_path / "example.yaml"
    path.write_text(api, encoding="utf-8")
    mapping = load_registry_mapping(path)
    assert [f.key for f in mapping.fields][0] == "FirstAIDInfo.CW_COMING_WAY_CODE"
    path = tmp_path / "template.yaml"
    path.write_text(template, encoding="utf-8")
    headers = [column.header for column in load_registry_mapping(path).columns]
    assert headers == ["患者编号", "交通方式", "急救车提前通知(YES/NO)"]


def test_mappings_lint_checks_registry_files_with_their_own_loader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`greenchannel mappings lint` loads mappings/registry/ as registry mappings (plugin
    `greenchannel.mapping_kinds`), not as message mappings, and names a broken one."""
    from engine.cli import main

    folder = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", folder)
    assert main(["mappings", "lint", str(folder)]) == 0
    capsys.readouterr()
    broken = folder / "registry" / "cpc-2.1.yaml"
    text = broken.read_text(encoding="utf-8").replace("source: {node: door}", "source: {node: dor}")
    broken.write_text(text, encoding="utf-8")
    assert main(["mappings", "lint", str(folder)]) == 1
    out = capsys.readouterr().out
    assert re.search(
        r"cpc-2\.1\.yaml:\d+ fields\[\d+\]\.source\.node: 'dor' is not a time-node", out
    )
