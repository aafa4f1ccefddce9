"""QC report cost: read a year of chest pain cases from the FHIR store and compute every standard.

Writes N synthetic STEMI cases (EpisodeOfCare + 6 time-node Observations each, as the pathway
engine writes them) over 12 months into a fresh SQLite store, then times `load_timelines` (the
FHIR searches) and `qc_report` for every chest pain standard (the statistics), and prints both.

Usage: python bench/qc_report.py [--cases N]
Target: a year of a county hospital's chest pain cases (~1,500) in well under 10 s, so the QC
page answers while the meeting waits.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from engine.database import create_database_engine
from fhir_store import FhirStore, migrate
from pathways.case_store import load_timelines
from pathways.indicator_definitions import load_catalogue
from pathways.qc import qc_report
from pathways.timeline import CaseTimeline
from pathways.vocabulary import (
    ARRIVAL_MODE_EXTENSION,
    CASE_EXTENSION,
    CASE_FACT_EXTENSION,
    CENTER_SYSTEM,
    OBSERVATION_CATEGORY_SYSTEM,
    TIME_NODE_CATEGORY,
    TIME_NODE_SYSTEM,
)

CST = timezone(timedelta(hours=8))
ROOT = Path(__file__).resolve().parents[1]


def bundle(number: int, rng: random.Random) -> dict[str, Any]:
    case_id, patient = f"c{number}", f"p{number}"
    door = datetime(2026, 1, 1, tzinfo=CST) + timedelta(minutes=rng.randrange(365 * 24 * 60))
    minutes = {
        "first_medical_contact": -rng.randint(10, 60),
        "door": 0,
        "first_ecg": rng.randint(1, 15),
        "ecg_diagnosis": rng.randint(16, 30),
        "cath_lab_activated": rng.randint(30, 60),
        "wire_crossing": max(20, int(rng.gauss(75, 20))),
    }

    def fact(name: str, value: str) -> dict[str, Any]:
        return {
            "url": CASE_FACT_EXTENSION,
            "extension": [{"url": "name", "valueCode": name}, {"url": "value", "valueCode": value}],
        }

    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": patient},
        {
            "resourceType": "EpisodeOfCare",
            "id": case_id,
            "status": "finished",
            "type": [{"coding": [{"system": CENTER_SYSTEM, "code": "chest-pain"}]}],
            "patient": {"reference": f"Patient/{patient}"},
            "period": {"start": door.isoformat()},
            "extension": [
                {
                    "url": ARRIVAL_MODE_EXTENSION,
                    "valueCode": rng.choice(["ems", "self", "transfer"]),
                },
                fact("diagnosis", "STEMI"),
                fact("reperfusion", "primary_pci"),
            ],
        },
    ]
    for key, offset in minutes.items():
        resources.append(
            {
                "resourceType": "Observation",
                "id": f"{case_id}-{key.replace('_', '-')}",
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {"system": OBSERVATION_CATEGORY_SYSTEM, "code": TIME_NODE_CATEGORY}
                        ]
                    }
                ],
                "code": {"coding": [{"system": TIME_NODE_SYSTEM, "code": key}]},
                "subject": {"reference": f"Patient/{patient}"},
                "valueDateTime": (door + timedelta(minutes=offset)).isoformat(),
                "extension": [
                    {
                        "url": CASE_EXTENSION,
                        "valueReference": {"reference": f"EpisodeOfCare/{case_id}"},
                    }
                ],
            }
        )
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }


async def main(cases: int) -> None:
    catalogue = load_catalogue(ROOT / "config" / "pathways")
    rng = random.Random(2026)
    with tempfile.TemporaryDirectory() as folder:
        database = create_database_engine(f"sqlite+aiosqlite:///{folder}/qc.db")
        await migrate(database)
        store = FhirStore(database)
        try:
            bundles = [bundle(n, rng) for n in range(cases)]
            for start in range(0, cases, 200):
                await store.transaction_many(bundles[start : start + 200])
            began = time.perf_counter()
            timelines: list[CaseTimeline] = await load_timelines(
                store, "chest_pain", "2026-01", "2026-12"
            )
            loaded = time.perf_counter() - began
            months = [f"2026-{m:02d}" for m in range(1, 13)]
            began = time.perf_counter()
            reports = [
                qc_report(timelines, s, months) for s in catalogue.standards_for("chest_pain")
            ]
            computed = time.perf_counter() - began
        finally:
            await store.aclose()
            await database.dispose()
    indicators = sum(len(r.indicators) for r in reports)
    print(f"cases stored: {cases}; read back: {len(timelines)}")
    per_case = loaded / cases * 1000
    print(f"load_timelines (FHIR searches, SQLite): {loaded:.2f} s ({per_case:.2f} ms/case)")
    print(
        f"qc_report, {len(reports)} standards, {indicators} indicators, 12 months: {computed:.2f} s"
    )
    print(f"total: {loaded + computed:.2f} s (target: well under 10 s for ~1,500 cases)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1500)
    asyncio.run(main(parser.parse_args().cases))
