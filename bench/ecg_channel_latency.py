"""ECG channel latency: from a STEMI recording's arrival to its DiagnosticReport stored, its alert
at a websocket client, and its chest pain case (EpisodeOfCare) opened.

Starts `greenchannel serve` (SQLite, or PostgreSQL with --postgres) with the shipped
`ecg-upload`, `ecg-alerts` and `pathway-alerts` channels, listens at `/api/alerts/websocket`,
then uploads the Philips HeartStart MRx acute inferior MI (../shared/data/ecg/sierra/
129DYPRG.XML) to POST /ecg, each time under a new patient id (so each is a new report, alert and
case). Arrival is the moment the upload is sent; the report and the case are polled over FHIR
search every 25 ms; the alert counts from its arrival at the websocket client. Prints median
and max in ms per stage over the repeats (target: all within 1000 ms), and the first upload
after start on its own.

The machine here is shared: the server's CPU seconds per upload (all its processes, the bench's
polling included) are printed too, the floor the wall-clock figures would approach on an idle
machine. --settle S waits S seconds after start, so the first upload finds the workers warm.

Usage: python bench/ecg_channel_latency.py [--repeats N] [--settle S] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import httpx
import websockets
from _load import (
    PG_ADMIN,
    ROOT,
    Serve,
    drop_postgres_database,
    free_port,
    postgres_database,
    wait_for_port,
)

from engine.mapping.functions import make_id

ACUTE_MI = ROOT.parent / "shared" / "data" / "ecg" / "sierra" / "129DYPRG.XML"
PATIENT_TAG = b"<patientid>1112010721168bdc</patientid>"
STAGES = ("answered", "report_stored", "alert_received", "case_opened")


def _channels(upload_port: int) -> dict[str, str]:
    def shipped(name: str) -> str:
        return (ROOT / "channels" / f"{name}.yaml").read_text(encoding="utf-8")

    upload = shipped("ecg-upload").replace("port: 2590", f"port: {upload_port}\n  host: 127.0.0.1")
    return {
        "ecg-upload": upload,
        "ecg-alerts": shipped("ecg-alerts"),
        "pathway-alerts": shipped("pathway-alerts"),
    }


async def _found(client: httpx.AsyncClient, kind: str, params: dict[str, str]) -> bool:
    bundle = (await client.get(f"/fhir/{kind}", params=params)).json()
    return bool(bundle.get("entry"))


async def _one(
    client: httpx.AsyncClient, upload_url: str, alerts: asyncio.Queue[tuple[float, Any]], n: int
) -> dict[str, float]:
    patient_id = f"BENCH{n:04d}"
    tag = f"<patientid>{patient_id}</patientid>".encode()
    content = ACUTE_MI.read_bytes().replace(PATIENT_TAG, tag)
    patient = f"Patient/{make_id('COUNTY-HOSP', patient_id)}"
    times: dict[str, float] = {}

    async def poll() -> None:
        # One poll every 25 ms for what is still missing: a tighter poll would load the server
        # it measures (2 shared cores here); the figures are late by half a period on average.
        while len(times) < 2:
            now = time.time()
            for stage, kind, search in (
                ("report_stored", "DiagnosticReport", "subject"),
                ("case_opened", "EpisodeOfCare", "patient"),
            ):
                if stage not in times and await _found(client, kind, {search: patient}):
                    times[stage] = now
            await asyncio.sleep(0.025)

    sent = time.time()
    polling = asyncio.create_task(poll())
    answer = await client.post(upload_url, content=content)
    answered = time.time()
    if answer.status_code != 202:
        raise SystemExit(f"upload answered {answer.status_code}: {answer.text}")
    async with asyncio.timeout(60):
        await polling
    while True:
        received, alert = await alerts.get()
        if alert.get("patient", {}).get("reference") == patient:
            break
    return {
        "answered": answered - sent,
        "report_stored": times["report_stored"] - sent,
        "alert_received": received - sent,
        "case_opened": times["case_opened"] - sent,
    }


async def measure(
    serve: Serve, upload_port: int, repeats: int
) -> tuple[list[dict[str, float]], float]:
    """Each upload's stage times, and the server's CPU seconds over the uploads after the first."""
    headers = {"Authorization": f"Bearer {serve.token()}"}
    socket_url = f"ws://127.0.0.1:{serve.http_port}/api/alerts/websocket"
    upload_url = f"http://127.0.0.1:{upload_port}/ecg"
    alerts: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
    async with (
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{serve.http_port}", headers=headers, timeout=60
        ) as client,
        websockets.connect(socket_url, additional_headers=headers) as socket,
    ):

        async def listen() -> None:
            async for text in socket:
                alerts.put_nowait((time.time(), json.loads(text)))

        listener = asyncio.create_task(listen())
        try:
            results = [await _one(client, upload_url, alerts, 0)]
            await asyncio.sleep(1.0)
            cpu_before = serve.cpu_seconds()
            for n in range(1, repeats + 1):
                results.append(await _one(client, upload_url, alerts, n))
                await asyncio.sleep(0.3)  # one recording at a time, as an ambulance sends them
            return results, serve.cpu_seconds() - cpu_before
        finally:
            listener.cancel()


def _print(results: list[dict[str, float]], cpu_s: float) -> None:
    first, rest = results[0], results[1:]
    print(f"ECG channel latency, {len(rest)} uploads of the Philips acute MI (after one warm-up)")
    print(f"{'stage (from upload sent)':<28}{'median ms':>11}{'max ms':>9}{'first ms':>10}")
    for stage in STAGES:
        values = [r[stage] * 1000 for r in rest]
        print(
            f"{stage:<28}{statistics.median(values):>11.0f}{max(values):>9.0f}"
            f"{first[stage] * 1000:>10.0f}"
        )
    worst = max(max(r.values()) for r in rest) * 1000
    print(f"server CPU per upload (all processes, warm): {cpu_s / len(rest) * 1000:.0f} ms")
    print(f"target: every stage within 1000 ms; worst after warm-up {worst:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--settle", type=float, default=0.0)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    url = postgres_database(PG_ADMIN) if args.postgres else None
    upload_port = free_port()
    try:
        with Serve(_channels(upload_port), url) as serve:
            wait_for_port(upload_port)
            time.sleep(args.settle)
            results, cpu_s = asyncio.run(measure(serve, upload_port, args.repeats))
            _print(results, cpu_s)
    finally:
        if url is not None:
            drop_postgres_database(PG_ADMIN, url)


if __name__ == "__main__":
    main()
