"""ECG, imaging (RIS/PACS) and bedside monitor ORU^R01 mappings: the times the pathways need stay
apart, every ORU goes to exactly one of the four ORU mappings, and any content maps to valid FHIR
or fails naming the field."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from adapters.hl7v2 import parse_for_mapping
from engine.errors import GreenchannelError, MappingError
from engine.mapping import Mapping, load_mapping
from engine.mapping.catalog import choose_mapping, mapping_files
from engine.plugins import load_plugins
from fhir_store._validation import structure_issues

ROOT = Path(__file__).resolve().parents[2]
HL7V2 = ROOT / "mappings" / "hl7v2"
SAMPLES = ROOT / "mappings" / "tests" / "samples"
ECG = load_mapping(HL7V2 / "oru_ecg.yaml")
IMAGING = load_mapping(HL7V2 / "oru_imaging.yaml")
MONITOR = load_mapping(HL7V2 / "oru_monitor.yaml")
ADT = load_mapping(HL7V2 / "adt.yaml")


def _map(mapping: Any, raw: bytes) -> dict[str, Any]:
    bundle = mapping.apply(parse_for_mapping(raw, "utf-8"))
    assert isinstance(bundle, dict)
    return bundle


def _resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def _fields(raw: bytes, segment: str) -> list[list[str]]:
    text = raw.decode("utf-8")
    return [s.split("|") for s in text.split("\r") if s.startswith(segment + "|")]


def _problems(bundle: dict[str, Any]) -> list[str]:
    return [
        f"{entry['resource']['resourceType']} {path}: {reason}"
        for entry in bundle.get("entry", [])
        for path, reason in structure_issues(entry["resource"])
    ]


def _table(name: str) -> dict[str, dict[str, str]]:
    """A code table's rows by code, read with the csv module (not the engine's reader)."""
    with (HL7V2 / "tables" / f"{name}.csv").open(encoding="utf-8") as file:
        rows = csv.DictReader(line for line in file if not line.startswith("#"))
        return {row["code"]: row for row in rows}


def _hl7_time(value: str) -> str:
    """`20261125080300+0800` → `2026-11-25T08:03:00+08:00`, written out independently."""
    v = value
    return f"{v[:4]}-{v[4:6]}-{v[6:8]}T{v[8:10]}:{v[10:12]}:{v[12:14]}{v[14:17]}:{v[17:19]}"


def _hl7_mappings() -> list[Mapping]:
    """The HL7 v2 mappings: the tests below parse every input as HL7 v2, and the engine offers a
    message only to the mappings of its input type."""
    every = (
        load_mapping(file)
        for file in mapping_files(ROOT / "mappings", load_plugins().mapping_kinds)
    )
    return [m for m in every if m.input in (None, "x-application/hl7-v2+er7")]


def test_every_oru_sample_is_chosen_by_exactly_its_own_mapping() -> None:
    mappings = _hl7_mappings()
    expected = {
        "ecg-oru-stemi-utf8.hl7": "oru_ecg.yaml",
        "ecg-oru-stemi-gb18030.hl7": "oru_ecg.yaml",
        "ris-oru-stroke-ct-utf8.hl7": "oru_imaging.yaml",
        "monitor-pcd01-utf8.hl7": "oru_monitor.yaml",
        "lis-oru-troponin-utf8.hl7": "oru_lab.yaml",
        "lis-oru-troponin-gb18030.hl7": "oru_lab.yaml",
    }
    for sample, mapping_name in expected.items():
        chosen, _ = choose_mapping(
            (SAMPLES / sample).read_bytes(),
            mappings,
            lambda _t, raw: parse_for_mapping(raw, "utf-8"),
        )
        assert Path(chosen.file).name == mapping_name, sample


def test_ecg_gb18030_and_utf8_give_the_same_bundle() -> None:
    utf8 = (SAMPLES / "ecg-oru-stemi-utf8.hl7").read_bytes()
    gb = (SAMPLES / "ecg-oru-stemi-gb18030.hl7").read_bytes()
    assert "张".encode("gb18030") in gb and "张".encode() not in gb
    assert _map(ECG, gb) == _map(ECG, utf8)


def test_ecg_acquisition_and_report_times_come_from_obr_7_and_obr_22() -> None:
    raw = (SAMPLES / "ecg-oru-stemi-utf8.hl7").read_bytes()
    (obr,) = _fields(raw, "OBR")
    bundle = _map(ECG, raw)
    (observation,) = _resources(bundle, "Observation")
    (report,) = _resources(bundle, "DiagnosticReport")
    acquired, signed = _hl7_time(obr[7]), _hl7_time(obr[22])
    assert acquired != signed
    assert observation["effectiveDateTime"] == report["effectiveDateTime"] == acquired
    assert observation["issued"] == report["issued"] == signed
    texts = [f[5] for f in _fields(raw, "OBX") if f[2] == "TX"]
    assert report["conclusion"] == observation["valueString"] == "；".join(texts)


def test_ecg_conclusion_code_becomes_the_snomed_coding_of_its_table() -> None:
    raw = (SAMPLES / "ecg-oru-stemi-utf8.hl7").read_bytes()
    table = _table("ecg_conclusion")
    (code,) = [f[5].split("^")[0] for f in _fields(raw, "OBX") if f[2] == "CWE"]
    (observation,) = _resources(_map(ECG, raw), "Observation")
    (interpretation,) = observation["interpretation"]
    assert interpretation["coding"][0]["code"] == table[code]["target"]
    assert interpretation["coding"][0]["system"] == table[code]["system"]
    assert interpretation["coding"][1]["code"] == code  # the local code is kept


def test_results_reference_the_patient_and_visit_the_adt_feed_writes() -> None:
    adt = _map(ADT, (SAMPLES / "adt-a04.hl7").read_bytes())
    patient = f"Patient/{_resources(adt, 'Patient')[0]['id']}"
    encounter = f"Encounter/{_resources(adt, 'Encounter')[0]['id']}"
    for mapping, sample in [(ECG, "ecg-oru-stemi-utf8.hl7"), (MONITOR, "monitor-pcd01-utf8.hl7")]:
        bundle = _map(mapping, (SAMPLES / sample).read_bytes())
        for observation in _resources(bundle, "Observation"):
            assert observation["subject"]["reference"] == patient
            assert observation["encounter"]["reference"] == encounter


def test_imaging_study_start_is_obr_7_and_the_report_time_obr_22() -> None:
    raw = (SAMPLES / "ris-oru-stroke-ct-utf8.hl7").read_bytes()
    (obr,) = _fields(raw, "OBR")
    bundle = _map(IMAGING, raw)
    (study,) = _resources(bundle, "ImagingStudy")
    (report,) = _resources(bundle, "DiagnosticReport")
    assert study["started"] == _hl7_time(obr[7]) != report["issued"] == _hl7_time(obr[22])
    uid = next(f[5] for f in _fields(raw, "OBX") if f[3].startswith("113014^"))
    assert {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"} in study["identifier"]
    assert report["imagingStudy"] == [{"reference": f"ImagingStudy/{study['id']}"}]


def test_a_study_uid_in_zds_gives_the_same_imaging_study() -> None:
    raw = (SAMPLES / "ris-oru-stroke-ct-utf8.hl7").read_bytes()
    uid = next(f[5] for f in _fields(raw, "OBX") if f[3].startswith("113014^"))
    lines = raw.decode("utf-8").split("\r")
    without_obx = [line for line in lines if not line.startswith("OBX|1|HD|")]
    obr_at = next(i for i, line in enumerate(without_obx) if line.startswith("OBR|"))
    without_obx.insert(obr_at + 1, f"ZDS|{uid}^RIS^Application^DICOM")
    zds = _map(IMAGING, "\r".join(without_obx).encode("utf-8"))
    obx = _map(IMAGING, raw)
    assert _resources(zds, "ImagingStudy") == _resources(obx, "ImagingStudy")


def test_an_imaging_report_without_a_study_uid_has_no_imaging_study() -> None:
    raw = (SAMPLES / "ris-oru-stroke-ct-utf8.hl7").read_bytes()
    lines = [line for line in raw.decode("utf-8").split("\r") if not line.startswith("OBX|1|HD|")]
    bundle = _map(IMAGING, "\r".join(lines).encode("utf-8"))
    assert _resources(bundle, "ImagingStudy") == []
    (report,) = _resources(bundle, "DiagnosticReport")
    assert "imagingStudy" not in report and report["conclusion"]


def test_every_numeric_monitor_obx_is_one_vital_sign_with_its_loinc_and_ucum() -> None:
    raw = (SAMPLES / "monitor-pcd01-utf8.hl7").read_bytes()
    numeric = [f for f in _fields(raw, "OBX") if f[2] == "NM" and f[5]]
    loinc = {code: row["target"] for code, row in _table("mdc_loinc").items()}
    observations = _resources(_map(MONITOR, raw), "Observation")
    assert len(observations) == len(numeric)
    for fields, observation in zip(numeric, observations, strict=True):
        mdc = fields[3].split("^")[0]
        codes = {(c["system"], c["code"]) for c in observation["code"]["coding"]}
        assert ("urn:iso:std:iso:11073:10101", mdc) in codes
        assert (mdc in loinc) == (("http://loinc.org", loinc.get(mdc)) in codes)
        assert observation["valueQuantity"]["value"] == float(fields[5])
        assert observation["effectiveDateTime"] == _hl7_time(fields[14])


def test_a_monitor_message_resent_gives_the_same_ids_and_a_new_reading_new_ones() -> None:
    raw = (SAMPLES / "monitor-pcd01-utf8.hl7").read_bytes()
    first = _map(MONITOR, raw)
    resent = _map(MONITOR, raw.replace(b"MON20261125001", b"MON20261125002"))
    later = _map(MONITOR, raw.replace(b"|20261125083000+0800|", b"|20261125083100+0800|"))
    urls = [[e["request"]["url"] for e in b["entry"]] for b in (first, resent, later)]
    assert urls[0] == urls[1]
    changed = set(urls[2]) - set(urls[0])
    # the readings taken at 08:30 are new Observations; NIBP (08:28) and the Device are the same
    assert len(changed) == sum(
        1 for f in _fields(raw, "OBX") if f[2] == "NM" and f[14] == "20261125083000+0800"
    )


HEADER = (
    "MSH|^~\\&|SYS|H|GC|H|20261125084100+0800||ORU^R01|X|P|2.6|||||||||IHE_PCD_001\r"
    "PID|1||10086^^^H^MR||张^三\rPV1|1|E||||||||||||||||||V1\r"
)
_TEXT = st.lists(
    st.sampled_from([*"09.<>=-+ ^&~\\", "阴性", "STEMI", "急性ST段抬高", "\\F\\", "\\X41\\", "CT"]),
    max_size=10,
).map("".join)
_TIME = st.sampled_from(["", "2026", "20261125", "202611250820", "20261125082000+0800", "2026-11"])


def _check(mapping: Any, raw: bytes, rule: str) -> None:
    try:
        document = parse_for_mapping(raw, "utf-8")
    except GreenchannelError:
        event("unreadable message")
        return  # a separator in the content made an unreadable segment: the parser's concern
    try:
        bundle = mapping.apply(document)
    except MappingError as exc:
        event("refused naming the field")
        assert exc.location and exc.location.split(" ")[0][:3] in {"OBR", "OBX", "ZDS"}, str(exc)
        assert exc.rule.startswith(rule), str(exc)
        return
    event("mapped")
    assert bundle is not None and _problems(bundle) == []


@settings(max_examples=60, deadline=None)
@example(times=("", ""), status="F", kind="ED", value="^ ^0", unit="")  # once " /0"
@example(times=("", ""), status="F", kind="RP", value="u^^ ^pdf", unit="")
@given(
    times=st.tuples(_TIME, _TIME), status=st.sampled_from(["F", "P", "C", "", "Z"]),
    kind=st.sampled_from(["TX", "NM", "CWE", "ED", "RP", "SN", ""]), value=_TEXT, unit=_TEXT,
)  # fmt: skip
def test_any_ecg_content_maps_to_valid_fhir_or_names_the_field(
    times: tuple[str, str], status: str, kind: str, value: str, unit: str
) -> None:
    acquired, reported = times
    raw = HEADER.replace("IHE_PCD_001", "") + (
        f"OBR|1|R1|E1|ECG12^心电图^L|||{acquired}|||||||||||||||{reported}||EC|{status}\r"
        f"OBX|1|{kind}|X^x^L||{value}|{unit}|||||{status}\rNTE|1||{value}\r"
    )
    _check(ECG, raw.encode("utf-8"), "resources.")


@settings(max_examples=60, deadline=None)
@given(
    times=st.tuples(_TIME, _TIME), section=st.sampled_from(["CT", "MR", "US", "RAD"]),
    uid=_TEXT, text=_TEXT, kind=st.sampled_from(["TX", "ST", "CWE", "HD", ""]),
)  # fmt: skip
def test_any_imaging_content_maps_to_valid_fhir_or_names_the_field(
    times: tuple[str, str], section: str, uid: str, text: str, kind: str
) -> None:
    started, reported = times
    raw = HEADER.replace("IHE_PCD_001", "") + (
        f"OBR|1|R1|C1|CTHEAD^头颅CT^L|||{started}|||||||||||||||{reported}||{section}|F\r"
        f"OBX|1|HD|113014^Study^DCM||{uid}||||||F\r"
        f"OBX|2|{kind}|IMP^诊断意见^L||{text}||||||F\r"
    )
    _check(IMAGING, raw.encode("utf-8"), "resources.")


@settings(max_examples=60, deadline=None)
@given(
    code=st.sampled_from(["150456", "147842", "150021", "999999", "", "^^MDC"]),
    value=_TEXT, unit=st.sampled_from(["262688", "266016", "", "mmHg", "xx"]), time=_TIME,
    device=_TEXT, kind=st.sampled_from(["NM", "SN", "ST", ""]),
)  # fmt: skip
def test_any_monitor_content_maps_to_valid_fhir_or_names_the_field(
    code: str, value: str, unit: str, time: str, device: str, kind: str
) -> None:
    raw = HEADER + (
        f"OBR|1|M1|M1|182777000^monitoring^SCT|||{time}\r"
        f"OBX|1|{kind}|{code}^X^MDC|1.0.1.1|{value}|{unit}^U^MDC|||||R|||{time}||||{device}\r"
    )
    _check(MONITOR, raw.encode("utf-8"), "resources.")


@pytest.mark.parametrize("mapping", [ECG, IMAGING, MONITOR], ids=["ecg", "imaging", "monitor"])
def test_an_lis_result_is_not_taken_by_the_other_oru_mappings(mapping: Any) -> None:
    raw = (SAMPLES / "lis-oru-troponin-utf8.hl7").read_bytes()
    assert not mapping.matches(parse_for_mapping(raw, "utf-8"))


@pytest.mark.parametrize(
    ("sender", "section", "expected"),
    [("ECG", "", "oru_ecg.yaml"), ("ECG", "EC", "oru_ecg.yaml"), ("MUSE", "EC", "oru_ecg.yaml"),
     ("MUSE", "", "oru_lab.yaml"), ("PACS", "", "oru_imaging.yaml"),
     ("XRIS", "MR", "oru_imaging.yaml"), ("LIS", "EC", "oru_lab.yaml")],
)  # fmt: skip
def test_the_sender_table_wins_over_obr_24(sender: str, section: str, expected: str) -> None:
    raw = (SAMPLES / "ecg-oru-stemi-utf8.hl7").read_bytes()
    raw = raw.replace(b"MSH|^~\\&|ECG|", f"MSH|^~\\&|{sender}|".encode()).replace(
        b"||EC|F|", f"||{section}|F|".encode()
    )
    mappings = _hl7_mappings()
    chosen, _ = choose_mapping(raw, mappings, lambda _t, raw: parse_for_mapping(raw, "utf-8"))
    assert Path(chosen.file).name == expected
