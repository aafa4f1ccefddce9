"""The UWB sources' deploy-time checks: a secret's environment variable that is not set stops
the deploy with the key to fix (the broker or RTLS server being down does not: they retry);
and the gateway's clock sample each journals: its message's newest fix time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest

from adapters.mqtt import MqttSource, MqttSourceFactory
from adapters.sewio import SewioSourceFactory
from engine.connectors import Accept, ConnectorContext, Inbound, Receipt
from engine.errors import ConfigError
from engine.testing import wait_until

pytestmark = pytest.mark.anyio


def context(tmp_path: Path) -> ConnectorContext:
    return ConnectorContext(channel="uwb", data_dir=tmp_path, database=None)  # type: ignore[arg-type]


async def test_a_missing_secret_variable_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GC_TEST_NO_SUCH_SECRET", raising=False)
    mqtt = MqttSourceFactory().build(
        {"kind": "mqtt", "password_env": "GC_TEST_NO_SUCH_SECRET"}, context(tmp_path)
    )
    with pytest.raises(ConfigError, match="GC_TEST_NO_SUCH_SECRET is not set") as caught:
        await mqtt.start()
    assert caught.value.key == "source.password_env"
    sewio = SewioSourceFactory().build(
        {"kind": "sewio", "url": "ws://127.0.0.1:9", "api_key_env": "GC_TEST_NO_SUCH_SECRET"},
        context(tmp_path),
    )
    with pytest.raises(ConfigError, match="RTLS Studio API key"):
        await sewio.start()


@contextlib.asynccontextmanager
async def serving(source: MqttSource, accept: Accept) -> AsyncIterator[None]:
    """The source serving `accept`, connected to the real Mosquitto, until the block ends."""
    await source.start()
    task = asyncio.create_task(source.serve(accept))
    try:

        async def connected() -> bool:
            return source.connected.is_set()

        await wait_until(connected, timeout_s=20)
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await source.aclose()


async def test_the_mqtt_source_connects_to_the_real_mosquitto(tmp_path: Path) -> None:
    async def accept(inbound: Inbound) -> Receipt:
        return Receipt(1, False)

    source = MqttSourceFactory().build(
        {"kind": "mqtt", "topics": ["greenchannel-test/none"], "clean_session": True},
        context(tmp_path),
    )
    async with serving(source, accept):
        assert source.connected.is_set()


POZYX = (
    b'[{"version": "2.0", "tagId": "30331", "timestamp": 1764126000.250, "success": true,'
    b' "data": {"coordinates": {"x": 9932, "y": -19651, "z": 5000}}},'
    b' {"version": "2.0", "tagId": "30332", "timestamp": 1764126001.750, "success": true,'
    b' "data": {"coordinates": {"x": 100, "y": 200, "z": 0}}}]'
)


@pytest.mark.parametrize("clock", ["uwb-fixes", "none"])
async def test_the_mqtt_source_journals_the_newest_fix_time_as_the_gateways_clock(
    tmp_path: Path, clock: str
) -> None:
    """Through the real Mosquitto: the Pozyx message's newest fix time is `sent_at` (the
    sample of the gateway's clock) when the channel says where the clock is, else none."""
    received: list[Inbound] = []

    async def accept(inbound: Inbound) -> Receipt:
        received.append(inbound)
        return Receipt(len(received), False)

    topic = f"greenchannel-test/clock-{clock}-{tmp_path.name}"
    source = MqttSourceFactory().build(
        {"kind": "mqtt", "topics": [topic], "clean_session": True, "clock": clock},
        context(tmp_path),
    )
    async with serving(source, accept):
        async with aiomqtt.Client("127.0.0.1", 1883) as client:
            await client.publish(topic, POZYX, qos=1)
            await client.publish(topic, b"not json", qos=1)

        async def both() -> bool:
            return len(received) == 2

        await wait_until(both, timeout_s=20)
    fixes, garbage = received
    expected = datetime.fromtimestamp(1764126001.750, tz=UTC) if clock == "uwb-fixes" else None
    assert fixes.sent_at == expected
    assert garbage.problem is not None and garbage.sent_at is None


def test_a_sewio_feed_message_is_stamped_with_its_position_time(tmp_path: Path) -> None:
    sewio = SewioSourceFactory().build(
        {"kind": "sewio", "url": "ws://127.0.0.1:9"}, context(tmp_path)
    )
    feed = (
        b'{"resource": "/feeds/18", "body": {"id": "18", "datastreams": ['
        b'{"id": "posX", "current_value": " 6.34", "at": "2026-11-26 03:00:01.500"},'
        b'{"id": "posY", "current_value": "2.10", "at": "2026-11-26 03:00:01.500"}]}}'
    )
    stamped = sewio._inbound(feed)
    assert stamped.sent_at == datetime(2026, 11, 26, 3, 0, 1, 500000, tzinfo=UTC)
    assert sewio._inbound(b'{"body": {}}').sent_at is None
