"""MSH-7 and MSH-3/MSH-4 for the clock monitor: the sender's timestamp as an aware instant, to
the second, or None; never an error, since the message is not judged by the sender's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.hl7v2 import message_time, read_header, sender_of

CST = timezone(timedelta(hours=8))
FIVE_HOURS = timedelta(hours=5)


def _header(msh7: str, msh3: str = "MONITOR^1.2.3^ISO", msh4: str = "ED") -> bytes:
    return f"MSH|^~\\&|{msh3}|{msh4}|GC|HOSP|{msh7}||ADT^A01|C1|P|2.5\r".encode()


@pytest.mark.parametrize(
    ("msh7", "expected"),
    [
        ("20261126081500", datetime(2026, 11, 26, 8, 15, tzinfo=CST)),
        ("20261126081500+0000", datetime(2026, 11, 26, 8, 15, tzinfo=UTC)),
        ("20261126081500.123-0500", datetime(2026, 11, 26, 8, 15, tzinfo=timezone(-FIVE_HOURS))),
        ("2026112608150\u0661", None),  # an Arabic-Indic digit is no HL7 digit
        ("20261126081500^S", datetime(2026, 11, 26, 8, 15, tzinfo=CST)),  # v2.3 TS precision
        ("202611260815", None),  # minutes only: too coarse for a clock
        ("20261326081500", None),  # month 13
        ("20261126081500+2500", None),  # no such offset
        ("", None),
    ],
)  # fmt: skip
def test_msh_7_is_read_to_the_second_or_not_at_all(msh7: str, expected: datetime | None) -> None:
    header = read_header(_header(msh7))
    found = message_time(header, CST)
    assert found == expected
    if found is not None:
        assert found.tzinfo is not None


def test_the_sender_is_msh_3_and_msh_4_first_components() -> None:
    assert sender_of(read_header(_header("20261126081500"))) == "MONITOR/ED"
    assert sender_of(read_header(_header("20261126081500", msh3="", msh4=""))) is None


@given(st.text(max_size=40).filter(lambda t: not set(t) & set("|\r\n^~\\&")))
def test_any_msh_7_gives_an_aware_time_or_none(msh7: str) -> None:
    found = message_time(read_header(_header(msh7)), CST)
    assert found is None or found.tzinfo is not None


@given(st.from_regex(r"[0-9]{14}(\.[0-9]{1,4})?([+-][0-9]{4})?", fullmatch=True))
def test_a_well_formed_msh_7_is_that_second_or_an_impossible_date(msh7: str) -> None:
    found = message_time(read_header(_header(msh7)), CST)
    if found is not None:
        stamp = f"{found.year:04d}{found.month:02d}{found.day:02d}"
        stamp += f"{found.hour:02d}{found.minute:02d}{found.second:02d}"
        assert stamp == msh7[:14]
        assert found.tzinfo is not None
