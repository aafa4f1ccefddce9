"""The standard ADT mapping over every event it takes and arbitrary field content: valid FHIR
R4B or a MappingError naming the field, and the same ids for the same facts in every event."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.hl7v2 import parse_for_mapping
from engine.errors import MappingError
from engine.mapping import load_mapping
from tests.engine.test_mapping_validity import fhir_r4b

ROOT = Path(__file__).resolve().parents[2]
ADT = load_mapping(ROOT / "mappings" / "hl7v2" / "adt.yaml")
EVENTS = "A01 A02 A03 A04 A05 A06 A07 A08 A09 A10 A11 A12 A13 A28 A31 A34 A40".split()

_TEXT = st.lists(
    st.sampled_from([*"09AZ .-^&~\\", "王", "建国", "病区", "\\F\\", "I21.0", "DA", "SV", "F"]),
    max_size=8,
).map("".join)
_TIME = st.sampled_from(["", "2026", "20261125", "202611250820", "20261125082000+0800"])


def message(event: str, pv1: str, extra: str = "") -> bytes:
    return (
        f"MSH|^~\\&|HIS|COUNTY-HOSP|GC|ED|20261125130000+0800||ADT^{event}|X1|P|2.5.1\r"
        f"EVN|{event}|20261125130000+0800\r"
        "PID|1||ZY1^^^COUNTY-HOSP^ZY~420106196207041512^^^CHN^NNCHN||王^建国||19620704|M\r"
        f"{pv1}\r{extra}"
    ).encode()


def test_the_mapping_takes_exactly_the_issue_s_events() -> None:
    pv1 = "PV1|1|I|CCU^1^2^COUNTY-HOSP||||||||||||||||H1"
    for event in EVENTS:
        assert ADT.matches(parse_for_mapping(message(event, pv1), "utf-8")), event
    for event in ("A14", "A17", "A38", "A47"):
        assert not ADT.matches(parse_for_mapping(message(event, pv1), "utf-8")), event


def test_every_event_gives_valid_fhir_and_the_same_patient_and_visit_ids() -> None:
    pv1 = "PV1|1|I|CARD^5^1^COUNTY-HOSP|||CCU^1^2^COUNTY-HOSP|D1^陈^志强||||||||||||H1"
    ids: dict[str, set[str]] = {"Patient": set(), "Encounter": set()}
    for event in EVENTS:
        extra = "MRG|MZ9^^^COUNTY-HOSP^MZ\r" if event in ("A34", "A40") else ""
        bundle = ADT.apply(parse_for_mapping(message(event, pv1, extra), "utf-8"))
        assert fhir_r4b(bundle) == [], event
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] in ids and resource.get("active", True):
                ids[resource["resourceType"]].add(resource["id"])
    assert len(ids["Patient"]) == 1 and len(ids["Encounter"]) == 1


@settings(max_examples=60, deadline=None)
@given(
    event=st.sampled_from(EVENTS),
    pv1=st.tuples(_TEXT, _TEXT, _TEXT, _TEXT, _TIME, _TIME),
    segments=st.tuples(_TEXT, _TEXT, _TEXT, _TEXT, _TEXT, _TIME, _TEXT),
    center=st.sampled_from(["CP", "卒中", "TR", "", "X"]),
)
def test_arbitrary_content_gives_valid_fhir_or_an_error_naming_the_field(
    event: str, pv1: tuple[str, ...], segments: tuple[str, ...], center: str
) -> None:
    location, prior, doctor, disposition, admitted, discharged = pv1
    relation, diagnosis, allergen, severity, procedure, when, insurer = segments
    raw = message(
        event,
        f"PV1|1|I|{location}|||{prior}|{doctor}|{doctor}|{doctor}|||||||||{doctor}||H1"
        + "|" * 17
        + f"{disposition}"
        + "|" * 8
        + f"{admitted}|{discharged}",
        f"NK1|1|李^秀英|{relation}\rDG1|1||{diagnosis}||{when}|{severity}\r"
        f"AL1|1|{severity}|{allergen}|{severity}|{relation}|{when}\r"
        f"PR1|1||{procedure}||{when}\rIN1|1|{relation}|{insurer}|{insurer}\r"
        f"MRG|{allergen}\rZGC|{center}|{insurer}|{when}|{severity}|{severity}\r",
    )
    try:
        first = ADT.apply(parse_for_mapping(raw, "utf-8"))
    except MappingError as exc:
        assert exc.location and exc.location[:3] in (
            "PV1",
            "DG1",
            "AL1",
            "PR1",
            "IN1",
            "MRG",
            "ZGC",
        )
        return
    assert fhir_r4b(first) == []
    assert ADT.apply(parse_for_mapping(raw, "utf-8")) == first  # ids are deterministic


# --- one entry per id: the same fact twice is written once --------------------------------------


def test_the_same_insurer_in_two_in1s_is_one_organization_paying_both_coverages() -> None:
    in1 = "IN1|{n}|{plan}|420100^武汉市医疗保障局|武汉市医疗保障局||||||||20260101\r"
    extra = in1.format(n=1, plan="01^城镇职工基本医疗保险") + in1.format(n=2, plan="09^大病保险")
    bundle = ADT.apply(parse_for_mapping(message("A01", "PV1|1|I", extra), "utf-8"))
    kinds = [entry["resource"]["resourceType"] for entry in bundle["entry"]]
    # the insurer, and the hospital (MSH-4) managing the patient
    assert kinds.count("Organization") == 2 and kinds.count("Coverage") == 2
    urls = [entry["request"]["url"] for entry in bundle["entry"]]
    assert len(urls) == len(set(urls))
    assert fhir_r4b(bundle) == []


def test_two_different_resources_under_one_id_are_a_mapping_error(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        "input: x-application/hl7-v2+er7\n"
        "resources:\n"
        "  doctors:\n"
        "    each: PV1-7\n"
        "    resourceType: Practitioner\n"
        "    id: ${id(PV1-7.1)}\n"
        "    name: [{family: '${PV1-7.2}'}]\n",
        encoding="utf-8",
    )
    mapping = load_mapping(tmp_path / "m.yaml")
    same = parse_for_mapping(
        b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5\rPV1|1|I|||||D1^Chen~D1^Chen\r", "utf-8"
    )
    assert len(mapping.apply(same)["entry"]) == 1
    clash = parse_for_mapping(
        b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5\rPV1|1|I|||||D1^Chen~D1^Liu\r", "utf-8"
    )
    try:
        mapping.apply(clash)
    except MappingError as exc:
        assert exc.rule == "resources.doctors.id" and "same id" in str(exc)
    else:
        raise AssertionError("two Practitioners with one id were both written")
