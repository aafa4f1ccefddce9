"""FHIR store bulk load: the Synthea set (2 batch + 120 transaction Bundles, 92,114 resources).

The Bundles of shared/data/fhir/synthea (samply/blaze test data, Apache-2.0) are sent one at a
time, hospitals and practitioners first: in process through `FhirStore.transaction`, then
through the HTTP API (`POST /fhir` on a uvicorn server in a subprocess, an httpx client here),
with and without structural validation (fhir.resources); on SQLite and on PostgreSQL. Reading
the files is not timed. The CPU time per resource is the store's process's (PostgreSQL's own
not included): on a shared machine it is steadier than the rate.

Usage: python bench/fhir_synthea_load.py [--bundles N] [--no-http] [--no-validation]
       [--no-postgres]
Target: >= 2,000 resources/s (Blaze: about 4,100/s on a desktop i7; IBM's FHIR server 940/s).
"""

from __future__ import annotations

import argparse
import asyncio
import bz2
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from _fhir_server import FhirServer
from _load import ROOT, drop_postgres_database, postgres_database

from fhir_store import FhirStore, FhirStoreError, migrate
from fhir_store.app import create_database

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SYNTHEA = ROOT.parent / "shared" / "data" / "fhir" / "synthea"  # ../shared, as the tests


def synthea_bundles(limit: int | None) -> list[dict[str, Any]]:
    """The Bundles in load order: the two batches (hospitals, practitioners) the others refer
    to first, then the patients' transactions by file name."""
    paths = sorted(SYNTHEA.glob("*.json.bz2"), key=lambda path: (path.name[:2] != "0-", path.name))
    bundles = []
    for path in paths[:limit]:
        with bz2.open(path) as file:
            bundles.append(json.load(file))
    return bundles


@dataclass
class Figures:
    resources: int
    elapsed_s: float
    cpu_s: float  # the store's process, every thread (in process: this one; else the server)
    failed: int

    def line(self, label: str) -> str:
        rate = self.resources / self.elapsed_s
        cpu = f"{1e6 * self.cpu_s / self.resources:4.0f} µs CPU/resource" if self.cpu_s else ""
        return (
            f"{label:<34} {rate:7.0f} resources/s   {self.elapsed_s:6.1f} s   {cpu}"
            f"   ({self.resources} resources, {self.failed} Bundles failed)"
        )


async def load_in_process(url: str, bodies: list[bytes], resources: int, validate: bool) -> Figures:
    """Each Bundle is parsed from its JSON just before its transaction, untimed: the store is
    not charged for the garbage collector walking a client's 200 MB of parsed Bundles."""
    database = create_database(url)
    store = FhirStore(database, validate_structure=validate)
    try:
        await migrate(database)
        if validate:  # the models' import is a one-off, not part of the load
            from fhir_store._validation import validate_structure

            validate_structure({"resourceType": "Patient"})
        failed = 0
        elapsed_s = cpu_s = 0.0
        for body in bodies:
            bundle = json.loads(body)
            started, cpu_started = time.perf_counter(), time.process_time()
            try:
                await store.transaction(bundle)
            except FhirStoreError as error:
                failed += 1
                print(f"  failed: {error}", file=sys.stderr)
            elapsed_s += time.perf_counter() - started
            cpu_s += time.process_time() - cpu_started
        return Figures(resources, elapsed_s, cpu_s, failed)
    finally:
        await store.aclose()
        await database.dispose()


def load_over_http(url: str, bodies: list[bytes], resources: int, validate: bool) -> Figures:
    """POST each Bundle to a standalone FHIR server (`fhir_store.app`) in a subprocess."""
    with FhirServer(url, validate=validate) as server:
        failed = 0
        with httpx.Client(base_url=server.base_url, timeout=300) as client:
            headers = {"Content-Type": "application/fhir+json"}
            client.get("/metadata")
            started, cpu_started = time.perf_counter(), server.cpu_s()
            for body in bodies:
                response = client.post("", content=body, headers=headers)
                if response.status_code != 200:
                    failed += 1
                    print(
                        f"  failed: {response.status_code} {response.text[:300]}", file=sys.stderr
                    )
            elapsed_s, cpu_s = time.perf_counter() - started, server.cpu_s() - cpu_started
        return Figures(resources, elapsed_s, cpu_s, failed)


def resource_count(bundles: list[dict[str, Any]]) -> int:
    return sum(len(bundle.get("entry", [])) for bundle in bundles)


def run(label: str, url_of: Any, args: argparse.Namespace, bodies: list[bytes], count: int) -> None:
    for validate in (False, True) if not args.no_validation else (False,):
        suffix = ", validated" if validate else ""
        with url_of() as url:
            figures = asyncio.run(load_in_process(url, bodies, count, validate))
        print(figures.line(f"{label}, FhirStore.transaction{suffix}"), flush=True)
        if not args.no_http:
            with url_of() as url:
                figures = load_over_http(url, bodies, count, validate)
            print(figures.line(f"{label}, POST /fhir{suffix}"), flush=True)


class _SqliteUrl:
    def __enter__(self) -> str:
        self._directory = tempfile.TemporaryDirectory(prefix="gc-bench-")
        return f"sqlite+aiosqlite:///{Path(self._directory.name) / 'fhir.db'}"

    def __exit__(self, *exc: object) -> None:
        self._directory.cleanup()


class _PostgresUrl:
    def __enter__(self) -> str:
        self._url = postgres_database(PG_ADMIN)
        return self._url

    def __exit__(self, *exc: object) -> None:
        drop_postgres_database(PG_ADMIN, self._url)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundles", type=int, default=None, help="load only the first N")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--no-validation", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    bundles = synthea_bundles(args.bundles)
    count = resource_count(bundles)
    print(f"Synthea load: {len(bundles)} Bundles, {count} resources, one Bundle at a time")
    bodies = [json.dumps(bundle).encode() for bundle in bundles]
    del bundles
    run("SQLite", _SqliteUrl, args, bodies, count)
    if not args.no_postgres:
        run("PostgreSQL", _PostgresUrl, args, bodies, count)


if __name__ == "__main__":
    main()
