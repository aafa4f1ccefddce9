"""What resolving a group in the FHIR store's background process costs the writing process, per
ADT^A04 (docs/fhir-store.md, "Groups resolved in the background process").

Groups of 40 his-adt Bundles (the mapping's real output, `bench/_load.adt_a04`) are resolved
as the background process resolves them (`_group.plan_bundles` on a read connection), on an
SQLite store that already holds the previous groups. Printed per Bundle, in CPU microseconds of
this one process (time.process_time, steadier than wall time on a shared machine): resolving
(the work that left the engine process), the plan's pickled size, pickling it (the background
process's side), unpickling it, the JSON the Bundles travel as, and the write transaction's
check (`Changes.still_current`): what the engine process pays instead is the JSON's writing,
the unpickling and the check.

Usage: python bench/fhir_planning.py [--groups N]
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from _load import CST, mapped_adt_a04
from sqlalchemy import Engine

from engine.database import create_database_engine
from fhir_store import FhirStore, migrate
from fhir_store._group import Plan, plan_bundles
from fhir_store._json import dumps_bytes, loads
from fhir_store._writer import create_write_engine, read_engine_at

GROUP = 40


def cpu_us(work: Callable[[], Any], repeat: int = 1) -> float:
    started = time.process_time()
    for _ in range(repeat):
        work()
    return (time.process_time() - started) / repeat * 1e6


def measure_group(
    pending: list[dict[str, Any]], reader: Engine, writer: Engine
) -> tuple[dict[str, float], int]:
    """The CPU µs of each step for one group, and the plan's pickled size; the group written."""
    costs: dict[str, float] = {}
    payload = dumps_bytes(pending)
    costs["dumps"] = cpu_us(lambda: dumps_bytes(pending), 5)
    costs["loads"] = cpu_us(lambda: loads(payload), 5)
    with reader.connect() as connection:
        started = time.process_time()
        plan = plan_bundles(
            connection, pending, datetime.now(CST), False, False, check_references=False
        )
        costs["resolve"] = (time.process_time() - started) * 1e6
    plan.changes.detach()
    data = pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL)
    costs["pickle"] = cpu_us(lambda: pickle.dumps(plan, pickle.HIGHEST_PROTOCOL), 5)
    costs["unpickle"] = cpu_us(lambda: pickle.loads(data), 5)
    received: Plan = pickle.loads(data)
    with writer.begin() as connection:
        started = time.process_time()
        assert received.changes.still_current(connection), "nothing else writes here"
        costs["check"] = (time.process_time() - started) * 1e6
        received.changes.flush(on=connection)
    return costs, len(data)


async def run(groups: int) -> None:
    bundles = [
        loads(outcome.transformed) for _, outcome in mapped_adt_a04(GROUP * (groups + 1), run="P")
    ]
    with tempfile.TemporaryDirectory() as directory:
        database = create_database_engine(f"sqlite+aiosqlite:///{directory}/planning.db")
        await migrate(database)
        store = FhirStore(database, validate_structure=False, check_references=False)
        await store.transaction_many(bundles[:GROUP])  # the reference resources exist
        reader, writer = read_engine_at(database.url), create_write_engine(database)
        assert reader is not None and writer is not None
        totals = dict.fromkeys(("resolve", "dumps", "loads", "pickle", "unpickle", "check"), 0.0)
        size = 0
        for group in range(1, groups + 1):
            pending = bundles[group * GROUP : (group + 1) * GROUP]
            costs, pickled = measure_group(pending, reader, writer)
            size += pickled
            for name, cost in costs.items():
                totals[name] += cost
        writer.dispose()
        reader.dispose()
        await store.aclose()
        await database.dispose()
    count = groups * GROUP
    print(f"Resolving his-adt groups of {GROUP} ADT^A04 in the background, {groups} groups:")
    print(f"  resolved (left the engine process):  {totals['resolve'] / count:7.1f} µs a Bundle")
    print(f"  the plan pickled:                    {size / count:7.0f} bytes a Bundle")
    print(f"  pickling it (background process):    {totals['pickle'] / count:7.1f} µs a Bundle")
    print(f"  engine: unpickling it                {totals['unpickle'] / count:7.1f} µs a Bundle")
    print(f"  engine: the Bundles to JSON          {totals['dumps'] / count:7.1f} µs a Bundle")
    print(f"  background: the JSON parsed          {totals['loads'] / count:7.1f} µs a Bundle")
    print(f"  engine: the write's check            {totals['check'] / count:7.1f} µs a Bundle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(run(args.groups))


if __name__ == "__main__":
    main()
