"""A fixed workload for instruction counts of the journal's write path, which wall-clock figures
on a shared machine cannot compare: N group commits of 8 messages on SQLite, each followed by a
derived-work transaction, as the engine's write thread runs them under load.

Usage (from bench/): valgrind --tool=callgrind python journal_cpu.py N, once with N=0 (imports and
migrations only) and once with N=200; the difference is the cost of 200 batches.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime

from _load import adt_a04

from engine.connectors import Inbound
from engine.database import WriteThread, create_database_engine, migrate
from engine.journal import journal_inbound

BATCH = 8


def inbound(n: int, now: datetime) -> tuple[str, Inbound]:
    return (
        "bench",
        Inbound(
            raw=adt_a04(n, run="J"),
            media_type="x-application/hl7-v2+er7",
            received_at=now,
            origin="mllp://127.0.0.1:1",
            dedup_key=f"HIS|J-{n:08d}",
            charset="utf-8",
            correlation_id=f"J-{n:08d}",
        ),
    )


async def main(batches: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        database = create_database_engine(f"sqlite+aiosqlite:///{tmp}/journal.db")
        await migrate(database)
        writes = WriteThread(database.url)
        now = datetime.now(UTC)
        work = [[inbound(b * BATCH + i, now) for i in range(BATCH)] for b in range(batches)]
        started = time.perf_counter()
        for items in work:
            await writes.run(lambda c, items=items: journal_inbound(c, items), urgent=True)
            await writes.run(lambda c: None)
        print(f"{batches} batches of {BATCH} in {time.perf_counter() - started:.2f} s")
        writes.close()
        await database.dispose()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
