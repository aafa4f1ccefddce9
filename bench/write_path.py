"""Where the engine's database writes go, per message: SQL statements and write-thread CPU.

Runs the engine in this process (`Engine`, the default his-adt channel, the FHIR destination),
sends N ADT^A04 over 8 MLLP connections from a client subprocess, and counts, per kind of write
transaction (journal commit, processing outcome, FHIR store + delivery attempts, other):
transactions, SQL statements sent to the driver (executemany counted once, with its rows
separately) and the CPU time of the threads that ran them. On a 2-core machine shared with other
work, wall-clock rates say little; these counts and CPU times compare one version with another.

Also printed: each thread's CPU (user + system, from /proc) per message, the event loop and the
write threads above all. `--without-store-write` replaces the FHIR store's write by the delivery
bookkeeping that commits with it (the attempts and statuses, in a write transaction of its own):
what the rest of the engine's path costs and carries, against a run without it.

Usage: python bench/write_path.py [--messages N] [--database sqlite|postgresql]
       [--without-store-write]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import pstats
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from _load import (
    PG_ADMIN,
    ROOT,
    drop_postgres_database,
    free_port,
    postgres_database,
    proc_stat,
    wait_for_port,
)
from sqlalchemy import event
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Engine as SqlEngine

from engine import database as engine_database
from engine.server import Engine
from engine.settings import Settings
from fhir_store import _storage

_local = threading.local()
statements: collections.Counter[str] = collections.Counter()
rows: collections.Counter[str] = collections.Counter()
transactions: collections.Counter[str] = collections.Counter()
cpu_s: collections.Counter[str] = collections.Counter()
busy_s: collections.Counter[str] = collections.Counter()
texts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)


def _kind(work: Any) -> str:
    name = getattr(work, "__qualname__", repr(work))
    if "JournalWriter" in name:
        return "journal"
    if "_process_batch" in name:
        return "processing"
    if "FhirStore" in name:
        return "fhir+attempts"
    if "_record" in name:
        return "attempts"
    return "other:" + name.split(".<locals>")[0]


profile: cProfile.Profile | None = None
profile_kind = ""
_bulk_texts: dict[int, str] = {}


def _instrument() -> None:
    """Attribute each write transaction, its statements and its thread CPU to a kind."""
    job_init = engine_database._Job.__init__

    def init(self: Any, work: Any, *args: Any, **kwargs: Any) -> None:
        kind = _kind(work)

        def timed(connection: Any) -> Any:
            _local.kind = kind
            _local.began = time.perf_counter()
            started = time.thread_time()
            profiling = profile is not None and kind == profile_kind
            if profiling:
                profile.enable()
            try:
                return work(connection)
            finally:
                if profiling:
                    profile.disable()
                cpu_s[kind] += time.thread_time() - started
                transactions[kind] += 1
                _local.kind = None

        job_init(self, timed, *args, **kwargs)
        self.kind = kind

    engine_database._Job.__init__ = init  # type: ignore[method-assign]
    job_settle = engine_database._Job.settle

    def settle(self: Any, *args: Any) -> None:
        # after the commit: the write thread's whole time on the job, waits for the disk included
        busy_s[self.kind] += time.perf_counter() - getattr(_local, "began", time.perf_counter())
        job_settle(self, *args)

    engine_database._Job.settle = settle  # type: ignore[method-assign]

    @event.listens_for(SqlEngine, "before_cursor_execute")
    def count(_c: Any, _cur: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
        kind = getattr(_local, "kind", None) or "reads"
        statements[kind] += 1
        rows[kind] += len(params) if many and params else 1
        text = re.sub(r"_\d+", "_N", " ".join(sql.split()))[:90]
        texts[kind][text] += 1
        hit = getattr(_ctx, "cache_hit", None)
        if hit is not None and str(hit) != "CacheStats.CACHE_HIT":
            texts[kind][f"   ({str(hit).split('.')[-1]}) {text[:60]}"] += 1

    bulk_execute = _storage._BulkWrite.execute

    def bulk(self: Any, connection: Any, batch: list[Any]) -> None:
        if batch:
            kind = getattr(_local, "kind", None) or "reads"
            statements[kind] += 1
            rows[kind] += len(batch)
            text = _bulk_texts.get(id(self))
            if text is None:
                text = _bulk_texts[id(self)] = " ".join(str(self._statement).split())[:84]
            texts[kind]["bulk " + text] += 1
        bulk_execute(self, connection, batch)

    _storage._BulkWrite.execute = bulk  # type: ignore[method-assign]


def _thread_cpu() -> dict[int, tuple[str, float, float]]:
    """This process's threads: native id → (name, user s, system s), from /proc (Linux)."""
    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    found: dict[int, tuple[str, float, float]] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = proc_stat(task / "stat")
            name = names.get(int(task.name)) or (task / "comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        found[int(task.name)] = (name, stat.user_s, stat.system_s)
    return found


def _without_store_write() -> None:
    """The FHIR store's write replaced by the bookkeeping that commits with it (`then`): the
    delivery attempts and statuses, in a write transaction as the store would run them."""
    from fhir_store import store

    async def transaction_many(
        self: store.FhirStore, bundles: Any, *, return_resources: bool = False, then: Any = None
    ) -> list[Any]:
        answers: list[Any] = [
            {"resourceType": "Bundle", "type": "transaction-response", "entry": []} for _ in bundles
        ]
        if then is None:
            return answers

        def record(connection: Any, unguarded: bool) -> list[Any]:
            then(connection, answers)
            return answers

        return await self._write(record, True)

    store.FhirStore.transaction_many = transaction_many  # type: ignore[method-assign]


def _channel(port: int, journal_only: bool) -> str:
    if journal_only:  # bench/mllp_throughput.py's channel: journal and ACK, nothing else
        return f"name: his-adt\nsource: {{kind: mllp, host: 127.0.0.1, port: {port}}}\n"
    text = (ROOT / "channels" / "his-adt.yaml").read_text(encoding="utf-8")
    return text.replace("port: 2575", f"port: {port}\n  host: 127.0.0.1")


_CLIENT = """
import asyncio, sys
sys.path.insert(0, {bench!r})
from _load import adt_a04, blast
messages = [adt_a04(i, run={run!r}) for i in range({n})]
result = asyncio.run(blast("127.0.0.1", {port}, messages, 8))
assert result.acked == {n}, result
"""


def _send(port: int, n: int, run: str) -> None:
    code = _CLIENT.format(bench=str(ROOT / "bench"), run=run, n=n, port=port)
    subprocess.run([sys.executable, "-c", code], check=True)


async def _measure(
    messages: int, database_url: str | None, verbose: bool, journal_only: bool
) -> None:
    with tempfile.TemporaryDirectory(prefix="gc-write-path-") as tmp:
        channels = Path(tmp) / "channels"
        channels.mkdir()
        port = free_port()
        (channels / "his-adt.yaml").write_text(_channel(port, journal_only), encoding="utf-8")
        settings = Settings(
            data_dir=Path(tmp) / "var",
            database_url=database_url,
            http_port=free_port(),
            channels_dir=channels,
            mappings_dir=ROOT / "mappings",
            log_level="WARNING",
        )
        engine = Engine(settings)
        task = asyncio.create_task(engine.run())
        await engine.ready.wait()
        await asyncio.to_thread(wait_for_port, port)

        async def delivered() -> int:
            if journal_only:
                return engine.stats.channel["his-adt"]["received"]
            return engine.stats.destination[("his-adt", "fhir-store")]["sent"]

        async def load(n: int, run: str) -> None:
            target = await delivered() + n
            await asyncio.to_thread(_send, port, n, run)
            while await delivered() < target:  # noqa: ASYNC110 (counters, not events)
                await asyncio.sleep(0.05)

        await load(200, "W" + uuid.uuid4().hex[:6])  # warm: compiled statements, caches
        for counter in (statements, rows, transactions, cpu_s, busy_s, *texts.values()):
            counter.clear()
        process_before, threads_before = time.process_time(), _thread_cpu()
        started = time.perf_counter()
        await load(messages, "P" + uuid.uuid4().hex[:6])
        elapsed = time.perf_counter() - started
        process_cpu = time.process_time() - process_before
        threads_after = _thread_cpu()
        async with engine.database.connect() as connection:
            failed = (
                await connection.execute(
                    sql_text(
                        "SELECT outcome, detail, count(*) FROM delivery_attempt "
                        "WHERE outcome <> 'sent' GROUP BY outcome, detail"
                    )
                )
            ).all()
        engine.stop()
        await task

    print(f"{messages} ADT^A04 over 8 MLLP connections, his-adt channel, {_backend(database_url)}")
    for outcome, detail, count in failed:
        print(f"{count} attempts {outcome}: {detail}")
    print(
        f"{'kind':<16}{'tx/msg':>8}{'stmt/msg':>10}{'rows/msg':>10}{'CPU ms/msg':>12}"
        f"{'busy ms/msg':>13}"
    )
    for kind in sorted(set(statements) | set(cpu_s)):
        print(
            f"{kind[:16]:<16}{transactions[kind] / messages:8.3f}"
            f"{statements[kind] / messages:10.2f}{rows[kind] / messages:10.2f}"
            f"{1000 * cpu_s[kind] / messages:12.3f}{1000 * busy_s[kind] / messages:13.3f}"
        )
    writes = [k for k in statements if k != "reads"]
    print(
        f"{'all writes':<16}{sum(transactions.values()) / messages:8.3f}"
        f"{sum(statements[k] for k in writes) / messages:10.2f}"
        f"{sum(rows[k] for k in writes) / messages:10.2f}"
        f"{1000 * sum(cpu_s.values()) / messages:12.3f}"
        f"{1000 * sum(busy_s.values()) / messages:13.3f}"
    )
    print(
        "(busy: from the start of the transaction's work to its commit, waits for the disk "
        "and for the GIL included; one write thread on SQLite, several on PostgreSQL)"
    )
    print(
        f"engine process CPU {1000 * process_cpu / messages:.2f} ms/msg (mapping runs in a "
        f"worker process, not counted); wall {messages / elapsed:.0f} msg/s (noisy)"
    )
    used = []
    for native_id, (name, user_s, system_s) in threads_after.items():
        _, user_before, system_before = threads_before.get(native_id, (name, 0.0, 0.0))
        used.append((user_s - user_before, system_s - system_before, name))
    print("thread CPU, ms/msg (user + system):")
    for user_s, system_s, name in sorted(used, key=lambda u: -(u[0] + u[1]))[:6]:
        print(
            f"  {name[:32]:<32}{1000 * (user_s + system_s) / messages:7.3f}  "
            f"({1000 * user_s / messages:.3f} + {1000 * system_s / messages:.3f})"
        )
    if verbose:
        for kind, counter in sorted(texts.items()):
            print(f"-- {kind}")
            for text, n in counter.most_common():
                print(f"{n / messages:8.3f}  {text}")


def _backend(url: str | None) -> str:
    return "SQLite" if url is None else "PostgreSQL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--verbose", action="store_true", help="list the statements too")
    parser.add_argument("--profile", metavar="KIND", help="cProfile this kind of transaction")
    parser.add_argument("--journal-only", action="store_true", help="a channel without mapping")
    parser.add_argument("--journal-threads", type=int, help="journal batches in flight (PG)")
    parser.add_argument(
        "--without-store-write",
        action="store_true",
        help="the FHIR store's write replaced by the delivery bookkeeping that commits with it",
    )
    args = parser.parse_args()
    if args.without_store_write:
        _without_store_write()
    if args.journal_threads:
        from engine import runtime

        runtime.JOURNAL_THREADS_PG = args.journal_threads
    global profile, profile_kind
    if args.profile:
        profile, profile_kind = cProfile.Profile(), args.profile
    _instrument()
    url = postgres_database(PG_ADMIN) if args.database == "postgresql" else None
    try:
        asyncio.run(_measure(args.messages, url, args.verbose, args.journal_only))
        if profile is not None:
            pstats.Stats(profile).sort_stats("tottime").print_stats(40)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(60)
    finally:
        if url:
            drop_postgres_database(PG_ADMIN, url)


if __name__ == "__main__":
    main()
