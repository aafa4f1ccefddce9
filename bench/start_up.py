"""Start-up: from `greenchannel serve` launched with every shipped channel to the first ADT
ACKed and its Patient searchable, and the CPU the start costs.

After a crash or an upgrade the engine's start is time in which HIS interfaces queue messages
and ECG carts get no answer. Each run starts the engine on a fresh data dir (SQLite, or
PostgreSQL with --postgres: a fresh database each run), with all of `channels/` on free local
ports, then:
- `http`: the HTTP port accepts connections (bound; it answers once the channels are up);
- `mllp`: his-adt's MLLP port accepts;
- `acked`: an ADT^A04 sent the moment the port accepts is ACKed `AA`;
- `searchable`: `GET /fhir/Patient?identifier=` finds its patient (polled every 25 ms);
- `settled`: the engine's processes have used under 3% of a core for 0.5 s (warm-ups done);
and the CPU seconds the engine's processes (the engine and its worker processes) used until
then. Prints the median and max of each over the runs.

Usage: python bench/start_up.py [--runs N] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from collections.abc import Callable

import httpx
from _load import (
    PG_ADMIN,
    ROOT,
    Serve,
    adt_a04,
    blast,
    drop_postgres_database,
    free_port,
    postgres_database,
    wait_for_port,
)

STAGES = ("http", "mllp", "acked", "searchable", "settled")


def _shipped_channels() -> tuple[dict[str, str], int]:
    """Every shipped channel, its listening port moved to a free one on 127.0.0.1; and
    his-adt's port. (The MQTT source is a client of the local broker and stays as shipped.)"""
    channels: dict[str, str] = {}
    adt_port = 0
    for path in sorted((ROOT / "channels").glob("*.yaml")):
        if "\n  kind: mqtt" in path.read_text():  # a client of the local broker: as shipped
            channels[path.stem] = path.read_text()
            continue
        port = free_port()
        text, moved = re.subn(
            r"\n  port: \d+", f"\n  port: {port}\n  host: 127.0.0.1", path.read_text(), count=1
        )
        if path.stem == "his-adt":
            assert moved, "his-adt.yaml has no source port"
            adt_port = port
        channels[path.stem] = text
    return channels, adt_port


def _until(condition: Callable[[], bool], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("start-up did not finish")
        time.sleep(0.025)


def one_run(database_url: str | None) -> dict[str, float]:
    channels, adt_port = _shipped_channels()
    serve = Serve(channels, database_url)
    started = time.perf_counter()
    at: dict[str, float] = {}
    with serve:  # returns once the HTTP port accepts
        at["http"] = time.perf_counter() - started
        wait_for_port(adt_port, timeout_s=120)
        at["mllp"] = time.perf_counter() - started
        message = adt_a04(1, run=f"start{started}")
        result = asyncio.run(blast("127.0.0.1", adt_port, [message], 1))
        if result.acked != 1:
            raise RuntimeError("the first ADT^A04 was not ACKed AA")
        at["acked"] = time.perf_counter() - started
        identifier = re.search(rb"PID\|[^|]*\|[^|]*\|([^^|]+)", message)
        assert identifier is not None
        headers = {"Authorization": f"Bearer {serve.token()}"}
        url = f"http://127.0.0.1:{serve.http_port}/fhir/Patient"
        with httpx.Client(headers=headers, timeout=30) as client:

            def found() -> bool:
                answer = client.get(url, params={"identifier": identifier.group(1).decode()})
                return answer.status_code == 200 and bool(answer.json().get("entry"))

            _until(found)
        at["searchable"] = time.perf_counter() - started
        at["cpu_searchable"] = serve.cpu_seconds()
        at["cpu_settled"] = serve.settled_cpu_seconds(idle_s=0.5)
        at["settled"] = time.perf_counter() - started - 0.5
    return at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--postgres", action="store_true", help="a fresh PostgreSQL database")
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        database_url = postgres_database(PG_ADMIN) if args.postgres else None
        try:
            runs.append(one_run(database_url))
        finally:
            if database_url:
                drop_postgres_database(PG_ADMIN, database_url)
    print(f"start-up, {'PostgreSQL' if args.postgres else 'SQLite'}, {args.runs} runs, s")
    for key in (*STAGES, "cpu_searchable", "cpu_settled"):
        values = [run[key] for run in runs]
        print(f"  {key:15} median {statistics.median(values):6.2f}  max {max(values):6.2f}")


if __name__ == "__main__":
    main()
