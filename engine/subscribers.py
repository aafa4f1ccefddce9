"""Change-event subscribers: long-running plugins (FHIR Subscriptions, the pathways) that the
engine finds through the entry point group `greenchannel.subscribers` and runs, one supervised
task each, for as long as it serves.

The engine knows no change-event source: a subscriber reads events wherever they come from (the
FHIR store's `ChangeFeed`, with its own durable cursor named after the subscriber) and sends
what it has to say through the engine's channels with `SubscriberContext.accept`, so it is
journalled, queued, retried and counted like every other message.

A subscriber that holds work beyond its cursor (the alert scheduler's cases still to look at)
says how much with `pending()`; `/metrics` shows it, so an operator (or a test) can tell a
subscriber that is idle from one that is behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncEngine

from engine.connectors import Inbound, Receipt

__all__ = [
    "ReportsPending",
    "Subscriber",
    "SubscriberContext",
    "SubscriberFactory",
    "run_subscribers",
]

log = logging.getLogger(__name__)

RESTART_MAX_S = 30.0  # longest wait before restarting a subscriber that failed


@dataclass(frozen=True, slots=True)
class SubscriberContext:
    """What the engine hands a subscriber factory."""

    name: str  # the entry point's name: the subscriber's cursor is kept under it
    database: AsyncEngine
    data_dir: Path
    timezone: tzinfo
    # Journals `inbound` as a new message of the named channel and returns once it is
    # committed (the channel's source is bypassed; its workers deliver it as usual).
    accept: Callable[[str, Inbound], Awaitable[Receipt]]
    # Runs `work(connection)` as one write transaction on the engine's write thread.
    run_write: Callable[[Callable[[Any], Any]], Awaitable[Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Subscriber(Protocol):
    """Follows change events and acts on them; idempotent, as an event may come twice."""

    async def run(self) -> None:
        """Process events until cancelled, committing its cursor as it goes."""
        ...

    async def aclose(self) -> None:
        """Release what it holds (connections); called after `run` ends."""
        ...


@runtime_checkable
class ReportsPending(Protocol):
    """A subscriber whose work does not all end when its cursor commits."""

    def pending(self) -> int:
        """Work taken from the change feed and not finished yet; 0 when idle."""
        ...


class SubscriberFactory(Protocol):
    """Registered under `greenchannel.subscribers`: builds the subscriber for one engine."""

    def build(self, context: SubscriberContext) -> Subscriber: ...


async def run_subscribers(
    factories: Mapping[str, SubscriberFactory],
    context: Callable[[str], SubscriberContext],
    running: dict[str, Subscriber] | None = None,
) -> None:
    """Run every subscriber until cancelled; one that fails is restarted after a backoff, so a
    bug or an unreachable database never stops the others (its cursor says where it was).
    `running`, when given, holds each subscriber while it runs, by name."""
    live = running if running is not None else {}
    async with asyncio.TaskGroup() as group:
        for name, factory in sorted(factories.items()):
            group.create_task(
                _supervise(name, factory, context(name), live), name=f"subscriber:{name}"
            )


async def _supervise(
    name: str,
    factory: SubscriberFactory,
    context: SubscriberContext,
    running: dict[str, Subscriber],
) -> None:
    backoff_s = 0.5
    while True:
        subscriber: Subscriber | None = None
        try:
            subscriber = factory.build(context)
            running[name] = subscriber
            log.info("subscriber.started", extra={"subscriber": name})
            await subscriber.run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.error("subscriber.crashed", extra={"subscriber": name}, exc_info=True)
        finally:
            running.pop(name, None)
            if subscriber is not None:
                with contextlib.suppress(Exception):
                    await subscriber.aclose()
        await asyncio.sleep(backoff_s)
        backoff_s = min(backoff_s * 2, RESTART_MAX_S)
