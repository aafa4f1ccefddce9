"""HL7 batches: recognising one, splitting it into messages, and the batch acknowledgment."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.hl7v2 import batch_ack, is_batch, split_batch

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=timezone(timedelta(hours=8)))
MSG = "MSH|^~\\&|HIS|H|GC|ED|20261125||ADT^A01|{id}|P|2.5.1\rPID|1||{id}^^^H^MR\r"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"BHS|^~\\&|HIS\rMSH|^~\\&|X\r", True),
        (b"FHS|^~\\&|HIS\r", True),
        (b"\xef\xbb\xbf\r\nBHS|^~\\&|HIS\n", True),  # BOM and a blank line first
        (b"MSH|^~\\&|HIS\r", False),
        (b"BHS", False),
        (b"", False),
    ],
)
def test_a_batch_is_recognised_by_its_first_segment(data: bytes, expected: bool) -> None:
    assert is_batch(data) is expected


def test_a_batch_with_crlf_and_custom_delimiters_splits_into_its_messages() -> None:
    messages = [MSG.format(id=i).replace("|", "#") for i in ("M1", "M2")]
    data = ("BHS#^~\\&#HIS\r\n" + "".join(messages).replace("\r", "\r\n") + "BTS#2\r\n").encode()
    parts = split_batch(data)
    assert [part.split(b"\r\n")[0].split(b"#")[9] for part in parts] == [b"M1", b"M2"]
    assert all(b"BTS" not in part and b"BHS" not in part for part in parts)


@given(count=st.integers(0, 5), file_header=st.booleans(), separator=st.sampled_from("|#"))
def test_the_batch_ack_counts_its_acks_and_names_the_batch_it_answers(
    count: int, file_header: bool, separator: str
) -> None:
    head = f"FHS{separator}^~\\&{separator}HIS{separator}H" + separator * 7 + "F-9\r"
    data = ((head if file_header else "") + f"BHS{separator}^~\\&{separator}HIS{separator}H"
            + separator * 7 + "B-7\r").encode()  # fmt: skip
    acks = [f"MSH{separator}^~\\&\rMSA{separator}AA{separator}{i}\r" for i in range(count)]
    text = batch_ack(data, acks, control_id="42", now=NOW)
    segments = [s.split(separator) for s in text.split("\r") if s]
    names = [s[0] for s in segments]
    expected_head = ["FHS", "BHS"] if file_header else ["BHS"]
    expected_tail = ["BTS", "FTS"] if file_header else ["BTS"]
    assert names == expected_head + ["MSH", "MSA"] * count + expected_tail
    bhs = segments[names.index("BHS")]
    assert bhs[10:12] == ["42", "B-7"]  # BHS-11 ours, BHS-12 theirs
    assert bhs[4:6] == ["HIS", "H"]  # they are now the receiver
    assert segments[names.index("BTS")][1] == str(count)


def test_the_batch_ack_needs_an_aware_time() -> None:
    with pytest.raises(ValueError):
        batch_ack(b"BHS|^~\\&\r", [], control_id="1", now=datetime(2026, 1, 1))  # noqa: DTZ001
