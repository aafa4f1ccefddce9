"""UWB position throughput: gateway messages through the zone processor (devices/uwb), the
work the `uwb-zones` destination does per message, on a migrated SQLite file (or PostgreSQL
with --postgres).

N bound wristbands walk gate -> triage -> resus, one Pozyx fix each every 2 s of device time;
each zone change is written into its Encounter. Prints fixes per second and the median and p99
time per message, and how many Encounter writes they made. A site with 200 tags at 1 Hz needs
200 messages per second.

Usage: python bench/uwb_positions.py [--tags N] [--fixes-per-tag N] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from devices.uwb import wristbands
from devices.uwb.positions import UwbProcessor
from devices.uwb.schema import migrate as migrate_uwb
from devices.uwb.zones import load_zones
from engine.database import create_database_engine
from fhir_store import FhirStore
from fhir_store import migrate as migrate_fhir

CST = timezone(timedelta(hours=8))
START = datetime(2026, 11, 25, 8, 0, tzinfo=CST)
PLACES = [(5.0, 3.0), (5.0, 10.0), (18.0, 5.0)]  # gate, triage, resus in config/zones.yaml
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def message(tag: str, at: datetime, place: tuple[float, float]) -> bytes:
    x, y = place
    coordinates = {"x": int(x * 1000), "y": int(y * 1000), "z": 900}
    update = {"version": "2.0", "tagId": tag, "timestamp": at.timestamp(), "success": True,
              "data": {"coordinates": coordinates}}  # fmt: skip
    return json.dumps([update]).encode()


async def main(tags: int, per_tag: int, url: str) -> None:
    database = create_database_engine(url)
    await migrate_fhir(database)
    await migrate_uwb(database)
    store = FhirStore(database, timezone=CST, check_references=False)
    run = time.strftime("%H%M%S")
    for n in range(tags):
        encounter = f"bench-{run}-{n}"
        await store.update("Encounter", encounter, {"resourceType": "Encounter", "id": encounter,
                                                     "status": "in-progress",
                                                     "class": {"code": "EMER"}})  # fmt: skip
        await wristbands.bind(database, f"B{run}-{n}", "p", encounter, START)
    processor = UwbProcessor(database, store, load_zones(), CST)
    times: list[float] = []
    writes = 0
    began = time.perf_counter()
    for step in range(per_tag):
        at = START + timedelta(seconds=2 * step)
        place = PLACES[min(step * len(PLACES) // per_tag, len(PLACES) - 1)]
        for n in range(tags):
            t0 = time.perf_counter()
            outcome = await processor.handle(message(f"B{run}-{n}", at, place))
            times.append(time.perf_counter() - t0)
            writes += sum(1 for e in outcome.events if "Encounter/" in e)
    elapsed = time.perf_counter() - began
    await store.aclose()
    await database.dispose()
    times.sort()
    print(f"database: {url.split(':')[0]}  tags: {tags}  messages: {len(times)}")
    print(f"fixes per second: {len(times) / elapsed:.0f}")
    print(f"per message: median {statistics.median(times) * 1000:.2f} ms, "
          f"p99 {times[int(len(times) * 0.99) - 1] * 1000:.2f} ms")  # fmt: skip
    print(f"zone events written into Encounters: {writes}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=20)
    parser.add_argument("--fixes-per-tag", type=int, default=60)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = PG if args.postgres else f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        asyncio.run(main(args.tags, args.fixes_per_tag, url))
