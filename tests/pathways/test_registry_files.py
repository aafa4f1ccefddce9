"""File-template registries (registries.md B.4): a stroke case exported as the WSO template and a
trauma case as the regional trauma file, CSV and XLSX, from a real FHIR store (SQLite and
PostgreSQL), read back with the csv module and openpyxl and every column checked against the
case's data; an incomplete case skipped with its reasons or exported flagged."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from engine.errors import ConfigError
from fhir_store import FhirStore
from pathways.registry import (
    NotATemplate,
    RegistryMapping,
    checked_records,
    export_file,
    load_registry_mapping,
    registry_mapping,
)
from pathways.registry.files import Sheet, write_csv, write_xlsx
from tests.pathways.archive_cases import stroke_with_lysis, write
from tests.pathways.registry_cases import complete_stemi
from tests.pathways.registry_file_cases import (
    STROKE_NODES,
    TRAUMA_LEFT,
    TRAUMA_NODES,
    complete_stroke,
    complete_trauma,
)

pytestmark = pytest.mark.anyio

# registries.md B.1: the WSO template's 52 keys, in the template's column order.
WSO_KEYS = """case_id age sex onset_ts arrival_ts hospitalized_in arrived_from arrived_by
    ems_prenotification history_hypertension history_diabetes history_hyperlipidemia
    history_smoker history_previous_i_s before_onset_a_anti previous_mrs admission_nihss
    systolic_blood_pressure diatolic_blood_pressure brain_imaging_type brain_imaging_ts
    baseline_aspects is_vessel stroke_type thrombolysis_done no_thrombolysis_reason
    thrombolysis_drug thrombolysis_bolus_ts ais_mimics_anti_treatment thrombectomy_done
    thrombectomy_groin_p_ts thrombectomy_mtici_score thrombectomy_reperfusion_ts
    symptomatic_hemorrhage_a_t iv_antihypertensive_a iv_antihypertensive_ts
    ich_anticoagulant_r_t anticoagulant_reversal_ts afib_flutter serious_complication
    ischemic_stroke_e swallowing_screening physiotherapy_assessed discharge_destination
    discharge_date discharge_nihss discharge_mrs discharge_antihypertensive
    statin_prescribed_discharge discharge_any_antiplatelet discharge_any_anti mrs_90d""".split()


def local(instant: datetime) -> datetime:
    """The naive Beijing local time a template cell holds."""
    return instant.replace(tzinfo=None)


# What each column of the complete stroke case holds (None: empty, not applicable or staff).
STROKE_ROW: dict[str, Any] = {
    "case_id": "st-wso-1",
    "age": 68,  # born 1958-05-20, onset 2026-10-08
    "sex": "male",
    "onset_ts": local(STROKE_NODES["symptom_onset"]),
    "arrival_ts": local(STROKE_NODES["door"]),
    "hospitalized_in": None,
    "arrived_from": "home/scene",
    "arrived_by": "EMS",
    "ems_prenotification": "YES",
    "history_hypertension": "YES",
    "history_diabetes": "NO",
    "history_hyperlipidemia": "NO",
    "history_smoker": "NO",
    "history_previous_i_s": "NO",
    "before_onset_a_anti": None,
    "previous_mrs": 0,
    "admission_nihss": 14,
    "systolic_blood_pressure": 168,  # the first, not the later 150
    "diatolic_blood_pressure": 94,
    "brain_imaging_type": "CT",
    "brain_imaging_ts": local(STROKE_NODES["ct_start"]),
    "baseline_aspects": 8,
    "is_vessel": None,
    "stroke_type": "AIS",
    "thrombolysis_done": "YES",
    "no_thrombolysis_reason": None,
    "thrombolysis_drug": "alteplase",
    "thrombolysis_bolus_ts": local(STROKE_NODES["lytic_start"]),
    "ais_mimics_anti_treatment": None,
    "thrombectomy_done": "YES",
    "thrombectomy_groin_p_ts": local(STROKE_NODES["groin_puncture"]),
    "thrombectomy_mtici_score": "2B",
    "thrombectomy_reperfusion_ts": local(STROKE_NODES["recanalization"]),
    "symptomatic_hemorrhage_a_t": "NO",
    "iv_antihypertensive_a": None,  # ICH only
    "iv_antihypertensive_ts": None,
    "ich_anticoagulant_r_t": None,
    "anticoagulant_reversal_ts": None,
    "afib_flutter": "NO",
    "serious_complication": None,
    "ischemic_stroke_e": None,
    "swallowing_screening": "YES",
    "physiotherapy_assessed": "YES",
    "discharge_destination": "home",
    "discharge_date": local(STROKE_NODES["discharge"]),
    "discharge_nihss": 3,
    "discharge_mrs": 2,
    "discharge_antihypertensive": "NO",
    "statin_prescribed_discharge": "YES",
    "discharge_any_antiplatelet": "YES",
    "discharge_any_anti": "NO",
    "mrs_90d": None,
}

TRAUMA_ROW: dict[str, Any] = {
    "HOSPITAL_ID": "H-TRAUMA-01",
    "REGISTER_ID": "tr-reg-1",
    "NAME": "陈丽",
    "GENDER": "2",
    "AGE": 34,  # born 1992-02-29, hurt 2026-10-12
    "ATTACK_TIME": local(TRAUMA_NODES["injury"]),
    "COMING_WAY_CODE": "1",
    "HELP_TIME": local(TRAUMA_NODES["call_for_help"]),
    "FIRST_MC_TIME": local(TRAUMA_NODES["ems_arrive_scene"]),
    "PREHOSPITAL_ALERT_TIME": local(TRAUMA_NODES["prehospital_alert"]),
    "ARRIVED_HOSPITAL_TIME": local(TRAUMA_NODES["door"]),
    "TEAM_ACTIVATION_TIME": local(TRAUMA_NODES["trauma_team_activated"]),
    "RESUS_ROOM_IN_TIME": local(TRAUMA_NODES["resus_room_in"]),
    "GCS": 13,
    "RTS": 7.1082,
    "ISS": 25,
    "ISS_TIME": local(TRAUMA_NODES["iss_scored"]),
    "CT_START_TIME": local(TRAUMA_NODES["ct_start"]),
    "CT_REPORT_TIME": local(TRAUMA_NODES["ct_read"]),
    "ED_TO_WBCT_MINUTES": int(
        (TRAUMA_NODES["wbct_done"] - TRAUMA_NODES["ed_arrival"]).total_seconds() // 60
    ),
    "IS_TRANSFUSION": "1",
    "TRANSFUSION_TIME": local(TRAUMA_NODES["transfusion_started"]),
    "IS_SURGERY": "1",
    "SURGERY_START_TIME": local(TRAUMA_NODES["surgery_start"]),
    "IS_ICU": "0",
    "ICU_TIME": None,
    "OUTCOME_CODE": "1",
    "LEAVE_TIME": local(TRAUMA_LEFT),
    "TOTAL_COST": None,
}
TRAUMA_PARAMS = {"hospital_id": "H-TRAUMA-01"}


def as_csv_text(value: Any) -> str:
    """How the CSV writes a cell: the template's datetime pattern, plain numbers, "" for none."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def read_csv(content: bytes) -> list[list[str]]:
    assert content.startswith(b"\xef\xbb\xbf"), "UTF-8 with BOM, so Excel reads the Chinese"
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"), newline="")))


