"""The channel runtime's guarantees, on SQLite and PostgreSQL: journal first, dedup, order,
per-destination queues with retries, redeploy without loss, reprocessing and pruning."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from engine import journal
from engine.channels import load_channel_text
from engine.connectors import Delivered, Inbound, Outbound, Receipt
from engine.database import WriteThread, create_database_engine, execute_many, migrate
from engine.errors import ParseError, RejectedDeliveryError, RetryableDeliveryError
from engine.journal import DeliveryAttempt, DestinationDelivery, JournalMessage
from engine.pipeline import compile_channel
from engine.runtime import Runtime
from engine.stats import Stats
from engine.testing import FunctionDestinationFactory, PushSource, plugins_for_tests, wait_until

pytestmark = pytest.mark.anyio
CST = __import__("datetime").timezone(timedelta(hours=8))


PLUGINS = plugins_for_tests()


class Harness:
    def __init__(self, runtime: Runtime, database: Any, tmp_path: Path) -> None:
        self.runtime = runtime
        self.database = database
        self.tmp_path = tmp_path
        self.delivered: dict[str, list[Outbound]] = {}

    async def deploy(self, text: str) -> None:
        channel = load_channel_text(text, PLUGINS, file="test.yaml")
        compiled = compile_channel(
            channel,
            mappings_dir=self.tmp_path,
            plugins=PLUGINS,
            default_charset="utf-8",
            default_tz=CST,
        )
        await self.runtime.deploy(compiled)

    def source(self, name: str = "push") -> PushSource:
        return PushSource.instances[name]

    def handler(
        self, name: str, behaviour: Callable[[Outbound], Awaitable[Delivered]] | None = None
    ) -> None:
        seen = self.delivered.setdefault(name, [])

        async def deliver(outbound: Outbound) -> Delivered:
            if behaviour is not None:
                result = await behaviour(outbound)
            else:
                result = Delivered(detail="ok")
            seen.append(outbound)
            return result

        FunctionDestinationFactory.handlers[name] = deliver

    async def rows(self) -> list[JournalMessage]:
        async with journal_session(self.database) as session:
            return list(await session.scalars(select(JournalMessage).order_by(JournalMessage.id)))

    async def wait_for(
        self, predicate: Callable[[], Awaitable[bool]], timeout_s: float = 20
    ) -> None:
        await wait_until(predicate, timeout_s=timeout_s)

    async def raw(self, message_id: int) -> bytes | None:
        async with journal_session(self.database) as session:
            detail = await journal.get_message(session, message_id)
        return None if detail is None else detail.raw

    async def statuses(self) -> list[str]:
        return [row.status for row in await self.rows()]


def journal_session(database: Any) -> Any:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    return async_sessionmaker(database, expire_on_commit=False)()


@pytest.fixture
async def harness(database_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    database = create_database_engine(database_url)
    await migrate(database)
    runtime = Runtime(
        database=database,
        data_dir=tmp_path,
        stats=Stats(),
        now=lambda: datetime.now(tz=CST),
        authorize=None,
        worker_batch=50,
    )
    started = asyncio.Event()
    task = asyncio.create_task(runtime.run(started))
    await started.wait()
    try:
        yield Harness(runtime, database, tmp_path)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await database.dispose()


CHANNEL = """
name: lab
source: {kind: push}
charset: utf-8
destinations:
  - name: out
    connector: {kind: function, handler: out}
    retry: {initial_backoff_s: 0.05, max_backoff_s: 0.2, max_attempts: %(max_attempts)s}
