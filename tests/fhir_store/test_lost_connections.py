"""The store's PostgreSQL connections: those that died while the pools held them (a server
restart, a firewall dropping idle links) are replaced instead of failing the next write and
read, and a closed store opens none of its own again."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store import FhirStore
from tests.postgres import sessions_left, terminate_other_sessions

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
