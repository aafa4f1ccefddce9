"""Bad recordings get a specific error naming the file and the problem: truncated or missing
WFDB files, wrong lead counts, NaN, flat lines, wrong units, hostile XML (external entities,
billion laughs: refused, never resolved), corrupt XLI. Parsers are fuzzed with hypothesis."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.ecg import (
    Ecg,
    EcgError,
    ImplausibleEcgError,
    UnreadableEcgError,
    UnsafeXmlError,
    analyze,
    read_ecg,
)
from devices.ecg.readers.xli import XliError, decode_xli, lzw_decode
from devices.ecg.readers.xmlsafe import parse_xml
from engine.errors import InputError
from tests.devices.ecg.formats import write_aecg, write_dicom, write_muse


def _copy_record(record: Path, folder: Path) -> Path:
    for suffix in (".hea", ".dat"):
        shutil.copy(record.with_name(record.name + suffix), folder)
    return folder / record.name


def test_truncated_wfdb_signal_file_is_named_as_truncated(
    ptbxl_record: Path, tmp_path: Path
) -> None:
    copy = _copy_record(ptbxl_record, tmp_path)
    dat = copy.with_name(copy.name + ".dat")
    dat.write_bytes(dat.read_bytes()[:5000])
    with pytest.raises(UnreadableEcgError) as caught:
        read_ecg(copy)
    assert caught.value.file == str(copy)
    assert "truncated" in str(caught.value)


def test_missing_wfdb_signal_file(ptbxl_record: Path, tmp_path: Path) -> None:
    copy = _copy_record(ptbxl_record, tmp_path)
    copy.with_name(copy.name + ".dat").unlink()
    with pytest.raises(UnreadableEcgError, match=r"00001_lr: the signal file .* is missing"):
        read_ecg(copy)


def test_missing_header_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableEcgError, match="cannot read the file"):
        read_ecg(tmp_path / "nothing_here")


def test_six_leads_are_not_a_12_lead_ecg(ptbxl_record: Path, tmp_path: Path) -> None:
    """A cart that exported only the chest leads: V1-V6 of a real record, as WFDB."""
    adc = np.fromfile(ptbxl_record.with_name(ptbxl_record.name + ".dat"), dtype="<i2")
    (tmp_path / "six.dat").write_bytes(adc.reshape(-1, 12)[:, 6:].astype("<i2").tobytes())
    (tmp_path / "six.hea").write_text(
        "six 6 100 1000\n"
        + "".join(f"six.dat 16 1000.0(0)/mV 16 0 0 0 0 V{n}\n" for n in range(1, 7))
    )
    ecg = read_ecg(tmp_path / "six")
    with pytest.raises(ImplausibleEcgError, match=r"6 leads, missing I, II, III, aVR, aVL, aVF"):
        analyze(ecg)


def _variant(ecg: Ecg, lead: str, signal: np.ndarray) -> Ecg:
    return Ecg(
        leads={**ecg.leads, lead: signal}, sampling_rate_hz=ecg.sampling_rate_hz, source="x.hea"
    )


def test_nan_samples_are_refused(ptbxl_record: Path) -> None:
    ecg = read_ecg(ptbxl_record)
    broken = ecg.leads["V4"].copy()
    broken[100:135] = np.nan
    with pytest.raises(ImplausibleEcgError, match="x.hea: lead V4: 35 samples are NaN"):
        analyze(_variant(ecg, "V4", broken))


def test_a_flat_lead_is_named(ptbxl_record: Path) -> None:
    ecg = read_ecg(ptbxl_record)
    with pytest.raises(ImplausibleEcgError, match="flat line in lead V3"):
        analyze(_variant(ecg, "V3", np.full(ecg.samples, 250.0)))


@pytest.mark.parametrize("factor", [1000.0, 0.001])
def test_values_in_the_wrong_unit_are_refused(ptbxl_record: Path, factor: float) -> None:
    ecg = read_ecg(ptbxl_record)
    scaled = Ecg(
        leads={n: s * factor for n, s in ecg.leads.items()},
        sampling_rate_hz=100.0,
        source="x.hea",
    )
    with pytest.raises(ImplausibleEcgError, match="the units are wrong"):
        analyze(scaled)


def test_a_header_unit_that_is_no_voltage_is_refused(ptbxl_record: Path, tmp_path: Path) -> None:
    copy = _copy_record(ptbxl_record, tmp_path)
    header = copy.with_name(copy.name + ".hea")
    header.write_text(header.read_text().replace("/mV", "/mmHg", 1))
    with pytest.raises(ImplausibleEcgError, match=r"lead I is in 'mmHg'"):
        read_ecg(copy)


def test_a_recording_too_short_to_hold_three_beats(ptbxl_record: Path) -> None:
    ecg = read_ecg(ptbxl_record)
    short = Ecg(leads={n: s[:200] for n, s in ecg.leads.items()}, sampling_rate_hz=100.0,
                source="x.hea")  # fmt: skip
    with pytest.raises(ImplausibleEcgError, match="2.0 s recorded"):
        analyze(short)


# --- hostile and broken XML ---------------------------------------------------------------------

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE restingecgdata [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<restingecgdata><patient>&secret;</patient></restingecgdata>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<AnnotatedECG xmlns="urn:hl7-org:v3"><text>&lol4;</text></AnnotatedECG>"""