"""


def channel(max_attempts: int = 0, extra: str = "") -> str:
    return CHANNEL % {"max_attempts": max_attempts} + extra


async def test_receipt_comes_after_the_raw_message_is_committed(harness: Harness) -> None:
    harness.handler("out")
    await harness.deploy(channel())
    receipt = await harness.source().push(b"id=1\nname=x")
    # A fresh session sees the row the moment accept returned: it was committed first.
    async with journal_session(harness.database) as session:
        detail = await journal.get_message(session, receipt.message_id)
    assert detail is not None and detail.raw == b"id=1\nname=x"
    assert detail.message.received_at.tzinfo is not None


async def test_resent_message_is_acked_again_but_applied_once(harness: Harness) -> None:
    harness.handler("out")
    await harness.deploy(channel())
    first = await harness.source().push(b"id=1", dedup_key="HIS|MSG0001")
    again = await harness.source().push(b"id=1", dedup_key="HIS|MSG0001")
    assert again.duplicate and again.message_id == first.message_id

    async def one_sent() -> bool:
        return await harness.statuses() == ["sent"]

    await harness.wait_for(one_sent)
    assert len(harness.delivered["out"]) == 1


async def test_one_journal_batch_recognises_resends_repeats_and_new_messages(
    harness: Harness,
) -> None:
    now = datetime.now(UTC)

    def inbound(raw: bytes, dedup_key: str | None) -> tuple[str, Inbound]:
        return (
            "push",
            Inbound(
                raw=raw,
                media_type="text/plain",
                received_at=now,
                origin="test",
                dedup_key=dedup_key,
            ),
        )

    async def journal_batch(items: list[tuple[str, Inbound]]) -> list[Receipt]:
        async with harness.database.begin() as connection:
            receipts: list[Receipt] = await connection.run_sync(
                lambda c: journal.journal_inbound(c, items)
            )
        return receipts

    (earlier,) = await journal_batch([inbound(b"old", "HIS|OLD")])
    batch = [
        inbound(b"a", "HIS|A"),
        inbound(b"no key 1", None),
        inbound(b"old again", "HIS|OLD"),
        inbound(b"a again", "HIS|A"),
        inbound(b"no key 2", None),
        inbound(b"old", "HIS|OLD"),
        (
            "other",
            Inbound(
                raw=b"a", media_type="text/plain", received_at=now, origin="test", dedup_key="HIS|A"
            ),
        ),
    ]
    receipts = await journal_batch(batch)

    assert [r.duplicate for r in receipts] == [False, False, True, True, False, True, False]
    assert receipts[2].message_id == receipts[5].message_id == earlier.message_id
    assert receipts[3].message_id == receipts[0].message_id
    new_ids = [receipts[i].message_id for i in (0, 1, 4, 6)]
    assert len(set(new_ids)) == 4 and earlier.message_id not in new_ids
    async with journal_session(harness.database) as session:
        for position in (0, 1, 4, 6):
            detail = await journal.get_message(session, receipts[position].message_id)
            assert detail is not None
            assert detail.raw == batch[position][1].raw
            assert detail.message.channel == batch[position][0]

    # Two messages (PostgreSQL binds them value by value, not as arrays): a new one after a
    # resend, each with its own content.
    pair = [inbound(b"a third time", "HIS|A"), inbound(b"b", "HIS|B")]
    resend, new = await journal_batch(pair)
    assert (resend.duplicate, resend.message_id) == (True, receipts[0].message_id)
    assert not new.duplicate and new.message_id not in {r.message_id for r in receipts}
    async with journal_session(harness.database) as session:
        detail = await journal.get_message(session, new.message_id)
        assert detail is not None and detail.raw == b"b" and detail.message.dedup_key == "HIS|B"


async def test_a_batch_larger_than_one_insert_statement_keeps_every_message(
    harness: Harness,
) -> None:
    # SQLite inserts a batch 500 messages a statement: every one of 1,201 is journalled with
    # its own content, and a resend among them is recognised, whichever statement it is in.
    now = datetime.now(UTC)

    def inbound(n: int) -> tuple[str, Inbound]:
        raw = f"message {n}".encode()
        message = Inbound(raw=raw, media_type="text/plain", received_at=now, origin="test",
                          dedup_key=f"HIS|{n}", sent_at=now, sender="HIS")  # fmt: skip
        return "push", message

    async def journal_batch(items: list[tuple[str, Inbound]]) -> list[Receipt]:
        async with harness.database.begin() as connection:
            receipts: list[Receipt] = await connection.run_sync(
                lambda c: journal.journal_inbound(c, items)
            )
        return receipts

    earlier = await journal_batch([inbound(700)])
    receipts = await journal_batch([inbound(n) for n in range(1201)])

    assert [n for n, r in enumerate(receipts) if r.duplicate] == [700]
    assert receipts[700].message_id == earlier[0].message_id
    assert len({r.message_id for r in receipts}) == 1201
    async with journal_session(harness.database) as session:
        for n in (0, 499, 500, 501, 999, 1000, 1200):
            detail = await journal.get_message(session, receipts[n].message_id)
            assert detail is not None and detail.raw == f"message {n}".encode()
            assert detail.message.dedup_key == f"HIS|{n}" and detail.message.status == "received"
            assert detail.message.received_at == now and detail.message.sent_at == now


async def test_rows_written_many_at_once_keep_their_values_defaults_and_conditions(
    harness: Harness,
) -> None:
    # `execute_many` writes the journal's batches straight on SQLite's driver: instants,
    # statuses, bytes and NULLs as SQLAlchemy writes them, a column left out gets its default,
    # and an UPDATE's own condition (`status = 'received'`) still holds.
    now = datetime(2026, 11, 28, 8, 30, 15, tzinfo=CST)
    inbound = Inbound(raw=b"x", media_type="text/plain", received_at=now, origin="test")
    async with harness.database.begin() as connection:
        (receipt,) = await connection.run_sync(
            lambda c: journal.journal_inbound(c, [("push", inbound)])
        )
    message_id = receipt.message_id
    delivery = {"message_id": message_id, "channel": "push", "destination": "out",
                "status": journal.DeliveryStatus.QUEUED, "next_attempt_at": now, "sent_at": None,
                "last_error": None, "payload": b"\x00\xff", "payload_media_type": None}  # fmt: skip
    outcome = {"message_id": message_id, "status": journal.MessageStatus.TRANSFORMED,
               "error": None, "transformed_media_type": "application/fhir+json",
               "processed_at": now}  # fmt: skip
    later = {**outcome, "status": journal.MessageStatus.ERROR, "error": "too late"}

    def write(connection: Any) -> None:
        execute_many(connection, insert(DestinationDelivery), [delivery])
        execute_many(
            connection, insert(DestinationDelivery), [{**delivery, "lane": 3, "attempts": 2}]
        )
        journal.store_outcomes(connection, [outcome], [], [])
        journal.store_outcomes(connection, [later], [], [])  # no longer `received`: unchanged

    async with harness.database.begin() as connection:
        await connection.run_sync(write)
    async with journal_session(harness.database) as session:
        rows = (await session.execute(select(DestinationDelivery))).scalars().all()
        message = await session.get(JournalMessage, message_id)
        # found by an instant as SQLAlchemy binds it, as the retry queue finds due deliveries
        due = await session.scalar(
            select(func.count())
            .select_from(DestinationDelivery)
            .where(DestinationDelivery.next_attempt_at == now)
        )
    assert due == 2
    assert [(r.lane, r.attempts, r.payload, r.status) for r in rows] == [
        (0, 0, b"\x00\xff", "queued"),
        (3, 2, b"\x00\xff", "queued"),
    ]
    assert all(r.next_attempt_at == now and r.sent_at is None for r in rows)
    assert message is not None and message.status == "transformed" and message.error is None
    assert message.processed_at == now


async def test_messages_are_delivered_in_arrival_order(harness: Harness) -> None:
    async def jitter(outbound: Outbound) -> Delivered:
        await asyncio.sleep(random.random() / 500)
        return Delivered()

    harness.handler("out", jitter)
    await harness.deploy(channel())
    sources = harness.source()
    receipts = [await sources.push(f"id={n}".encode()) for n in range(60)]

    async def all_sent() -> bool:
        return len(harness.delivered["out"]) == 60

    await harness.wait_for(all_sent)
    assert [o.message_id for o in harness.delivered["out"]] == [r.message_id for r in receipts]


async def _rounds_of_20_messages_10_ms_apart(harness: Harness, channel_text: str) -> int:
    """Processing rounds (distinct `processed_at`) that 20 messages took, each pushed 10 ms
    after the last one's receipt, as one sender on one connection sends them."""
    harness.handler("out")
    await harness.deploy(channel_text)
    sources = harness.source()
    for n in range(20):  # 200 ms of messages: one round's default gap
        await sources.push(f"id={n}".encode())
        await asyncio.sleep(0.01)

    async def all_sent() -> bool:
        return len(harness.delivered["out"]) == 20

    await harness.wait_for(all_sent)
    return len({row.processed_at for row in await harness.rows()})


