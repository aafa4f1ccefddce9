"""Change events: one per committed version, in commit order, only after commit, with durable
per-subscriber cursors that survive a restart (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store import ChangeEvent, ChangeFeed, FhirStore, VersionConflict, migrate
from fhir_store.app import create_database

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
MRN = "urn:oid:1.2.156.112604.1.2.1"


def patient(mrn: str, family: str = "Wang") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": MRN, "value": mrn}],
        "name": [{"family": family}],
    }


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def put_entry(resource_id: str, mrn: str) -> dict[str, Any]:
    return {
        "resource": {**patient(mrn), "id": resource_id},
        "request": {"method": "PUT", "url": f"Patient/{resource_id}"},
    }


async def first_batch(feed: ChangeFeed, name: str, limit: int) -> list[ChangeEvent]:
    async for events in feed.follow(name, batch=limit):
        return events
    raise AssertionError("follow ended")


def summary(events: list[ChangeEvent]) -> list[tuple[str, str, int, str]]:
    return [(e.resource_type, e.resource_id, e.version_id, e.action) for e in events]


async def test_create_update_delete_each_yield_one_event_in_order(store: FhirStore) -> None:
    created = await store.create(patient("0001"))
    pid = created["id"]
    await store.update("Patient", pid, {**patient("0001", "Li"), "id": pid})
    await store.update("Patient", "p2", {**patient("0002"), "id": "p2"})  # create-on-update
    await store.delete("Patient", pid)

    events = await ChangeFeed(store.database).read(0)

    assert summary(events) == [
        ("Patient", pid, 1, "create"),
        ("Patient", pid, 2, "update"),
        ("Patient", "p2", 1, "create"),
        ("Patient", pid, 3, "delete"),
    ]
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[1].reference == f"Patient/{pid}/_history/2"


async def test_an_update_that_changes_nothing_makes_no_event(store: FhirStore) -> None:
    stored, _ = await store.update("Patient", "p1", {**patient("0001"), "id": "p1"})
    await store.update("Patient", "p1", {**patient("0001"), "id": "p1"})  # same content

    events = await ChangeFeed(store.database).read(0)

    assert summary(events) == [("Patient", "p1", 1, "create")]
    assert stored["meta"]["versionId"] == "1"


async def test_a_failed_transaction_leaves_no_event(store: FhirStore) -> None:
    await store.update("Patient", "p1", {**patient("0001"), "id": "p1"})
    stale = put_entry("p1", "0009")
    stale["request"]["ifMatch"] = 'W/"7"'  # not the current version: the whole Bundle fails
    with pytest.raises(VersionConflict):
        await store.transaction(transaction(put_entry("p2", "0002"), stale))

    events = await ChangeFeed(store.database).read(0)

    assert summary(events) == [("Patient", "p1", 1, "create")]


async def test_a_rolled_back_write_emits_nothing_and_leaves_no_gap(
    database: AsyncEngine,
) -> None:
    """The change rows are written in the write's own transaction: a database rollback after
    everything was written (here forced by the host's write runner) takes them away too."""
    sqlite = database.dialect.name == "sqlite"
    sync_url = database.url.set(drivername="sqlite+pysqlite" if sqlite else "postgresql+psycopg")
    writer = create_engine(sync_url)

    async def roll_back(work: Callable[[Connection], Any]) -> Any:
        def run() -> Any:
            with writer.connect() as connection:
                transaction_ = connection.begin()
                result = work(connection)
                transaction_.rollback()
                return result

        return await asyncio.to_thread(run)

    rolling = FhirStore(database, run_write=roll_back)
    committing = FhirStore(database)
    try:
        await rolling.update("Patient", "gone", {**patient("0001"), "id": "gone"})
        feed = ChangeFeed(database)
        assert await feed.read(0) == []
        await committing.update("Patient", "kept", {**patient("0002"), "id": "kept"})
        events = await feed.read(0)
    finally:
        await committing.aclose()
        writer.dispose()

    assert summary(events) == [("Patient", "kept", 1, "create")]
    assert events[0].sequence == 1  # the rolled-back write's number was given back


async def test_a_transaction_numbers_its_entries_in_bundle_order(store: FhirStore) -> None:
    bundle = transaction(*(put_entry(f"t{n}", f"{n:04}") for n in range(5)))
    await store.transaction(bundle)

    events = await ChangeFeed(store.database).read(0)

    assert [e.resource_id for e in events] == [f"t{n}" for n in range(5)]
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5]


