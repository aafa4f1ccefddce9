"""Change-event latency: from a write's return to a following subscriber holding its event.

One store writes single resources one after another; a `ChangeFeed.follow` in the same
process (woken by the commit; on PostgreSQL also by NOTIFY) notes when it sees each event.
Its poll interval is 60 s, so a missed wake-up would show as an outlier. Prints median and
p99 in ms, on SQLite and PostgreSQL.

Usage: python bench/change_events.py [--writes N] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from _load import PG_ADMIN, drop_postgres_database, postgres_database

from fhir_store import ChangeFeed, FhirStore, migrate
from fhir_store.app import create_database


async def measure(url: str, writes: int) -> list[float]:
    """Seconds from each write's return to the subscriber seeing its event."""
    database = create_database(url)
    await migrate(database)
    store = FhirStore(database)
    feed = ChangeFeed(database, poll_interval_s=60)  # a poll would show as a 60 s outlier
    seen: dict[int, float] = {}
    done = asyncio.Event()

    async def follow() -> None:
        async for events in feed.follow("bench"):
            now = time.perf_counter()
            for event in events:
                seen[event.sequence] = now
            if len(seen) >= writes:
                done.set()
                return

    returned: dict[int, float] = {}
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(follow())
            await asyncio.sleep(0.2)
            for n in range(1, writes + 1):
                await store.update("Patient", f"p{n}", {"resourceType": "Patient", "id": f"p{n}"})
                returned[n] = time.perf_counter()
                await asyncio.sleep(0.005)  # one write at a time, as a ward's traffic comes
            await done.wait()
    finally:
        await store.aclose()
        await database.dispose()
    return [max(0.0, seen[n] - returned[n]) for n in range(1, writes + 1)]


def report(label: str, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"{label:<12} median {1000 * statistics.median(ordered):6.2f} ms   "
        f"p99 {1000 * p99:6.2f} ms   ({len(ordered)} writes)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print("write returned -> event in a following subscriber of the same process")
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite+aiosqlite:///{Path(directory) / 'fhir.db'}"
        report("SQLite", asyncio.run(measure(url, args.writes)))
    if args.no_postgres:
        return
    url = postgres_database(PG_ADMIN)
    try:
        report("PostgreSQL", asyncio.run(measure(url, args.writes)))
    finally:
        drop_postgres_database(PG_ADMIN, url)


if __name__ == "__main__":
    main()
