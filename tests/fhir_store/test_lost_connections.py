"""PostgreSQL connections that died while the pools held them (a server restart, a firewall
dropping idle links): the store's next write and read get new ones instead of failing."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store import FhirStore

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

    url = database.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        cut = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert cut is not None and cut[0] >= 2  # the store's writer, the reads' engine
    await asyncio.sleep(1.1)  # idle past the store's PING_AFTER_IDLE_S: checked before use

    second = await store.create(patient("李"))
    assert (await store.read("Patient", second["id"]))["name"] == [{"family": "李"}]
