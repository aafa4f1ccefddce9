"""The LIS ORU^R01 mapping: Chinese scenario in both charsets, ids that converge, any content."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.hl7v2 import parse_for_mapping
from engine.cli import main
from engine.errors import MappingError
from engine.mapping import load_mapping, make_id

ROOT = Path(__file__).resolve().parents[2]
ORU = load_mapping(ROOT / "mappings" / "hl7v2" / "oru_lab.yaml")
ADT = load_mapping(ROOT / "mappings" / "hl7v2" / "adt.yaml")
SAMPLES = ROOT / "mappings" / "tests" / "samples"


def _resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_the_gb18030_and_utf8_messages_map_to_the_same_bundle() -> None:
    utf8 = (SAMPLES / "lis-oru-troponin-utf8.hl7").read_bytes()
    gb = (SAMPLES / "lis-oru-troponin-gb18030.hl7").read_bytes()
    assert utf8 != gb and "张".encode("gb18030") in gb
    assert ORU.apply(parse_for_mapping(gb, "utf-8")) == ORU.apply(parse_for_mapping(utf8, "utf-8"))


def test_results_reference_the_patient_and_visit_the_adt_feed_writes() -> None:
    adt_sample = (SAMPLES / "adt-a04.hl7").read_bytes()
    adt = ADT.apply(parse_for_mapping(adt_sample, "utf-8"))
    oru = ORU.apply(
        parse_for_mapping((SAMPLES / "lis-oru-troponin-utf8.hl7").read_bytes(), "utf-8")
    )
    patient = f"Patient/{_resources(adt, 'Patient')[0]['id']}"
    encounter = f"Encounter/{_resources(adt, 'Encounter')[0]['id']}"
    for observation in _resources(oru, "Observation"):
        assert observation["subject"]["reference"] == patient
        assert observation["encounter"]["reference"] == encounter


def _segments(raw: bytes) -> list[list[str]]:
    return [s.split("|") for s in raw.decode("utf-8").split("\r") if s]


def test_every_result_points_at_its_own_order_report_and_specimen() -> None:
    raw = (SAMPLES / "lis-oru-troponin-utf8.hl7").read_bytes()
    bundle = ORU.apply(parse_for_mapping(raw, "utf-8"))
    # Independently: each OBX belongs to the OBR above it.
    order_of: dict[str, str] = {}
    order = ""
    for fields in _segments(raw):
        if fields[0] == "OBR":
            order = fields[3]
        elif fields[0] == "OBX":
            order_of[fields[3].split("^")[0]] = order
    reports = {r["identifier"][0]["value"]: r for r in _resources(bundle, "DiagnosticReport")}
    specimens = {s["accessionIdentifier"]["value"]: s for s in _resources(bundle, "Specimen")}
    for observation in _resources(bundle, "Observation"):
        local = observation["code"]["coding"][-1]["code"]
        report, specimen = reports[order_of[local]], specimens[order_of[local]]
        assert {"reference": f"Observation/{observation['id']}"} in report["result"]
        assert observation["specimen"]["reference"] == f"Specimen/{specimen['id']}"
    collected = {s["collection"]["collectedDateTime"] for s in specimens.values()}
    issued = {r["issued"] for r in reports.values()}
    assert collected == {"2026-11-25T08:10:00+08:00", "2026-11-25T08:15:00+08:00"}  # OBR-7
    assert issued == {"2026-11-25T08:35:00+08:00", "2026-11-25T08:40:00+08:00"}  # OBR-22
    assert not collected & issued


def test_a_resend_gives_the_same_ids_and_a_correction_replaces_the_result() -> None:
    raw = (SAMPLES / "lis-oru-troponin-utf8.hl7").read_bytes()
    first = ORU.apply(parse_for_mapping(raw, "utf-8"))
    resent = raw.replace(b"LIS20261125001", b"LIS20261125099")  # new control id
    corrected = resent.replace(b"||52.3|", b"||48.0|").replace(
        b"|H|||F|||2026112508200", b"|H|||C|||2026112508200"
    )
    again = ORU.apply(parse_for_mapping(corrected, "utf-8"))
    assert [e["request"]["url"] for e in first["entry"]] == [
        e["request"]["url"] for e in again["entry"]
    ]
    troponin = _resources(again, "Observation")[0]
    assert troponin["status"] == "corrected" and troponin["valueQuantity"]["value"] == 48.0
    assert troponin["id"] == make_id("LIS", "result", "LAB0001", "HSTNI", None)


def test_the_lis_channel_file_validates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["channels", "validate"]) == 0
    assert "ok: lis-oru" in capsys.readouterr().out


HEADER = (
    "MSH|^~\\&|LIS|H|GC|H|20261125084100+0800||ORU^R01|X|P|2.5.1\r"
    "PID|1||10086^^^H^MR||张^三\r"
    "OBR|1|R1|L1|HSTNI^hs-cTnI^L|||20261125081000+0800||||||||SER|||||||20261125083500+0800||LAB|F\r"
)
_CONTENT = st.lists(
    st.sampled_from([*"09.<>=-+eE ^&~\\|", "阴性", "↑", "ng/L", "\\F\\", "\\X41\\", "NM", "SN"]),
    max_size=12,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(
    value_type=st.sampled_from(["NM", "SN", "ST", "CWE", "CE", "TX", "", "XX"]),
    value=_CONTENT,
    units=_CONTENT,
    range_=_CONTENT,
    flag=_CONTENT,
    status=st.sampled_from(["F", "C", "P", "D", "", "Q"]),
    times=st.sampled_from(["", "2026", "202611250820", "20261125082000.123+0800", "2026-11"]),
)
def test_any_result_content_maps_or_fails_naming_the_field(
    value_type: str, value: str, units: str, range_: str, flag: str, status: str, times: str
) -> None:
    obx = (
        f"OBX|1|{value_type}|HSTNI^hs-cTnI^L||{value}|{units}|{range_}|{flag}|||{status}|||{times}"
    )
    raw = (HEADER + obx + "\r").encode("utf-8")
    try:
        document = parse_for_mapping(raw, "utf-8")
    except Exception:  # a field separator in the content can make a bad segment: not our concern
        return
    try:
        bundle = ORU.apply(document)
    except MappingError as exc:
        assert exc.location and exc.location.split(" ")[0].startswith("OBX-"), str(exc)
        assert exc.rule.startswith("resources.observations"), str(exc)
        return
    assert bundle is not None
    observations = _resources(bundle, "Observation")
    assert len(observations) == 1
    quantity = observations[0].get("valueQuantity")
    if quantity is not None:
        assert isinstance(quantity["value"], int | float)


def test_a_v25_specimen_segment_gives_the_collection_time_and_its_obx_is_no_result() -> None:
    raw = (
        HEADER.replace("|L1|", "|L9|")
        + "OBX|1|NM|HSTNI^hs-cTnI^L||12|ng/L|0-26|N|||F\r"
        + "SPM|1|S-77||SER^Serum^HL70487|||||||||||||20261125080500+0800|20261125081500+0800\r"
        + "OBX|2|CWE|SPECQ^Specimen quality^L||HEM^hemolysed^L||||||F\r"
    ).encode("utf-8")
    bundle = ORU.apply(parse_for_mapping(raw, "utf-8"))
    (specimen,) = _resources(bundle, "Specimen")
    assert specimen["accessionIdentifier"]["value"] == "S-77"  # SPM-2
    assert specimen["collection"]["collectedDateTime"] == "2026-11-25T08:05:00+08:00"  # SPM-17
    assert specimen["receivedTime"] == "2026-11-25T08:15:00+08:00"  # SPM-18
    assert specimen["type"]["coding"][0]["code"] == "119364003"
    (observation,) = _resources(bundle, "Observation")  # not the specimen's quality OBX
    assert observation["specimen"]["reference"] == f"Specimen/{specimen['id']}"
    (report,) = _resources(bundle, "DiagnosticReport")
    assert report["result"] == [{"reference": f"Observation/{observation['id']}"}]