async def test_a_sender_on_one_connection_is_processed_in_rounds_not_message_by_message(
    harness: Harness,
) -> None:
    """A HIS draining its backlog sends each message when the last is ACKed. Processing each
    alone held the next ACK behind its transaction (one at a time, ~130 messages/s); a busy
    channel is processed in rounds instead, each taking all that arrived meanwhile."""
    rounds = await _rounds_of_20_messages_10_ms_apart(harness, channel())
    # the first message at once, the rest in a round or two (three on a slow machine, whose
    # pushes take longer than the 200 ms of sleeps); one per message without the gap
    assert rounds <= 4


async def test_a_channel_with_gather_ms_0_processes_each_message_as_it_comes(
    harness: Harness,
) -> None:
    """Alerts are not held for a round: their channels set `gather_ms: 0`."""
    rounds = await _rounds_of_20_messages_10_ms_apart(harness, channel(extra="gather_ms: 0\n"))
    assert rounds >= 10  # about one round per message


async def test_transient_failure_is_retried_and_holds_the_queue_in_order(
    harness: Harness,
) -> None:
    failures = {"left": 2}

    async def flaky(outbound: Outbound) -> Delivered:
        if outbound.payload == b"id=1" and failures["left"]:
            failures["left"] -= 1
            raise RetryableDeliveryError("connection refused by the receiver")
        return Delivered(reply=b"ok")

    harness.handler("out", flaky)
    await harness.deploy(channel())
    await harness.source().push(b"id=1")
    await harness.source().push(b"id=2")

    async def both_sent() -> bool:
        return await harness.statuses() == ["sent", "sent"]

    await harness.wait_for(both_sent)
    assert [o.payload for o in harness.delivered["out"]] == [b"id=1", b"id=2"]
    async with journal_session(harness.database) as session:
        attempts = list(await session.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.id)))
    assert [a.outcome for a in attempts] == ["retry", "retry", "sent", "sent"]
    assert "connection refused" in (attempts[0].detail or "")


