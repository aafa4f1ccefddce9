"""The store's PostgreSQL connections: those that died while the pools held them (a server
restart, a firewall dropping idle links) are replaced instead of failing the next write and
read, a closed store opens none of its own again, and closing waits for a write still
running in its thread."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.testing import wait_until
from fhir_store import FhirStore, parse_search
from tests.postgres import busy_sessions, sessions_left, terminate_other_sessions

pytestmark = pytest.mark.anyio


def patient(family: str) -> dict[str, object]:
    return {"resourceType": "Patient", "name": [{"family": family}]}


async def test_connections_cut_while_idle_are_replaced_before_use(
    store: FhirStore, database: AsyncEngine
) -> None:
    if database.dialect.name != "postgresql":
        pytest.skip("SQLite has no connection to lose")
    first = await store.create(patient("张"))
    assert (await store.read("Patient", first["id"]))["name"] == [{"family": "张"}]

    assert terminate_other_sessions(database.url) >= 2  # the store's writer, its reads' engine
    await asyncio.sleep(1.1)  # idle past the store's PING_AFTER_IDLE_S: checked before use

    second = await store.create(patient("李"))
    assert (await store.read("Patient", second["id"]))["name"] == [{"family": "李"}]


async def test_a_store_used_after_it_closed_leaves_no_connection_open(
    store: FhirStore, database: AsyncEngine
) -> None:
    # An engine stopping while a subscriber still finishes its work: the store has closed its
    # own connections, and what is asked of it afterwards must not open new ones that nobody
    # closes (they stayed open on the server until the garbage collector found them).
    if database.dialect.name != "postgresql":
        pytest.skip("a SQLite connection holds nothing on a server")
    await store.create(patient("张"))
    await store.aclose()
    late = await store.create(patient("李"))
    assert (await store.read("Patient", late["id"]))["name"] == [{"family": "李"}]
    await database.dispose()  # the caller's engine: every other connection is the store's

    assert sessions_left(database.url) == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


async def test_a_store_closed_while_its_write_runs_waits_for_it(
    store: FhirStore, database: AsyncEngine
) -> None:
    # The engine stopping while a subscriber's write runs in a worker thread: cancelling the
    # task does not stop the thread, and a pool disposed under it got the connection back
    # afterwards and kept it open until the garbage collector warned about it.
    if database.dialect.name != "postgresql":
        pytest.skip("a SQLite connection holds nothing on a server")
    await store.create(patient("张"))  # the store's write connection, idle in its pool
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient(f"李{n}"), "request": {"method": "POST", "url": "Patient"}}
            for n in range(400)
        ],
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        writing = asyncio.create_task(store.transaction(bundle))

        async def running() -> bool:  # the write has begun in its thread
            return busy_sessions(database.url) > 0

        await wait_until(running, every_s=0.005)
        writing.cancel()
        await store.aclose()
        gc.collect()
    found = await store.search(parse_search("Patient", [("_summary", "count")], strict=True))
    assert found.total == 401  # the write that was under way committed
    await database.dispose()
    assert sessions_left(database.url) == 0
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
