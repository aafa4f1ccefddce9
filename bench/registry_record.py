"""Registry record build time: the complete STEMI case of the tests, built from resources in
memory (no store) with the shipped CPC mapping, then again with the patient monitor's vital
signs added (one heart rate a minute), since every FHIRPath starting at Observation is evaluated
on each Observation of the case.

Prints the median build and validation time in ms for each size. fhirpathpy is the cost: a
hospital with monitors charting every minute should expect the `vitals` line.

Usage: python bench/registry_record.py [--repeat N] [--vitals N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pathways.registry import record_from_resources, registry_mapping, validate_record
from tests.pathways.archive_cases import at, iso
from tests.pathways.registry_cases import (
    PARAMS,
    STAFF_ENTRIES,
    complete_stemi,
    in_memory,
)


def measure(vitals: int, repeat: int) -> tuple[float, float, int]:
    case = complete_stemi()
    start = at("2024-03-05 08:53:00")
    for minute in range(vitals):
        case.add(
            {
                "resourceType": "Observation",
                "id": f"bench-hr-{minute}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": f"Patient/{case.patient_id}"},
                "effectiveDateTime": iso(start + timedelta(minutes=minute)),
                "valueQuantity": {"value": 80 + minute % 20, "unit": "/min"},
            }
        )
    mapping = registry_mapping("cpc")
    records, stored = in_memory(case)
    builds, checks = [], []
    for _ in range(repeat):
        began = time.perf_counter()
        record = record_from_resources(
            mapping, records, stored, overrides=STAFF_ENTRIES, params=PARAMS
        )
        built = time.perf_counter()
        problems = validate_record(record, mapping)
        builds.append((built - began) * 1000)
        checks.append((time.perf_counter() - built) * 1000)
    observations = len(records.clinical.get("Observation", []))
    assert not problems, problems
    return statistics.median(builds), statistics.median(checks), observations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--vitals", type=int, default=120, help="extra heart rates (minutes)")
    args = parser.parse_args()
    for label, vitals in (("complete case", 0), ("vitals", args.vitals)):
        build, check, observations = measure(vitals, args.repeat)
        print(
            f"{label:14s} {observations:5d} Observations: build {build:8.1f} ms, "
            f"validate {check:6.1f} ms (median of {args.repeat})"
        )


if __name__ == "__main__":
    main()
