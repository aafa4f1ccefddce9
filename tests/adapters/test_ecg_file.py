"""The ECG parsers (adapters/ecg_file.py) and the ECG mappings (mappings/devices/): real
recordings from ../shared/data/ecg in every way a channel receives them — a file, a WFDB ZIP,
an ORU^R01 with the file base64 in an ED OBX — and what the bundle says; broken and hostile
input gives an InputError naming the problem, whatever the bytes (hypothesis)."""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.ecg_file import parse_ecg_file, parse_ecg_oru
from devices.ecg import ImplausibleEcgError, UnreadableEcgError, UnsafeXmlError
from engine.errors import InputError, ParseError
from engine.mapping import load_mapping
from engine.mapping.functions import make_id

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings" / "devices"
SNOMED_STEMI = {"system": "http://snomed.info/sct", "code": "401303003"}


@pytest.fixture(scope="module")
def ecg_dir() -> Path:
    path = ROOT.parent / "shared" / "data" / "ecg"
    if not path.is_dir():
        pytest.fail(f"shared ECG data not found at {path}")
    return path


@pytest.fixture(scope="module")
def acute_mi(ecg_dir: Path) -> bytes:
    """Philips HeartStart MRx, device reading '>>> Acute MI <<<' (inferior)."""
    return (ecg_dir / "sierra" / "129DYPRG.XML").read_bytes()


@pytest.fixture(scope="module")
def lvh(ecg_dir: Path) -> bytes:
    """Philips 'ST elevation, probably due to LVH': a STEMI look-alike."""
    return (ecg_dir / "sierra" / "3191723_ZZDEMOPTONLY_1-04_orig.xml").read_bytes()


def wfdb_zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return out.getvalue()


def ptbxl_files(ecg_dir: Path) -> dict[str, bytes]:
    record = ecg_dir / "ptbxl" / "records100" / "00000" / "00001_lr"
    return {
        "00001_lr.hea": record.with_suffix(".hea").read_bytes(),
        "00001_lr.dat": record.with_suffix(".dat").read_bytes(),
    }


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def by_code(observations: list[dict[str, Any]], code: str) -> dict[str, Any]:
    (found,) = [o for o in observations if o["code"]["coding"][0]["code"] == code]
    return found


def codings(concepts: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"system": c["system"], "code": c["code"]} for x in concepts for c in x["coding"]]


# --- files ----------------------------------------------------------------------------------------


def test_philips_acute_mi_becomes_a_stemi_tracing_reading_and_report(acute_mi: bytes) -> None:
    bundle = load_mapping(MAPPINGS / "ecg.yaml").apply(parse_ecg_file(acute_mi, "utf-8"))
    observations = resources(bundle, "Observation")
    tracing = by_code(observations, "11524-6")
    (report,) = resources(bundle, "DiagnosticReport")
    leads = [c["code"]["coding"][0]["display"] for c in tracing["component"]]
    names = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
    assert leads == [f"MDC_ECG_LEAD_{n}" for n in names]
    sampled = tracing["component"][1]["valueSampledData"]
    assert sampled["period"] == 2 and sampled["factor"] == 1 and sampled["dimensions"] == 1
    assert sampled["origin"] == {"value": 0, "unit": "µV", "system": "http://unitsofmeasure.org",
                                 "code": "uV"}  # fmt: skip
    values = [int(v) for v in sampled["data"].split()]
    assert len(values) == 5000  # 10 s at 500 Hz, the calibration second dropped
    assert 300 < max(values) - min(values) < 5000  # lead II of a real ECG, in µV
    assert SNOMED_STEMI in codings(tracing["interpretation"])  # what activates chest pain
    assert SNOMED_STEMI in codings(report["conclusionCode"])
    assert report["status"] == "preliminary" and "issued" not in report
    assert "inferior" in report["conclusion"] and "II, III, aVF" in report["conclusion"]
    reading = by_code(observations, "machine-reading")
    components = {c["code"]["coding"][0]["code"]: c for c in reading["component"]}
    territory = components["territory"]["valueCodeableConcept"]["coding"][0]["code"]
    assert territory == "inferior"
    assert components["leads-elevated"]["valueString"] == "II, III, aVF"
    assert components["st-j-III"]["valueQuantity"]["value"] > 0.1
    assert report["result"] == [{"reference": f"Observation/{tracing['id']}"},
                                {"reference": f"Observation/{reading['id']}"}]  # fmt: skip
    # The effective time is the device's acquisition time, with its offset.
    assert tracing["effectiveDateTime"].endswith("+08:00")


