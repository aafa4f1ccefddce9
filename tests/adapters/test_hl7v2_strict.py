"""Strict mode: hl7apy checks a message against its declared version's structure; problems name
the segment and field, never the value."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.hl7v2 import (
    DataTypeError,
    MissingFieldError,
    StructureError,
    UnsupportedVersionError,
    check_structure,
    read_header,
)
from engine.errors import InputError

VALID = (
    "MSH|^~\\&|HIS|COUNTY-HOSP|GC|ED|20261125083000+0800||ADT^A01^ADT_A01|MSG1|P|2.5.1\r"
    "EVN|A01|20261125083000+0800\r"
    "PID|1||10086^^^COUNTY-HOSP^MR||张^三||19580312|M\r"
    "PV1|1|I\r"
)


def check(text: str, codec: str = "utf-8") -> InputError | None:
    raw = text.encode(codec)
    return check_structure(raw, read_header(raw), codec)


def test_a_valid_message_passes_with_any_segment_separator_bom_and_z_segments() -> None:
    assert check(VALID) is None
    assert check(VALID.replace("\r", "\r\n")) is None
    assert check(VALID.replace("\r", "\n")) is None
    assert check("\ufeff" + VALID) is None
    assert check(VALID + "ZPI|1|本地字段\r") is None
    assert check(VALID.replace("UTF-8", ""), "gb18030") is None


@pytest.mark.parametrize(
    ("change", "kind", "location"),
    [
        (("PID|1||10086^^^COUNTY-HOSP^MR|", "PID|1|||"), MissingFieldError, "PID-3"),
        (("19580312", "1958X312"), DataTypeError, "PID-7"),
        (("PID|1|", "PID|uno|"), DataTypeError, "PID-1"),
        (("PV1|1|I\r", ""), StructureError, "PV1"),
        (("2.5.1", "2.9"), UnsupportedVersionError, "MSH-12"),
        (("PV1|1|I", "PV1|1|I" + "|" * 60 + "x"), StructureError, "PV1-62"),
    ],
)
def test_a_problem_names_its_segment_and_field_but_not_the_value(
    change: tuple[str, str], kind: type[InputError], location: str
) -> None:
    old, new = change
    assert old in VALID
    problem = check(VALID.replace(old, new, 1))
    assert isinstance(problem, kind) and problem.location == location
    assert problem.ack_code in ("AE", "AR")
    # patient data never reaches the NAK: the bad values are not quoted
    assert "1958X312" not in problem.reason and "uno" not in problem.reason


def test_the_second_of_a_repeated_segment_is_named_by_its_index() -> None:
    message = VALID + "AL1|1|DA|P^青霉素\rAL1|2|DA|A^阿司匹林|||not-a-date\r"
    problem = check(message)
    assert isinstance(problem, DataTypeError) and problem.location == "AL1[2]-6"


_VALUE = st.text(alphabet=st.sampled_from([*"09AZaz .-+^&~\\", "张", "X"]), max_size=12)


@settings(max_examples=60, deadline=None)
@given(pid7=_VALUE, pid8=_VALUE, pv1_2=_VALUE)
def test_arbitrary_field_content_gives_none_or_a_positioned_error(
    pid7: str, pid8: str, pv1_2: str
) -> None:
    message = VALID.replace("19580312|M", f"{pid7}|{pid8}").replace("PV1|1|I", f"PV1|1|{pv1_2}")
    problem = check(message)
    if problem is not None:
        assert isinstance(problem, InputError)
        assert problem.location.split("-")[0].split("[")[0] in ("MSH", "EVN", "PID", "PV1")
