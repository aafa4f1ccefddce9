"""The HTTP source stamps what the clock monitor samples: an HL7 v2 body's MSH-7 and MSH-3/4, or
any other body's HTTP `Date` header; anything unusable gives no sample and never an error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Headers

from adapters.http import _stamp
from tests.adapters.test_http import AUTH, HL7, Journal, client_for, database, running_source

__all__ = ["database"]  # the fixture, used by name
CST = timezone(timedelta(hours=8))


@pytest.mark.anyio
async def test_an_hl7_body_is_stamped_with_msh_7_and_its_sender(database: AsyncEngine) -> None:
    journal = Journal()
    headers = {**AUTH, "Content-Type": "x-application/hl7-v2+er7"}
    async with running_source(database, journal.accept) as source, client_for(source) as client:
        assert (await client.post("/", content=HL7, headers=headers)).status_code == 202
    (inbound,) = journal.inbounds
    assert inbound.sent_at == datetime(2026, 11, 25, 17, 36, 1, tzinfo=CST)
    assert inbound.sender == "HIS/ED"


@pytest.mark.anyio
async def test_another_body_is_stamped_with_the_date_header_only_when_it_is_one(
    database: AsyncEngine,
) -> None:
    journal = Journal()
    sent = datetime(2026, 11, 26, 3, 4, 5, tzinfo=UTC)
    async with running_source(database, journal.accept) as source, client_for(source) as client:
        for date in (format_datetime(sent, usegmt=True), "yesterday, roughly", None):
            headers = {**AUTH, "Content-Type": "application/json"}
            if date is not None:
                headers["Date"] = date
            response = await client.post("/", content=b"{}", headers=headers)
            assert response.status_code == 202
    stamped, garbled, missing = journal.inbounds
    assert stamped.sent_at == sent and stamped.sender is None
    assert garbled.sent_at is None and missing.sent_at is None


@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=200).map(lambda tail: b"MSH|^~\\&|" + tail),  # headers gone wrong
        st.sampled_from([b"|" * n for n in range(5, 12)]).map(lambda bars: b"MSH" + bars + b"2026"),
    ),
    media_type=st.sampled_from(["x-application/hl7-v2+er7", "application/json", "text/plain"]),
    date=st.one_of(
        st.none(), st.text(st.characters(max_codepoint=255), max_size=60)
    ),  # latin-1: HTTP
)
def test_any_body_and_date_header_give_a_stamp_or_none_never_an_error(
    body: bytes, media_type: str, date: str | None
) -> None:
    headers = Headers({"date": date} if date else {})
    stamp = _stamp(body, media_type, "utf-8", headers, CST)
    sent_at = stamp.get("sent_at")
    assert sent_at is None or sent_at.utcoffset() is not None
