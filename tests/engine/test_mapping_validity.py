"""Every Bundle the shipped mappings make is valid FHIR (fhir.resources R4B), resource by resource.

The engine has no FHIR model (DESIGN.md): the check plugs into the analysts' test runner as an
output checker, the way a `greenchannel.output_checks` entry point would; here it is the FHIR
store's own structure validator, so mappings and store agree on what is valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.hl7v2 import parse_for_mapping
from engine.errors import GreenchannelError
from engine.mapping import load_mapping
from engine.mapping.casefile import load_cases
from engine.mapping.catalog import mapping_files
from engine.mapping.testing import run_mapping_test
from engine.plugins import load_plugins
from fhir_store._validation import structure_issues

ROOT = Path(__file__).resolve().parents[2]
TESTS = sorted((ROOT / "mappings" / "tests").glob("*.yaml"))
IZ = ROOT.parent / "shared" / "data" / "hl7v2" / "izgateway-messages.txt"


def fhir_r4b(output: Any) -> list[str]:
    """Problems of the Bundle and of each resource in it, as `path: reason`."""
    if not isinstance(output, dict) or output.get("resourceType") != "Bundle":
        return ["the output is not a FHIR Bundle"]
    problems = [f"{path}: {reason}" for path, reason in structure_issues(output)]
    for index, entry in enumerate(output.get("entry", [])):
        for path, reason in structure_issues(entry["resource"]):
            problems.append(f"entry[{index}] {path}: {reason}")
    return problems


def test_the_checker_catches_an_invalid_resource() -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "valueQuantity": {"value": "high"}},
         "request": {"method": "PUT", "url": "Observation/1"}},
    ]}  # fmt: skip
    problems = fhir_r4b(bundle)
    assert any("entry[0] Observation.valueQuantity.value" in p for p in problems), problems


@pytest.mark.parametrize("path", TESTS, ids=[p.stem for p in TESTS])
def test_every_analyst_test_output_is_valid_fhir(path: Path) -> None:
    failures = run_mapping_test(path, output_checks={"fhir-r4b": fhir_r4b})
    assert failures == [], "\n".join(map(str, failures))


def test_every_shared_message_converts_into_valid_fhir() -> None:
    mappings = [
        load_mapping(file)
        for file in mapping_files(ROOT / "mappings", load_plugins().mapping_kinds)
    ]
    refused = []
    for case in load_cases(IZ.read_text(encoding="utf-8")):
        document = parse_for_mapping(case.message, "utf-8")
        # the engine offers a message only to the mappings of its input type (choose_mapping)
        hl7 = [m for m in mappings if m.input in (None, document.media_type)]
        (mapping,) = [m for m in hl7 if m.matches(document)]
        try:
            bundle = mapping.apply(document)
        except GreenchannelError as exc:
            refused.append((case.line, str(exc)))
            continue
        assert fhir_r4b(bundle) == [], case.line
    # every one, the dose given on 20091051 (line 997) included: its text is kept in
    # Immunization.occurrenceString (tests/engine/test_mapping_izgateway.py)
    assert refused == []


_HEADER = (
    "MSH|^~\\&|LIS|H|GC|H|20261125084100+0800||ORU^R01|X|P|2.5.1\r"
    "PID|1||10086^^^H^MR~110101195803120012^^^CHN^NNCHN||张^三\rPV1|1|E\r"
)
_TEXT = st.lists(
    st.sampled_from([*"09.<>=-+ ^&~\\", "阴性", "↑", "ng/L", "H", "\\F\\", "SER", "血清"]),
    max_size=10,
).map("".join)
_TIME = st.sampled_from(["", "2026", "20261125", "202611250820", "20261125082000+0800"])


_ORU = load_mapping(ROOT / "mappings/hl7v2/oru_lab.yaml")


@settings(max_examples=40, deadline=None)
@given(
    obr=st.tuples(_TEXT, _TEXT, _TIME, _TEXT, _TIME, st.sampled_from(["F", "P", "C", "", "Z"])),
    obx=st.tuples(st.sampled_from(["NM", "SN", "ST", "CWE", ""]), _TEXT, _TEXT, _TEXT, _TEXT,
                  st.sampled_from(["F", "C", "D", "", "Z"]), _TIME, _TEXT),
)  # fmt: skip
def test_any_lab_message_that_maps_gives_valid_fhir(
    obr: tuple[str, ...], obx: tuple[str, ...]
) -> None:
    placer, code, collected, specimen, reported, status = obr
    kind, value, units, range_, flag, result_status, effective, doctor = obx
    raw = (
        _HEADER
        + f"OBR|1|{placer}|L1|{code}|||{collected}||||||||{specimen}|||||||{reported}"
        + f"||LAB|{status}\r"
        + f"OBX|1|{kind}|X^x^L||{value}|{units}|{range_}|{flag}|||{result_status}|||{effective}"
        + f"||{doctor}\rNTE|1||{value}\r"
    ).encode("utf-8")
    try:
        document = parse_for_mapping(raw, "utf-8")
        bundle = _ORU.apply(document)
    except GreenchannelError:
        return  # refused with a named field: test_mapping_oru checks the naming
    assert fhir_r4b(bundle) == []
