"""FHIRPath checks in analysts' tests, output checkers, and IZ Gateway style case files."""

from __future__ import annotations

import re
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.hl7v2 import parse_for_mapping
from engine.mapping import load_mapping
from engine.mapping.casefile import load_cases
from engine.mapping.fhirpath import compile_check, compile_path, rooted_at_bundle
from engine.mapping.testing import run_case_file, run_mapping_test

ROOT = Path(__file__).resolve().parents[2]
ADT = ROOT / "mappings" / "hl7v2" / "adt.yaml"
SAMPLE = ROOT / "mappings" / "tests" / "samples" / "adt-a04.hl7"
IZ = ROOT.parent / "shared" / "data" / "hl7v2" / "izgateway-messages.txt"
PARSERS: dict[str, Any] = {"x-application/hl7-v2+er7": parse_for_mapping}


def _test_file(tmp_path: Path, expect: str) -> Path:
    file = tmp_path / "t.yaml"
    file.write_text(
        f"mapping: {ADT}\nparser: x-application/hl7-v2+er7\ninput_file: {SAMPLE}\n"
        + "expect:\n"
        + textwrap.indent(textwrap.dedent(expect), "  "),
        encoding="utf-8",
    )
    return file


def _pid(field: int) -> str:
    segment = next(s for s in SAMPLE.read_text(encoding="utf-8").splitlines() if s[:4] == "PID|")
    return segment.split("|")[field]


def test_fhirpath_checks_pass_on_what_the_message_says(tmp_path: Path) -> None:
    family, given = _pid(5).split("^")[:2]
    file = _test_file(
        tmp_path,
        f"""
        - fhirpath: "Bundle.entry.resource.ofType(Patient).name.family = '{family}'"
        - fhirpath: "Bundle.entry.resource.ofType(Patient).name.given = '{given}'"
        - fhirpath: "Bundle.entry.resource.ofType(Encounter).subject.reference
            .startsWith('Patient/')"
        - fhirpath: "Bundle.entry.resource.ofType(Patient).identifier
            .where(system = 'urn:oid:2.16.156.10011.1.3')"
        - {{path: "entry[0].resource.resourceType", equals: Patient}}
        """,
    )
    assert run_mapping_test(file, parsers=PARSERS, output_checks={}) == []


def test_a_failing_fhirpath_names_the_file_line_assertion_and_what_was_found(
    tmp_path: Path,
) -> None:
    file = _test_file(
        tmp_path,
        """
        - fhirpath: "Bundle.entry.resource.ofType(Patient).gender = 'female'"
        - fhirpath: "Bundle.entry.resource.ofType(Observation).exists()"
        """,
    )
    failures = run_mapping_test(file, parsers=PARSERS, output_checks={})
    assert [f.line for f in failures] == [6, 7]
    first = str(failures[0])
    assert first.startswith(f"{file}:6 expect[0] Bundle.entry.resource.ofType(Patient).gender")
    assert "found ['male']" in first  # PID-8 of the sample is M
    assert _pid(8) == "M"
    assert "is [False]" in str(failures[1])


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ('{fhirpath: "Bundle.entry.("}', "not a valid FHIRPath expression"),
        ('{fhirpath: "Bundle.nothing()"}', "cannot be evaluated"),
        ('{fhirpath: "Bundle", equals: 1}', "just `fhirpath: <expression>`"),
    ],
)
def test_a_broken_fhirpath_check_is_reported_not_raised(
    tmp_path: Path, check: str, message: str
) -> None:
    failures = run_mapping_test(_test_file(tmp_path, f"- {check}\n"), parsers=PARSERS,
                                output_checks={})  # fmt: skip
    assert len(failures) == 1 and message in failures[0].message


def test_output_checkers_run_on_every_output(tmp_path: Path) -> None:
    seen: list[Any] = []

    def checker(output: Any) -> list[str]:
        seen.append(output)
        return [f"{e['resource']['resourceType']}.x: made up" for e in output["entry"]]

    file = _test_file(tmp_path, "- {path: entry, count: 6}\n")
    failures = run_mapping_test(file, parsers=PARSERS, output_checks={"fake": checker})
    assert len(seen) == 1 and seen[0]["resourceType"] == "Bundle"
    # the sample's patient, visit, its doctor (PV1-7) in his role, the hospital (MSH-4) and its
    # department (PV1-3), in mapping order
    kinds = ["Patient", "Encounter", "Practitioner", "PractitionerRole", "Organization", "Location"]
    assert [f.message for f in failures] == [f"{kind}.x: made up" for kind in kinds]
    assert all(f.check == "output (fake)" for f in failures)


