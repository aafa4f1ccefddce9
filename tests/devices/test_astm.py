"""ASTM E1381 frames and E1394 records: known values from the standard's rules, and properties
(any bytes give a frame or a FrameError; build → parse gives the message back)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.astm import (
    CR,
    ETB,
    ETX,
    LF,
    STX,
    FrameError,
    build_frames,
    checksum,
    parse_frame,
    parse_message,
    results_document,
)
from devices.astm.framing import MAX_TEXT_BYTES
from engine.errors import InputError
from tests.devices.analysers import astm_results


def test_checksum_is_the_byte_sum_modulo_256_in_upper_case_hex() -> None:
    # "1H|\^&" + ETX: 49 + 72 + 124 + 92 + 94 + 38 + 3 = 472 = 0x1D8 → D8
    assert checksum(b"1H|\\^&\x03") == b"D8"
    assert checksum(b"") == b"00"


def test_a_frame_is_checked_and_its_text_returned() -> None:
    (frame,) = build_frames(b"H|\\^&\r")
    assert frame == STX + b"1H|\\^&\r" + ETX + checksum(b"1H|\\^&\r" + ETX) + CR + LF
    parsed = parse_frame(frame)
    assert (parsed.number, parsed.text, parsed.final) == (1, b"H|\\^&\r", True)


@pytest.mark.parametrize(
    ("damage", "where"),
    [
        (lambda f: f[:-4] + b"00" + f[-2:], "frame checksum"),  # wrong checksum
        (lambda f: f[:1] + b"9" + f[2:], "frame byte 1"),  # frame number outside 0-7
        (lambda f: f[:-2], "frame"),  # CR LF missing: truncated
        (lambda f: f[1:], "frame byte 0"),  # no STX
        (lambda f: f[:-5] + b"X" + f[-4:], "frame byte"),  # no ETX/ETB
    ],
)
def test_a_damaged_frame_says_what_and_where(damage: object, where: str) -> None:
    (frame,) = build_frames(b"R|1|^^^cTnI|0.12|ng/mL\r")
    with pytest.raises(FrameError) as caught:
        parse_frame(damage(frame))  # type: ignore[operator]
    assert caught.value.location.startswith(where)


def test_frame_numbers_cycle_1_to_7_then_0() -> None:
    message = b"".join(b"R|%d|^^^GLU|5.%d|mmol/L\r" % (n, n) for n in range(10))
    numbers = [parse_frame(f).number for f in build_frames(message)]
    assert numbers == [1, 2, 3, 4, 5, 6, 7, 0, 1, 2]


def test_a_long_record_is_split_into_etb_frames_ended_by_etx() -> None:
    record = b"C|1|I|" + b"x" * 600 + b"|G\r"
    frames = build_frames(record)
    assert len(frames) == 3
    assert [f[-5:-4] for f in frames] == [ETB, ETB, ETX]
    assert b"".join(parse_frame(f).text for f in frames) == record
    assert all(len(parse_frame(f).text) <= MAX_TEXT_BYTES for f in frames)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_a_frame_or_a_frame_error(data: bytes) -> None:
    try:
        parse_frame(data)
    except FrameError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(
            alphabet=st.characters(
                min_codepoint=32, max_codepoint=0x2FFF, exclude_characters="\r\n"
            ),
            max_size=500,
        ),
        min_size=1,
        max_size=12,
    )
)
def test_frames_built_from_any_records_parse_back_to_the_message(records: list[str]) -> None:
    message = b"".join(r.encode("utf-8") + CR for r in records if r)
    frames = build_frames(message)
    assert b"".join(parse_frame(f).text for f in frames) == message


# --- E1394 records ---------------------------------------------------------------------------


def test_a_troponin_message_becomes_one_result_with_its_times_and_patient() -> None:
    raw = astm_results()
    document = results_document(parse_message(raw, "utf-8"), raw)
    assert document["device"]["id"] == "PF-0042"
    (result,) = document["results"]
    assert result["patient_id"] == "10086"
    assert result["specimen_id"] == "S20261126001"
    assert (result["test_code"], result["value"], result["unit"]) == ("hs-cTnI", "52.3", "ng/L")
    assert (result["collected"], result["resulted"]) == ("20261126081000", "20261126082300")
    assert result["flag"] == "H" and result["status"] == "F" and result["qc"] is False
    assert result["comments"] == ["复查 | 已确认"]  # &F& is the field delimiter, escaped


def test_the_h_record_declares_the_delimiters() -> None:
    raw = b"H@!~$@@@ANALYSER~1~SN9\rP@1@@77\rO@1@S1@@~~~K\rR@1@~~~K@4.1@mmol/L\rL@1\r"
    document = results_document(parse_message(raw), raw)
    (result,) = document["results"]
    assert (result["patient_id"], result["test_code"], result["value"]) == ("77", "K", "4.1")
    assert document["device"]["serial"] == "SN9"


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b"P|1||10086\r", "record 1"),  # no header
        (b"H|||||\r", "H-2"),  # delimiters not distinct
        (b"H|\\^&\rZ|1\r", "record 2"),  # unknown record type
        (b"H|\\^&\rR|1|^^^GLU|5.1\r", "R record 2"),  # a result outside any order
    ],
)
def test_a_malformed_message_names_the_record(raw: bytes, where: str) -> None:
    with pytest.raises(InputError) as caught:
        results_document(parse_message(raw), raw)
    assert caught.value.location.startswith(where)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_give_results_or_an_input_error(data: bytes) -> None:
    try:
        results_document(parse_message(data, "latin-1"), data)
    except InputError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="HPORCL|\\^&\r0123456789ab ", max_size=300))
def test_record_like_text_gives_results_or_an_input_error(text: str) -> None:
    data = text.encode()
    try:
        results_document(parse_message(data), data)
    except InputError:
        pass


def test_a_result_without_a_patient_id_is_not_written_as_a_patient_observation() -> None:
    from pathlib import Path

    from adapters.astm import parse_for_mapping
    from engine.mapping import load_mapping

    raw = astm_results(patient_id="")
    (result,) = results_document(parse_message(raw, "utf-8"), raw)["results"]
    assert "patient_id" not in result  # an empty P-3 is no id
    mapping = load_mapping(Path(__file__).parents[2] / "mappings" / "devices" / "astm.yaml")
    bundle = mapping.apply(parse_for_mapping(raw, "utf-8"))
    assert isinstance(bundle, dict)
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Device"]
