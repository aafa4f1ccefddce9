"""FHIR search latency: a fixed mix of realistic searches on the loaded Synthea set.

The Synthea set (shared/data/fhir/synthea, 92,114 resources; `--bundles N` loads fewer) is
loaded in process (then ANALYZEd on PostgreSQL), then searched through the HTTP API (uvicorn
in a subprocess, one httpx client here, one search at a time, `Prefer: handling=strict`):
token, string, date range, `_include`, `_revinclude`, sorted, paged (the next link followed)
and chained searches, each over many patients and values taken from the raw Bundles. A chained
search the server refuses with 400, or answers with nothing (it does not chain yet), is skipped
with a note. SQLite and PostgreSQL.

Usage: python bench/fhir_search_mix.py [--bundles N] [--rounds N] [--no-postgres]
Target: p95 <= 30 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from _fhir_server import FhirServer
from _load import PG_ADMIN, drop_postgres_database, percentile, postgres_database
from fhir_synthea_load import resource_count, synthea_bundles

from fhir_store import FhirStore, migrate
from fhir_store.app import create_database

LOINC = "http://loinc.org"
SYNTHEA_ID = "https://github.com/synthetichealth/synthea"
PATIENTS = 20  # patients (and their values) each kind of search is run for, per round

Search = tuple[str, dict[str, Any]]  # path, query parameters (a list: repeated)


async def load(url: str, bundles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Load the Bundles in process; return the stored Patients, in load order."""
    database = create_database(url)
    store = FhirStore(database)
    try:
        await migrate(database)
        patients = []
        for bundle in bundles:
            response = await store.transaction(bundle)
            for entry in response["entry"]:
                if entry["fullUrl"].startswith("Patient/"):
                    patients.append(await store.read("Patient", entry["fullUrl"].split("/")[1]))
        if database.dialect.name == "postgresql":
            # what autovacuum does within a minute of a load (docs/operations.md); without it,
            # on a machine with autovacuum off, the planner has no statistics at all
            async with database.begin() as connection:
                await connection.exec_driver_sql("ANALYZE")
        return patients
    finally:
        await store.aclose()
        await database.dispose()


def the_mix(
    bundles: list[dict[str, Any]], patients: list[dict[str, Any]]
) -> dict[str, list[Search]]:
    """Per kind of search, one search per sampled patient, with values from the raw Bundles."""
    rng = random.Random(7)
    sample = rng.sample(patients, min(PATIENTS, len(patients)))
    codes_of: dict[str, Counter[str]] = {}  # Synthea patient id -> LOINC codes of its results
    for bundle in bundles:
        patient = bundle["entry"][0]["resource"]
        if patient["resourceType"] == "Patient":
            codes_of[patient["id"]] = Counter(
                coding["code"]
                for entry in bundle["entry"]
                if entry["resource"]["resourceType"] == "Observation"
                for coding in entry["resource"]["code"]["coding"]
                if coding.get("system") == LOINC
            )
    mix: dict[str, list[Search]] = {kind: [] for kind in KINDS}
    for patient in sample:
        subject = f"Patient/{patient['id']}"
        family = patient["name"][0]["family"]
        year = rng.randint(2000, 2020)
        synthea_id = next(i["value"] for i in patient["identifier"] if i["system"] == SYNTHEA_ID)
        code = rng.choice([code for code, _ in codes_of[synthea_id].most_common(10)])
        mix["token: Patient?identifier"].append(
            ("/Patient", {"identifier": f"{SYNTHEA_ID}|{synthea_id}"})
        )
        mix["token: Observation?subject&code"].append(
            ("/Observation", {"subject": subject, "code": f"{LOINC}|{code}"})
        )
        mix["string: Patient?family"].append(("/Patient", {"family": family[:4]}))
        mix["date: Encounter?date=ge&lt (a year)"].append(
            ("/Encounter", {"date": [f"ge{year}-01-01", f"lt{year + 1}-01-01"]})
        )
        mix["date: Observation?subject&date"].append(
            ("/Observation", {"subject": subject, "date": f"ge{year}-01-01"})
        )
        mix["sort: Observation?subject&code&_sort=-date"].append(
            ("/Observation", {"subject": subject, "code": f"{LOINC}|{code}", "_sort": "-date"})
        )
        mix["_include: Encounter?subject&_include"].append(
            ("/Encounter", {"subject": subject, "_include": "Encounter:participant"})
        )
        mix["_revinclude: Patient?_id&_revinclude"].append(
            ("/Patient", {"_id": patient["id"], "_revinclude": "Condition:subject"})
        )
        mix["paged: Observation?code, 3 pages of 50"].append(
            ("/Observation", {"code": f"{LOINC}|{code}", "_count": "50"})
        )
        mix["chained: Observation?subject:Patient.name"].append(
            ("/Observation", {"subject:Patient.name": family, "code": f"{LOINC}|{code}"})
        )
    return mix