def read_xlsx(content: bytes, sheet: str) -> list[list[Any]]:
    book = load_workbook(io.BytesIO(content))
    assert book.sheetnames[0] == sheet
    return [list(row) for row in book[sheet].iter_rows(values_only=True)]


def keys(mapping: RegistryMapping) -> list[str]:
    return [column.field.name for column in mapping.columns]


async def export(
    store: FhirStore, registry: str, kind: str, *, params: dict[str, str] | None = None,
    month: str | None = None, case_id: str | None = None, incomplete: str = "skip",
) -> Any:  # fmt: skip
    mapping = registry_mapping(registry)
    checked = await checked_records(
        store, mapping, mapping.center, case_id=case_id, month=month, params=params
    )
    return export_file(
        mapping, checked, kind, incomplete="flag" if incomplete == "flag" else "skip",
        suffix=month or case_id or "",
    )  # fmt: skip


def test_the_wso_mapping_is_the_templates_52_columns_in_order() -> None:
    mapping = registry_mapping("wso")
    assert keys(mapping) == WSO_KEYS
    assert set(STROKE_ROW) == set(WSO_KEYS)
    headers = [column.header for column in mapping.columns]
    assert headers[:5] == ["患者编号", "卒中时年龄", "性别", "发病时间", "到达医院时间"]
    assert len(set(headers)) == 52
    assert mapping.center == "stroke" and mapping.template is not None
    trauma = registry_mapping("trauma-regional")
    assert keys(trauma) == list(TRAUMA_ROW) and trauma.center == "trauma"