async def test_rejected_message_goes_to_error_without_blocking_the_queue(
    harness: Harness,
) -> None:
    async def picky(outbound: Outbound) -> Delivered:
        if outbound.payload == b"id=bad":
            raise RejectedDeliveryError("receiver answered AR: PID-3 missing")
        return Delivered()

    harness.handler("out", picky)
    await harness.deploy(channel())
    for raw in (b"id=1", b"id=bad", b"id=3"):
        await harness.source().push(raw)

    async def settled() -> bool:
        return await harness.statuses() == ["sent", "error", "sent"]

    await harness.wait_for(settled)
    rows = await harness.rows()
    assert "PID-3 missing" in (rows[1].error or "")


async def test_delivery_goes_to_error_after_max_attempts(harness: Harness) -> None:
    async def down(outbound: Outbound) -> Delivered:
        raise RetryableDeliveryError("timed out after 5 s waiting for the ACK")

    harness.handler("out", down)
    await harness.deploy(channel(max_attempts=3))
    await harness.source().push(b"id=1")

    async def errored() -> bool:
        return await harness.statuses() == ["error"]

    await harness.wait_for(errored)
    async with journal_session(harness.database) as session:
        delivery = (await session.scalars(select(DestinationDelivery))).one()
    assert delivery.attempts == 3 and delivery.status == "error"


