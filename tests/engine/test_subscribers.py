"""Change-event subscribers in the engine: each runs as its own supervised task, and one that
fails is restarted without stopping the others."""

from __future__ import annotations

import asyncio
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from engine.connectors import Inbound, Receipt
from engine.subscribers import SubscriberContext, run_subscribers
from engine.testing import wait_until

pytestmark = pytest.mark.anyio


class Flaky:
    """Fails on its first `failures` runs, then records that it runs until cancelled."""

    def __init__(self, failures: int, log: list[str]) -> None:
        self.failures, self.log = failures, log

    def build(self, context: SubscriberContext) -> Flaky.Running:
        return Flaky.Running(self, context)

    class Running:
        def __init__(self, factory: Flaky, context: SubscriberContext) -> None:
            self.factory, self.context = factory, context

        async def run(self) -> None:
            self.factory.log.append(f"{self.context.name} started")
            if self.factory.failures > 0:
                self.factory.failures -= 1
                raise RuntimeError("the database went away")
            await asyncio.Event().wait()

        async def aclose(self) -> None:
            self.factory.log.append(f"{self.context.name} closed")


async def test_a_failing_subscriber_is_restarted_and_the_others_keep_running(
    tmp_path: Path,
) -> None:
    database = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    log: list[str] = []

    async def accept(channel: str, inbound: Inbound) -> Receipt:
        raise AssertionError("not used")

    def context(name: str) -> SubscriberContext:
        return SubscriberContext(
            name=name, database=database, data_dir=tmp_path, timezone=UTC, accept=accept
        )

    factories: dict[str, Any] = {"steady": Flaky(0, log), "flaky": Flaky(1, log)}
    running: dict[str, Any] = {}
    task = asyncio.create_task(run_subscribers(factories, context, running))
    try:
        await wait_until(lambda: _is(log.count("flaky started") == 2), timeout_s=10)
        # the restarted one is what /metrics asks for its pending work, not the failed one
        assert set(running) == {"steady", "flaky"}
        assert running["flaky"].factory.failures == 0
        assert all(s.context.name == name for name, s in running.items())
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await database.dispose()

    assert log.count("steady started") == 1  # never disturbed by its neighbour
    assert log.count("flaky closed") == 2  # the failed run was closed before the restart
    assert log.count("steady closed") == 1  # and every subscriber is closed on the way out
    assert running == {}  # a stopped subscriber is no longer asked for its pending work


async def _is(value: bool) -> bool:
    return value
