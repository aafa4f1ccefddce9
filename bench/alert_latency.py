"""Alert latency: from a clock's deadline, and from the write of its end node, to a websocket
client holding the alert message.

An engine runs in-process on SQLite (or PostgreSQL with --postgres) with the shipped
`pathway-alerts` channel and the `pathways` subscriber (which runs the clocks). The bench opens
chest pain cases as staff do (pathways.cases) whose door-to-needle warning (20 min) falls a few
seconds ahead, listens at `/api/alerts/websocket`, then enters each case's `lytic_start`. Prints
median, p90 and max in ms for both paths; the issue's target is under 1000 ms.

Usage: python bench/alert_latency.py [--cases N] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import websockets
from _load import PG_ADMIN, drop_postgres_database, postgres_database

from engine.server import Engine
from engine.testing import running_engine, settings_for_tests
from fhir_store import FhirStore
from fhir_store.app import create_database
from pathways.cases import Cases
from pathways.definitions import load_pathways
from pathways.nodes import Nodes
from pathways.records import Records

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"


def _cases(store: FhirStore, tz: tzinfo) -> Cases:
    """What the /api/cases router does: staff open a case, set its facts and enter nodes."""
    return Cases(Nodes(Records(store, tz), load_pathways(ROOT / "config" / "pathways")))


async def _case(cases: Cases, door: datetime) -> dict[str, Any]:
    patient = await cases.records.store.create({"resourceType": "Patient"})
    episode, _ = await cases.activate_manually(
        "chest_pain", f"Patient/{patient['id']}", door, arrival_mode="self", who="bench", why=None
    )
    episode = await cases.set_manual_fact(
        episode, "reperfusion", "in_hospital_lysis", who="bench", why=None
    )
    await cases.enter_node(episode, "door", door, who="bench", why="bench", correction=False)
    return episode


async def measure(url: str, cases: int, tmp: Path) -> tuple[list[float], list[float]]:
    shipped = (ROOT / "channels" / "pathway-alerts.yaml").read_text(encoding="utf-8")
    settings = settings_for_tests(tmp, url, channels={"pathway-alerts": shipped}, admin_token=TOKEN)
    database = create_database(url)
    store = FhirStore(database)
    try:
        async with running_engine(settings, start_timeout_s=60) as engine:
            return await _run(engine, store, cases)
    finally:
        await store.aclose()
        await database.dispose()


async def _run(engine: Engine, store: FhirStore, cases: int) -> tuple[list[float], list[float]]:
    """Seconds from each deadline to its raised alert, and from each end node to its resolution."""
    tz = engine.settings.tz
    received: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
    socket_url = f"ws://127.0.0.1:{engine.http_port}/api/alerts/websocket"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with websockets.connect(socket_url, additional_headers=headers) as socket:
        arrived = asyncio.Event()

        async def listen() -> None:
            async for text in socket:
                message = json.loads(text)
                received[(message["alert"], message["event"])] = (time.time(), message)
                arrived.set()

        async def until_received(count: int, timeout_s: float) -> None:
            try:
                async with asyncio.timeout(timeout_s):
                    while len(received) < count:
                        arrived.clear()
                        await arrived.wait()
            except TimeoutError:
                pass  # reported as n below the number of cases

        listener = asyncio.create_task(listen())
        cases_api = _cases(store, tz)
        first_deadline = datetime.now(tz).replace(microsecond=0) + timedelta(seconds=5)
        episodes = []
        for index in range(cases):
            deadline = first_deadline + timedelta(seconds=index % 4)
            episodes.append(await _case(cases_api, deadline - timedelta(minutes=20)))
        await until_received(cases, 20)
        to_deadline = [
            at - datetime.fromisoformat(message["deadline"]).timestamp()
            for (_, event), (at, message) in received.items()
            if event == "raised"
        ]
        written: dict[str, float] = {}
        for episode in episodes:
            now = datetime.now(tz).replace(microsecond=0)
            # From the call on: the engine runs in this event loop, so the resolution can reach
            # the websocket before `enter_node` has returned here.
            written[f"{episode['id']}/cpc.d2n/warning"] = time.time()
            await cases_api.enter_node(
                episode, "lytic_start", now, who="bench", why="bench", correction=False
            )
        await until_received(2 * cases, 20)
        to_resolved = [
            received[(alert, "resolved")][0] - at
            for alert, at in written.items()
            if (alert, "resolved") in received
        ]
        listener.cancel()
    return to_deadline, to_resolved


def _report(name: str, seconds: list[float], expected: int) -> None:
    if not seconds:
        print(f"{name}: nothing received of {expected}")
        return
    ms = sorted(s * 1000 for s in seconds)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    print(
        f"{name}: n={len(ms)}/{expected} median {statistics.median(ms):.0f} ms, "
        f"p90 {p90:.0f} ms, max {ms[-1]:.0f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if args.postgres:
            url = postgres_database(PG_ADMIN)
        else:
            url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        try:
            to_deadline, to_resolved = await measure(url, args.cases, tmp)
        finally:
            if args.postgres:
                drop_postgres_database(PG_ADMIN, url)
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(f"alert latency, {args.cases} cases, {database}")
    _report("deadline -> websocket (raised)", to_deadline, args.cases)
    _report("end node written -> websocket (resolved)", to_resolved, args.cases)


if __name__ == "__main__":
    asyncio.run(main())
