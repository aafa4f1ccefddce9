"""The channel runtime: deploys channels and runs their sources, processing and destination queues.

Per channel: one source feeding the journal writer, one processing worker (filter, transform,
fan-out, in arrival order) and, per destination, one worker per lane that delivers in order with
retries. Work lives in the journal, not in memory, so a redeploy or a crash loses nothing: the
workers pick up whatever is `received` or `queued` when they start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import logging
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from engine.channels import Channel
from engine.connectors import (
    AttemptRecorder,
    ConnectorContext,
    Delivered,
    Destination,
    Inbound,
    Outbound,
    OutputAdjuster,
    Receipt,
    Source,
)
from engine.database import WriteThread, create_sync_engine
from engine.errors import DeliveryError, RejectedDeliveryError, RetryableDeliveryError
from engine.journal import (
    DeliveryStatus,
    JournalWriter,
    MessageStatus,
    QueuedDelivery,
    queued_deliveries,
    received_batch,
    record_attempts,
    store_outcomes,
)
from engine.pipeline import (
    ChannelRef,
    CompiledChannel,
    Outcome,
    exit_with_parent,
    process,
    process_rows,
    warm_up,
    warm_up_channels,
    warm_up_parsers,
)
from engine.stats import Stats

__all__ = ["Runtime"]

log = logging.getLogger(__name__)
T = TypeVar("T")

POLL_S = 1.0  # workers also look at the journal this often, for work another node added
STOP_GRACE_S = 10.0  # a stopping worker may finish its batch for this long
WRITE_THREADS_PG = 4  # concurrent processing and delivery transactions on PostgreSQL
JOURNAL_THREADS_PG = 4  # journal batches in flight at once on PostgreSQL


@dataclass
class _Worker:
    """A task with a polite stop: finish the batch in hand, then return."""

    task: asyncio.Task[None] | None
    stopping: asyncio.Event
    wake: asyncio.Event

    @classmethod
    def idle(cls) -> _Worker:
        return cls(task=None, stopping=asyncio.Event(), wake=asyncio.Event())


@dataclass
class _Deployed:
    compiled: CompiledChannel
    source: Source
    source_task: asyncio.Task[None]
    processor: _Worker
    destinations: dict[str, Destination]
    ref: ChannelRef
    lanes: dict[str, list[_Worker]] = field(default_factory=dict)


class Runtime:
    """Owns every channel's tasks; `deploy`, `undeploy` and `redeploy` are safe at any time."""

    def __init__(
        self,
        *,
        database: AsyncEngine,
        data_dir: Path,
        stats: Stats,
        now: Callable[[], datetime],
        authorize: Callable[[str | None], Awaitable[bool]] | None,
        worker_batch: int = 200,
        processing_gather_s: float = 0.2,
        processing_workers: int = 0,
        journal_batch_max: int = 500,
        journal_queue_max: int = 10_000,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._database = database
        # Handed to every connector (and output adjuster) factory: plugins read their own
        # sections of the settings from `extra["settings"]`.
        self._extra = dict(extra or {})
        self._sessions = async_sessionmaker(database, expire_on_commit=False)
        self._data_dir = data_dir
        self._stats = stats
        self._now = now
        self._authorize = authorize
        self._worker_batch = worker_batch
        self._processing_gather_s = processing_gather_s
        # SQLite has one writer at a time: one thread for every write keeps them from sleeping
        # in its busy handler. PostgreSQL commits concurrently (and groups commits itself), so
        # the journal, whose commits the senders wait for, gets a thread of its own.
        sqlite = database.dialect.name == "sqlite"
        self.writes = WriteThread(database.url, threads=1 if sqlite else WRITE_THREADS_PG)
        # The workers' hot reads run as one thread hop each on a synchronous engine.
        self._reads = create_sync_engine(database.url)
        self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="db-reader")
        self._journal_writes = (
            self.writes if sqlite else WriteThread(database.url, threads=JOURNAL_THREADS_PG)
        )
        self.writer = JournalWriter(
            self._journal_writes,
            concurrency=1 if sqlite else JOURNAL_THREADS_PG,
            batch_max=journal_batch_max,
            queue_max=journal_queue_max,
            on_committed=self._wake_processors,
        )
        self._deployed: dict[str, _Deployed] = {}
        self._processing_workers = processing_workers
        self._pool: ProcessPoolExecutor | None = None
        self._generation = itertools.count(1)
        self._to_warm: list[_Deployed] = []
        self._warming: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._group: asyncio.TaskGroup | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, started: asyncio.Event | None = None) -> None:
        """Run until cancelled; channels are deployed into this task group."""
        if self._processing_workers:
            self._pool = await asyncio.to_thread(self._start_pool)
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self.writer.run(), name="journal-writer")
                if started is not None:
                    started.set()
                await asyncio.Event().wait()
        finally:
            self._group = None
            for name in list(self._deployed):
                with contextlib.suppress(Exception):
                    await self._close_deployed(self._deployed.pop(name))
            await asyncio.to_thread(self.writes.close)
            # Reads still running (their task was cancelled) finish before their pool closes.
            await asyncio.to_thread(self._readers.shutdown, True)
            await asyncio.to_thread(self._reads.dispose)
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            if self._journal_writes is not self.writes:
                await asyncio.to_thread(self._journal_writes.close)

    def _start_pool(self) -> ProcessPoolExecutor:
        """Worker processes for parsing and mapping, so that CPU work uses the other cores
        instead of the one the event loop, the journal and the FHIR store share."""
        pool = ProcessPoolExecutor(
            max_workers=self._processing_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=exit_with_parent,
        )
        # Started now, their imports beside the rest of start-up instead of on the first
        # message's time. Nothing waits for them: the sources listen and ACK meanwhile, and the
        # first batch waits in the pool's queue behind the imports.
        for _ in range(self._processing_workers):
            pool.submit(warm_up).add_done_callback(_report_failed_start)
        return pool

    @property
    def deployed(self) -> dict[str, Channel]:
        return {name: d.compiled.channel for name, d in self._deployed.items()}

    async def deploy(self, compiled: CompiledChannel) -> None:
        """Start a channel, or redeploy it: its source keeps listening when its config is
        unchanged, its queues keep their messages, and workers restart with the new config."""
        async with self._lock:
            group = self._require_group()
            name = compiled.channel.name
            old = self._deployed.pop(name, None)
            keep_source = (
                old is not None and old.compiled.channel.spec.source == compiled.channel.spec.source
            )
            if old is not None:
                await self._stop_workers(old)
                if not keep_source:
                    await self._stop_source(old)
            context = self._context(compiled)
            destinations = {}
            try:
                context = dataclasses.replace(context, adjusters=_adjusters(compiled, context))
                for spec, planned in zip(
                    compiled.channel.spec.destinations, compiled.destinations, strict=True
                ):
                    factory = compiled.plugins.destination(spec.connector.kind)
                    destinations[spec.name] = factory.build(
                        spec.connector, dataclasses.replace(context, checked_by=planned.checked_by)
                    )
                if keep_source:
                    assert old is not None
                    source, source_task = old.source, old.source_task
                else:
                    source = compiled.plugins.source(compiled.channel.spec.source.kind).build(
                        compiled.channel.spec.source, context
                    )
                    await source.start()
                    source_task = group.create_task(
                        source.serve(self._accept_for(name)), name=f"{name}:source"
                    )
            except BaseException:
                for destination in destinations.values():
                    with contextlib.suppress(Exception):
                        await destination.aclose()
                raise
            deployed = _Deployed(
                compiled=compiled,
                source=source,
                source_task=source_task,
                processor=_Worker.idle(),
                destinations=destinations,
                ref=compiled.ref(next(self._generation)),
            )
            # Registered before the workers start, so their first look finds the channel.
            self._deployed[name] = deployed
            deployed.processor = self._start(
                group, f"{name}:process", lambda w: self._process_loop(name, w)
            )
            for spec in compiled.channel.spec.destinations:
                deployed.lanes[spec.name] = [
                    self._start(
                        group,
                        f"{name}:{spec.name}:{lane}",
                        functools.partial(self._deliver_loop, name, spec.name, lane),
                    )
                    for lane in range(compiled.lanes)
                ]
            self._to_warm.append(deployed)
            if self._warming is None or self._warming.done():
                self._warming = group.create_task(self._warm_up(), name="warm-up")
            log.info("channel.deployed", extra={"channel": name, "kept_source": keep_source})

    async def _warm_up(self) -> None:
        """Warm the parsers of the channels deployed since the last warm-up, in the background,
        so that neither a deploy nor a channel's first message waits for slow imports; a
        failure here shows on that message instead.

        Channels deployed together, as at start-up, are warmed in one job: a worker process
        compiles them and collects its garbage once. Where there are worker processes, only
        they are warmed, because only they parse: the engine process is spared the imports'
        CPU at start-up (the ECG analysis: 2 s) and their memory.
        """
        loop = asyncio.get_running_loop()
        while self._to_warm:
            batch, self._to_warm = self._to_warm, []
            jobs: list[Awaitable[object]]
            if self._pool is not None:
                refs = [deployed.ref for deployed in batch]
                jobs = [
                    loop.run_in_executor(self._pool, warm_up_channels, refs)
                    for _ in range(self._processing_workers)
                ]
            else:
                compiled = [deployed.compiled for deployed in batch]
                jobs = [asyncio.to_thread(warm_up_parsers, *compiled)]
            for outcome in await asyncio.gather(*jobs, return_exceptions=True):
                if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                    raise outcome
                if isinstance(outcome, Exception):
                    log.warning("channel.warm_up_failed", extra={"error": type(outcome).__name__})

    async def shutdown(self) -> None:
        """Undeploy every channel gracefully (the engine is stopping)."""
        for name in list(self._deployed):
            await self.undeploy(name)

    async def undeploy(self, name: str) -> bool:
        """Stop a channel: close its source, let workers finish their batch. Queues stay."""
        async with self._lock:
            deployed = self._deployed.pop(name, None)
            if deployed is None:
                return False
            await self._close_deployed(deployed)
            log.info("channel.undeployed", extra={"channel": name})
            return True

    # -- plumbing ----------------------------------------------------------------------------

    def _require_group(self) -> asyncio.TaskGroup:
        if self._group is None:
            raise RuntimeError("the runtime is not running")
        return self._group

    def _context(self, compiled: CompiledChannel) -> ConnectorContext:
        return ConnectorContext(
            channel=compiled.channel.name,
            data_dir=self._data_dir,
            database=self._database,
            default_charset=compiled.charset,
            timezone=compiled.tz,
            authorize=self._authorize,
            run_write=self.writes.run,
            extra=self._extra,
        )

    def _start(
        self,
        group: asyncio.TaskGroup,
        name: str,
        body: Callable[[_Worker], Awaitable[None]],
    ) -> _Worker:
        worker = _Worker.idle()
        worker.task = group.create_task(self._supervise(name, body, worker), name=name)
        worker.wake.set()
        return worker

    async def _supervise(
        self, name: str, body: Callable[[_Worker], Awaitable[None]], worker: _Worker
    ) -> None:
        """Restart a worker that failed unexpectedly, so one bug never stops a channel for good
        (and never takes the whole engine's task group down with it)."""
        backoff = 0.5
        while not worker.stopping.is_set():
            try:
                await body(worker)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.error("worker.crashed", extra={"worker": name}, exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _stop_workers(self, deployed: _Deployed) -> None:
        workers = [deployed.processor, *(w for lanes in deployed.lanes.values() for w in lanes)]
        for worker in workers:
            worker.stopping.set()
            worker.wake.set()
        tasks = [w.task for w in workers if w.task is not None]
        pending: set[asyncio.Task[None]] = set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for destination in deployed.destinations.values():
            with contextlib.suppress(Exception):
                await destination.aclose()

    async def _stop_source(self, deployed: _Deployed) -> None:
        deployed.source_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await deployed.source_task
        with contextlib.suppress(Exception):
            await deployed.source.aclose()

    async def _close_deployed(self, deployed: _Deployed) -> None:
        await self._stop_source(deployed)
        await self._stop_workers(deployed)

    def _accept_for(self, channel: str) -> Callable[[Inbound], Awaitable[Receipt]]:
        writer, stats = self.writer, self._stats
        latency = stats.journal_latency[channel]

        async def accept(inbound: Inbound) -> Receipt:
            started = time.perf_counter()
            receipt = await writer.accept(channel, inbound)
            latency.observe(time.perf_counter() - started)
            if receipt.duplicate:
                stats.count(channel, "duplicate")
            elif inbound.problem is not None:
                stats.count(channel, "received")
                stats.count(channel, "error")
            else:
                stats.count(channel, "received")
            return receipt

        return accept

    def _wake_processors(self, channels: set[str]) -> None:
        for name in channels:
            deployed = self._deployed.get(name)
            if deployed is not None:
                deployed.processor.wake.set()

    def wake(self, channel: str) -> None:
        """Tell a channel's processor that new work is in the journal (e.g. reprocessing)."""
        self._wake_processors({channel})

    # -- processing ----------------------------------------------------------------------------

    async def _process_loop(self, channel: str, worker: _Worker) -> None:
        handled = 0
        started = time.monotonic()
        while not worker.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_S):
                    await worker.wake.wait()
            worker.wake.clear()
            while not worker.stopping.is_set():
                started = time.monotonic()
                handled = await self._process_batch(channel)
                if handled < self._worker_batch:
                    break
            # A busy channel is processed in rounds, `processing_gather_s` apart, each taking
            # all that arrived meanwhile. Between rounds the journal's commits (which senders
            # wait for) have the write thread to themselves, so a sender on one connection is
            # not held in step with one transaction per message; and fewer, larger
            # transactions cost less CPU per message. Idle channels still react at once.
            if handled:
                gap = self._gather_s(channel) - (time.monotonic() - started)
                await asyncio.sleep(max(0.0, gap))

    def _gather_s(self, channel: str) -> float:
        deployed = self._deployed.get(channel)
        own = deployed.compiled.channel.spec.gather_ms if deployed is not None else None
        return self._processing_gather_s if own is None else own / 1000

    async def _process_batch(self, channel: str) -> int:
        deployed = self._deployed.get(channel)
        if deployed is None:
            return 0
        rows = await self._read(
            lambda connection: received_batch(connection, channel, self._worker_batch)
        )
        if not rows:
            return 0
        now = self._now()
        updates: list[dict[str, Any]] = []
        deliveries: list[dict[str, Any]] = []
        transformed: list[dict[str, Any]] = []
        woken: set[tuple[str, int]] = set()
        outcomes = await self._process_rows(
            deployed, [(raw or b"", media_type, charset) for _, raw, media_type, charset in rows]
        )
        for (message_id, *_), outcome in zip(rows, outcomes, strict=True):
            updates.append(
                {
                    "message_id": message_id,
                    "status": outcome.status,
                    "error": outcome.error,
                    "transformed_media_type": outcome.media_type,
                    "processed_at": now,
                }
            )
            if outcome.transformed is not None:
                transformed.append({"message_id": message_id, "data": outcome.transformed})
            self._stats.count(channel, str(outcome.status))
            if outcome.status == MessageStatus.ERROR:
                # The reason names positions, never values; the content stays in the journal.
                log.error(
                    "message.failed",
                    extra={"channel": channel, "message_id": message_id, "reason": outcome.error},
                )
            for plan in outcome.deliveries:
                deliveries.append(
                    {
                        "message_id": message_id,
                        "channel": channel,
                        "destination": plan.destination,
                        "lane": plan.lane,
                        "status": plan.status,
                        "attempts": 0,
                        "next_attempt_at": None,
                        "sent_at": None,
                        "last_error": None,
                        "payload": plan.payload,
                        "payload_media_type": plan.media_type,
                    }
                )
                if plan.status == DeliveryStatus.QUEUED:
                    woken.add((plan.destination, plan.lane))
                else:
                    self._stats.count_destination(channel, plan.destination, "filtered")
        await self.writes.run(
            lambda connection: store_outcomes(connection, updates, deliveries, transformed)
        )
        for destination, lane in woken:
            lanes = deployed.lanes.get(destination)
            if lanes and lane < len(lanes):
                lanes[lane].wake.set()
        return len(rows)

    async def _read(self, query: Callable[[Connection], T]) -> T:
        def run() -> T:
            with self._reads.connect() as connection:
                return query(connection)

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    async def _process_rows(
        self, deployed: _Deployed, rows: list[tuple[bytes, str, str | None]]
    ) -> list[Outcome]:
        """Parsing and mapping a batch is CPU work of tens of milliseconds: it runs in a worker
        process when there is a pool (another core), else on a thread, and never on the loop,
        which keeps answering senders meanwhile."""
        if self._pool is not None:
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(self._pool, process_rows, deployed.ref, rows)
            except BrokenProcessPool:
                # A worker died (killed, out of memory): a new pool, and this batch here.
                log.error("processing.pool_broken", extra={"channel": deployed.ref.file})
                self._pool = await asyncio.to_thread(self._start_pool)
        compiled = deployed.compiled
        return await asyncio.to_thread(
            lambda: [process(compiled, raw, media, charset) for raw, media, charset in rows]
        )

    # -- delivery ------------------------------------------------------------------------------

    async def _deliver_loop(
        self, channel: str, destination_name: str, lane: int, worker: _Worker
    ) -> None:
        deployed = self._deployed[channel]
        destination = deployed.destinations[destination_name]
        spec = next(
            d for d in deployed.compiled.channel.spec.destinations if d.name == destination_name
        )
        while not worker.stopping.is_set():
            head = await self._read(
                lambda connection: queued_deliveries(
                    connection, channel, destination_name, lane, spec.batch_max
                )
            )
            if not head:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_S):
                        await worker.wake.wait()
                worker.wake.clear()
                continue
            wait_s = _due_in(head[0], self._now())
            if wait_s > 0:
                # The head of the queue is waiting for its retry: the lane waits with it, so
                # messages are never delivered out of order.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await worker.stopping.wait()
                continue
            ready = [head[0]] + [
                d for d in head[1:] if _due_in(d, self._now()) <= 0 and d.attempts == 0
            ]
            await self._deliver(channel, destination_name, destination, spec, ready)

    async def _deliver(
        self,
        channel: str,
        destination_name: str,
        destination: Destination,
        spec: Any,
        ready: list[QueuedDelivery],
    ) -> None:
        results: list[tuple[QueuedDelivery, Delivered | DeliveryError]] = []
        send_many = getattr(destination, "send_many", None)
        outbounds = [
            Outbound(
                message_id=d.message_id,
                channel=channel,
                destination=destination_name,
                payload=d.payload or b"",
                media_type=d.media_type or "application/octet-stream",
                attempt=d.attempts + 1,
                received_at=d.received_at,
                sent_at=d.sent_at,
                sender=d.sender,
            )
            for d in ready
        ]
        recorder: AttemptRecorder | None = None
        recorded_at: list[datetime] = []
        if send_many is not None and getattr(destination, "records_attempts", False):
            # The destination writes to our database: its transaction records the attempts
            # too, one commit per batch instead of two.
            def record(connection: Connection, outcomes: list[Delivered | DeliveryError]) -> None:
                now = self._now()
                recorded_at.append(now)
                done = _until_retry(ready, outcomes)
                updates, attempts = _attempt_rows(spec, done, now)
                record_attempts(connection, updates, attempts, [d.message_id for d, _ in done], now)

            recorder = AttemptRecorder(record)
        if send_many is not None and (len(ready) > 1 or recorder is not None):
            try:
                outcomes: list[Delivered | DeliveryError] = await (
                    send_many(outbounds, recorder) if recorder else send_many(outbounds)
                )
            except Exception as exc:
                crash = _connector_crash(channel, destination_name, exc)
                outcomes = [crash] * len(ready)
            results = _until_retry(ready, outcomes)
        else:
            for delivery, outbound in zip(ready, outbounds, strict=True):
                try:
                    result: Delivered | DeliveryError = await destination.send(outbound)
                except DeliveryError as exc:
                    result = exc
                except Exception as exc:
                    result = _connector_crash(channel, destination_name, exc)
                results.append((delivery, result))
                if isinstance(result, RetryableDeliveryError):
                    break  # keep order: nothing behind the failed one goes first
        if recorder is not None and recorder.committed:
            self._account(channel, destination_name, spec, results, recorded_at[-1])
        else:
            await self._record(channel, destination_name, spec, results)

    async def _record(
        self,
        channel: str,
        destination_name: str,
        spec: Any,
        results: list[tuple[QueuedDelivery, Delivered | DeliveryError]],
    ) -> None:
        now = self._now()
        delivery_updates, attempts = _attempt_rows(spec, results, now)
        message_ids = [d.message_id for d, _ in results]
        await self.writes.run(
            lambda connection: record_attempts(
                connection, delivery_updates, attempts, message_ids, now
            )
        )
        self._account(channel, destination_name, spec, results, now)

    def _account(
        self,
        channel: str,
        destination_name: str,
        spec: Any,
        results: list[tuple[QueuedDelivery, Delivered | DeliveryError]],
        now: datetime,
    ) -> None:
        """Statistics and log lines for attempts once their record has committed."""
        for delivery, outcome in results:
            attempt = delivery.attempts + 1
            if isinstance(outcome, Delivered):
                self._stats.count_destination(channel, destination_name, "sent")
                self._stats.delivery_latency[(channel, destination_name)].observe(
                    max(0.0, (now - delivery.received_at).total_seconds())
                )
            elif _gives_up(spec, outcome, attempt):
                self._stats.count_destination(channel, destination_name, "error")
                log.error(
                    "delivery.failed",
                    extra={
                        "channel": channel,
                        "destination": destination_name,
                        "message_id": delivery.message_id,
                        "attempt": attempt,
                    },
                )
            else:
                self._stats.count_destination(channel, destination_name, "retried")
                log.warning(
                    "delivery.retry",
                    extra={
                        "channel": channel,
                        "destination": destination_name,
                        "message_id": delivery.message_id,
                        "attempt": attempt,
                        "delay_s": spec.retry.backoff_s(attempt),
                    },
                )