async def test_a_group_numbers_only_the_bundles_it_kept(store: FhirStore) -> None:
    bad = transaction(put_entry("b1", "0001"), {"resource": {"resourceType": "Nope"}})
    results = await store.transaction_many(
        [transaction(put_entry("a1", "0001")), bad, transaction(put_entry("c1", "0003"))]
    )

    events = await ChangeFeed(store.database).read(0)

    assert isinstance(results[1], Exception)
    assert [e.resource_id for e in events] == ["a1", "c1"]


async def test_cursor_is_per_subscriber_durable_and_never_moves_back(database_url: str) -> None:
    database = create_database(database_url)
    await migrate(database)
    store = FhirStore(database)
    for n in range(3):
        await store.update("Patient", f"p{n}", {**patient(f"{n:04}"), "id": f"p{n}"})
    feed = ChangeFeed(database)
    await feed.commit("pathways", 2)
    await feed.commit("pathways", 1)  # a late commit of an older position
    await store.aclose()
    await database.dispose()

    restarted = create_database(database_url)  # a new process would see the same
    try:
        feed = ChangeFeed(restarted)
        assert await feed.position("pathways") == 2
        assert await feed.position("subscriptions") == 0
        assert [e.sequence for e in await feed.read(await feed.position("pathways"))] == [3]
    finally:
        await restarted.dispose()


async def test_uncommitted_events_come_again_after_a_restart_and_committed_ones_do_not(
    database_url: str,
) -> None:
    database = create_database(database_url)
    await migrate(database)
    store = FhirStore(database)
    for n in range(4):
        await store.update("Patient", f"p{n}", {**patient(f"{n:04}"), "id": f"p{n}"})

    seen = await first_batch(ChangeFeed(database), "archive", 2)
    await ChangeFeed(database).commit("archive", seen[-1].sequence)
    # processed, but the process dies before committing
    crashed = await first_batch(ChangeFeed(database), "archive", 2)
    await store.aclose()
    await database.dispose()

    database = create_database(database_url)
    try:
        again = await first_batch(ChangeFeed(database), "archive", 10)
    finally:
        await database.dispose()

    assert [e.sequence for e in seen] == [1, 2]
    assert [e.sequence for e in crashed] == [3, 4]
    assert [e.sequence for e in again] == [3, 4]


async def test_a_new_subscriber_may_start_at_the_future_and_keeps_that_place(
    database_url: str,
) -> None:
    database = create_database(database_url)
    await migrate(database)
    store = FhirStore(database)
    await store.update("Patient", "old", {**patient("0001"), "id": "old"})
    feed = ChangeFeed(database, poll_interval_s=0.05)

    async def first(name: str) -> list[ChangeEvent]:
        async with asyncio.timeout(10):
            async for events in feed.follow(name, new="future"):
                return events
        raise AssertionError("follow ended")

    waiting = asyncio.create_task(first("hooks"))
    await asyncio.sleep(0.3)  # it has placed its cursor and waits
    await store.update("Patient", "new", {**patient("0002"), "id": "new"})
    fresh = await waiting
    # Down before it processed anything: what committed meanwhile is still delivered.
    await store.update("Patient", "later", {**patient("0003"), "id": "later"})
    await store.aclose()
    try:
        after_restart = await first("hooks")
    finally:
        await database.dispose()

    assert [e.resource_id for e in fresh] == ["new"]
    assert [e.resource_id for e in after_restart] == ["new", "later"]


async def test_a_waiting_subscriber_wakes_on_commit_not_on_its_poll(store: FhirStore) -> None:
    feed = ChangeFeed(store.database, poll_interval_s=600)  # only a wake-up can deliver
    received: asyncio.Queue[list[ChangeEvent]] = asyncio.Queue()

    async def subscribe() -> None:
        async for events in feed.follow("ward-board"):
            await received.put(events)

    async with asyncio.TaskGroup() as group:
        task = group.create_task(subscribe())
        await asyncio.sleep(0.2)  # the subscriber has found nothing and waits
        await store.update("Patient", "p1", {**patient("0001"), "id": "p1"})
        async with asyncio.timeout(10):
            events = await received.get()
        task.cancel()

    assert summary(events) == [("Patient", "p1", 1, "create")]


