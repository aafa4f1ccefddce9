"""A fixed workload for instruction counts of everything the engine's write thread does per
message of the his-adt channel, which wall-clock figures on a shared machine cannot compare:
groups of 8 ADT^A04 journalled (one urgent commit), their processing outcome stored, then their
FHIR Bundles applied to the store with the delivery attempts recorded in the same transaction,
as the runtime and the FHIR destination run them under load.

Usage (from bench/): python write_thread_cpu.py --prepare (maps the messages once, outside the
measurement), then valgrind --tool=callgrind python write_thread_cpu.py N once with N=0
(imports and migrations only) and once with N=100; the difference is the cost of N groups.
`--postgres ADMIN_URL` runs it on PostgreSQL instead (a fresh database is made and dropped).
Prepare at least as many groups as you run: `--prepare 500` before `write_thread_cpu.py 500`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _load import drop_postgres_database, mapped_adt_a04, postgres_database, proc_stat

from engine.connectors import Inbound
from engine.database import WriteThread, create_database_engine, migrate
from engine.journal import (
    DeliveryStatus,
    MessageStatus,
    journal_inbound,
    queued_deliveries,
    record_attempts,
    store_outcomes,
)
from fhir_store import FhirStore
from fhir_store import migrate as migrate_store

GROUP = 8
PAYLOADS = Path(tempfile.gettempdir()) / "greenchannel-write-thread-cpu.json"
CHANNEL, DESTINATION = "his-adt", "fhir-store"
PHASE_SERVER_CPU: dict[str, float] = {}  # PostgreSQL backend CPU of the write thread, by phase


STATEMENT_SERVER_CPU: dict[str, float] = {}


def _attribute_statements() -> None:
    """Backend CPU around each statement of the write thread, by statement text."""
    import re
    import threading

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from fhir_store import _storage

    local = threading.local()

    def label(sql: str) -> str:
        return re.sub(r"_\d+", "_N", " ".join(sql.split()))[:110]

    @event.listens_for(Engine, "before_cursor_execute")
    def before(*args: Any) -> None:
        pid = PHASE_SERVER_CPU.get("pid")
        local.started = _cpu_s(int(pid)) if pid else None

    @event.listens_for(Engine, "after_cursor_execute")
    def after(_c: Any, _cur: Any, sql: str, *args: Any) -> None:
        pid = PHASE_SERVER_CPU.get("pid")
        if pid and getattr(local, "started", None) is not None:
            key = label(sql)
            STATEMENT_SERVER_CPU[key] = (
                STATEMENT_SERVER_CPU.get(key, 0.0) + _cpu_s(int(pid)) - local.started
            )

    bulk_execute = _storage._BulkWrite.execute

    def bulk(self: Any, connection: Any, rows: list[Any]) -> None:
        pid = PHASE_SERVER_CPU.get("pid")
        before = _cpu_s(int(pid)) if pid else 0.0
        bulk_execute(self, connection, rows)
        if pid and rows:
            key = "bulk " + label(str(self._statement))
            used = _cpu_s(int(pid)) - before
            STATEMENT_SERVER_CPU[key] = STATEMENT_SERVER_CPU.get(key, 0.0) + used

    _storage._BulkWrite.execute = bulk  # type: ignore[method-assign]


async def _phase(name: str, work: Any) -> Any:
    pid = PHASE_SERVER_CPU.get("pid")
    if pid is None:
        return await work
    before = _cpu_s(int(pid))
    result = await work
    PHASE_SERVER_CPU[name] = PHASE_SERVER_CPU.get(name, 0.0) + _cpu_s(int(pid)) - before
    return result


def prepare(count: int) -> None:
    """Map `count` messages with the his-adt mapping and keep their payloads in a file."""
    payloads = [
        [raw.decode(), outcome.transformed.decode(), outcome.deliveries[0].lane]
        for raw, outcome in mapped_adt_a04(count, run="C")
    ]
    PAYLOADS.write_text(json.dumps(payloads), encoding="utf-8")


async def run(groups: int, url: str) -> None:
    database = create_database_engine(url)
    await migrate(database)
    await migrate_store(database)
    writes = WriteThread(database.url)
    store = FhirStore(
        database, validate_structure=False, check_references=False, run_write=writes.run
    )
    payloads: list[Any] = json.loads(PAYLOADS.read_text(encoding="utf-8"))[: groups * GROUP]
    if len(payloads) < groups * GROUP:
        # A smaller run printed under the larger run's name was mistaken for it (session 11).
        raise SystemExit(
            f"only {len(payloads) // GROUP} groups are prepared; run --prepare {groups} first"
        )
    if database.dialect.name == "postgresql":
        backend = await writes.run(lambda c: c.exec_driver_sql("SELECT pg_backend_pid()").scalar())
        PHASE_SERVER_CPU["pid"] = float(backend)
    started = time.perf_counter()
    for start in range(0, len(payloads), GROUP):
        await _group(writes, store, payloads[start : start + GROUP], start)
    if "pid" in PHASE_SERVER_CPU:
        del PHASE_SERVER_CPU["pid"]
        for text, seconds in sorted(STATEMENT_SERVER_CPU.items(), key=lambda item: -item[1]):
            print(f"  {1000 * seconds / len(payloads):6.3f} ms/msg  {text}")
        for phase, seconds in PHASE_SERVER_CPU.items():
            print(f"  server CPU in {phase}: {1000 * seconds / len(payloads):.3f} ms per message")
    print(f"{groups} groups of {GROUP} in {time.perf_counter() - started:.2f} s")
    if database.dialect.name == "postgresql":
        print(f"PostgreSQL server CPU: {await _server_cpu_s(database):.3f} s")
    await store.aclose()
    writes.close()
    await database.dispose()


async def _group(writes: WriteThread, store: FhirStore, group: list[Any], start: int) -> None:
    now = datetime.now(UTC)
    items = [
        (
            CHANNEL,
            Inbound(
                raw=raw.encode(),
                media_type="x-application/hl7-v2+er7",
                received_at=now,
                origin="mllp://127.0.0.1:1",
                dedup_key=f"HIS|C-{start + i:08d}",
                charset="utf-8",
                correlation_id=f"C-{start + i:08d}",
            ),
        )
        for i, (raw, _, _) in enumerate(group)
    ]
    receipts = await _phase("journal", writes.run(lambda c: journal_inbound(c, items), urgent=True))
    ids = [receipt.message_id for receipt in receipts]
    updates = [
        {
            "message_id": message_id,
            "status": MessageStatus.TRANSFORMED,
            "error": None,
            "transformed_media_type": "application/fhir+json",
            "processed_at": now,
        }
        for message_id in ids
    ]
    transformed = [
        {"message_id": message_id, "data": payload.encode()}
        for message_id, (_, payload, _) in zip(ids, group, strict=True)
    ]
    deliveries = [
        {
            "message_id": message_id,
            "channel": CHANNEL,
            "destination": DESTINATION,
            "lane": 0,
            "status": DeliveryStatus.QUEUED,
            "attempts": 0,
            "next_attempt_at": None,
            "sent_at": None,
            "last_error": None,
            "payload": None,
            "payload_media_type": None,
        }
        for message_id in ids
    ]
    await _phase(
        "outcomes", writes.run(lambda c: store_outcomes(c, updates, deliveries, transformed))
    )
    # The delivery worker's read (a reader thread in the engine, here the write thread).
    queued = await _phase(
        "queue read",
        writes.run(lambda c: queued_deliveries(c, CHANNEL, DESTINATION, 0, 100)),
    )
    bundles = [json.loads(payload) for _, payload, _ in group]

    def record(connection: Any, results: list[Any]) -> None:
        at = datetime.now(UTC)
        record_attempts(
            connection,
            [
                {
                    "delivery_id": d.id,
                    "status": DeliveryStatus.SENT,
                    "attempts": 1,
                    "sent_at": at,
                    "last_error": None,
                    "next_attempt_at": None,
                }
                for d in queued
            ],
            [
                {
                    "delivery_id": d.id,
                    "attempt": 1,
                    "at": at,
                    "outcome": "sent",
                    "detail": "applied",
                    "reply": json.dumps(result, separators=(",", ":")).encode(),
                }
                for d, result in zip(queued, results, strict=True)
            ],
            [d.message_id for d in queued],
            at,
        )

    results = await _phase("fhir+attempts", store.transaction_many(bundles, then=record))
    assert all(isinstance(result, dict) for result in results), results


async def _server_cpu_s(database: Any) -> float:
    """CPU time used so far by the PostgreSQL backends serving this (fresh) database."""
    from sqlalchemy import text

    async with database.connect() as connection:
        pids = (
            await connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        ).scalars()
        return sum(_cpu_s(pid) for pid in pids)


def _cpu_s(pid: int) -> float:
    try:
        stat = proc_stat(Path(f"/proc/{pid}/stat"))
    except OSError:  # not on this machine
        return 0.0
    return stat.user_s + stat.system_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", type=int, nargs="?", default=100)
    parser.add_argument("--prepare", action="store_true", help="map the messages first")
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="run on a fresh PostgreSQL db")
    parser.add_argument(
        "--server-cpu", action="store_true", help="PostgreSQL backend CPU by statement"
    )
    args = parser.parse_args()
    if args.prepare:
        prepare(max(args.groups, 100) * GROUP)
        return
    if args.server_cpu:
        _attribute_statements()
    if args.postgres:
        url = postgres_database(args.postgres)
        try:
            asyncio.run(run(args.groups, url))
        finally:
            drop_postgres_database(args.postgres, url)
        return
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args.groups, f"sqlite+aiosqlite:///{tmp}/cpu.db"))


if __name__ == "__main__":
    main()