@pytest.mark.parametrize(
    "document",
    [
        XXE,
        BILLION_LAUGHS,
        XXE.decode().replace('1.0"?>', '1.0" encoding="utf-16"?>').encode("utf-16"),
    ],  # fmt: skip
    ids=["external-entity", "billion-laughs", "utf16-external-entity"],
)
def test_dtds_and_entities_are_refused_never_resolved(tmp_path: Path, document: bytes) -> None:
    path = tmp_path / "hostile.xml"
    path.write_bytes(document)
    with pytest.raises(UnsafeXmlError) as caught:
        read_ecg(path)
    assert "root:" not in str(caught.value)  # /etc/passwd was never read into anything
    assert caught.value.file == str(path)


def test_an_entity_hidden_after_64_kib_is_still_refused() -> None:
    document = b"<?xml version='1.0'?>" + b" " * 70_000 + XXE.split(b"?>", 1)[1]
    with pytest.raises(UnsafeXmlError):
        parse_xml(document, file="late.xml")


def test_xml_that_is_no_ecg_format(tmp_path: Path) -> None:
    path = tmp_path / "other.xml"
    path.write_bytes(b"<invoice><total>3</total></invoice>")
    with pytest.raises(UnreadableEcgError, match="root <invoice> is no ECG format"):
        read_ecg(path)


def test_malformed_xml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "cut.xml"
    path.write_bytes(b"<restingecgdata>\n<waveforms>\n<parsedwaveforms>AAAA")
    with pytest.raises(UnreadableEcgError, match="not well-formed XML at line 3"):
        read_ecg(path)


def _sierra_with_payload(sierra: Path, change: bytes) -> bytes:
    original = (sierra / "129DYPRG.XML").read_bytes()
    start = original.index(b"<parsedwaveforms")
    start = original.index(b">", start) + 1
    end = original.index(b"</parsedwaveforms>")
    return original[:start] + change + original[end:]