def test_the_patient_is_referenced_by_the_id_the_his_registration_gets(acute_mi: bytes) -> None:
    bundle = load_mapping(MAPPINGS / "ecg.yaml").apply(parse_ecg_file(acute_mi, "utf-8"))
    tracing = by_code(resources(bundle, "Observation"), "11524-6")
    patient_id = tracing["subject"]["identifier"]["value"]
    # adt.yaml: id(authority, PID-3.1) with the HIS authority of ecg_patient_authority.csv
    assert tracing["subject"]["reference"] == f"Patient/{make_id('COUNTY-HOSP', patient_id)}"
    assert resources(bundle, "Patient") == []  # the HIS owns the Patient


def test_a_resent_recording_gives_the_same_ids(acute_mi: bytes) -> None:
    mapping = load_mapping(MAPPINGS / "ecg.yaml")
    first = mapping.apply(parse_ecg_file(acute_mi, "utf-8"))
    again = mapping.apply(parse_ecg_file(acute_mi, "utf-8"))
    assert [e["request"]["url"] for e in first["entry"]] == [
        e["request"]["url"] for e in again["entry"]
    ]
    assert all(e["request"]["method"] == "PUT" for e in first["entry"])


def test_the_lvh_st_elevation_tracing_is_no_stemi(lvh: bytes) -> None:
    bundle = load_mapping(MAPPINGS / "ecg.yaml").apply(parse_ecg_file(lvh, "utf-8"))
    tracing = by_code(resources(bundle, "Observation"), "11524-6")
    (report,) = resources(bundle, "DiagnosticReport")
    assert "interpretation" not in tracing
    assert SNOMED_STEMI not in codings(report["conclusionCode"])
    assert {"system": "https://greenchannel.example.org/fhir/CodeSystem/ecg-reading",
            "code": "no-stemi"} in codings(report["conclusionCode"])  # fmt: skip
    assert {"system": "http://snomed.info/sct", "code": "164873001"} in codings(
        report["conclusionCode"]
    )  # LVH


def test_a_wfdb_record_travels_as_a_zip(ecg_dir: Path) -> None:
    document = parse_ecg_file(wfdb_zip(ptbxl_files(ecg_dir)), "utf-8")
    assert document.get("$.format") == "wfdb-zip"
    assert len(document.each("$.leads")) == 12
    assert document.get("$.period_ms") == "10.0"  # 100 Hz


def test_a_truncated_wfdb_signal_file_is_named(ecg_dir: Path) -> None:
    files = ptbxl_files(ecg_dir)
    files["00001_lr.dat"] = files["00001_lr.dat"][:4800]  # whole samples: 200 of 1000
    with pytest.raises(UnreadableEcgError, match="truncated") as caught:
        parse_ecg_file(wfdb_zip(files), "utf-8")
    assert "/tmp" not in str(caught.value)  # the sender's view, not our temporary folder


def test_a_wfdb_header_without_its_signal_file(ecg_dir: Path) -> None:
    files = ptbxl_files(ecg_dir)
    with pytest.raises(UnreadableEcgError, match=r"signal file .* is missing"):
        parse_ecg_file(wfdb_zip({"00001_lr.hea": files["00001_lr.hea"]}), "utf-8")
    with pytest.raises(UnreadableEcgError, match="send the .hea and .dat files together"):
        parse_ecg_file(files["00001_lr.hea"], "utf-8")