async def test_a_busy_feed_gathers_what_commits_after_a_large_batch_and_a_quiet_one_does_not(
    store: FhirStore,
) -> None:
    """After a read of 8 events or more (a group of writes under load), the writes that
    follow within `gather_s` come together in the next batch; after a small one, the next
    write comes at once."""
    feed = ChangeFeed(store.database, poll_interval_s=600, gather_s=3.0)
    received: asyncio.Queue[list[ChangeEvent]] = asyncio.Queue()

    async def subscribe() -> None:
        async for events in feed.follow("ward-board"):
            await received.put(events)

    async def next_batch(within_s: float = 10) -> list[str]:
        async with asyncio.timeout(within_s):
            return [event.resource_id for event in await received.get()]

    async def put(n: int) -> None:
        await store.update("Patient", f"p{n}", {**patient(f"{n:04d}"), "id": f"p{n}"})

    async with asyncio.TaskGroup() as group:
        task = group.create_task(subscribe())
        await asyncio.sleep(0.2)  # the subscriber has found nothing and waits
        await put(1)
        quiet = await next_batch()
        await put(2)
        alone = await next_batch(within_s=1.5)  # not held back: gathering takes 3 s
        await store.transaction(transaction(*(put_entry(f"g{n}", f"1{n:03d}") for n in range(8))))
        group_of_eight = await next_batch()
        for n in (3, 4, 5):  # three commits, each one its own wake-up
            await put(n)
            await asyncio.sleep(0.1)
        gathered = await next_batch()
        task.cancel()

    assert (quiet, alone) == (["p1"], ["p2"])
    assert group_of_eight == [f"g{n}" for n in range(8)]
    assert gathered == ["p3", "p4", "p5"]


WRITE_FROM_ANOTHER_PROCESS = """
import asyncio, sys
from fhir_store import FhirStore
from fhir_store.app import create_database

async def main() -> None:
    database = create_database(sys.argv[1])
    store = FhirStore(database)
    await store.update("Patient", "elsewhere", {"resourceType": "Patient", "id": "elsewhere"})
    await store.aclose()
    await database.dispose()

asyncio.run(main())
"""


async def test_on_postgresql_a_write_of_another_process_wakes_the_subscriber(
    database: AsyncEngine,
) -> None:
    if database.dialect.name != "postgresql":
        pytest.skip("SQLite has no NOTIFY: other processes' writes are found by polling")
    feed = ChangeFeed(database, poll_interval_s=600)  # only a notification can deliver
    url = database.url.render_as_string(hide_password=False)

    async def first() -> list[ChangeEvent]:
        async for events in feed.follow("other-node"):
            return events
        raise AssertionError("follow ended")

    waiting = asyncio.create_task(first())
    await asyncio.sleep(0.5)  # listening, nothing to read yet
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITE_FROM_ANOTHER_PROCESS, url, cwd=ROOT
    )
    assert await writer.wait() == 0
    async with asyncio.timeout(10):
        events = await waiting

    assert summary(events) == [("Patient", "elsewhere", 1, "create")]


async def test_concurrent_writers_give_a_reader_every_event_once_and_in_resource_order(
    database: AsyncEngine,
) -> None:
    """Several stores (each with its own write connections, as several engine nodes would
    have) update the same resources at once while a subscriber follows: it sees each sequence
    number exactly once, without gaps, and each resource's versions in order."""
    stores = [FhirStore(database) for _ in range(4)]
    feed = ChangeFeed(database, poll_interval_s=0.05)
    seen: list[ChangeEvent] = []
    writes = 15

    async def write(store: FhirStore, worker: int) -> None:
        for n in range(writes):
            resource_id = f"shared{n % 3}"
            body = {**patient(f"{worker}-{n}"), "id": resource_id}
            for _ in range(20):  # two writers of one resource at once: one retries
                try:
                    await store.update("Patient", resource_id, body)
                    break
                except VersionConflict:
                    await asyncio.sleep(0.01)
            else:
                raise AssertionError("a write kept losing its race")

    async def follow(total: int) -> None:
        async for events in feed.follow("audit", batch=7):
            seen.extend(events)
            if len(seen) >= total:
                return

    try:
        async with asyncio.timeout(60), asyncio.TaskGroup() as group:
            group.create_task(follow(len(stores) * writes))
            for worker, store in enumerate(stores):
                group.create_task(write(store, worker))
    finally:
        for store in stores:
            await store.aclose()

    assert [e.sequence for e in seen] == list(range(1, len(stores) * writes + 1))
    for resource_id in {e.resource_id for e in seen}:
        versions = [e.version_id for e in seen if e.resource_id == resource_id]
        assert versions == list(range(1, len(versions) + 1))
    assert seen == await feed.read(0, limit=1000)
