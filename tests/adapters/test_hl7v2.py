"""Tests for adapters.hl7v2: MSH reader, charsets, paths, escapes, ACKs and parser properties."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import hl7
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.hl7v2 import (
    DataTypeError,
    Delimiters,
    MissingFieldError,
    UnknownTableValueError,
    UnsupportedMessageTypeError,
    UnsupportedVersionError,
    ack_wanted,
    build_ack,
    decode,
    dedup_key,
    error_code,
    escape,
    parse,
    parse_ack,
    parse_for_mapping,
    read_header,
)
from engine.errors import DecodeError, FramingError, InputError, MappingError, ParseError

CST = timezone(timedelta(hours=8))
NOW = datetime(2024, 5, 1, 8, 30, 5, tzinfo=CST)


def adt(
    *,
    control_id: str = "MSG00001",
    facility: str = "CPC",
    accept_ack: str = "",
    charset: str = "",
    name: str = "DOE^JOHN",
) -> str:
    """An ADT^A01 with MSH-4, MSH-10, MSH-15 and MSH-18 as given."""
    return (
        f"MSH|^~\\&|HIS|{facility}|GC|GCF|20240501083000+0800||ADT^A01^ADT_A01|{control_id}|P|"
        f"2.5.1|||{accept_ack}|||{charset}\r"
        "EVN|A01|20240501083000+0800\r"
        f"PID|1||P123^^^HIS^MR~440101199001011234^^^CHN^NNCHN||{name}||19800101|M\r"
        "PV1|1|E|ER^01\r"
        "OBX|1|NM|8867-4^Heart rate^LN||88|/min|||||F\r"
        "OBX|2|ST|8601-7^ECG impression^LN||ST elevation \\T\\ Q waves||||||F\r"
    )


# --- header -------------------------------------------------------------------------------------


def test_read_header_extracts_the_fields_the_wire_needs() -> None:
    header = read_header(adt(accept_ack="AL", charset="UNICODE UTF-8").encode())
    assert header.delimiters == Delimiters("|", "^~\\&")
    assert (header.sending_application, header.sending_facility) == ("HIS", "CPC")
    assert (header.receiving_application, header.receiving_facility) == ("GC", "GCF")
    assert (header.message_type, header.trigger_event, header.message_structure) == (
        "ADT",
        "A01",
        "ADT_A01",
    )
    assert header.control_id == "MSG00001"
    assert (header.processing_id, header.version) == ("P", "2.5.1")
    assert (header.accept_ack_type, header.charset) == ("AL", "UNICODE UTF-8")


def test_read_header_accepts_other_delimiters_and_newline_segment_ends() -> None:
    raw = b"MSH#*@!%#HIS#CPC#GC#GC#2024##ORU*R01#42#P#2.4\nPID#1\n"
    header = read_header(raw)
    assert header.delimiters == Delimiters("#", "*@!%")
    assert (header.trigger_event, header.control_id, header.version) == ("R01", "42", "2.4")


@pytest.mark.parametrize(
    ("raw", "error", "location", "ack_code"),
    [
        (b"", ParseError, "MSH", "AR"),
        (b"hello world", ParseError, "MSH", "AR"),
        (b"PID|1||123\r", ParseError, "MSH", "AR"),
        (b"MSH", DataTypeError, "MSH-1", "AR"),
        (b"MSHA^~\\&", DataTypeError, "MSH-1", "AR"),
        (b"MSH|^~|HIS", DataTypeError, "MSH-2", "AR"),
        (b"MSH|^^\\&|HIS", DataTypeError, "MSH-2", "AR"),
        (b"MSH|^~\\&|HIS|CPC|GC|GC|2024||||P|2.5\r", MissingFieldError, "MSH-9", "AE"),
        (
            b"MSH|^~\\&|HIS|CPC|GC|GC|2024||adt^A01|1|P|2.5\r",
            UnsupportedMessageTypeError,
            "MSH-9.1",
            "AR",
        ),
        (b"MSH|^~\\&|HIS|CPC|GC|GC|2024||ADT^A01||P|2.5\r", MissingFieldError, "MSH-10", "AE"),
        (
            b"MSH|^~\\&|HIS|CPC|GC|GC|2024||ADT^A01|1|P|3.0\r",
            UnsupportedVersionError,
            "MSH-12",
            "AR",
        ),
    ],
)
def test_read_header_rejects_what_is_not_a_usable_message(
    raw: bytes, error: type[InputError], location: str, ack_code: str
) -> None:
    with pytest.raises(error) as caught:
        read_header(raw)
    assert type(caught.value) is error
    assert (caught.value.location, caught.value.ack_code) == (location, ack_code)


def test_dedup_key_is_facility_and_control_id() -> None:
    header = read_header(adt(facility="CPC", control_id="X1").encode())
    assert dedup_key(header) == "CPC|X1"
    assert dedup_key(dataclasses.replace(header, sending_facility="")) == "HIS|X1"
    assert dedup_key(dataclasses.replace(header, control_id="")) is None
    assert dedup_key(None) is None


# --- charsets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "codec"),
    [("GB 18030-2000", "gb18030"), ("GB18030", "gb18030"), ("UNICODE UTF-8", "utf-8")],
)
def test_chinese_names_decode_by_msh_18(declared: str, codec: str) -> None:
    raw = adt(charset=declared, name="张三^^^^^^L").encode(codec)
    text, used = decode(raw, read_header(raw), "ascii")
    assert used == codec
    assert "张三" in text
    assert parse(raw, "ascii").get("PID-5.1") == "张三"


def test_empty_msh_18_takes_the_channel_default() -> None:
    raw = adt(name="李四").encode("gb18030")
    assert parse(raw, "gb18030").get("PID-5") == "李四"
    assert parse_for_mapping(raw, "GB 18030-2000").get("PID-5") == "李四"


def test_gb18030_delimiter_bytes_inside_a_facility_name_do_not_split_it() -> None:
    # 亅 is 0x81 0x7C in GB 18030: its second byte is the field separator.
    raw = adt(facility="亅心乛亊", charset="GB 18030-2000").encode("gb18030")
    assert read_header(raw).sending_facility == "亅心乛亊"
    assert read_header(raw).control_id == "MSG00001"
    assert parse(raw).get("MSH-4") == "亅心乛亊"


def test_a_utf8_byte_order_mark_is_dropped() -> None:
    raw = b"\xef\xbb\xbf" + adt(name="王五").encode()
    text, _ = decode(raw, read_header(raw), "utf-8")
    assert text.startswith("MSH|")
    assert parse(raw).get("PID-5") == "王五"


def test_utf16_with_a_byte_order_mark_is_read() -> None:
    raw = adt(charset="UNICODE UTF-16", name="赵六").encode("utf-16")
    assert read_header(raw).control_id == "MSG00001"
    assert parse(raw).get("PID-5") == "赵六"


def test_unknown_msh_18_is_a_table_error_at_msh_18() -> None:
    raw = adt(charset="KLINGON").encode()
    with pytest.raises(UnknownTableValueError) as caught:
        decode(raw, read_header(raw), "utf-8")
    assert (caught.value.location, caught.value.ack_code) == ("MSH-18", "AE")


def test_undecodable_bytes_name_their_offset_and_field() -> None:
    raw = adt(charset="UNICODE UTF-8", name="XX").encode().replace(b"XX", b"\xe5\xbc")
    offset = raw.index(b"\xe5\xbc")
    with pytest.raises(DecodeError) as caught:
        decode(raw, read_header(raw), "utf-8")
    error = caught.value
    assert (error.charset, error.offset, error.location) == ("utf-8", offset, "PID-5")
    assert f"bytes {offset}–{offset + 1} are not valid utf-8 (MSH-18)" in str(error)


def test_undecodable_bytes_under_the_default_charset_say_so() -> None:
    raw = adt(name="张三").encode("gb18030")
    with pytest.raises(DecodeError) as caught:
        decode(raw, read_header(raw), "utf-8")
    assert "default charset" in str(caught.value)
    assert "张" not in str(caught.value)


# --- paths and escapes --------------------------------------------------------------------------


def test_paths_follow_the_spec_counting_from_one() -> None:
    doc = parse(adt().encode())
    assert doc.get("MSH-1") == "|"
    assert doc.get("MSH-2") == "^~\\&"
    assert doc.get("MSH-9.2") == "A01"
    assert doc.get("MSH-10") == "MSG00001"
    assert doc.get("PID-3.1") == "P123"
    assert doc.get("PID-3[2].1") == "440101199001011234"
    assert doc.get("PID-3[2].4") == "CHN"
    assert doc.all("PID-3.1") == ["P123", "440101199001011234"]
    assert doc.get("PID-5.2") == "JOHN"
    assert doc.get("PID-5") == "DOE^JOHN"  # composite: ER7 form
    assert doc.get("OBX[2]-5") == "ST elevation & Q waves"
    assert doc.all("OBX-5") == ["88", "ST elevation & Q waves"]
    assert doc.get("PID-8.1") == "M"  # a simple field is its own first component


def test_missing_and_empty_values_are_none_and_not_listed() -> None:
    doc = parse(adt().encode())
    assert doc.get("PID-2") is None
    assert doc.get("PID-99") is None
    assert doc.get("PID-5.9") is None
    assert doc.get("PID-3[3].1") is None
    assert doc.get("OBX[3]-5") is None
    assert doc.get("NK1-2") is None
    assert doc.all("PID-4") == []
    assert doc.all("OBX-4") == []


def test_escape_sequences_are_resolved_in_values() -> None:
    text = adt().replace("DOE^JOHN", r"O\E\BRIEN\F\X\S\Y\T\Z\R\W^ANN\X0D\B\.br\C")
    doc = parse(text.encode())
    assert doc.get("PID-5.1") == "O\\BRIEN|X^Y&Z~W"
    assert doc.get("PID-5.2") == "ANN\rB\nC"


def test_escape_then_parse_gives_the_value_back() -> None:
    value = "a|b^c&d~e\\f\rg"
    doc = parse(adt().replace("DOE^JOHN", escape(value)).encode())
    assert doc.get("PID-5") == value


def test_each_segment_scopes_its_own_paths() -> None:
    doc = parse(adt().encode())
    observations = doc.each("OBX")
    assert [o.get("OBX-3.1") for o in observations] == ["8867-4", "8601-7"]
    assert [o.all("OBX-5") for o in observations] == [["88"], ["ST elevation & Q waves"]]
    assert observations[1].get("PID-3.1") == "P123"  # other segments: the whole message
    assert observations[1].get("OBX[1]-5") == "88"  # an explicit index: the whole message


def test_each_repetition_scopes_paths_into_that_field() -> None:
    doc = parse(adt().encode())
    identifiers = doc.each("PID-3")
    assert [(i.get("PID-3.1"), i.get("PID-3.4")) for i in identifiers] == [
        ("P123", "HIS"),
        ("440101199001011234", "CHN"),
    ]
    assert identifiers[1].get("PID-5.1") == "DOE"
    assert [len(i.each("PID-3")) for i in identifiers] == [1, 1]


def test_repeated_segments_each_keep_their_own_repetitions() -> None:
    raw = b"MSH|^~\\&|A|B|C|D|2024||RSP^K22|1|P|2.5\rPID|1||A1~A2||ONE\rPID|2||B1||TWO\r"
    doc = parse(raw)
    pairs = [(i.get("PID-3"), i.get("PID-5")) for i in doc.each("PID-3")]
    assert pairs == [("A1", "ONE"), ("A2", "ONE"), ("B1", "TWO")]
    assert doc.get("PID[2]-5") == "TWO"


def test_a_path_that_is_not_hl7_is_a_mapping_error() -> None:
    doc = parse(adt().encode())
    for path in ("PID.3", "pid-3", "PID-0", "PID-3.1.1.1", "OBX-5.1"):
        with pytest.raises(MappingError):
            doc.each(path) if path == "OBX-5.1" else doc.get(path)


def test_a_bad_segment_id_is_rejected_by_its_ordinal() -> None:
    raw = adt().replace("PV1|", "pv1|").encode()
    with pytest.raises(ParseError) as caught:
        parse(raw)
    assert (caught.value.location, caught.value.ack_code) == ("segment 4", "AE")


def test_document_repr_shows_no_content() -> None:
    assert "DOE" not in repr(parse(adt().encode()))


# --- acknowledgments ----------------------------------------------------------------------------


def test_ack_echoes_the_message_and_swaps_sender_and_receiver() -> None:
    header = read_header(adt(charset="UNICODE UTF-8").encode())
    ack = hl7.parse(build_ack(header, "AA", control_id="812", now=NOW))
    msh = ack.segment("MSH")
    assert [str(msh[n]) for n in (3, 4, 5, 6)] == ["GC", "GCF", "HIS", "CPC"]
    assert str(msh[7]) == "20240501083005+0800"
    assert str(msh[9]) == "ACK^A01^ACK"
    assert [str(msh[n]) for n in (10, 11, 12, 18)] == ["812", "P", "2.5.1", "UNICODE UTF-8"]
    assert [str(f) for f in ack.segment("MSA")[1:3]] == ["AA", "MSG00001"]
    assert "ERR" not in [str(s[0]) for s in ack]


def test_ack_keeps_the_offset_of_now() -> None:
    header = read_header(adt().encode())
    later = datetime(2024, 5, 1, 0, 30, 5, tzinfo=UTC)
    assert "|20240501003005+0000|" in build_ack(header, "AA", control_id="1", now=later)
    with pytest.raises(ValueError):
        build_ack(header, "AA", control_id="1", now=datetime(2024, 5, 1))  # noqa: DTZ001


def test_nak_carries_err_location_code_and_escaped_reason() -> None:
    header = read_header(adt().encode())
    error = ParseError("bad date | expected YYYYMMDD^", location="PID-7.1")
    text = build_ack(header, error.ack_code, error=error, control_id="9", now=NOW)
    ack = hl7.parse(text)
    assert str(ack.segment("MSA")[1]) == "AE"
    err = ack.segment("ERR")
    assert str(err[2]) == "PID^1^7^1^1"
    assert str(err[3]) == "100^Segment sequence error^HL70357"
    assert str(err[4]) == "E"
    assert ack.unescape(str(err[8])) == "PID-7.1: bad date | expected YYYYMMDD^"
    result = parse_ack(text.encode())
    assert (result.code, result.control_id, result.error_code) == ("AE", "MSG00001", "100")
    assert result.text == "PID-7.1: bad date | expected YYYYMMDD^"


@pytest.mark.parametrize(
    ("location", "erl"),
    [
        ("MSH-9", "MSH^1^9"),
        ("OBX[2]-5", "OBX^2^5"),
        ("PID-3[2].1", "PID^1^3^2^1"),
        ("MSH", "MSH^1"),
    ],
)
def test_err_2_is_built_from_the_error_location(location: str, erl: str) -> None:
    error = ParseError("wrong", location=location)
    text = build_ack(read_header(adt().encode()), "AE", error=error, control_id="1", now=NOW)
    assert str(hl7.parse(text).segment("ERR")[2]) == erl


def test_enhanced_mode_answers_with_commit_codes() -> None:
    header = read_header(adt(accept_ack="AL").encode())
    assert parse_ack(build_ack(header, "AA", control_id="1", now=NOW).encode()).code == "CA"
    error = MissingFieldError("required", location="MSH-10")
    nak = build_ack(header, "AE", error=error, control_id="1", now=NOW)
    assert parse_ack(nak.encode()).code == "CE"


def test_garbage_gets_a_minimal_valid_ack() -> None:
    error = FramingError("no MLLP start block", location="MLLP")
    text = build_ack(None, "AR", error=error, control_id="5", now=NOW)
    ack = hl7.parse(text)
    assert str(ack.segment("MSH")[9]) == "ACK^^ACK"
    assert [str(f) for f in ack.segment("MSA")[1:3]] == ["AR", ""]
    assert str(ack.segment("ERR")[2]) == ""
    assert parse_ack(text.encode()).code == "AR"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InputError("x"), "207"),
        (FramingError("x"), "100"),
        (DecodeError("x", charset="utf-8", offset=0), "102"),
        (ParseError("x"), "100"),
        (MissingFieldError("x"), "101"),
        (DataTypeError("x"), "102"),
        (UnknownTableValueError("x"), "103"),
        (UnsupportedMessageTypeError("x"), "200"),
        (UnsupportedVersionError("x"), "203"),
    ],
)
def test_every_input_error_class_has_an_err_3_code(error: InputError, code: str) -> None:
    assert error_code(error)[0] == code


def test_every_input_error_subclass_is_in_the_code_table() -> None:
    def subclasses(cls: type[InputError]) -> set[type[InputError]]:
        found = set(cls.__subclasses__())
        return found | {s for c in found for s in subclasses(c)}

    ours = {"engine.errors", "adapters.hl7v2"}
    for cls in subclasses(InputError):
        if cls.__module__ in ours:
            assert error_code(cls.__new__(cls))[0] != "207", cls


@pytest.mark.parametrize(
    ("mode", "accepted", "wanted"),
    [
        ("", True, True),
        ("", False, True),
        ("AL", True, True),
        ("AL", False, True),
        ("NE", True, False),
        ("NE", False, False),
        ("ER", True, False),
        ("ER", False, True),
        ("SU", True, True),
        ("SU", False, False),
    ],
)
def test_msh_15_decides_whether_an_ack_is_sent(mode: str, accepted: bool, wanted: bool) -> None:
    assert ack_wanted(read_header(adt(accept_ack=mode).encode()), accepted) is wanted


def test_parse_ack_rejects_garbled_replies() -> None:
    for raw in (b"", b"garbage", b"MSH|^~\\&|A|B\rPID|1\r", b"MSH|^~\\&|A|B\rMSA|XX|1\r"):
        with pytest.raises(ParseError):
            parse_ack(raw)


# --- real messages ------------------------------------------------------------------------------


def izgateway_messages(path: Path) -> list[str]:
    """Messages from IZGateway v2tofhir's messages.txt: segments start at column 0, a trailing
    backslash continues a segment on the next line; `#` lines and indented `@` assertions and
    `//` comments are not part of the message."""
    messages: list[list[str]] = []
    segment: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if segment is not None:
            segment += line.strip()
        elif re.match(r"[A-Z0-9]{3}\|", line):
            if line.startswith("MSH|"):
                messages.append([])
            segment = line.rstrip()
        else:
            continue
        if segment.endswith("\\"):
            segment = segment[:-1]
            continue
        messages[-1].append(segment)
        segment = None
    return ["\r".join(m) + "\r" for m in messages]


def test_every_izgateway_sample_message_parses(shared_data: Path) -> None:
    messages = izgateway_messages(shared_data / "hl7v2" / "izgateway-messages.txt")
    assert len(messages) == 64
    for text in messages:
        doc = parse(text.encode())
        assert doc.get("MSH-9.1") in {"RSP", "ADT", "ACK", "QBP", "QCN", "VXU"}
        if doc.get("MSH-10") is None:  # one sample ACK has none: the wire would answer AE
            with pytest.raises(MissingFieldError):
                read_header(text.encode())
        else:
            assert read_header(text.encode()).control_id == doc.get("MSH-10")
    first = parse(messages[0].encode())
    assert (first.get("MSH-4"), first.get("MSH-10")) == ("MOCK", "RESULT-01")
    assert first.get("PID-5.2") == "TheodoricAIRA"
    assert [o.get("OBX-1") for o in first.each("OBX")] == ["1", "2", "3", "4", "5", "6"]


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_any_bytes_give_a_header_or_an_input_error(raw: bytes) -> None:
    for candidate in (raw, b"MSH|^~\\&|" + raw, b"MSH" + raw):
        try:
            read_header(candidate)
        except InputError:
            pass
        try:
            parse(candidate)
        except InputError:
            pass
        try:
            parse_ack(candidate)
        except InputError:
            pass


VALUE = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=12
).filter(lambda v: v.strip() == v)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(VALUE, min_size=1, max_size=3), min_size=1, max_size=5),
    st.sampled_from(["UNICODE UTF-8", "GB 18030-2000"]),
)
def test_generated_messages_round_trip(rows: list[list[str]], charset: str) -> None:
    codec = "utf-8" if "UTF" in charset else "gb18030"
    rows = [
        [v for v in row if v.encode(codec, "ignore").decode(codec) == v] or ["x"] for row in rows
    ]
    header = f"MSH|^~\\&|A|B|C|D|2024||ORU^R01|1|P|2.5.1||||||{charset}"
    segments = [header] + ["ZZZ|" + "^".join(escape(v) for v in row) for row in rows]
    raw = "\r".join(segments).encode(codec)
    doc = parse(raw)
    for index, row in enumerate(rows, start=1):
        for component, value in enumerate(row, start=1):
            assert doc.get(f"ZZZ[{index}]-1.{component}") == value
    again = parse(doc.text.encode(codec))
    assert again.all("ZZZ-1.1") == doc.all("ZZZ-1.1") == [row[0] for row in rows]


@settings(max_examples=100)
@given(st.integers(min_value=0, max_value=len(adt().encode())))
def test_truncated_messages_parse_or_fail_cleanly(cut: int) -> None:
    try:
        doc = parse(adt().encode()[:cut])
    except InputError:
        return
    doc.all("OBX-5")


def test_a_huge_message_parses_lazily() -> None:
    body = "".join(f"OBX|{n}|NM|8867-4^HR^LN||{n}\r" for n in range(1, 100_001))
    doc = parse((adt() + body).encode())
    assert doc.get("OBX[100002]-5") == "100000"
    assert doc.get("PID-3.1") == "P123"


@pytest.mark.parametrize("declared", ["zlib", "rot13", "hex", "undefined", "idna", "a\x00b"])
def test_msh_18_only_names_table_0211_charsets(declared: str) -> None:
    raw = adt(charset=declared).encode()
    with pytest.raises(UnknownTableValueError):
        decode(raw, read_header(raw), "utf-8")
    assert parse_ack(build_ack(read_header(raw), "AA", control_id="1", now=NOW).encode())


# Field content with repetitions, components, subcomponents, escapes and empty parts.
_PIECE = st.sampled_from(["", "a", "b", "^", "~", "&", "\\F\\", "\\T\\", "x^y", "p~q", "r&s"])
_FIELD = st.lists(_PIECE, max_size=5).map("".join)
_READ = st.sampled_from(
    ["PID-3", "PID-3.1", "PID-3.2", "PID-3.1.2", "PID-5", "PID-5.3", "MSH-4", "MSH-4.2",
     "PID-3[2]", "PID-3[2].2", "PID[2]-3.1", "PID-7", "MSH-1", "MSH-2", "ZZZ-1"]
)  # fmt: skip


@given(st.lists(st.lists(_FIELD, min_size=1, max_size=8), min_size=1, max_size=3), _FIELD, _READ)
def test_get_is_the_first_value_of_all_also_inside_each(
    pids: list[list[str]], facility: str, path: str
) -> None:
    """`get` reads on its own fast path (and remembers what it read): it must still answer
    what `all` (the general walk) lists first, in the whole message and in each repetition."""
    segments = [f"MSH|^~\\&|A|{facility}|C|D|2024||ADT^A01|1|P|2.5.1"]
    segments += ["PID|" + "|".join(fields) for fields in pids]
    doc = parse("\r".join(segments).encode())
    documents = [doc, *doc.each("PID"), *doc.each("PID-3")]
    for document in documents:
        for _ in range(2):  # the second read comes from what the first remembered
            assert document.get(path) == next(iter(document.all(path)), None)