async def test_unparseable_message_is_kept_as_error_with_the_reason(harness: Harness) -> None:
    harness.handler("out")
    await harness.deploy(channel())
    await harness.source().push(b"id=1\nthis line has no equals sign")

    async def errored() -> bool:
        return await harness.statuses() == ["error"]

    await harness.wait_for(errored)
    row = (await harness.rows())[0]
    assert "line 2" in (row.error or "") and await harness.raw(row.id) is not None
    assert harness.delivered.get("out", []) == []


async def test_input_problem_from_the_source_is_journalled_as_error(harness: Harness) -> None:
    harness.handler("out")
    await harness.deploy(channel())
    receipt = await harness.source().push(
        b"\x0bMSH|truncated", problem=ParseError("no MLLP end block", location="byte 14")
    )
    row = (await harness.rows())[0]
    assert row.id == receipt.message_id and row.status == "error"
    assert "byte 14" in (row.error or "")
    assert await harness.raw(row.id) == b"\x0bMSH|truncated"


async def test_channel_filter_marks_messages_filtered(harness: Harness) -> None:
    harness.handler("out")
    await harness.deploy(channel(extra="filter: \"${$.kind == 'ADT'}\"\n"))
    await harness.source().push(b"kind=ADT")
    await harness.source().push(b"kind=ORU")

    async def settled() -> bool:
        return await harness.statuses() == ["sent", "filtered"]

    await harness.wait_for(settled)
    assert [o.payload for o in harness.delivered["out"]] == [b"kind=ADT"]


async def test_partition_lanes_keep_each_patients_events_in_order(harness: Harness) -> None:
    async def slow_for_some(outbound: Outbound) -> Delivered:
        await asyncio.sleep(random.random() / 200)
        return Delivered()

    harness.handler("out", slow_for_some)
    await harness.deploy(channel(extra="partition: {key: '${$.patient}', lanes: 4}\n"))
    expected: dict[str, list[bytes]] = {}
    for n in range(80):
        patient = f"p{n % 7}"
        raw = f"patient={patient}\nseq={n}".encode()
        expected.setdefault(patient, []).append(raw)
        await harness.source().push(raw)

    async def all_sent() -> bool:
        return len(harness.delivered["out"]) == 80

    await harness.wait_for(all_sent)
    for patient, raws in expected.items():
        got = [
            o.payload
            for o in harness.delivered["out"]
            if o.payload.startswith(f"patient={patient}\n".encode())
        ]
        assert got == raws


async def test_redeploy_keeps_queued_messages_and_delivers_them(harness: Harness) -> None:
    async def down(outbound: Outbound) -> Delivered:
        raise RetryableDeliveryError("connection refused")

    harness.handler("out", down)
    await harness.deploy(channel())
    for n in range(5):
        await harness.source().push(f"id={n}".encode())

    async def queued() -> bool:
        return "queued" in await harness.statuses()

    await harness.wait_for(queued)
    source_before = harness.source()
    harness.handler("out")  # the receiver is fixed; redeploy picks up the new handler
    await harness.deploy(channel())
    assert harness.source() is source_before and not source_before.closed

    async def all_sent() -> bool:
        return await harness.statuses() == ["sent"] * 5

    await harness.wait_for(all_sent)
    assert [o.payload for o in harness.delivered["out"]] == [f"id={n}".encode() for n in range(5)]


async def test_reprocess_runs_the_raw_content_again(harness: Harness) -> None:
    async def picky(outbound: Outbound) -> Delivered:
        if outbound.attempt and not harness.__dict__.get("fixed"):
            raise RejectedDeliveryError("receiver rejected it")
        return Delivered()

    harness.handler("out", picky)
    await harness.deploy(channel())
    receipt = await harness.source().push(b"id=1")

    async def errored() -> bool:
        return await harness.statuses() == ["error"]

    await harness.wait_for(errored)
    harness.__dict__["fixed"] = True
    async with journal_session(harness.database) as session, session.begin():
        new_id = await journal.reprocess(session, receipt.message_id, datetime.now(tz=CST))
    harness.runtime.wake("lab")

    async def resent() -> bool:
        return await harness.statuses() == ["error", "sent"]

    await harness.wait_for(resent)
    rows = await harness.rows()
    assert rows[1].id == new_id and rows[1].reprocess_of == receipt.message_id