KINDS = (
    "token: Patient?identifier",
    "token: Observation?subject&code",
    "string: Patient?family",
    "date: Encounter?date=ge&lt (a year)",
    "date: Observation?subject&date",
    "sort: Observation?subject&code&_sort=-date",
    "_include: Encounter?subject&_include",
    "_revinclude: Patient?_id&_revinclude",
    "paged: Observation?code, 3 pages of 50",
    "chained: Observation?subject:Patient.name",
)


async def measure(server: FhirServer, mix: dict[str, list[Search]], rounds: int) -> None:
    """Run the mix `rounds` times after a warm-up round; print latencies per kind and the
    server's CPU time per request."""
    latencies: dict[str, list[float]] = {kind: [] for kind in mix}
    skipped: dict[str, str] = {}
    found: Counter[str] = Counter()  # matches per kind
    # Strict handling: a parameter the server does not know (a chain before chaining exists)
    # is a 400, not silently ignored.
    headers = {"Prefer": "handling=strict"}
    cpu_started = 0.0
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=60) as http:
        for round_number in range(rounds + 1):
            if round_number == 1:
                cpu_started = server.cpu_s()
            for kind, searches in mix.items():
                if kind in skipped:
                    continue
                for path, params in searches:
                    if not round_number:  # round 0 warms up, unmeasured
                        await http.get(path, params=params)
                        continue
                    await _search(http, kind, path, params, latencies, skipped, found)
                    if kind in skipped:
                        break
    cpu_s = server.cpu_s() - cpu_started
    requests = sum(len(values) for values in latencies.values())
    everything: list[float] = []
    for kind in mix:
        if kind.startswith("chained") and not found[kind]:  # each finds something when chained
            skipped.setdefault(kind, "it found nothing: the server does not chain yet")
        if kind in skipped:
            print(f"  {kind:<46} skipped: {skipped[kind]}")
            continue
        values = latencies[kind]
        everything += values
        print(
            f"  {kind:<46} p50 {1000 * statistics.median(values):6.1f} ms   "
            f"p95 {1000 * percentile(values, 0.95):6.1f} ms   ({len(values)} requests)"
        )
    print(
        f"  {'all':<46} p50 {1000 * statistics.median(everything):6.1f} ms   "
        f"p95 {1000 * percentile(everything, 0.95):6.1f} ms   ({len(everything)} requests; "
        f"server CPU {1000 * cpu_s / requests:.1f} ms per request)",
        flush=True,
    )


async def _search(
    http: httpx.AsyncClient,
    kind: str,
    path: str,
    params: dict[str, Any] | None,
    latencies: dict[str, list[float]],
    skipped: dict[str, str],
    found: Counter[str],
) -> None:
    """One search, each of its pages timed on its own (a paged one follows two next links)."""
    for _ in range(3 if kind.startswith("paged") else 1):
        started = time.perf_counter()
        response = await http.get(path, params=params)
        elapsed = time.perf_counter() - started
        if response.status_code == 400:
            skipped[kind] = f"the server answered 400 ({_diagnostics(response)})"
            return
        if response.status_code != 200:
            raise RuntimeError(f"{kind}: {response.status_code} {response.text[:300]}")
        latencies[kind].append(elapsed)
        bundle = response.json()
        found[kind] += sum(e["search"]["mode"] == "match" for e in bundle.get("entry", []))
        following = _next(bundle)
        if following is None:
            return
        path, params = following, None


def _next(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link", []):
        if link.get("relation") == "next":
            return str(link["url"])
    return None


def _diagnostics(response: httpx.Response) -> str:
    try:
        return str(response.json()["issue"][0].get("diagnostics", ""))[:120]
    except (ValueError, KeyError, IndexError):
        return response.text[:120]


def run(label: str, url: str, bundles: list[dict[str, Any]], rounds: int) -> None:
    started = time.perf_counter()
    patients = asyncio.run(load(url, bundles))
    print(
        f"{label}: {resource_count(bundles)} resources loaded in "
        f"{time.perf_counter() - started:.0f} s; searches over HTTP, one at a time",
        flush=True,
    )
    mix = the_mix(bundles, patients)
    with FhirServer(url) as server:
        asyncio.run(measure(server, mix, rounds))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundles", type=int, default=None, help="load only the first N")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    bundles = synthea_bundles(args.bundles)
    with tempfile.TemporaryDirectory() as directory:
        run("SQLite", f"sqlite+aiosqlite:///{Path(directory) / 'fhir.db'}", bundles, args.rounds)
    if not args.no_postgres:
        url = postgres_database(PG_ADMIN)
        try:
            run("PostgreSQL", url, bundles, args.rounds)
        finally:
            drop_postgres_database(PG_ADMIN, url)


if __name__ == "__main__":
    main()