def _until_retry(
    ready: list[QueuedDelivery], outcomes: list[Delivered | DeliveryError]
) -> list[tuple[QueuedDelivery, Delivered | DeliveryError]]:
    """The outcomes up to the first retryable failure: nothing behind it counts as attempted,
    so the queue keeps its order."""
    results: list[tuple[QueuedDelivery, Delivered | DeliveryError]] = []
    for delivery, outcome in zip(ready, outcomes, strict=True):
        results.append((delivery, outcome))
        if isinstance(outcome, RetryableDeliveryError):
            break
    return results


def _gives_up(spec: Any, outcome: DeliveryError, attempt: int) -> bool:
    return isinstance(outcome, RejectedDeliveryError) or bool(
        spec.retry.max_attempts and attempt >= spec.retry.max_attempts
    )


def _attempt_rows(
    spec: Any,
    results: list[tuple[QueuedDelivery, Delivered | DeliveryError]],
    now: datetime,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows that record `results`: each delivery's new state, and its attempt."""
    delivery_updates: list[dict[str, Any]] = []
    attempts: list[dict[str, Any]] = []
    for delivery, outcome in results:
        attempt = delivery.attempts + 1
        if isinstance(outcome, Delivered):
            delivery_updates.append(
                {
                    "delivery_id": delivery.id,
                    "status": DeliveryStatus.SENT,
                    "attempts": attempt,
                    "sent_at": now,
                    "last_error": None,
                    "next_attempt_at": None,
                }
            )
            attempts.append(
                {
                    "delivery_id": delivery.id,
                    "attempt": attempt,
                    "at": now,
                    "outcome": "sent",
                    "detail": outcome.detail or None,
                    "reply": outcome.reply,
                }
            )
            continue
        give_up = _gives_up(spec, outcome, attempt)
        error = f"{type(outcome).__name__}: {outcome}"
        delivery_updates.append(
            {
                "delivery_id": delivery.id,
                "status": DeliveryStatus.ERROR if give_up else DeliveryStatus.QUEUED,
                "attempts": attempt,
                "sent_at": None,
                "last_error": error,
                "next_attempt_at": (
                    None if give_up else now + timedelta(seconds=spec.retry.backoff_s(attempt))
                ),
            }
        )
        attempts.append(
            {
                "delivery_id": delivery.id,
                "attempt": attempt,
                "at": now,
                "outcome": "rejected" if give_up else "retry",
                "detail": error,
                "reply": None,
            }
        )
    return delivery_updates, attempts


def _connector_crash(channel: str, destination: str, exc: Exception) -> RetryableDeliveryError:
    """A bug in a connector is not the message's fault: it stays queued and is retried with
    backoff (visible in its attempts), instead of the worker crashing on it again and again."""
    log.error(
        "delivery.connector_crashed",
        extra={"channel": channel, "destination": destination},
        exc_info=exc,
    )
    return RetryableDeliveryError(
        f"internal error ({type(exc).__name__}) in the {destination!r} connector; "
        "report it with the engine log"
    )


def _adjusters(compiled: CompiledChannel, context: ConnectorContext) -> tuple[OutputAdjuster, ...]:
    """The output adjusters that have something to do on this channel, in name order."""
    built = (
        factory.build(context) for _, factory in sorted(compiled.plugins.output_adjusters.items())
    )
    return tuple(adjuster for adjuster in built if adjuster is not None)


def _due_in(delivery: QueuedDelivery, now: datetime) -> float:
    if delivery.next_attempt_at is None:
        return 0.0
    return (delivery.next_attempt_at - now).total_seconds()


def _report_failed_start(future: Future[None]) -> None:
    """A worker process that could not start says so in the log; the batches it would have
    taken fail over to a new pool, or to this process (`Runtime._process_rows`)."""
    if not future.cancelled() and (error := future.exception()) is not None:
        log.error("processing.worker_start_failed", extra={"error": repr(error)})
