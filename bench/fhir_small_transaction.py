"""FHIR store latency of a small transaction: one Patient and one Observation referring to it.

Each transaction creates a new Patient (POST, urn:uuid fullUrl) and an Observation whose subject
is that fullUrl, as an ED front end or a device gateway sends them. Measured through the HTTP
API (`POST /fhir` on a uvicorn server in a subprocess, an httpx client here: what a client
sees) and in process (`FhirStore.transaction`), with one client and with 8 concurrent ones; on
SQLite and on PostgreSQL. The CPU time per transaction (the server process's, or this one's in
process; the database server's not included) is less disturbed by other load than latency.

Usage: python bench/fhir_small_transaction.py [--transactions N] [--no-postgres]
Target: median <= 5 ms with one client (Blaze: 5.2 ms on a 16-core server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from _fhir_server import FhirServer
from _load import PG_ADMIN, drop_postgres_database, percentile, postgres_database

from fhir_store import FhirStore, migrate
from fhir_store.app import create_database

MRN = "urn:oid:1.2.156.112604.1.2.1"
CLIENTS = 8
WARM_UP = 50


def small_transaction(run: str, n: int) -> dict[str, Any]:
    """A new patient and a first observation of theirs (heart rate)."""
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_url,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": MRN, "value": f"{run}-{n:07d}"}],
                    "name": [{"family": "张", "given": ["三"], "text": "张三"}],
                    "gender": "male",
                    "birthDate": "1958-03-14",
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "observation-category",
                                    "code": "vital-signs",
                                }
                            ]
                        }
                    ],
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": patient_url},
                    "effectiveDateTime": "2026-11-25T08:30:00+08:00",
                    "valueQuantity": {
                        "value": 112,
                        "unit": "/min",
                        "system": "http://unitsofmeasure.org",
                        "code": "/min",
                    },
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }


Send = Callable[[dict[str, Any]], Awaitable[None]]


async def measure(
    send: Send, transactions: int, clients: int, cpu_s: Callable[[], float]
) -> tuple[list[float], float, float]:
    """Latencies (s) of `transactions` sent by `clients` concurrent clients, each waiting for
    its answer before the next, the elapsed time, and the CPU seconds `cpu_s` counted."""
    run = uuid.uuid4().hex[:8]
    for n in range(WARM_UP):
        await send(small_transaction("warm" + run, n))
    bundles = [small_transaction(run, n) for n in range(transactions)]
    latencies: list[float] = []

    async def client(share: list[dict[str, Any]]) -> None:
        for bundle in share:
            started = time.perf_counter()
            await send(bundle)
            latencies.append(time.perf_counter() - started)

    started, cpu_started = time.perf_counter(), cpu_s()
    await asyncio.gather(*(client(bundles[i::clients]) for i in range(clients)))
    return latencies, time.perf_counter() - started, cpu_s() - cpu_started


def line(label: str, latencies: list[float], elapsed_s: float, cpu_s: float) -> str:
    return (
        f"{label:<46} median {1000 * statistics.median(latencies):6.2f} ms   "
        f"p99 {1000 * percentile(latencies, 0.99):6.2f} ms   "
        f"{len(latencies) / elapsed_s:5.0f} transactions/s   "
        f"{1000 * cpu_s / len(latencies):5.2f} ms CPU each"
    )


async def in_process(url: str, transactions: int, label: str) -> None:
    database = create_database(url)
    store = FhirStore(database)
    try:
        await migrate(database)

        async def send(bundle: dict[str, Any]) -> None:
            await store.transaction(bundle)

        for clients in (1, CLIENTS):
            figures = await measure(send, transactions, clients, time.process_time)
            print(line(f"{label}, FhirStore.transaction, {clients} client(s)", *figures))
    finally:
        await store.aclose()
        await database.dispose()


async def over_http(server: FhirServer, transactions: int, label: str) -> None:
    """Through the server; the CPU figure is the server process's."""
    headers = {"Content-Type": "application/fhir+json"}
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=60) as http:

        async def send(bundle: dict[str, Any]) -> None:
            response = await http.post("", content=json.dumps(bundle).encode(), headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code}: {response.text[:300]}")

        for clients in (1, CLIENTS):
            figures = await measure(send, transactions, clients, server.cpu_s)
            print(line(f"{label}, POST /fhir, {clients} client(s)", *figures))


def run(label: str, url: str, transactions: int) -> None:
    with FhirServer(url) as server:
        asyncio.run(over_http(server, transactions, label))
    asyncio.run(in_process(url, transactions, label))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transactions", type=int, default=1000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print(f"Small transaction (Patient + Observation), {args.transactions} per measurement")
    with tempfile.TemporaryDirectory() as directory:
        run("SQLite", f"sqlite+aiosqlite:///{Path(directory) / 'fhir.db'}", args.transactions)
    if not args.no_postgres:
        url = postgres_database(PG_ADMIN)
        try:
            run("PostgreSQL", url, args.transactions)
        finally:
            drop_postgres_database(PG_ADMIN, url)


if __name__ == "__main__":
    main()
