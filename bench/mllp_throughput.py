"""Benchmarks 1 and 2 of the engine issue: MLLP journal + ACK throughput with 1 and 8
connections, against python-hl7's bare asyncio server (parse + ACK, no storage) in the same run,
and ACK latency p50/p99 at 8 connections; on SQLite and on PostgreSQL.

Usage: python bench/mllp_throughput.py [--messages N] [--no-postgres]
Targets: ratio >= 0.8 of the bare server at 8 connections; ACK p99 <= 20 ms at 8 connections.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

from _load import (
    PG_ADMIN,
    LoadResult,
    Serve,
    adt_a04,
    blast,
    drop_postgres_database,
    free_port,
    percentile,
    postgres_database,
    wait_for_port,
)

CHANNEL = """
name: bench
source: {kind: mllp, host: 127.0.0.1, port: %d}
"""


def run_load(port: int, messages: list[bytes], connections: int) -> LoadResult:
    warmup = [adt_a04(i, run="W" + uuid.uuid4().hex[:6]) for i in range(200)]
    asyncio.run(blast("127.0.0.1", port, warmup, connections))
    return asyncio.run(blast("127.0.0.1", port, messages, connections))


def describe(label: str, result: LoadResult) -> str:
    p50 = 1000 * percentile(result.latencies_s, 0.5)
    p99 = 1000 * percentile(result.latencies_s, 0.99)
    return (
        f"{label:<34} {result.rate:8.0f} msg/s   ACK p50 {p50:6.2f} ms   p99 {p99:6.2f} ms"
        f"   (acked {result.acked}/{result.sent})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    results: dict[tuple[str, int], LoadResult] = {}
    port = free_port()
    bare = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_bare_server.py")), str(port)]
    )
    try:
        wait_for_port(port)
        for connections in (1, 8):
            messages = [adt_a04(i, run="B" + uuid.uuid4().hex[:6]) for i in range(args.messages)]
            results[("bare", connections)] = run_load(port, messages, connections)
    finally:
        bare.terminate()
        bare.wait()

    backends = ["sqlite"] + ([] if args.no_postgres else ["postgresql"])
    for backend in backends:
        for connections in (1, 8):
            database_url = postgres_database(PG_ADMIN) if backend == "postgresql" else None
            mllp_port = free_port()
            try:
                with Serve({"bench": CHANNEL % mllp_port}, database_url=database_url) as server:
                    wait_for_port(mllp_port)
                    # The engine listens before its worker process has done its imports: the
                    # load starts once start-up is over, as the figure is the steady state's.
                    server.settled_cpu_seconds(idle_s=0.5)
                    messages = [
                        adt_a04(i, run="G" + uuid.uuid4().hex[:6]) for i in range(args.messages)
                    ]
                    results[(backend, connections)] = run_load(mllp_port, messages, connections)
            finally:
                if database_url:
                    drop_postgres_database(PG_ADMIN, database_url)

    print(f"MLLP journal + ACK, {args.messages} ADT^A04 messages per run, 2-core machine")
    for (name, connections), result in results.items():
        print(describe(f"{name}, {connections} connection(s)", result))
    for backend in backends:
        for connections in (1, 8):
            ratio = results[(backend, connections)].rate / results[("bare", connections)].rate
            print(
                f"ratio greenchannel/{backend} to bare python-hl7, {connections} conn: {ratio:.2f}"
            )


if __name__ == "__main__":
    main()
