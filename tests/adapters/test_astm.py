"""The ASTM E1381 receiver on a real socket, driven by a simulated analyser: ACK after journal,
NAK and retransmission, lost ACKs, garbage, truncation and timeouts journalled as errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.astm import AstmSource, AstmSourceConfig, AstmSourceFactory
from devices.astm import ACK, ENQ, EOT, MEDIA_TYPE, NAK, build_frames
from engine.connectors import ConnectorContext
from engine.errors import FramingError, ParseError
from tests.devices.analysers import AstmAnalyser, Journal, astm_results, connector_context, serving

pytestmark = pytest.mark.anyio


@pytest.fixture
async def context(tmp_path: Path) -> AsyncIterator[ConnectorContext]:
    async with connector_context(tmp_path, "poct-astm") as context:
        yield context


def astm(context: ConnectorContext, **options: Any) -> AstmSource:
    config = AstmSourceConfig(kind="astm", host="127.0.0.1", port=0, **options)
    return AstmSourceFactory().build(config, context)


async def test_a_message_is_journalled_once_and_every_frame_acked(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    message = astm_results()
    async with serving(astm(context), journal) as source, AstmAnalyser(source.port) as analyser:
        await analyser.send_message(message)
        await journal.wait_for(1)
    (inbound,) = journal.inbounds
    assert inbound.raw == message  # the records as sent, frames removed
    assert inbound.media_type == MEDIA_TYPE and inbound.problem is None
    assert inbound.dedup_key is not None and inbound.dedup_key.startswith("astm:PF-0042:")
    assert inbound.origin.startswith("astm://127.0.0.1:")
    assert analyser.answers == [ACK] * len(build_frames(message))
    # H-14 by the analyser's clock, in the channel's zone, for the clock monitor
    assert (
        inbound.sent_at is not None and inbound.sent_at.isoformat() == "2026-11-26T08:24:00+08:00"
    )
    assert inbound.sender == "PF-0042"


async def test_a_bad_checksum_is_naked_and_the_retransmitted_frame_taken(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    message = astm_results()
    async with serving(astm(context), journal) as source, AstmAnalyser(source.port) as analyser:
        await analyser.send_message(message, corrupt_frame=2)
        await journal.wait_for(1)
    assert analyser.answers[2:4] == [NAK, ACK]  # the third frame: refused, then taken
    assert [i.raw for i in journal.inbounds] == [message]  # nothing lost, nothing doubled


async def test_a_frame_resent_after_a_lost_ack_is_acked_and_taken_once(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    message = astm_results()
    frames = build_frames(message)
    async with serving(astm(context), journal) as source, AstmAnalyser(source.port) as analyser:
        await analyser.establish()
        assert await analyser.send_frame(frames[0]) == ACK
        assert await analyser.send_frame(frames[0]) == ACK  # "our ACK was lost": resent
        for frame in frames[1:]:
            assert await analyser.send_frame(frame) == ACK
        await analyser.raw(EOT)
        await journal.wait_for(1)
    assert [i.raw for i in journal.inbounds] == [message]


async def test_a_wrong_frame_number_is_naked(context: ConnectorContext) -> None:
    journal = Journal()
    frames = build_frames(astm_results())
    async with serving(astm(context), journal) as source, AstmAnalyser(source.port) as analyser:
        await analyser.establish()
        await analyser.raw(frames[1])  # frame 2 where 1 is expected
        assert await analyser.answer() == NAK
        assert await analyser.send_frame(frames[0]) == ACK  # the sequence resumes


async def test_the_last_frame_is_acked_only_after_the_journal_commits(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    journal.gate = asyncio.Event()
    frames = build_frames(astm_results())
    async with serving(astm(context), journal) as source, AstmAnalyser(source.port) as analyser:
        await analyser.establish()
        for frame in frames[:-1]:
            assert await analyser.send_frame(frame) == ACK
        await analyser.raw(frames[-1])
        await journal.wait_for(1)
        answer = asyncio.ensure_future(analyser.answer())
        await asyncio.sleep(0.2)
        assert not answer.done()  # not committed yet: no ACK
        journal.gate.set()
        assert await answer == ACK


async def test_garbage_on_the_line_is_journalled_as_an_error_and_the_link_still_works(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    async with serving(astm(context), journal) as source, AstmAnalyser(source.port) as analyser:
        await analyser.raw(EOT + b"\r\n")  # a stray EOT between transfers means nothing
        await analyser.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await analyser.send_message(astm_results())
        await journal.wait_for(2)
    garbage, message = journal.inbounds
    assert isinstance(garbage.problem, FramingError)
    assert garbage.raw.startswith(b"GET / HTTP/1.1")
    assert "not E1381" in garbage.problem.reason
    assert message.problem is None


async def test_a_connection_lost_mid_message_journals_what_arrived_as_truncated(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    frames = build_frames(astm_results())
    async with serving(astm(context), journal) as source:
        async with AstmAnalyser(source.port) as analyser:
            await analyser.establish()
            for frame in frames[:3]:
                assert await analyser.send_frame(frame) == ACK
            await analyser.raw(frames[3][:10])  # cut inside the fourth frame
        await journal.wait_for(1)
    (inbound,) = journal.inbounds
    assert isinstance(inbound.problem, FramingError)
    assert "truncated" in inbound.problem.reason
    assert inbound.raw == b"".join(f[2:-5] for f in frames[:3])  # the three complete frames


async def test_a_silent_analyser_is_timed_out_and_its_partial_message_kept(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    frames = build_frames(astm_results())
    async with serving(astm(context, frame_timeout_s=0.3), journal) as source:
        async with AstmAnalyser(source.port) as analyser:
            await analyser.establish()
            assert await analyser.send_frame(frames[0]) == ACK
            await journal.wait_for(1)  # no second frame: the receiver timer runs out
    (inbound,) = journal.inbounds
    assert isinstance(inbound.problem, FramingError)
    assert "receiver timeout" in inbound.problem.reason


async def test_an_unreadable_message_is_journalled_with_the_record_that_is_wrong(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    bad = b"H|\\^&\rR|1|^^^GLU|5.1|mmol/L\rL|1\r"  # a result outside any patient/order
    async with serving(astm(context), journal) as source, AstmAnalyser(source.port) as analyser:
        await analyser.send_message(bad)
        await journal.wait_for(1)
    (inbound,) = journal.inbounds
    assert isinstance(inbound.problem, ParseError)
    assert inbound.problem.location == "R record 2"
    assert inbound.raw == bad


async def test_a_frame_naked_six_times_abandons_the_transfer(context: ConnectorContext) -> None:
    journal = Journal()
    frames = build_frames(astm_results())
    broken = frames[1][:-4] + b"ZZ" + frames[1][-2:]
    async with serving(astm(context), journal) as source, AstmAnalyser(source.port) as analyser:
        await analyser.raw(ENQ)
        assert await analyser.answer() == ACK
        assert await analyser.send_frame(frames[0]) == ACK
        for _ in range(6):
            await analyser.raw(broken)
            assert await analyser.answer() == NAK
        await journal.wait_for(1)
    (inbound,) = journal.inbounds
    assert isinstance(inbound.problem, FramingError)
    assert "NAKed 6 times" in inbound.problem.reason