def test_resource_rooted_assertions_read_the_bundle_entries_of_that_type() -> None:
    bundle = {"resourceType": "Bundle", "entry": [
        {"resource": {"resourceType": "Patient", "gender": "male"}},
        {"resource": {"resourceType": "Patient", "gender": "female"}},
    ]}  # fmt: skip
    assert compile_check(rooted_at_bundle("Patient.count() = 2")).failure(bundle) is None
    assert compile_check(rooted_at_bundle("Patient[1].gender = 'female'")).failure(bundle) is None
    assert compile_check(rooted_at_bundle("Bundle.entry.count() = 2")).failure(bundle) is None
    assert compile_check(rooted_at_bundle("Encounter.exists()")).failure(bundle) == "is [False]"


def test_decimals_compare_as_written_and_the_output_is_left_as_it_was() -> None:
    # 52.3 and 0.1 + 0.2 as binary floats: FHIRPath compares decimals as written.
    observation = {"resourceType": "Observation", "valueQuantity": {"value": 52.3},
                   "component": [{"valueQuantity": {"value": 0.30000000000000004}}]}  # fmt: skip
    bundle = {"resourceType": "Bundle", "entry": ({"resource": observation},)}
    before = repr(bundle)
    assert compile_check("Observation.value.value = 52.3").failure(observation) is None
    above = compile_check(rooted_at_bundle("Observation.value.value > 52.29"))
    assert above.failure(bundle) is None
    assert compile_check("Observation.component.value.value = 0.3").failure(observation) == (
        "is [False]; found [0.30000000000000004]"
    )
    assert repr(bundle) == before
    assert compile_path("valueQuantity.value")(observation) == [Decimal("52.3")]


# --- the IZ Gateway case file -----------------------------------------------------------------


def _iz_text() -> str:
    return IZ.read_text(encoding="utf-8")


def test_the_iz_gateway_file_gives_64_messages_and_all_their_assertions() -> None:
    text = _iz_text()
    cases = load_cases(text)
    lines = text.splitlines()
    assert len(cases) == sum(1 for line in lines if line.startswith("MSH|")) == 64
    assert sum(len(c.assertions) for c in cases) == sum(
        1 for line in lines if re.match(r"\s*@", line)
    )
    for case in cases:
        assert case.segments[0].startswith("MSH|")
        assert all(not a.expression.endswith("\\") and "//" not in a.expression.replace(
            "http://", "") for a in case.assertions)  # fmt: skip


def test_every_iz_gateway_message_parses_and_every_assertion_compiles() -> None:
    for case in load_cases(_iz_text()):
        document = parse_for_mapping(case.message, "utf-8")
        assert document.segment_ids == [segment[:3] for segment in case.segments]
        first = case.segments[0].split("|")
        assert document.get("MSH-10") == (first[9] or None), case.line
        for assertion in case.assertions:
            compile_check(rooted_at_bundle(assertion.expression))


def test_continued_lines_are_joined_and_comments_dropped() -> None:
    text = (
        "# header\nMSH|^~\\&|A|\\\n\tB|C|D|2026||ADT^A04|1|P|2.5\n"
        "\t@Bundle.exists() // there is one \\\n\t\t   and more comment\n"
        "PID|1||X\n\t// PID|1||\\\n\t@Patient.count() = 1\n"
        "\t@MessageHeader.source.endpoint = 'http://x//y'  // quoted slashes stay\n"
        "MSH|^~\\&|A|B|C|D|2026||ADT^A08|2|P|2.5\n"
    )
    first, second = load_cases(text)
    assert first.segments == ["MSH|^~\\&|A|B|C|D|2026||ADT^A04|1|P|2.5", "PID|1||X"]
    assert [a.expression for a in first.assertions] == [
        "Bundle.exists()",
        "Patient.count() = 1",
        "MessageHeader.source.endpoint = 'http://x//y'",
    ]
    assert [a.line for a in first.assertions] == [4, 8, 9]
    assert second.line == 10 and second.assertions == []


def test_a_case_file_maps_each_message_and_checks_its_assertions(tmp_path: Path) -> None:
    sample = SAMPLE.read_text(encoding="utf-8").splitlines()
    cases = tmp_path / "cases.txt"
    cases.write_text(
        "\n".join(sample)
        + "\n\t@Patient.gender = 'male'\n\t@Patient.gender = 'female' // wrong on purpose\n"
        + "MSH|^~\\&|A|B|C|D|20261125||QRY^A19|9|P|2.5\n",
        encoding="utf-8",
    )
    count, failures = run_case_file(cases, [load_mapping(ADT)], parsers=PARSERS,
                                    output_checks={})  # fmt: skip
    assert count == 2
    assert [(f.line, f.check) for f in failures] == [
        (len(sample) + 2, "@Patient.gender = 'female'"),
        (len(sample) + 3, "message"),
    ]
    assert "found ['male']" in failures[0].message
    assert "no mapping's `when` matches" in failures[1].message