async def test_a_stroke_case_as_the_wso_csv_and_xlsx(store: FhirStore) -> None:
    await write(store, complete_stroke())
    mapping = registry_mapping("wso")
    headers = [column.header for column in mapping.columns]
    exported = await export(store, "wso", "csv", month="2026-10")
    assert exported.exported == ("st-wso-1",) and not exported.skipped and not exported.flagged
    assert exported.filename == "wso-indicators-2026-10.csv"
    header, row = read_csv(exported.content)
    assert header == headers
    assert dict(zip(WSO_KEYS, row, strict=True)) == {
        key: as_csv_text(value) for key, value in STROKE_ROW.items()
    }
    exported = await export(store, "wso", "xlsx", month="2026-10")
    assert exported.filename == "wso-indicators-2026-10.xlsx"
    header_cells, row_cells = read_xlsx(exported.content, "WSO指标数据")
    assert header_cells == headers
    assert dict(zip(WSO_KEYS, row_cells, strict=True)) == STROKE_ROW  # typed: ints, datetimes
    assert isinstance(row_cells[WSO_KEYS.index("age")], int)
    assert isinstance(row_cells[WSO_KEYS.index("onset_ts")], datetime)


async def test_a_trauma_case_as_the_regional_csv_and_xlsx(store: FhirStore) -> None:
    await write(store, complete_trauma())
    mapping = registry_mapping("trauma-regional")
    exported = await export(store, "trauma-regional", "csv", case_id="tr-reg-1",
                            params=TRAUMA_PARAMS)  # fmt: skip
    assert exported.exported == ("tr-reg-1",), exported.skipped
    header, row = read_csv(exported.content)
    assert header == [column.header for column in mapping.columns]
    assert dict(zip(TRAUMA_ROW, row, strict=True)) == {
        key: as_csv_text(value) for key, value in TRAUMA_ROW.items()
    }
    exported = await export(store, "trauma-regional", "xlsx", case_id="tr-reg-1",
                            params=TRAUMA_PARAMS)  # fmt: skip
    header_cells, row_cells = read_xlsx(exported.content, "创伤数据")
    assert dict(zip(TRAUMA_ROW, row_cells, strict=True)) == TRAUMA_ROW
    # without the platform's hospital code the case is not complete: left out, with the reason
    unset = await export(store, "trauma-regional", "csv", case_id="tr-reg-1")
    assert unset.exported == () and [p.key for p in unset.skipped["tr-reg-1"]] == [
        "Trauma.HOSPITAL_ID"
    ]
    assert unset.skipped["tr-reg-1"][0].message == "创伤数据:医院编码必填;"
    assert read_csv(unset.content) == [header]


# What the archive tests' lysed stroke (no discharge yet, no arrival by 120) lacks for WSO.
LYSIS_MISSING = [
    "WSO.thrombolysis_drug",  # the eMAR named the drug in text only, no ATC code
    "WSO.discharge_destination",
    "WSO.discharge_date",
    "WSO.discharge_mrs",
]


async def test_an_incomplete_case_is_skipped_with_its_reasons_or_exported_flagged(
    store: FhirStore,
) -> None:
    await write(store, complete_stroke())
    incomplete = stroke_with_lysis()
    await write(store, incomplete)
    skipped = await export(store, "wso", "xlsx", month="2024-06")
    assert skipped.exported == () and list(skipped.skipped) == ["st-lysis-1"]
    assert [p.key for p in skipped.skipped["st-lysis-1"]] == LYSIS_MISSING
    assert skipped.skipped["st-lysis-1"][1].message == "WSO指标:出院去向必填;"
    flagged = await export(store, "wso", "xlsx", month="2024-06", incomplete="flag")
    assert flagged.exported == ("st-lysis-1",) and list(flagged.flagged) == ["st-lysis-1"]
    book = load_workbook(io.BytesIO(flagged.content))
    page = book["WSO指标数据"]
    row = [cell.value for cell in page[2]]
    assert row[WSO_KEYS.index("case_id")] == "st-lysis-1"
    assert row[WSO_KEYS.index("thrombolysis_done")] == "YES"
    assert row[WSO_KEYS.index("onset_ts")] == local(incomplete.nodes["symptom_onset"])
    missing = page.cell(2, WSO_KEYS.index("discharge_date") + 1)
    assert missing.value is None and missing.comment is not None
    assert missing.comment.text == "WSO指标:出院/死亡日期必填;"
    assert page.cell(2, 1).fill.fgColor.rgb.endswith("FFF2CC")  # the flagged row
    report = [list(r) for r in book["校验报告"].iter_rows(values_only=True)]
    assert report[0] == ["行", "列", "问题"]
    assert [line[1] for line in report[1:]] == ["溶栓药物", "出院去向", "出院/死亡日期", "出院mRS"]
    assert {line[0] for line in report[1:]} == {"2 (st-lysis-1)"}