def test_truncated_xli_data_is_named(sierra: Path, tmp_path: Path) -> None:
    original = (sierra / "129DYPRG.XML").read_bytes()
    payload = original[original.index(b"XLI") :].split(b">", 1)[1].split(b"</parsed")[0]
    data = base64.b64decode(b"".join(payload.split()))
    path = tmp_path / "cut.xml"
    path.write_bytes(_sierra_with_payload(sierra, base64.b64encode(data[: len(data) // 2])))
    with pytest.raises(UnreadableEcgError, match="XLI waveform data: lead .* truncated"):
        read_ecg(path)


def test_payload_that_is_not_base64(sierra: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.xml"
    path.write_bytes(_sierra_with_payload(sierra, b"not*base64!"))
    with pytest.raises(UnreadableEcgError, match="not valid base64"):
        read_ecg(path)


def test_every_ecg_error_is_an_input_error_with_the_file() -> None:
    for cls in (UnreadableEcgError, UnsafeXmlError, ImplausibleEcgError):
        error = cls("something is wrong", file="a.xml")
        assert isinstance(error, InputError)
        assert str(error).startswith("a.xml: something is wrong; ")


# --- fuzzing ------------------------------------------------------------------------------------


@given(st.binary(max_size=4096))
@settings(max_examples=300, deadline=None)
def test_xli_decoder_gives_samples_or_xli_error_for_any_bytes(data: bytes) -> None:
    try:
        leads = decode_xli(data, 2)
    except XliError:
        return
    assert len(leads) == 2


@given(st.binary(max_size=2048))
@settings(max_examples=300, deadline=None)
def test_lzw_decoder_never_fails_otherwise(chunk: bytes) -> None:
    try:
        assert isinstance(lzw_decode(chunk, max_output=65536), bytes)
    except XliError:
        pass


@given(st.binary(max_size=2048))
@settings(max_examples=300, deadline=None)
def test_xml_parser_gives_a_tree_or_an_ecg_error_for_any_bytes(data: bytes) -> None:
    try:
        parse_xml(data, file="fuzz.xml")
    except EcgError:
        pass


@given(st.lists(st.tuples(st.integers(0, 9999), st.integers(0, 255)), min_size=1, max_size=20))
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_corrupted_sierra_files_read_or_fail_with_an_ecg_error(
    sierra: Path, tmp_path: Path, changes: list[tuple[int, int]]
) -> None:
    data = bytearray((sierra / "129DYPRG.XML").read_bytes())
    start = data.index(b"compressmethod")
    for offset, value in changes:
        data[start + 200 + offset * 3] = value
    path = tmp_path / "corrupt.xml"
    path.write_bytes(bytes(data))
    try:
        analyze(read_ecg(path))
    except EcgError:
        pass


_WRITERS = {"aecg.xml": write_aecg, "muse.xml": write_muse, "ecg.dcm": write_dicom}


@pytest.mark.parametrize("name", list(_WRITERS))
@given(
    changes=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=12),
    cut=st.floats(0.05, 1.0),
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_damaged_aecg_muse_and_dicom_files_read_or_fail_with_an_ecg_error(
    ptbxl_record: Path,
    tmp_path: Path,
    name: str,
    changes: list[tuple[float, int]],
    cut: float,
) -> None:
    path = tmp_path / name
    if not path.exists():
        _WRITERS[name](read_ecg(ptbxl_record), path)
    data = bytearray(path.read_bytes())
    for where, value in changes:
        data[int(where * (len(data) - 1))] = value
    damaged = tmp_path / f"damaged-{name}"
    damaged.write_bytes(bytes(data[: max(1, int(len(data) * cut))]))
    try:
        analyze(read_ecg(damaged))
    except EcgError:
        pass


@given(
    st.lists(
        st.tuples(
            st.floats(0, 1),
            st.sampled_from([b"", b"x", b"-1", b"0", b"99999999999", b"1e309", b"nan", b"<"]),
        ),
        min_size=1,
        max_size=6,
    )
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_odd_header_values_in_a_philips_file_give_an_ecg_error(
    sierra: Path, tmp_path: Path, edits: list[tuple[float, bytes]]
) -> None:
    """Numbers in the header (rate, resolution, lead counts, duration) replaced by junk."""
    data = (sierra / "3191723_ZZDEMOPTONLY_1-04_orig.xml").read_bytes().decode("utf-16")
    text = data.encode("utf-8").replace(b'encoding="utf-16"', b'encoding="utf-8"')
    header_end = text.index(b">", text.index(b"<parsedwaveforms")) + 1
    digits = [i for i in range(header_end) if text[i : i + 1].isdigit()]
    changed = bytearray(text)
    for where, junk in sorted(edits, reverse=True):
        at = digits[int(where * (len(digits) - 1))]
        changed[at : at + 1] = junk
    path = tmp_path / "odd.xml"
    path.write_bytes(bytes(changed))
    try:
        analyze(read_ecg(path))
    except EcgError:
        pass
