"""Parse + map per message, one core: HIS ADT^A04 and ADT^A01 (adt.yaml; the A01 with NK1, DG1,
AL1, PR1 and IN1 in GB 18030) and a 20-OBX LIS ORU^R01
(oru_lab.yaml, segment groups); validation with fhir.resources R4B measured separately.

Validating the same Bundle again and again finds every value remembered by the structure check
(fhir_store/_structure_check.py), so validation is also measured once over 3,000 different
ADT^A04 (bench/_load.adt_a04: other patients, numbers and times), as a live interface sends them.

Usage: python bench/mapping.py [--seconds S]
Target (issue 4): >= 2,000 ADT^A01/s per core for parse + map. Rates are per CPU second of
this process (time.process_time), so other work on the machine slows them less than wall time.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _load import adt_a04

from adapters.hl7v2 import parse_for_mapping
from engine.mapping import load_mapping
from fhir_store._validation import structure_issues

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "mappings" / "tests" / "samples"


def oru_with_20_results() -> bytes:
    lines = (SAMPLES / "lis-oru-troponin-utf8.hl7").read_bytes().split(b"\r")
    head = [line for line in lines if line[:3] in (b"MSH", b"PID", b"PV1", b"ORC")]
    obr = next(line for line in lines if line.startswith(b"OBR|1|"))
    obx = next(line for line in lines if line.startswith(b"OBX|1|"))
    results = [obx.replace(b"OBX|1|", b"OBX|%d|" % n).replace(b"HSTNI^", b"T%02d^" % n)
               for n in range(1, 21)]  # fmt: skip
    return b"\r".join([*head, obr, *results]) + b"\r"


def rate(work: Callable[[], Any], seconds: float) -> float:
    """Messages per CPU second of this process: per core, and steady on a shared machine."""
    done, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for _ in range(20):
            work()
        done += 20
    return done / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    cases = {
        "ADT^A04 (adt.yaml)": (load_mapping(ROOT / "mappings/hl7v2/adt.yaml"),
                               (SAMPLES / "adt-a04.hl7").read_bytes()),
        "ADT^A01 (adt.yaml)": (load_mapping(ROOT / "mappings/hl7v2/adt.yaml"),
                               (SAMPLES / "adt-a01-gb18030.hl7").read_bytes()),
        "ORU^R01 20 OBX (oru_lab.yaml)": (load_mapping(ROOT / "mappings/hl7v2/oru_lab.yaml"),
                                          oru_with_20_results()),
    }  # fmt: skip
    for name, (mapping, raw) in cases.items():
        bundle = mapping.apply(parse_for_mapping(raw, "utf-8"))

        def parse_and_map(mapping: Any = mapping, raw: bytes = raw) -> Any:
            return mapping.apply(parse_for_mapping(raw, "utf-8"))

        def validate(bundle: Any = bundle) -> Any:
            return [structure_issues(e["resource"]) for e in bundle["entry"]]

        print(f"{name}: {len(bundle['entry'])} resources")
        print(f"  parse + map: {rate(parse_and_map, args.seconds):8.0f} messages/s")
        print(f"  validate:    {rate(validate, args.seconds):8.0f} messages/s")
    adt = cases["ADT^A04 (adt.yaml)"][0]

    def mapped(run: str, count: int) -> list[Any]:
        return [adt.apply(parse_for_mapping(adt_a04(n, run=run), "utf-8")) for n in range(count)]

    for bundle in mapped("W", 500):  # the plans built, the codes that repeat remembered
        [structure_issues(e["resource"]) for e in bundle["entry"]]
    fresh = mapped("B", 3000)
    start = time.process_time()
    for bundle in fresh:  # once each: their own values are new to the check
        [structure_issues(e["resource"]) for e in bundle["entry"]]
    print("ADT^A04, 3,000 different messages (bench/_load.adt_a04), each validated once")
    print(f"  validate:    {len(fresh) / (time.process_time() - start):8.0f} messages/s")


if __name__ == "__main__":
    main()
