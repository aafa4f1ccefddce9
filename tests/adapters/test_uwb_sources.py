"""The UWB sources' deploy-time checks: a secret's environment variable that is not set stops
the deploy with the key to fix (the broker or RTLS server being down does not: they retry)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.mqtt import MqttSourceFactory
from adapters.sewio import SewioSourceFactory
from engine.connectors import ConnectorContext
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


async def test_the_mqtt_source_connects_to_the_real_mosquitto(tmp_path: Path) -> None:
    import asyncio

    from engine.connectors import Inbound, Receipt

    async def accept(inbound: Inbound) -> Receipt:
        return Receipt(1, False)

    source = MqttSourceFactory().build(
        {"kind": "mqtt", "topics": ["greenchannel-test/none"], "clean_session": True},
        context(tmp_path),
    )
    await source.start()
    task = asyncio.create_task(source.serve(accept))
    try:

        async def connected() -> bool:
            return source.connected.is_set()

        await wait_until(connected, timeout_s=20)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await source.aclose()