async def test_pruning_never_touches_queued_or_errored_messages(harness: Harness) -> None:
    async def picky(outbound: Outbound) -> Delivered:
        if outbound.payload == b"id=bad":
            raise RejectedDeliveryError("rejected")
        if outbound.payload == b"id=wait":
            raise RetryableDeliveryError("down")
        return Delivered()

    harness.handler("out", picky)
    await harness.deploy(channel())
    for raw in (b"id=ok", b"id=bad"):
        await harness.source().push(raw)

    async def settled() -> bool:
        return await harness.statuses() == ["sent", "error"]

    await harness.wait_for(settled)
    future = datetime.now(tz=UTC) + timedelta(days=1)
    async with journal_session(harness.database) as session, session.begin():
        assert await journal.prune_content(session, future, 100) == 1
    rows = await harness.rows()
    assert await harness.raw(rows[0].id) is None and rows[0].content_pruned
    assert await harness.raw(rows[1].id) == b"id=bad"
    async with journal_session(harness.database) as session, session.begin():
        assert await journal.prune_metadata(session, future, 100) == 1
    assert [r.status for r in await harness.rows()] == ["error"]


async def test_undeploy_closes_the_source_and_keeps_the_queue(harness: Harness) -> None:
    async def down(outbound: Outbound) -> Delivered:
        raise RetryableDeliveryError("down")

    harness.handler("out", down)
    await harness.deploy(channel())
    source = harness.source()
    await source.push(b"id=1")

    async def queued() -> bool:
        return await harness.statuses() == ["queued"]

    await harness.wait_for(queued)
    assert await harness.runtime.undeploy("lab")
    assert source.closed
    assert await harness.statuses() == ["queued"]


async def test_each_destination_has_its_own_queue(harness: Harness) -> None:
    async def down(outbound: Outbound) -> Delivered:
        raise RetryableDeliveryError("connection refused")

    harness.handler("out", down)
    harness.handler("archive")
    await harness.deploy(
        channel() + "  - name: archive\n    connector: {kind: function, handler: archive}\n"
    )
    for n in range(5):
        await harness.source().push(f"id={n}".encode())

    async def archived() -> bool:
        return len(harness.delivered.get("archive", [])) == 5

    await harness.wait_for(archived)
    # The archive got everything in order while the other destination keeps retrying.
    assert [o.payload for o in harness.delivered["archive"]] == [
        f"id={n}".encode() for n in range(5)
    ]
    assert harness.delivered.get("out", []) == []
    async with journal_session(harness.database) as session:
        waiting = list(
            await session.scalars(
                select(DestinationDelivery).where(DestinationDelivery.destination == "out")
            )
        )
    assert {d.status for d in waiting} == {"queued"}


async def test_a_crashing_connector_keeps_the_message_queued(harness: Harness) -> None:
    calls = {"n": 0}

    async def buggy(outbound: Outbound) -> Delivered:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("a bug in the connector")
        return Delivered()

    harness.handler("out", buggy)
    await harness.deploy(channel())
    await harness.source().push(b"id=1")

    async def sent() -> bool:
        return await harness.statuses() == ["sent"]

    await harness.wait_for(sent)
    async with journal_session(harness.database) as session:
        attempts = list(await session.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.id)))
    assert [a.outcome for a in attempts] == ["retry", "sent"]
    assert "internal error (KeyError)" in (attempts[0].detail or "")


