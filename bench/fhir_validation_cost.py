"""What validating every write costs: the Synthea load with the store's validation on and off.

Loads the two Synthea batch Bundles (hospitals, practitioners) and the first N patient
transaction Bundles of shared/data/fhir/synthea into a fresh database, once with
`validate_structure=True` (the default) and once with False, and prints the seconds and the
process CPU seconds of each, the difference per resource, and the cost of `validate_structure`
alone per resource (no database; over the last patient's resources, after the others').
Wall-clock seconds are noisy on the shared 2-core machine; the CPU seconds are the figure to
compare. (Not measured here: a replayed PUT whose content equals the current version is not
validated again.) A large transaction is validated in another process (fhir_store/_validation),
whose CPU this process's figure leaves out.

Usage: python bench/fhir_validation_cost.py [--patients N] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import bz2
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from _load import PG_ADMIN, drop_postgres_database, postgres_database

from engine.database import create_database_engine
from fhir_store import FhirStore, migrate
from fhir_store._validation import validate_structure

SYNTHEA = Path(__file__).resolve().parents[1].parent / "shared/data/fhir/synthea"


def bundles(patients: int) -> list[dict[str, Any]]:
    """The batch Bundles first (their resources are referenced), then `patients` patients."""
    files = sorted(SYNTHEA.glob("*.json.bz2"))
    first = [path for path in files if "Information" in path.name]
    rest = [path for path in files if "Information" not in path.name][:patients]
    return [json.loads(bz2.decompress(path.read_bytes())) for path in first + rest]


def resources(loaded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry["resource"] for bundle in loaded for entry in bundle["entry"]]


async def load(url: str, loaded: list[dict[str, Any]], validate: bool) -> tuple[float, float]:
    """Seconds and process CPU seconds (every thread) of the load."""
    database = create_database_engine(url)
    store = FhirStore(database, validate_structure=validate)
    try:
        await migrate(database)
        started, cpu_started = time.perf_counter(), time.process_time()
        for bundle in loaded:
            await store.transaction(bundle)
        return time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        await store.aclose()
        await database.dispose()


def validation_alone(warm: list[dict[str, Any]], measured: list[dict[str, Any]]) -> float:
    """CPU seconds per resource of `validate_structure` over `measured`, once the models are
    loaded and the structure check has seen `warm` (other patients: their values are new)."""
    for resource in warm:
        validate_structure(resource)
    started = time.process_time()
    for resource in measured:
        validate_structure(resource)
    return (time.process_time() - started) / len(measured)


def compare(label: str, urls: list[str], loaded: list[dict[str, Any]], count: int) -> None:
    """Off first, then on, then each again on fresh databases: the best of two of each, so that
    the first run's warm-up and the shared machine's noise weigh less."""
    off = asyncio.run(load(urls[0], loaded, False))
    on = asyncio.run(load(urls[1], loaded, True))
    off = min(off, asyncio.run(load(urls[2], loaded, False)))
    on = min(on, asyncio.run(load(urls[3], loaded, True)))
    for name, (elapsed_s, cpu_s) in (("validation on", on), ("validation off", off)):
        print(
            f"{label:<10} {name:<15} {elapsed_s:6.2f} s ({count / elapsed_s:5.0f} resources/s), "
            f"CPU {cpu_s:6.2f} s"
        )
    extra_ms = 1000 * (on[1] - off[1]) / count
    print(f"{label:<10} validation adds {extra_ms:.3f} ms CPU per resource to the load")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=2)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    loaded = bundles(args.patients)
    items = resources(loaded)
    print(f"{len(loaded)} Bundles, {len(items)} resources")
    last = resources(loaded[-1:])
    alone = validation_alone(resources(loaded[:-1]), last)
    print(f"validate_structure alone: {1000 * alone:.3f} ms CPU per resource (the last patient's)")
    with tempfile.TemporaryDirectory() as directory:
        urls = [f"sqlite+aiosqlite:///{Path(directory) / f'{n}.db'}" for n in range(4)]
        compare("SQLite", urls, loaded, len(items))
    if not args.postgres:
        return
    urls = [postgres_database(PG_ADMIN) for _ in range(4)]
    try:
        compare("PostgreSQL", urls, loaded, len(items))
    finally:
        for url in urls:
            drop_postgres_database(PG_ADMIN, url)


if __name__ == "__main__":
    main()
