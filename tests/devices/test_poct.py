"""POCT1-A2 messages: the stream splitter, the hardened parser (no DTD, no entities) and the
analyser-results document; properties for any bytes and any chunking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.poct import MessageSplitter, build_ack, parse_message, results_document
from engine.errors import FramingError, InputError, ParseError
from tests.devices.analysers import poct_dst, poct_hello, poct_observations

XXE = (
    b'<?xml version="1.0"?><!DOCTYPE OBS.R01 [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<OBS.R01><HDR><HDR.control_id V="7"/></HDR><SVC><PT><PT.patient_id V="&xxe;"/></PT>'
    b"</SVC></OBS.R01>"
)
LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    b'<OBS.R01><HDR><HDR.control_id V="8"/></HDR><SVC>&lol3;</SVC></OBS.R01>'
)


def test_a_conversation_in_one_chunk_splits_into_its_messages() -> None:
    stream = poct_hello() + b"\r\n" + poct_dst() + poct_observations()
    pieces = MessageSplitter().feed(stream)
    assert [p.problem for p in pieces] == [None, None, None]
    assert [parse_message(p.content).message_type for p in pieces] == [
        "HEL.R01",
        "DST.R01",
        "OBS.R01",
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=40))
def test_any_chunking_gives_the_same_messages(cuts: list[int]) -> None:
    stream = poct_hello() + poct_dst() + poct_observations()
    splitter, pieces, position = MessageSplitter(), [], 0
    for size in cuts:
        pieces += splitter.feed(stream[position : position + size])
        position += size
    pieces += splitter.feed(stream[position:])
    assert [p.content for p in pieces] == [poct_hello(), poct_dst(), poct_observations()]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500))
def test_any_bytes_give_messages_or_problem_pieces_and_nothing_else(data: bytes) -> None:
    splitter = MessageSplitter(max_bytes=256)
    pieces = splitter.feed(data)
    rest = splitter.finish()
    for piece in [*pieces, *([rest] if rest else [])]:
        assert len(piece.content) <= 256
        if piece.problem is None:
            try:
                parse_message(piece.content)
            except InputError:
                pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500))
def test_any_bytes_give_a_results_document_or_an_input_error(data: bytes) -> None:
    try:
        results_document(data)
    except InputError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet='<>/="VOBS.R01HDRcontrol_idPT ?!&;-', max_size=300))
def test_xml_like_text_gives_a_results_document_or_an_input_error(text: str) -> None:
    try:
        results_document(text.encode())
    except InputError:
        pass


def test_garbage_before_a_message_is_a_problem_piece_then_the_message_follows() -> None:
    pieces = MessageSplitter().feed(b"\x16\x16NOISE" + poct_hello())
    assert isinstance(pieces[0].problem, FramingError)
    assert pieces[0].content == b"\x16\x16NOISE"
    assert pieces[1].problem is None and pieces[1].content == poct_hello()


def test_a_stream_that_stops_mid_message_is_truncated() -> None:
    splitter = MessageSplitter()
    assert splitter.feed(poct_observations()[:100]) == []
    rest = splitter.finish()
    assert rest is not None and isinstance(rest.problem, FramingError)
    assert "truncated" in rest.problem.reason


@pytest.mark.parametrize("raw", [XXE, LAUGHS], ids=["external-entity", "billion-laughs"])
def test_dtds_and_entities_are_refused_never_resolved(raw: bytes) -> None:
    (piece,) = MessageSplitter().feed(raw)  # the splitter still finds the message's end
    assert piece.problem is None
    with pytest.raises(ParseError) as caught:
        parse_message(piece.content)
    assert caught.value.ack_code == "AR"
    assert "DTD or entities" in caught.value.reason
    assert "root:" not in str(caught.value)  # /etc/passwd was never read


def test_a_message_without_a_control_id_is_refused_naming_the_element() -> None:
    with pytest.raises(ParseError) as caught:
        parse_message(b"<OBS.R01><HDR/></OBS.R01>")
    assert caught.value.location == "OBS.R01/HDR/HDR.control_id"


def test_hello_and_observations_make_one_result_per_obs_with_device_and_patient() -> None:
    raw = poct_hello() + poct_observations(
        results=(("cTnI", "0.12", "ng/mL"), ("Glu", "7.8", "mmol/L"))
    )
    document = results_document(raw)
    assert document["device"] == {
        "id": "ISTAT-0815",
        "name": "i-STAT 1",
        "model": "i-STAT 1",
        "vendor": "ABBOTT",
        "serial": "SN-0815",
    }
    troponin, glucose = document["results"]
    assert (troponin["patient_id"], troponin["test_code"], troponin["value"]) == (
        "10086",
        "cTnI",
        "0.12",
    )
    assert troponin["unit"] == "ng/mL" and troponin["flag"] == "H" and not troponin["qc"]
    assert troponin["collected"] == "2026-11-26T08:21:00+08:00"
    assert glucose["test_code"] == "Glu" and glucose["unit"] == "mmol/L"


def test_the_same_observations_resent_under_a_new_control_id_digest_the_same() -> None:
    first = results_document(poct_hello() + poct_observations(control_id=3))
    again = results_document(poct_hello() + poct_observations(control_id=44))
    other = results_document(poct_hello() + poct_observations(patient_id="10087"))
    assert first["digest"] == again["digest"] != other["digest"]


def test_non_patient_observations_are_quality_control() -> None:
    raw = poct_hello() + poct_observations(patient_id="", message_type="OBS.R02")
    (result,) = results_document(raw)["results"]
    assert result["qc"] is True


def test_the_ack_names_the_acknowledged_control_id() -> None:
    from datetime import datetime, timedelta, timezone

    now = datetime(2026, 11, 26, 8, 30, tzinfo=timezone(timedelta(hours=8)))
    ack = parse_message(build_ack(5, now, "17", error="OBS.observation_id missing"))
    assert ack.message_type == "ACK.R01" and ack.control_id == "5"
    assert ack.value("ACK/ACK.ack_control_id") == "17"
    assert ack.value("ACK/ACK.type_cd") == "AE"
    assert ack.value("HDR/HDR.creation_dttm") == "2026-11-26T08:30:00+08:00"


def test_observations_without_a_hello_map_without_a_device_to_point_at() -> None:
    from pathlib import Path

    from adapters.poct1a import parse_for_mapping
    from engine.mapping import load_mapping

    mapping = load_mapping(Path(__file__).parents[2] / "mappings" / "devices" / "poct.yaml")
    bundle = mapping.apply(parse_for_mapping(poct_observations(), "utf-8"))
    assert isinstance(bundle, dict)
    (observation,) = [e["resource"] for e in bundle["entry"]]
    assert observation["resourceType"] == "Observation"
    assert "device" not in observation  # no Device was written, so none is referenced