def test_zip_members_with_odd_names_or_two_records_are_refused(ecg_dir: Path) -> None:
    files = ptbxl_files(ecg_dir)
    with pytest.raises(UnreadableEcgError, match="not a plain WFDB file name"):
        parse_ecg_file(wfdb_zip({"bad name;x.hea": files["00001_lr.hea"]}), "utf-8")
    # folders in member names are dropped: nothing is written outside the private folder
    flattened = {
        "../../00001_lr.hea": files["00001_lr.hea"],
        "a/00001_lr.dat": files["00001_lr.dat"],
    }
    assert parse_ecg_file(wfdb_zip(flattened), "utf-8").get("$.format") == "wfdb-zip"
    with pytest.raises(UnreadableEcgError, match="holds 2 WFDB headers"):
        parse_ecg_file(wfdb_zip({**files, "other.hea": files["00001_lr.hea"]}), "utf-8")


def test_a_zip_bomb_is_refused_before_it_is_unpacked() -> None:
    bomb = wfdb_zip({"big.dat": b"\0" * (65 * 1024 * 1024)})
    assert len(bomb) < 1024 * 1024
    with pytest.raises(UnreadableEcgError, match="unpacks to more than"):
        parse_ecg_file(bomb, "utf-8")


def test_a_wfdb_record_with_three_leads(ecg_dir: Path) -> None:
    files = ptbxl_files(ecg_dir)
    adc = np.frombuffer(files["00001_lr.dat"], dtype="<i2").reshape(-1, 12)[:, :3]
    header = "three 3 100 1000\n" + "".join(
        f"three.dat 16 1000.0(0)/mV 16 0 0 0 0 {lead}\n" for lead in ("I", "II", "V1")
    )
    archive = wfdb_zip({"three.hea": header.encode(), "three.dat": adc.astype("<i2").tobytes()})
    with pytest.raises(ImplausibleEcgError, match="missing"):
        parse_ecg_file(archive, "utf-8")


