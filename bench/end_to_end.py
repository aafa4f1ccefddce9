"""Benchmark 3 of the engine issue: ADT^A04 in over MLLP, Patient searchable in the FHIR store.

Sends N messages over 8 MLLP connections to the default his-adt channel (mapping to Patient and
Encounter, FHIR destination) and measures from the first byte sent until every message is
delivered to the store, then checks a sample of patients through FHIR search.
Usage: python bench/end_to_end.py [--messages N] [--connections C] [--no-postgres] [--runs R].
Target: >= 1,000 messages/s. `--connections 1` is a HIS's backlog after a downtime: one
connection, each message sent when the last one is ACKed, so its rate is 1 / ACK latency.

The ACK latency is printed too: the connections each wait for their ACK, so under this load it
sets the send rate, and it shows how long the processing holds up the journal's commits.
CPU per message is given twice: when the last message is delivered (the engine's own path:
journal, ACK, mapping, FHIR write) and once the server has gone quiet again (adding the derived
work that follows the change events, the pathway subscriber above all, which runs in `serve`
and lags behind under load). Wall rates depend on what else runs on the machine; CPU less so.

The machine's CPU per message (every core, every process: engine, workers, this client,
PostgreSQL) gives the rate no scheduling could go beyond on this machine at that cost: its
cores divided by it. A rate target above that ceiling needs less CPU per message, not overlap.
The engine process's own CPU per message (its workers apart) gives the lower bound that binds
first here: its threads share one GIL, so it carries about one core divided by that cost.
What it writes per message (bytes and system calls, /proc/PID/io) shows the database's write
amplification: on SQLite whole 4 KB pages of the write-ahead log, then again in checkpoints,
for ~15 KB of data (session 18: 179 KB in 71 calls); fewer index rows dirty fewer pages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from dataclasses import dataclass

import httpx
from _load import (
    PG_ADMIN,
    ROOT,
    Serve,
    adt_a04,
    blast,
    drop_postgres_database,
    free_port,
    machine_busy_seconds,
    percentile,
    postgres_database,
    wait_for_port,
)


def channel(port: int) -> str:
    text = (ROOT / "channels" / "his-adt.yaml").read_text(encoding="utf-8")
    return text.replace("port: 2575", f"port: {port}\n  host: 127.0.0.1")


def run(messages: int, database_url: str | None, connections: int = 8) -> Figures:
    port = free_port()
    with Serve({"his-adt": channel(port)}, database_url=database_url) as server:
        wait_for_port(port)
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{server.http_port}",
            headers={"Authorization": f"Bearer {server.token()}"},
            timeout=30,
        )
        warm = "W" + uuid.uuid4().hex[:6]
        asyncio.run(blast("127.0.0.1", port, [adt_a04(i, run=warm) for i in range(200)], 8))
        baseline = _delivered(client)
        while baseline < 200:
            time.sleep(0.05)
            baseline = _delivered(client)
        run_id = "E" + uuid.uuid4().hex[:6]
        batch = [adt_a04(i, run=run_id) for i in range(messages)]
        cpu_before = server.settled_cpu_seconds()  # the warm-up's derived work done first
        own_before = server.own_cpu_seconds()
        written_before, writes_before = server.own_writes()
        machine_before, client_before = machine_busy_seconds(), time.process_time()
        started = time.perf_counter()
        load = asyncio.run(blast("127.0.0.1", port, batch, connections))
        acked_s = time.perf_counter() - started
        # Polled every 100 ms: the stats query itself costs the engine work.
        while _delivered(client) < baseline + messages:
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        cpu_ms = 1000 * (server.cpu_seconds() - cpu_before) / messages
        own_ms = 1000 * (server.own_cpu_seconds() - own_before) / messages
        written, writes = server.own_writes()
        machine_ms = 1000 * (machine_busy_seconds() - machine_before) / messages
        client_ms = 1000 * (time.process_time() - client_before) / messages
        settled_ms = 1000 * (server.settled_cpu_seconds() - cpu_before) / messages
        found = 0
        for n in random.sample(range(messages), 20):
            bundle = client.get("/fhir/Patient", params={"identifier": f"{run_id}{n:08d}"}).json()
            found += len(bundle.get("entry", [])) == 1
        assert load.acked == messages
        return Figures(
            rate=messages / elapsed,
            ack_rate=messages / acked_s,
            found=found,
            cpu_ms=cpu_ms,
            own_ms=own_ms,
            written_kb=(written - written_before) / 1024 / messages,
            writes=(writes - writes_before) / messages,
            settled_ms=settled_ms,
            machine_ms=machine_ms,
            client_ms=client_ms,
            latencies_s=load.latencies_s,
        )


@dataclass(frozen=True)
class Figures:
    """One run's figures; CPU in ms per message."""

    rate: float  # messages/s in and searchable
    ack_rate: float
    found: int  # of 20 sampled patients
    cpu_ms: float  # the engine and its workers, until the last message is delivered
    own_ms: float  # the engine process alone (one GIL), over the same interval
    written_kb: float  # written by the engine process (SQLite: its log and checkpoints)
    writes: float  # its write system calls
    settled_ms: float  # the same once the subscribers' derived work is done
    machine_ms: float  # every core of the machine while the messages went through
    client_ms: float  # the bench's own MLLP client and polling
    latencies_s: list[float]

    @property
    def ceiling(self) -> float:
        """The rate this machine's cores could carry at this CPU per message, were every one
        of them busy all the time: what no scheduling or overlap can go beyond."""
        return 1000 * (os.cpu_count() or 1) / self.machine_ms

    @property
    def one_core(self) -> float:
        """The rate the engine process's one core of Python carries at its CPU per message:
        its threads take turns holding the GIL, so only the work done without it (SQLite's
        own, system calls) goes beyond. Its workers and the database server are apart."""
        return 1000 / self.own_ms


