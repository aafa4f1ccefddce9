"""The clock monitor: a change-event subscriber (entry point `greenchannel.subscribers:
device-clocks`) that folds every journalled sender timestamp into the source's clock, checks the
host's clock by NTP, and raises and resolves clock alerts through an outbound channel.

It reads the journal after its own cursor (`clock_cursor`) in the same write transaction that
saves the clocks, so a restart neither loses nor repeats a sample, and on PostgreSQL the locked
cursor row keeps two engine nodes from folding the same rows in. Alerts are messages of the
channel `device-clock-alerts` (internal source, websocket destination) with the dedup key
`clock/<source>/<n>/raised|resolved`: the state says which alert it wants journalled, and
whatever is not yet journalled is sent after each commit and at start, so each crossing alerts
once and recovers once, across restarts.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy.engine import Connection, Engine

from devices.clock.config import ClockSettings, clock_settings
from devices.clock.registry import ClockRegistry, SourceClock, source_id_for
from devices.clock.sntp import NtpError, query_ntp
from devices.clock.store import (
    HostClock,
    journal_samples,
    load_sources,
    mark_journalled,
    read_cursor,
    save_host,
    save_sources,
    write_cursor,
)
from engine.connectors import Inbound, Receipt
from engine.database import create_sync_engine
from engine.subscribers import SubscriberContext

__all__ = ["ClockMonitor", "ClockMonitorFactory", "alert_message", "own_writes"]

log = logging.getLogger(__name__)

MESSAGE_KIND = "clock-alert"
MEDIA_TYPE = "application/json"
BATCH = 2000  # journal rows read per transaction

RunWrite = Callable[[Callable[[Connection], Any]], Awaitable[Any]]
AcceptInto = Callable[[str, Inbound], Awaitable[Receipt]]


class ClockMonitor:
    """Follows the journal, keeps the clocks, checks NTP, sends the alerts."""

    def __init__(
        self,
        settings: ClockSettings,
        *,
        run_write: RunWrite,
        accept: AcceptInto,
        timezone: tzinfo,
        node: str | None = None,
    ) -> None:
        self.settings = settings
        self.registry = ClockRegistry(settings)
        self._run_write = run_write
        self._accept = accept
        self._tz = timezone
        self._node = node or socket.gethostname()

    async def run(self) -> None:
        """Send the alerts a previous run left unsent, then follow until cancelled."""
        await self._send_alerts(await self._run_write(lambda c: load_sources(c)))
        if self.settings.ntp_server:
            # Known before the first sample: receipt times are corrected from the start.
            await self.check_ntp()
        async with asyncio.TaskGroup() as group:
            if self.settings.ntp_server:
                group.create_task(self._ntp_loop(), name="clocks:ntp")
            group.create_task(self._journal_loop(), name="clocks:journal")

    async def aclose(self) -> None:
        """Nothing held between transactions."""

    async def absorb(self) -> int:
        """Fold in the journal rows not read yet (one batch); returns how many rows were read."""
        read, changed = await self._run_write(self._absorb)
        await self._send_alerts(changed)
        return int(read)

    def _absorb(self, connection: Connection) -> tuple[int, list[SourceClock]]:
        cursor = read_cursor(connection)
        samples, last, read = journal_samples(connection, cursor, BATCH)
        if not read:
            return 0, []
        ids = {source_id_for(s.channel, s.sender) for s in samples}
        # The saved state, not this process's memory: another node may have moved it on.
        for source in load_sources(connection, ids):
            self.registry.put(source)
        for sample in samples:
            self.registry.fold(
                source_id_for(sample.channel, sample.sender),
                sample.sent_at,
                sample.received_at,
                channel=sample.channel,
                sender=sample.sender,
            )
        for source_id in ids:
            self.registry.refresh(source_id)
        changed = [s for s in (self.registry.get(i) for i in sorted(ids)) if s is not None]
        save_sources(connection, changed)
        write_cursor(connection, last)
        return read, changed

    async def _journal_loop(self) -> None:
        while True:
            read = await self.absorb()
            if read < BATCH:
                await asyncio.sleep(self.settings.poll_s)

    async def check_ntp(self) -> HostClock:
        """Ask the NTP server once; the host's offset is used for the receipt times after."""
        server = self.settings.ntp_server
        assert server is not None
        where = f"{server}:{self.settings.ntp_port}"
        now = datetime.now(self._tz)
        try:
            result = await query_ntp(
                server, port=self.settings.ntp_port, timeout_s=self.settings.ntp_timeout_s
            )
        except NtpError as exc:
            log.warning("clocks.ntp_failed", extra={"server": server, "error": exc.message})
            host = HostClock(self._node, where, None, None, None, now, exc.message)
        else:
            self.registry.host_offset_s = result.offset_s
            host = HostClock(
                self._node, where, result.offset_s, result.delay_s, result.stratum, now, None
            )
            log.info("clocks.ntp_checked", extra={"offset_s": round(result.offset_s, 3)})
        await self._run_write(lambda c: save_host(c, host))
        return host

    async def _ntp_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ntp_interval_s)
            await self.check_ntp()

    async def _send_alerts(self, sources: list[SourceClock]) -> None:
        for source in sources:
            key = source.wanted_alert
            if key is None or key == source.alert_journalled:
                continue
            message = alert_message(source, self.settings, datetime.now(self._tz))
            receipt = await self._accept(
                self.settings.alert_channel,
                Inbound(
                    raw=json.dumps(message, ensure_ascii=False).encode(),
                    media_type=MEDIA_TYPE,
                    received_at=datetime.now(self._tz),
                    origin=f"clock://{source.source_id}",
                    dedup_key=key,
                    correlation_id=message["alert"],
                ),
            )
            await self._run_write(functools.partial(_mark, source_id=source.source_id, key=key))
            log.info(
                f"clocks.alert_{message['event']}",
                extra={"message_id": receipt.message_id, "duplicate": receipt.duplicate},
            )