@pytest.mark.parametrize(
    ("samples", "problem"),
    [("nan", "NaN"), ("flat", "flat line")],
)
def test_nan_and_flat_recordings_are_refused(ecg_dir: Path, samples: str, problem: str) -> None:
    files = ptbxl_files(ecg_dir)
    adc = np.frombuffer(files["00001_lr.dat"], dtype="<i2").reshape(-1, 12).copy()
    if samples == "nan":
        adc[100:140, 9] = -32768  # WFDB's "no sample" value: read as NaN
    else:
        adc[:, 8] = 250
    files["00001_lr.dat"] = adc.tobytes()
    with pytest.raises(ImplausibleEcgError, match=problem):
        parse_ecg_file(wfdb_zip(files), "utf-8")


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE restingecgdata [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<restingecgdata><patient>&secret;</patient></restingecgdata>"""
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<AnnotatedECG xmlns="urn:hl7-org:v3"><text>&lol3;</text></AnnotatedECG>"""


@pytest.mark.parametrize("document", [XXE, BILLION_LAUGHS], ids=["xxe", "billion-laughs"])
def test_xml_with_entities_is_refused(document: bytes) -> None:
    with pytest.raises(UnsafeXmlError) as caught:
        parse_ecg_file(document, "utf-8")
    assert "root:" not in str(caught.value)


def test_something_that_is_no_ecg_says_which_formats_are_read() -> None:
    with pytest.raises(UnreadableEcgError, match="Philips Sierra, HL7 aECG or GE MUSE XML"):
        parse_ecg_file(b"%PDF-1.4 a report, not a tracing", "utf-8")


# --- HL7 ORU^R01 with the recording in an ED OBX ---------------------------------------------


def oru(*obx: str) -> bytes:
    segments = [
        "MSH|^~\\&|ECGNET|COUNTY-HOSP|GREENCHANNEL|ED|20261125080500+0800||ORU^R01^ORU_R01|"
        "ECG0001|P|2.5.1|||||CHN|UNICODE UTF-8",
        "PID|1||10086^^^COUNTY-HOSP^MR||张^三||19580312|M",
        "PV1|1|E|||||||||||||||||V0001",
        "OBR|1|REQ-1|ECG-77|11524-6^心电图^LN|||20261125080300+0800",
        *obx,
    ]
    return ("\r".join(segments) + "\r").encode()


def test_an_oru_carrying_the_tracing_is_read_analysed_and_linked_to_pid_3(acute_mi: bytes) -> None:
    pdf = base64.b64encode(b"%PDF-1.4 report").decode()
    xml = base64.b64encode(acute_mi).decode()
    message = oru(
        f"OBX|1|ED|18750-0^ECG report^LN||^application^pdf^Base64^{pdf}||||||F",
        f"OBX|2|ED|11524-6^ECG^LN||^application^xml^Base64^{xml}||||||F",
    )
    document = parse_ecg_oru(message, "utf-8")
    assert document.get("PID-3.1") == "10086" and document.get("$.reading.stemi") == "true"
    bundle = load_mapping(MAPPINGS / "ecg_oru.yaml").apply(document)
    tracing = by_code(resources(bundle, "Observation"), "11524-6")
    (report,) = resources(bundle, "DiagnosticReport")
    assert tracing["subject"]["reference"] == f"Patient/{make_id('COUNTY-HOSP', '10086')}"
    assert tracing["encounter"]["reference"].startswith("Encounter/")
    assert len(tracing["component"]) == 12
    assert SNOMED_STEMI in codings(report["conclusionCode"])
    assert report["identifier"][0]["value"] == "ECG-77"


def test_an_oru_without_a_recording_is_refused_naming_obx_5() -> None:
    with pytest.raises(ParseError, match="no OBX carries an ECG recording") as caught:
        parse_ecg_oru(oru("OBX|1|TX|18844-1^ECG impression^LN||窦性心律||||||F"), "utf-8")
    assert caught.value.location == "OBX-5" and caught.value.ack_code == "AR"


def test_an_unusable_recording_in_an_oru_is_located_at_its_obx(acute_mi: bytes) -> None:
    broken = base64.b64encode(acute_mi[: len(acute_mi) // 2]).decode()
    with pytest.raises(UnreadableEcgError) as caught:
        parse_ecg_oru(oru(f"OBX|1|ED|11524-6^ECG^LN||^application^xml^Base64^{broken}"), "utf-8")
    assert caught.value.location == "OBX[1]-5.5"
    with pytest.raises(UnreadableEcgError, match="not valid base64"):
        parse_ecg_oru(oru("OBX|1|ED|11524-6^ECG^LN||^application^xml^Base64^@@@"), "utf-8")


# --- any bytes ---------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_any_bytes_give_a_document_or_an_input_error(data: bytes) -> None:
    try:
        parse_ecg_file(data, "utf-8")
    except InputError:
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.integers(min_value=0, max_value=10_000),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
)
def test_damaged_wfdb_zips_give_a_document_or_an_input_error(
    ecg_dir: Path, cut: int, flips: list[tuple[int, int]]
) -> None:
    archive = bytearray(wfdb_zip(ptbxl_files(ecg_dir)))
    for position, value in flips:
        archive[position % len(archive)] = value
    try:
        parse_ecg_file(bytes(archive[: len(archive) - cut % len(archive)]), "utf-8")
    except InputError:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(max_size=512), subtype=st.sampled_from(["xml", "dicom", "zip", ""]))
def test_any_ed_payload_in_an_oru_gives_a_document_or_an_input_error(
    payload: bytes, subtype: str
) -> None:
    data = base64.b64encode(payload).decode()
    try:
        parse_ecg_oru(
            oru(f"OBX|1|ED|11524-6^ECG^LN||^application^{subtype}^Base64^{data}"), "utf-8"
        )
    except InputError:
        pass
