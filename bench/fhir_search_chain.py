"""Chained, `_has`, compartment and `$everything` searches on a loaded store: p50/p95 per query.

Loads the Synthea hospital and practitioner batches and the first N patient bundles
(shared/data/fhir/synthea) into a fresh SQLite file (and, with --postgres, a fresh PostgreSQL
database, ANALYZEd after the load), then runs each query REPEAT times through the FhirStore
API. Prints figures; asserts nothing.

    python bench/fhir_search_chain.py [--bundles 30] [--postgres postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import bz2
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from fhir_store import FhirStore, migrate
from fhir_store._everything import parse_everything
from fhir_store._search import parse_search
from fhir_store.app import create_database

ROOT = Path(__file__).resolve().parents[1]
SYNTHEA = ROOT.parent / "shared" / "data" / "fhir" / "synthea"
REPEAT = 30


def bundle(path: Path) -> dict[str, Any]:
    with bz2.open(path) as file:
        loaded: dict[str, Any] = json.load(file)
    return loaded


async def load(store: FhirStore, count: int) -> tuple[int, str]:
    """Load the batches and `count` patient bundles; the number of resources and the id of
    the first patient."""
    total = 0
    for path in sorted(SYNTHEA.glob("0-*.json.bz2")):
        total += len((await store.transaction(bundle(path)))["entry"])
    patient_id = ""
    for path in sorted(p for p in SYNTHEA.glob("*.json.bz2") if not p.name.startswith("0-"))[
        :count
    ]:
        response = await store.transaction(bundle(path))
        total += len(response["entry"])
        patient_id = patient_id or response["entry"][0]["response"]["location"].split("/")[1]
    return total, patient_id


async def timed(work: Callable[[], Awaitable[int]]) -> tuple[float, float, int]:
    """p50 and p95 in ms, and the number of matches."""
    found = await work()
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        await work()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], found


async def run(url: str, count: int) -> None:
    engine = create_database(url)
    await migrate(engine)
    store = FhirStore(engine)
    try:
        started = time.perf_counter()
        resources, patient_id = await load(store, count)
        print(f"{engine.dialect.name}: loaded {resources} resources in "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        if engine.dialect.name == "postgresql":
            # the statistics autovacuum would have gathered by now on a live server; without
            # them the planner takes every index table for nearly empty
            async with engine.connect() as connection:
                await connection.execute(text("ANALYZE"))
                await connection.commit()

        def search(resource_type: str, **params: str) -> Callable[[], Awaitable[int]]:
            async def work() -> int:
                query = parse_search(resource_type, list(params.items()), strict=True)
                return len((await store.search(query)).contents)

            return work

        def compartment(resource_type: str, **params: str) -> Callable[[], Awaitable[int]]:
            async def work() -> int:
                query = parse_search(resource_type, list(params.items()), strict=True)
                page = await store.search_compartment("Patient", patient_id, query)
                return len(page.contents)

            return work

        def everything(**params: str) -> Callable[[], Awaitable[int]]:
            async def work() -> int:
                query = parse_everything(patient_id, list(params.items()), strict=True)
                return len((await store.everything(query)).contents)

            return work

        queries = {
            "Observation?subject:Patient.name=a&_count=20": search(
                "Observation", **{"subject:Patient.name": "a", "_count": "20"}
            ),
            "Observation?subject:Patient._id=<patient>": search(
                "Observation", **{"subject:Patient._id": patient_id}
            ),
            "Observation?encounter.service-provider.name=m&_count=20": search(
                "Observation", **{"encounter.service-provider.name": "m", "_count": "20"}
            ),
            "Patient?_has:Observation:patient:code=8302-2": search(
                "Patient", **{"_has:Observation:patient:code": "8302-2"}
            ),
            "Practitioner?_has:Encounter:practitioner:_has:Observation:encounter:code=8302-2": (
                search(
                    "Practitioner",
                    **{"_has:Encounter:practitioner:_has:Observation:encounter:code": "8302-2"},
                )
            ),
            "Patient/<id>/Observation": compartment("Observation"),
            "Patient/<id>/Observation?code=8302-2": compartment("Observation", code="8302-2"),
            "Patient/<id>/$everything?_count=100": everything(_count="100"),
            "Patient/<id>/$everything?_count=100&_offset=300": everything(
                _count="100", _offset="300"
            ),
        }
        for name, work in queries.items():
            p50, p95, found = await timed(work)
            print(f"  {name:<86} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  ({found} on the page)")
    finally:
        await store.aclose()
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", type=int, default=30)
    parser.add_argument("--postgres", help="a PostgreSQL server URL to create a database on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        await run(f"sqlite+aiosqlite:///{folder}/bench.db", args.bundles)
    if args.postgres:
        name = f"bench_chain_{uuid.uuid4().hex[:8]}"
        admin = create_async_engine(args.postgres, isolation_level="AUTOCOMMIT")
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            await run(args.postgres.rsplit("/", 1)[0] + f"/{name}", args.bundles)
        finally:
            async with admin.connect() as connection:
                await connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            await admin.dispose()


if __name__ == "__main__":
    asyncio.run(main())
