"""UWB test fixtures: a database with the FHIR store's and the UWB tables (SQLite and
PostgreSQL), a store on it, the shipped zones, and gateway messages as the vendors send them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from devices.uwb.schema import migrate
from devices.uwb.zones import ZoneMap, load_zones
from fhir_store import FhirStore
from tests.fhir_store.conftest import database as fhir_database

__all__ = ["CST", "fhir_database", "pozyx", "sewio"]

CST = timezone(timedelta(hours=8))


@pytest.fixture
async def database(fhir_database: AsyncEngine) -> AsyncEngine:
    await migrate(fhir_database)
    return fhir_database


@pytest.fixture
async def store(database: AsyncEngine) -> AsyncIterator[FhirStore]:
    fhir = FhirStore(database, timezone=CST, check_references=False)  # as the destination
    try:
        yield fhir
    finally:
        await fhir.aclose()


@pytest.fixture(scope="session")
def zones() -> ZoneMap:
    return load_zones()


def pozyx(tag: str, at: datetime, x_m: float, y_m: float, **data: Any) -> bytes:
    """One Pozyx MQTT position update (millimetres, epoch seconds)."""
    update = {"version": "2.0", "tagId": tag, "timestamp": at.timestamp(), "success": True,
              "data": {"coordinates": {"x": round(x_m * 1000), "y": round(y_m * 1000), "z": 1000},
                       "metrics": {"latency": 21}, **data}}  # fmt: skip
    return json.dumps([update]).encode()


def sewio(tag: str, at: datetime, x_m: float, y_m: float, clr: float = 0.2) -> bytes:
    """One Sewio feed message (metres as padded text, UTC without offset)."""
    when = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    streams = [{"id": key, "current_value": f" {value:.2f}", "at": when}
               for key, value in (("posX", x_m), ("posY", y_m), ("clr", clr))]  # fmt: skip
    return json.dumps(
        {"resource": f"/feeds/{tag}", "body": {"id": tag, "datastreams": streams}}
    ).encode()
