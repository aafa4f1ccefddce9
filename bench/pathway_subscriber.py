"""CPU of the pathway subscriber per ADT^A04 (a Patient and an ED Encounter of a new patient),
by the size of the change-event batches it is handed.

An ADT^A04 is what the HIS sends most; no pathway activates on it, but the subscriber must still
read the resource, the patient's open cases and the cases the resource fed. It reads them per
batch (`Cases.prefetch`), so the cost per message falls with the batch size: batches of 2 are
one message at a time (a quiet server), 500 is how the subscriber catches up after a burst.
One process, SQLite file; CPU seconds of the process (`time.process_time`), which moves far less
with the machine's load than wall time.

Usage: python bench/pathway_subscriber.py [--messages N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

from fhir_store import ChangeFeed, FhirStore, migrate
from fhir_store.app import create_database
from pathways.definitions import load_pathways
from pathways.subscriber import PathwaySubscriber

CST = timezone(timedelta(hours=8))
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
BATCHES = (2, 16, 500)


def adt_a04(n: int) -> list[dict[str, Any]]:
    """The Patient and Encounter the ADT mapping writes for one registration."""
    patient = {
        "resourceType": "Patient",
        "id": f"p{n}",
        "gender": "male",
        "birthDate": "1958-03-12",
    }
    visit = {
        "resourceType": "Encounter", "id": f"v{n}", "status": "in-progress",
        "class": {"system": ACT, "code": "EMER"},
        "subject": {"reference": f"Patient/p{n}"},
        "period": {"start": "2026-11-25T08:28:00+08:00"},
    }  # fmt: skip
    return [patient, visit]


async def measure(folder: Path, messages: int) -> dict[int, float]:
    database = create_database(f"sqlite+aiosqlite:///{folder / 'bench.db'}")
    await migrate(database)
    writer = FhirStore(database, check_references=False)
    per_message: dict[int, float] = {}
    try:
        for n in range(messages):
            for resource in adt_a04(n):
                await writer.update(resource["resourceType"], resource["id"], resource)
        events = await ChangeFeed(database).read(0, limit=10 * messages)
        for size in BATCHES:
            subscriber = PathwaySubscriber(
                database, name=f"bench-{size}", timezone=CST, pathways=load_pathways()
            )
            try:
                await subscriber.start()
                started = time.process_time()
                for start in range(0, len(events), size):
                    await subscriber.handle_batch(events[start : start + size])
                per_message[size] = 1000 * (time.process_time() - started) / messages
            finally:
                await subscriber.aclose()
    finally:
        await writer.aclose()
        await database.dispose()
    return per_message


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        figures = asyncio.run(measure(Path(folder), args.messages))
    print(f"Pathway subscriber, {args.messages} ADT^A04 (Patient + Encounter), SQLite:")
    for size, ms in figures.items():
        print(f"  batches of {size:>3} events: {ms:6.2f} ms CPU per message")
    print(f"  (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