async def test_a_registry_without_a_template_or_format_is_refused(store: FhirStore) -> None:
    await write(store, complete_stroke())
    with pytest.raises(NotATemplate, match="takes records by its API"):
        await export(store, "cpc", "csv", month="2026-10")
    with pytest.raises(NotATemplate, match="imported as csv, xlsx, not json"):
        await export(store, "wso", "json", month="2026-10")


def _template(
    tmp_path: Path, fields: str, template: str = "template: {name: t, title: 测试}\n"
) -> Path:
    path = tmp_path / "tpl-1.yaml"
    path.write_text(
        "registry: tpl\nmapping_version: '1'\nspec: test\nspec_version: '1'\ncenter: stroke\n"
        f"{template}blocks:\n  T: {{label: 表}}\nfields:\n{fields}",
        encoding="utf-8",
    )
    return path


def _error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_registry_mapping(path)
    return caught.value


def test_two_columns_with_one_header_are_refused_with_file_line_key(tmp_path: Path) -> None:
    path = _template(
        tmp_path,
        "  - {target: T.a, label: 既往史, type: string}\n"
        "  - {target: T.b, label: 既往史, type: string}\n",
    )
    error = _error(path)
    assert (error.file, error.line, error.key) == (str(path), 11, "fields[1].label")
    assert "the header '既往史' is also T.a's" in str(error)
    fixed = _template(
        tmp_path,
        "  - {target: T.a, label: 既往史, type: string, header: 既往史:高血压}\n"
        "  - {target: T.b, label: 既往史, type: string, header: 既往史:糖尿病}\n",
    )
    assert [c.header for c in load_registry_mapping(fixed).columns] == [
        "既往史:高血压",
        "既往史:糖尿病",
    ]


def test_a_list_column_and_an_unknown_format_are_refused(tmp_path: Path) -> None:
    path = _template(
        tmp_path,
        "  - {target: T.a, label: 甲, type: string}\n"
        "  - target: T.ecgs\n    label: 心电图\n    type: list\n    each: Observation\n"
        "    items: [{target: TIME, label: 时间, type: datetime}]\n",
    )
    error = _error(path)
    assert (error.line, error.key) == (13, "fields[1].type")
    assert "holds one value: not a list" in str(error)
    path = _template(
        tmp_path,
        "  - {target: T.a, label: 甲, type: string}\n",
        template="template:\n  name: t\n  title: 测试\n  formats: [csv, pdf]\n",
    )
    error = _error(path)
    assert (error.line, error.key) == (9, "template.formats[1]")
    header_by_key = _template(
        tmp_path,
        "  - {target: T.case_id, label: 编号, type: string}\n",
        template="template: {name: t, title: 测试, header: key}\n",
    )
    assert [c.header for c in load_registry_mapping(header_by_key).columns] == ["case_id"]


TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
NAIVE_MIN = datetime(1900, 1, 1)  # noqa: DTZ001 - a template cell's local time
NAIVE_MAX = datetime(2100, 1, 1)  # noqa: DTZ001
CELLS = st.one_of(
    st.none(),
    TEXT,
    st.integers(-(10**9), 10**9),
    # template cells hold naive Beijing local times (the writer refuses an offset)
    st.datetimes(min_value=NAIVE_MIN, max_value=NAIVE_MAX).map(lambda d: d.replace(microsecond=0)),
)


# a row starts with its case id (every template's first column), then any cells
ROWS = st.lists(
    st.tuples(st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True), CELLS, CELLS), max_size=4
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ROWS.map(lambda rows: [list(row) for row in rows]))
def test_any_cells_come_back_from_csv_and_xlsx(rows: list[list[Any]]) -> None:
    sheet = Sheet(title="表", headers=["甲", "乙", "丙"], rows=rows)
    back = read_csv(write_csv(sheet))
    assert back[0] == ["甲", "乙", "丙"]
    expected = [[as_csv_text(cell) for cell in row] for row in rows]
    assert back[1:] == expected
    cells = read_xlsx(write_xlsx(sheet), "表")[1:]
    assert len(cells) == len(rows)
    for got, given_row in zip(cells, rows, strict=True):
        for value, cell in zip(got, given_row, strict=True):
            if isinstance(cell, str):
                clean = ILLEGAL_CHARACTERS_RE.sub("", cell)
                assert value == (clean or None)  # an empty text is an empty cell
            else:
                assert value == cell


