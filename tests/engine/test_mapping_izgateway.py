"""IZ Gateway's public case file (64 HL7 v2 messages, 57 FHIRPath assertions) through our
mappings: every message is taken by exactly one mapping, and what fails is exactly the
documented deviations list (mappings/tests/samples/izgateway-deviations.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.hl7v2 import parse_for_mapping
from engine.errors import MappingError
from engine.mapping import load_mapping
from engine.mapping.casefile import load_cases
from engine.mapping.catalog import mapping_files
from engine.mapping.testing import run_case_file
from engine.plugins import load_plugins
from tests.engine.test_mapping_validity import fhir_r4b

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "mappings" / "tests" / "samples" / "izgateway-messages.txt"
DEVIATIONS = ROOT / "mappings" / "tests" / "samples" / "izgateway-deviations.yaml"
PARSERS: dict[str, Any] = {"x-application/hl7-v2+er7": parse_for_mapping}
# the HL7 v2 mappings: the engine offers a message only to the mappings of its input type
MAPPINGS = [
    m
    for m in (
        load_mapping(file)
        for file in mapping_files(ROOT / "mappings", load_plugins().mapping_kinds)
    )
    if m.input in (None, "x-application/hl7-v2+er7")
]


def test_the_case_file_is_the_shared_one() -> None:
    shared = ROOT.parent / "shared" / "data" / "hl7v2" / "izgateway-messages.txt"
    assert CASES.read_bytes() == shared.read_bytes()


def test_what_fails_is_exactly_the_documented_deviations() -> None:
    count, failures = run_case_file(
        CASES, MAPPINGS, parsers=PARSERS, output_checks={"fhir-r4b": fhir_r4b}
    )
    assert count == 64
    documented = yaml.safe_load(DEVIATIONS.read_text(encoding="utf-8"))["deviations"]
    assert all(entry["why"].strip() for entry in documented)
    assert sorted((f.line, f.check) for f in failures) == sorted(
        (entry["line"], entry["check"]) for entry in documented
    ), "\n".join(map(str, failures))
    assigned = sum(
        1 for case in load_cases(CASES.read_text(encoding="utf-8")) for _ in case.assertions
    )
    failed_assertions = sum(1 for f in failures if f.check.startswith("@"))
    assert (assigned, failed_assertions) == (57, 8)  # 49 of IZ Gateway's 57 assertions hold


def test_every_message_is_taken_by_exactly_one_mapping() -> None:
    for case in load_cases(CASES.read_text(encoding="utf-8")):
        document = parse_for_mapping(case.message, "utf-8")
        takers = [m.file for m in MAPPINGS if m.matches(document)]
        assert len(takers) == 1, (case.line, takers)


def test_a_vxu_and_the_registry_s_history_give_the_same_immunization_ids() -> None:
    vxu = load_mapping(ROOT / "mappings" / "hl7v2" / "vxu.yaml")
    view = load_mapping(ROOT / "mappings" / "hl7v2" / "iz_messages.yaml")
    header = "MSH|^~\\&|MYEHR|DCS|MYIIS||201201130000-0500||{kind}|1|P|2.5.1\r"
    body = (
        "PID|1||432155^^^dcs^MR||Patient^Johnny^New^^^^L||20110411|M\r"
        "ORC|RE||65930^DCS\r"
        "RXA|0|1|20120113||110^DTaP HIB IPV^CVX|0.5|mL^^UCUM||00^New admin^NIP001|||||||||||CP|A\r"
        "RXR|C28161^IM^NCIT^IM^^HL70162|RT^Right Thigh^HL70163\r"
    )
    stored = vxu.apply(
        parse_for_mapping((header.format(kind="VXU^V04^VXU_V04") + body).encode(), "utf-8")
    )
    answered = view.apply(
        parse_for_mapping(
            (header.format(kind="RSP^K11^RSP_K11") + "MSA|AA|Q1\r" + body).encode(), "utf-8"
        )
    )
    assert fhir_r4b(stored) == [] and fhir_r4b(answered) == []
    ids = [
        {
            (e["resource"]["resourceType"], e["resource"]["id"])
            for e in b["entry"]
            if e["resource"]["resourceType"] in ("Patient", "Immunization")
        }
        for b in (stored, answered)
    ]
    assert ids[0] == ids[1] and len(ids[0]) == 2
    (immunization,) = [
        e["resource"] for e in stored["entry"] if e["resource"]["resourceType"] == "Immunization"
    ]
    assert immunization["occurrenceDateTime"] == "2012-01-13"
    assert immunization["vaccineCode"]["coding"][0] == {
        "system": "http://hl7.org/fhir/sid/cvx",
        "code": "110",
        "display": "DTaP HIB IPV",
    }
    assert immunization["primarySource"] is True and immunization["status"] == "completed"
    assert immunization["doseQuantity"]["code"] == "mL"


_TEXT = st.lists(
    st.sampled_from(
        [
            *"09AZ .-^&~\\",
            "CVX",
            "MVX",
            "999",
            "0.5",
            "mL",
            "CP",
            "RE",
            "D",
            "00",
            "01",
            "赵",
            "\\F\\",
            "20120113",
        ]
    ),
    max_size=6,
).map("".join)
_TIME = st.sampled_from(["", "2012", "20120113", "201201131030", "20120113103000+0800"])


@settings(max_examples=60, deadline=None)
@given(
    rxa=st.tuples(_TEXT, _TEXT, _TEXT, _TEXT, _TEXT, _TEXT, _TEXT),
    time=_TIME,
    kind=st.sampled_from(["VXU^V04^VXU_V04", "RSP^K11^RSP_K11", "ACK^V04^ACK", "QBP^Q11^QBP_Q11"]),
)
# found by hypothesis in CI: an MSA-1 of only a component separator ('^') is empty
@example(rxa=("", "", "", "", "0", "^", ""), time="", kind="RSP^K11^RSP_K11")
def test_arbitrary_content_gives_valid_fhir_or_an_error_naming_the_field(
    rxa: tuple[str, ...], time: str, kind: str
) -> None:
    vaccine, amount, units, source, lot, status, err = rxa
    raw = (
        f"MSH|^~\\&|MYEHR|DCS|MYIIS||201201131200-0500||{kind}|1|P|2.5.1\rMSA|{status}|{lot}\r"
        f"ERR||{err}|{err}|{status}||||{lot}\rQAK|1|{status}\rQPD|Z34^x^CDCPHINVS|1|{lot}^^^{err}\r"
        f"PID|1||{lot}^^^dcs^MR||{vaccine}||{time}|{status}\rORC|RE||{lot}\r"
        f"RXA|0|1|{time}||{vaccine}|{amount}|{units}||{source}|{err}||||||{time}|{err}|||{status}|{status}\r"
        f"RXR|{err}|{units}\r"
    ).encode()
    document = parse_for_mapping(raw, "utf-8")
    (mapping,) = [m for m in MAPPINGS if m.matches(document)]
    try:
        first = mapping.apply(document)
    except MappingError as exc:
        assert exc.location and exc.location[:3] in ("RXA", "RXR", "PID", "MSH", "QPD", "ERR")
        return
    assert fhir_r4b(first) == []
    assert mapping.apply(document) == first  # ids are deterministic


def test_the_dose_given_on_no_date_keeps_its_text_and_the_other_doses_map() -> None:
    """Line 997: the third dose's RXA-3 is 20091051 (no 51st day). The history maps; that dose
    keeps the text as sent in occurrenceString, the others have their dateTime."""
    case = next(c for c in load_cases(CASES.read_text(encoding="utf-8")) if c.line == 997)
    document = parse_for_mapping(case.message, "utf-8")
    (mapping,) = [m for m in MAPPINGS if m.matches(document)]
    bundle = mapping.apply(document)
    assert fhir_r4b(bundle) == []
    doses = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Immunization"
    ]
    assert [d.get("occurrenceString") for d in doses] == [None, None, "20091051132511", None]
    dated = [d.get("occurrenceDateTime", "")[:10] for d in doses]
    assert dated[:3] == ["2009-04-15", "2009-07-31", ""] and dated[3].startswith("20")
