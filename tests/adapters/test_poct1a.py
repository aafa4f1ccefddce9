"""The POCT1-A2 data manager on a real socket, driven by a simulated device: the conversation
(HEL, DST, REQ, OBS, EOT, END) with ACK.R01 naming each control id after the journal commit;
unsafe XML, garbage and truncated messages journalled as errors and answered AE."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.poct1a import Poct1aSource, Poct1aSourceConfig, Poct1aSourceFactory
from devices.poct import MEDIA_TYPE, PoctMessage, parse_message
from engine.connectors import ConnectorContext
from engine.errors import FramingError, ParseError
from tests.devices.analysers import (
    Journal,
    PoctDevice,
    connector_context,
    poct_dst,
    poct_hello,
    poct_observations,
    serving,
)
from tests.devices.test_poct import XXE

pytestmark = pytest.mark.anyio


@pytest.fixture
async def context(tmp_path: Path) -> AsyncIterator[ConnectorContext]:
    async with connector_context(tmp_path, "poct-poct1a") as context:
        yield context


def poct1a(context: ConnectorContext, **options: Any) -> Poct1aSource:
    config = Poct1aSourceConfig(kind="poct1a", host="127.0.0.1", port=0, **options)
    return Poct1aSourceFactory().build(config, context)


def read(answer: bytes) -> PoctMessage:
    return parse_message(answer)


def acked(answer: bytes) -> tuple[str, str]:
    message = read(answer)
    assert message.message_type == "ACK.R01"
    return message.value("ACK/ACK.type_cd"), message.value("ACK/ACK.ack_control_id")


async def test_a_conversation_is_answered_as_poct1_a2_describes(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    observations = poct_observations(control_id=3)
    async with serving(poct1a(context), journal) as source, PoctDevice(source.port) as device:
        answers = await device.conversation(observations)
    hello, status, request, obs, eot, end = (read(a) for a in answers)
    assert acked(answers[0]) == ("AA", "1") and acked(answers[1]) == ("AA", "2")
    assert request.message_type == "REQ.R01" and request.value("REQ/REQ.request_cd") == "ROBS"
    assert acked(answers[3]) == ("AA", "3")
    assert acked(answers[4]) == ("AA", "90")
    assert end.message_type == "END.R01"
    # the data manager's own control ids are distinct and increasing
    ids = [int(m.control_id) for m in (hello, status, request, obs, eot, end)]
    assert ids == sorted(set(ids))
    (inbound,) = journal.inbounds  # only the observations are journalled
    assert inbound.raw == poct_hello() + observations  # with the hello that names the device
    assert inbound.media_type == MEDIA_TYPE and inbound.problem is None
    assert inbound.correlation_id == "3"
    assert inbound.dedup_key is not None and inbound.dedup_key.startswith("poct1a:ISTAT-0815:")
    # HDR.creation_dttm by the device's clock, for the clock monitor
    assert (
        inbound.sent_at is not None and inbound.sent_at.isoformat() == "2026-11-26T08:24:00+08:00"
    )
    assert inbound.sender == "ISTAT-0815"


async def test_observations_resent_under_a_new_control_id_keep_their_dedup_key(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    async with serving(poct1a(context), journal) as source, PoctDevice(source.port) as device:
        await device.conversation(poct_observations(control_id=3))
    async with serving(poct1a(context), journal) as source, PoctDevice(source.port) as device:
        await device.conversation(poct_observations(control_id=71))
    first, again = journal.inbounds
    assert first.dedup_key == again.dedup_key


async def test_xml_with_an_external_entity_is_refused_journalled_and_the_device_told(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    async with serving(poct1a(context), journal) as source, PoctDevice(source.port) as device:
        await device.exchange(poct_hello())
        answer = await device.exchange(XXE)
        code, _ = acked(answer)
        note = read(answer).value("ACK/ACK.note_txt")
        # the conversation goes on after the refusal
        assert acked(await device.exchange(poct_dst(control_id=5, waiting=0))) == ("AA", "5")
    assert code == "AE" and "DTD or entities" in note and "journal row 1" in note
    (inbound,) = journal.inbounds
    assert inbound.raw == XXE and isinstance(inbound.problem, ParseError)
    assert inbound.problem.ack_code == "AR"


async def test_garbage_on_the_socket_is_journalled_and_answered_ae(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    async with serving(poct1a(context), journal) as source, PoctDevice(source.port) as device:
        answer = await device.exchange(b"\x00\x05ENQ-from-an-astm-device\r\n")
        assert acked(await device.exchange(poct_hello())) == ("AA", "1")
    assert acked(answer)[0] == "AE"
    (inbound,) = journal.inbounds
    assert isinstance(inbound.problem, FramingError)
    assert b"ENQ-from-an-astm-device" in inbound.raw


async def test_a_message_cut_off_by_the_device_is_journalled_as_truncated(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    observations = poct_observations()
    async with serving(poct1a(context), journal) as source:
        async with PoctDevice(source.port) as device:
            await device.exchange(poct_hello())
            await device.raw(observations[:150])
        await journal.wait_for(1)
    (inbound,) = journal.inbounds
    assert isinstance(inbound.problem, FramingError)
    assert "truncated" in inbound.problem.reason
    assert inbound.raw == observations[:150]


async def test_observations_without_a_test_code_are_journalled_and_answered_ae(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    broken = poct_observations(control_id=9).replace(b' V="cTnI"', b' V=""')
    async with serving(poct1a(context), journal) as source, PoctDevice(source.port) as device:
        await device.exchange(poct_hello())
        answer = await device.exchange(broken)
    code, control_id = acked(answer)
    assert (code, control_id) == ("AE", "9")
    assert "OBS.observation_id" in read(answer).value("ACK/ACK.note_txt")
    (inbound,) = journal.inbounds
    assert isinstance(inbound.problem, ParseError) and inbound.dedup_key is None