def minute(instant: datetime) -> datetime:
    """A 单病种 cell: local time to the minute (the platform's forms take minutes)."""
    return local(instant).replace(second=0)


STK_ROW: dict[str, Any] = {
    "cm_0_2_2_1": "否",  # the onset is known
    "cm_0_2_2_2": minute(STROKE_NODES["symptom_onset"]),
    "cm_0_2_3_1": "否",
    "cm_0_2_3_2": minute(STROKE_NODES["door"]),
    "cm_0_2_4_1": datetime(2026, 10, 8, 9, 40),  # noqa: DTZ001 - the ward visit's start, local
    "cm_0_2_4_2": minute(STROKE_NODES["discharge"]),
    "cm_0_3_3": "救护车",
    "stk_0_4_4": "是",
    "stk_1_1_1_2": None,
    "stk_1_2_1_2_1": minute(STROKE_NODES["nihss_first"]),
    "stk_1_2_1_3_1": 14,
    "stk_1_3_2": "CT",
    "stk_1_3_3_1": None,
    "stk_1_4_1_2": None,
    "stk_1_4_2_2_1": None,
    "stk_2_4_1_1_1": minute(STROKE_NODES["lytic_start"]),
    "stk_2_4_2_1_1": None,
    "stk_2_4_3": "阿替普酶",
    "stk_2_4_5_1": int((STROKE_NODES["lytic_start"] - STROKE_NODES["door"]).total_seconds() // 60),
    "stk_15_1_1_1": minute(STROKE_NODES["groin_puncture"]),
    "stk_15_7_1": "2b",
    "stk_6_2_1_1": minute(STROKE_NODES["dysphagia_screen"]),
    "stk_12_4_2": 2,
}


async def test_a_stroke_case_as_the_single_disease_stk_file(store: FhirStore) -> None:
    await write(store, complete_stroke())
    mapping = registry_mapping("singledisease-stk")
    assert keys(mapping) == list(STK_ROW)
    exported = await export(store, "singledisease-stk", "xlsx", case_id="st-wso-1")
    assert exported.exported == ("st-wso-1",), exported.skipped
    header, row = read_xlsx(exported.content, "STK")
    assert header == list(STK_ROW)  # the field codes are the headers
    assert dict(zip(STK_ROW, row, strict=True)) == STK_ROW
    exported = await export(store, "singledisease-stk", "csv", case_id="st-wso-1")
    _, text_row = read_csv(exported.content)
    assert text_row[1] == STROKE_NODES["symptom_onset"].strftime("%Y-%m-%d %H:%M")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# tests/pathways/registry_cases.py complete_stemi(): its nodes and visits, to the minute.
STEMI_ROW: dict[str, Any] = {
    "cm_0_2_2_1": "否",
    "cm_0_2_2_2": _at("2024-03-05 07:40"),
    "cm_0_2_3_1": "否",
    "cm_0_2_3_2": _at("2024-03-05 08:51"),  # door 08:51:12
    "cm_0_2_4_1": _at("2024-03-05 10:10"),  # the ward visit
    "cm_0_2_4_2": _at("2024-03-12 10:00"),
    "cm_0_3_3": "救护车",
    "stemi_0_4_5": "是",
    "stemi_1_1_2_1": _at("2024-03-05 08:24"),  # ecg_diagnosis 08:24:45
    "stemi_1_2_4_1": None,
    "stemi_1_3_1_2_1": None,
    "stemi_3_1_5_1": None,
    "stemi_3_1_6_1": None,
    "stemi_3_1_7_1": None,  # primary PCI: no lysis
    "stemi_3_2_2_2_1": _at("2024-03-05 09:31"),
    "stemi_3_2_2_4_1": None,
    "stemi_3_3_3_1": None,
}


async def test_a_stemi_case_as_the_single_disease_stemi_file(store: FhirStore) -> None:
    await write(store, complete_stemi())
    mapping = registry_mapping("singledisease-stemi")
    assert keys(mapping) == list(STEMI_ROW)
    exported = await export(store, "singledisease-stemi", "xlsx", month="2024-03")
    assert exported.exported == ("cp-reg-1",), exported.skipped
    header, row = read_xlsx(exported.content, "STEMI")
    assert header == list(STEMI_ROW)
    assert dict(zip(STEMI_ROW, row, strict=True)) == STEMI_ROW