async def test_journal_commits_wait_for_the_disk_and_derived_work_does_not(
    database_url: str,
) -> None:
    """ACK after journal means after a commit that survives a power cut; what the engine derives
    from the journal (statuses, deliveries, FHIR resources) is replayed from it and need not
    wait for the disk, even after a failed transaction undid the session's setting."""
    database = create_database_engine(database_url)
    await migrate(database)
    writes = WriteThread(database.url)
    sqlite = database.dialect.name == "sqlite"

    def level(connection: Any) -> str:
        if sqlite:  # PRAGMA synchronous: 2 FULL, 1 NORMAL
            return {2: "on", 1: "off"}[connection.exec_driver_sql("PRAGMA synchronous").scalar()]
        return str(connection.exec_driver_sql("SHOW synchronous_commit").scalar())

    def failing(connection: Any) -> None:
        level(connection)
        raise RuntimeError("a transaction that fails")

    try:
        assert await writes.run(level, urgent=True) == "on"
        assert await writes.run(level) == "off"
        with pytest.raises(RuntimeError):
            await writes.run(failing, urgent=True)
        assert await writes.run(level, urgent=True) == "on"
        assert await writes.run(level) == "off"
    finally:
        await asyncio.to_thread(writes.close)
        await database.dispose()


async def test_the_database_file_catches_up_with_the_log_without_the_writers_commits(
    tmp_path: Path,
) -> None:
    """SQLite: a busy write thread's commits no longer copy the write-ahead log back into the
    database file (a third of their time); a checkpoint thread does it beside them, so the file
    still catches up while the engine runs, long before the log reaches the writer's own
    threshold."""
    path = tmp_path / "greenchannel.db"
    database = create_database_engine(f"sqlite+aiosqlite:///{path}")
    await migrate(database)
    writes = WriteThread(database.url)

    def fill(connection: Any) -> int:
        connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS filler (data BLOB)")
        connection.exec_driver_sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) "
            "INSERT INTO filler SELECT randomblob(3000) FROM n"
        )
        return int(connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar())

    try:
        before = path.stat().st_size
        assert await writes.run(fill) > 1000  # ~400 pages, below the writer's own threshold
        log = tmp_path / "greenchannel.db-wal"
        assert log.stat().st_size > 1_000_000  # the commit left them in the log

        async def caught_up() -> bool:
            return path.stat().st_size > before + 1_000_000

        await wait_until(caught_up, timeout_s=10)
    finally:
        await asyncio.to_thread(writes.close)
        await database.dispose()


async def test_checkpoints_that_keep_failing_are_logged_once_and_their_recovery_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator learns that the checkpoint thread cannot copy the log back (a disk error,
    which cannot be made here, stands in as the driver's error): one warning for a run of
    failures, not one every 50 ms, and a line when checkpoints work again."""
    import sqlite3

    from engine import database as engine_database

    failing = True
    failed = 0
    copy_log = WriteThread._copy_log

    def disk_error_then_fine(driver_connection: Any) -> None:
        nonlocal failed
        if failing:
            failed += 1
            raise sqlite3.OperationalError("disk I/O error")
        copy_log(driver_connection)

    monkeypatch.setattr(WriteThread, "_copy_log", staticmethod(disk_error_then_fine))
    monkeypatch.setattr(engine_database, "CHECKPOINT_EVERY_S", 0.005)
    database = create_database_engine(f"sqlite+aiosqlite:///{tmp_path / 'greenchannel.db'}")
    await migrate(database)
    writes = WriteThread(database.url)

    def messages(level: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelname == level]

    try:
        with caplog.at_level("INFO", logger="engine.database"):

            async def three_runs_failed() -> bool:  # 3x the failures that make a warning
                return failed >= 3 * engine_database.CHECKPOINT_FAILURES_WARNED

            await wait_until(three_runs_failed, timeout_s=10)
            warnings = messages("WARNING")
            assert len(warnings) == 1, warnings
            assert "disk I/O error" in warnings[0] and "greenchannel.db" in warnings[0]
            failing = False

            async def recovered() -> bool:
                return any("work again" in text for text in messages("INFO"))

            await wait_until(recovered, timeout_s=5)
            assert len(messages("WARNING")) == 1
    finally:
        await asyncio.to_thread(writes.close)
        await database.dispose()
