"""FHIR store write throughput: `transaction_many` with 100 two-resource ADT-like Bundles per call.

Each call holds half new patients, half updates of the previous call's patients (a changed
phone number, the visit finished) and a few exact replays of the previous call's Bundles, the
way the FHIR destination's delivery worker feeds the store; on SQLite and on PostgreSQL.

Usage: python bench/fhir_store_write.py [--calls N] [--batch N] [--no-postgres]
Target: <= 0.5 ms per Bundle (>= 2,000 Bundles/s) on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _load import PG_ADMIN, drop_postgres_database, postgres_database

from engine.database import create_database_engine
from fhir_store import FhirStore, FhirStoreError, migrate

MRN = "urn:oid:1.2.156.112604.1.2.1"
REPLAYS = 5


def adt_bundle(run: str, n: int, *, update: bool = False) -> dict[str, Any]:
    """A HIS ADT message as the his-adt mapping makes it: PUT Patient, PUT Encounter."""
    patient_id = f"{run}-p{n}"
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, patient_id)}",
                "resource": {
                    "resourceType": "Patient",
                    "id": patient_id,
                    "meta": {"tag": [{"system": "urn:greenchannel:source", "code": "HIS"}]},
                    "identifier": [
                        {
                            "use": "usual",
                            "type": {"coding": [{"code": "MR"}]},
                            "system": MRN,
                            "value": f"{run}{n:07d}",
                        }
                    ],
                    "active": True,
                    "name": [{"use": "official", "text": "张三", "family": "张", "given": ["三"]}],
                    "telecom": [
                        {"system": "phone", "value": f"1380000{n % 10000:04d}"},
                        *([{"system": "phone", "value": "010-5555"}] if update else []),
                    ],
                    "gender": "male",
                    "birthDate": "1980-01-01",
                    "address": [{"line": ["1 Road"], "city": "Beijing", "country": "CN"}],
                },
                "request": {"method": "PUT", "url": f"Patient/{patient_id}"},
            },
            {
                "resource": {
                    "resourceType": "Encounter",
                    "id": f"{run}-v{n}",
                    "identifier": [{"system": "urn:greenchannel:visit:HIS", "value": f"V{n}"}],
                    "status": "finished" if update else "in-progress",
                    "class": {"code": "EMER"},
                    "subject": {
                        "reference": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, patient_id)}"
                    },
                    "period": {"start": "2024-05-01T08:00:00+08:00"},
                },
                "request": {"method": "PUT", "url": f"Encounter/{run}-v{n}"},
            },
        ],
    }


def calls(count: int, batch: int) -> list[list[dict[str, Any]]]:
    """`count` batches: half new patients, half updates of the previous batch's, a few replays."""
    run = uuid.uuid4().hex[:8]
    result: list[list[dict[str, Any]]] = []
    previous: list[int] = []
    next_patient = 0
    for _ in range(count):
        fresh = list(range(next_patient, next_patient + batch - batch // 2))
        next_patient += len(fresh)
        updates = previous[: batch // 2 - REPLAYS]
        replays = previous[len(updates) : len(updates) + REPLAYS]
        bundles = [adt_bundle(run, n) for n in fresh]
        bundles += [adt_bundle(run, n, update=True) for n in updates]
        bundles += [adt_bundle(run, n) for n in replays]  # as first sent: no change
        result.append(bundles)
        previous = fresh
    return result


async def measure(url: str, count: int, batch: int) -> tuple[float, float, int, float]:
    """Seconds for `count` transaction_many calls, the CPU seconds this process spent on them
    (every thread: the store's Python work and the database driver's), failed Bundles, and
    seconds per Bundle sent alone with `transaction`."""
    database = create_database_engine(url)
    store = FhirStore(database)
    try:
        await migrate(database)
        work = calls(count + 4, batch)
        for bundles in work[:3]:  # warm up connections and statement caches
            await store.transaction_many(bundles)
        failed = 0
        started, cpu_started = time.perf_counter(), time.process_time()
        for bundles in work[3:-1]:
            results = await store.transaction_many(bundles)
            failed += sum(isinstance(result, FhirStoreError) for result in results)
        elapsed_s = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_started
        started = time.perf_counter()
        for bundle in work[-1]:
            await store.transaction(bundle)
        return elapsed_s, cpu_s, failed, (time.perf_counter() - started) / len(work[-1])
    finally:
        await store.aclose()
        await database.dispose()


def report(label: str, figures: tuple[float, float, int, float], bundles: int) -> None:
    elapsed_s, cpu_s, failed, alone_s = figures
    print(
        f"{label:<12} {bundles / elapsed_s:8.0f} Bundles/s   {1000 * elapsed_s / bundles:6.3f} ms "
        f"per Bundle, {1e6 * cpu_s / bundles:5.0f} µs CPU   ({bundles} Bundles, {failed} failed);"
        f"   one per transaction(): {1000 * alone_s:6.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    bundles = args.calls * args.batch
    print(f"transaction_many, {args.batch} two-resource Bundles per call, {args.calls} calls")
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite+aiosqlite:///{Path(directory) / 'fhir.db'}"
        figures = asyncio.run(measure(url, args.calls, args.batch))
    report("SQLite", figures, bundles)
    if args.no_postgres:
        return
    url = postgres_database(PG_ADMIN)
    try:
        report("PostgreSQL", asyncio.run(measure(url, args.calls, args.batch)), bundles)
    finally:
        drop_postgres_database(PG_ADMIN, url)


if __name__ == "__main__":
    main()