def _mark(connection: Connection, *, source_id: str, key: str) -> None:
    mark_journalled(connection, source_id, key)


def alert_message(source: SourceClock, settings: ClockSettings, now: datetime) -> dict[str, Any]:
    """The JSON of a clock alert: which source, how far off, and against which threshold."""
    event = "raised" if source.alerting else "resolved"
    offset = source.estimate.offset_s or 0.0
    direction = "ahead of" if offset > 0 else "behind"
    if event == "raised":
        detail = (
            f"the clock of {source.source_id} is {abs(offset):.0f} s {direction} true time "
            f"(alert threshold {settings.alert_threshold_s:g} s); set the device's clock or "
            "point it at the hospital NTP server"
        )
    else:
        detail = (
            f"the clock of {source.source_id} is back within {settings.recover_s:g} s "
            f"({offset:+.0f} s)"
        )
    return {
        "kind": MESSAGE_KIND,
        "event": event,
        "alert": f"clock/{source.source_id}/{source.crossings}",
        "at": now.isoformat(timespec="seconds"),
        "source": {"id": source.source_id, "channel": source.channel, "sender": source.sender},
        "offset_s": source.estimate.offset_s,
        "drift_ppm": source.estimate.drift_ppm,
        "uncertainty_s": source.estimate.uncertainty_s,
        "threshold_s": settings.alert_threshold_s,
        "recover_below_s": settings.recover_s,
        "samples": source.samples,
        "last_seen": source.last_seen.astimezone(now.tzinfo).isoformat(timespec="seconds"),
        "detail": detail,
    }


class ClockMonitorFactory:
    """Entry point `greenchannel.subscribers: device-clocks`."""

    def build(self, context: SubscriberContext) -> ClockMonitor:
        settings = context.extra.get("settings")
        section = getattr(settings, "clocks", None)
        clocks = clock_settings(section)
        run_write = context.run_write or own_writes(create_sync_engine(context.database.url))
        return ClockMonitor(
            clocks, run_write=run_write, accept=context.accept, timezone=context.timezone
        )


def own_writes(engine: Engine) -> RunWrite:
    """Write transactions on a synchronous engine of our own, for an engine without a write
    thread to lend (tests, tools that build a SubscriberContext by hand)."""

    async def run_write(work: Callable[[Connection], Any]) -> Any:
        def transaction() -> Any:
            with engine.begin() as connection:
                return work(connection)

        return await asyncio.to_thread(transaction)

    return run_write