def _delivered(client: httpx.Client) -> int:
    stats = client.get("/api/stats").json()["channels"]["his-adt"]
    return int(stats["journal"].get("sent", 0))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--runs", type=int, default=1, help="runs per database, alternated; medians at the end"
    )
    args = parser.parse_args()
    print(
        f"End to end: {args.messages} ADT^A04 over {args.connections} MLLP connections "
        "-> Patient + Encounter"
    )
    backends = ["sqlite"] + ([] if args.no_postgres else ["postgresql"])
    runs: dict[str, list[Figures]] = {backend: [] for backend in backends}
    for _ in range(args.runs):  # alternated, so that a slow spell of the machine hits both
        for backend in backends:
            url = postgres_database(PG_ADMIN) if backend == "postgresql" else None
            try:
                figures = run(args.messages, url, args.connections)
            finally:
                if url:
                    drop_postgres_database(PG_ADMIN, url)
            runs[backend].append(figures)
            _report(backend, figures)
    if args.runs > 1:
        for backend, done in runs.items():
            rates = [figures.rate for figures in done]
            machine = [figures.machine_ms for figures in done]
            own = [figures.own_ms for figures in done]
            print(
                f"{backend:<11} median of {len(done)}: {statistics.median(rates):.0f} messages/s "
                f"(from {min(rates):.0f} to {max(rates):.0f}), machine CPU "
                f"{statistics.median(machine):.2f} ms per message, the engine process alone "
                f"{statistics.median(own):.2f} ms"
            )


def _report(backend: str, figures: Figures) -> None:
    latencies = figures.latencies_s
    print(
        f"{backend:<11} {figures.rate:7.0f} messages/s in and searchable "
        f"(ACKed at {figures.ack_rate:.0f}/s, ACK p50 {1000 * percentile(latencies, 0.5):.1f} "
        f"ms p99 {1000 * percentile(latencies, 0.99):.1f} ms; "
        f"{figures.found}/20 sampled patients found by identifier; "
        f"engine CPU {figures.cpu_ms:.2f} ms per message when delivered, "
        f"{figures.settled_ms:.2f} ms with the subscribers' derived work; load average "
        f"{os.getloadavg()[0]:.1f})\n"
        f"{'':<11} machine CPU {figures.machine_ms:.2f} ms per message, all processes "
        f"(the bench's client {figures.client_ms:.2f}); at that cost "
        f"{os.cpu_count()} cores, all busy, carry at most {figures.ceiling:.0f} messages/s\n"
        f"{'':<11} the engine process alone {figures.own_ms:.2f} ms per message (workers "
        f"apart); one core of Python at that cost carries about {figures.one_core:.0f} "
        "messages/s"
        + (  # on PostgreSQL the server writes, not the engine
            f"; it wrote {figures.written_kb:.0f} KB in {figures.writes:.0f} system calls per "
            "message"
            if backend == "sqlite"
            else ""
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
