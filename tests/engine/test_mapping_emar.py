"""The eMAR mapping (RAS^O17 → MedicationAdministration): the drug class the pathways match comes
from the code tables by local code or ATC, a dose's status from RXA-20/21, resends converge, and
arbitrary field content gives valid FHIR R4B or a MappingError naming the field."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.hl7v2 import parse_for_mapping
from engine.errors import MappingError
from engine.mapping import load_mapping
from tests.engine.test_mapping_validity import fhir_r4b

ROOT = Path(__file__).resolve().parents[2]
TABLES = ROOT / "mappings" / "hl7v2" / "tables"
EMAR = load_mapping(ROOT / "mappings" / "hl7v2" / "emar.yaml")
DRUG_CLASS = "https://greenchannel.example.org/fhir/CodeSystem/drug-class"
# the classes the pathway nodes need (time-nodes.md: aspirin_given, p2y12_given,
# anticoagulant_given, lytic_start; the discharge statin rate)
CLASSES = {
    "aspirin",
    "clopidogrel",
    "ticagrelor",
    "ufh",
    "lmwh",
    "bivalirudin",
    "fondaparinux",
    "alteplase",
    "tenecteplase",
    "reteplase",
    "urokinase",
    "statin",
}


def ras(rxa: str, orc: str = "ORC|RE|YZ1^HIS", version: str = "2.5.1") -> bytes:
    return (
        f"MSH|^~\\&|NIS|COUNTY-HOSP|GC|ED|20261125084500+0800||RAS^O17^RAS_O17|R1|P|{version}\r"
        "PID|1||MZ1^^^COUNTY-HOSP^MZ||刘^德华||19680512|M\r"
        f"PV1|1|E|EICU^1^^COUNTY-HOSP||||||||||||||||MZ20261125001\r{orc}\r{rxa}\r"
    ).encode()


def rxa(
    drug: str,
    amount: str = "300",
    units: str = "mg",
    status: str = "CP",
    action: str = "A",
    start: str = "20261125082000+0800",
    admin: str = "1",
) -> str:
    return f"RXA|0|{admin}|{start}||{drug}|{amount}|{units}|||N1^周^丽||||||||||{status}|{action}"


def administrations(raw: bytes) -> list[dict[str, Any]]:
    bundle = EMAR.apply(parse_for_mapping(raw, "utf-8"))
    assert fhir_r4b(bundle) == []
    return [entry["resource"] for entry in bundle["entry"]]


def drug_class(resource: dict[str, Any]) -> str | None:
    codings = resource["medicationCodeableConcept"]["coding"]
    return next((c["code"] for c in codings if c.get("system") == DRUG_CLASS), None)


def test_every_class_the_pathways_need_is_reachable_by_a_local_code_and_by_atc() -> None:
    with (TABLES / "drug_class.csv").open(encoding="utf-8") as file:
        rows = list(csv.DictReader(line for line in file if not line.startswith("#")))
    with (TABLES / "drug_atc.csv").open(encoding="utf-8") as file:
        atc = {
            r["code"]: r["target"] for r in csv.DictReader(line for line in file if line[0] != "#")
        }
    assert {row["target"] for row in rows} == CLASSES
    by_atc = {row["code"]: row["target"] for row in rows if row["code"] in atc.values()}
    for row in rows:
        if row["code"] in atc:  # a local code: its class, and its ingredient's ATC beside it
            (given,) = administrations(ras(rxa(f"{row['code']}^x^HOSP")))
            assert by_atc[atc[row["code"]]] == row["target"], row  # the two tables agree
        else:  # an ATC code sent as such (RXA-5.3 ATC): the class, and no second ATC coding
            (given,) = administrations(ras(rxa(f"{row['code']}^x^ATC")))
            codings = given["medicationCodeableConcept"]["coding"]
            assert [c["system"] for c in codings].count("http://www.whocc.no/atc") == 1
        assert drug_class(given) == row["target"], row


def test_a_drug_the_tables_do_not_list_keeps_only_its_local_coding() -> None:
    (given,) = administrations(ras(rxa("YP9999^氯化钠注射液^HOSP", "100", "mL")))
    assert drug_class(given) is None
    assert given["medicationCodeableConcept"]["coding"] == [
        {"system": "urn:greenchannel:drug:NIS", "code": "YP9999", "display": "氯化钠注射液"}
    ]
    assert given["dosage"]["dose"] == {
        "value": 100,
        "unit": "mL",
        "system": "http://unitsofmeasure.org",
        "code": "mL",
    }


def test_status_comes_from_rxa_20_and_a_deletion_is_entered_in_error() -> None:
    statuses = {
        (status, action): administrations(ras(rxa("YP0101", status=status, action=action)))[0]
        for status, action in [
            ("CP", "A"),
            ("", "A"),
            ("NA", "A"),
            ("RE", "A"),
            ("PA", "U"),
            ("CP", "D"),
        ]
    }
    assert {key: r["status"] for key, r in statuses.items()} == {
        ("CP", "A"): "completed",
        ("", "A"): "completed",
        ("NA", "A"): "not-done",
        ("RE", "A"): "not-done",
        ("PA", "U"): "stopped",
        ("CP", "D"): "entered-in-error",
    }
    # a correction or a deletion of a dose replaces it: one id for the order's RXA-1/RXA-2
    assert len({r["id"] for r in statuses.values()}) == 1


def test_each_rxa_of_an_order_is_its_own_administration() -> None:
    bolus = rxa("YP0401", "6.3", start="20261125093200+0800", admin="1")
    infusion = rxa("YP0401", "56.7", start="20261125093300+0800", admin="2")
    given = administrations(ras(f"{bolus}\rRXR|IV\r{infusion}"))
    assert [r["effectiveDateTime"] for r in given] == [
        "2026-11-25T09:32:00+08:00",
        "2026-11-25T09:33:00+08:00",
    ]
    assert [r["dosage"].get("route", {}).get("coding", [{}])[0].get("code") for r in given] == [
        "IV",
        None,
    ]  # each RXA reads its own RXR


def test_an_administration_without_a_time_or_a_drug_is_not_charted() -> None:
    assert EMAR.apply(parse_for_mapping(ras(rxa("YP0101", start="")), "utf-8")).get("entry") in (
        None,
        [],
    )
    assert EMAR.apply(parse_for_mapping(ras(rxa("")), "utf-8")).get("entry") in (None, [])


_TEXT = st.lists(
    st.sampled_from(
        [
            *"09AZ .-^&~\\",
            "YP0101",
            "B01AC06",
            "阿司匹林",
            "mg",
            "单位",
            "\\F\\",
            "CP",
            "NA",
            "D",
            "999",
            "0",
            "1.5e3",
        ]
    ),
    max_size=6,
).map("".join)
_TIME = st.sampled_from(["", "2026", "20261125", "202611250820", "20261125082000+0800", "2026x"])


@settings(max_examples=80, deadline=None)
@given(fields=st.tuples(_TEXT, _TEXT, _TEXT, _TEXT, _TEXT, _TEXT), time=_TIME)
@example(fields=("0", "", "", "^", "", ""), time="2026")  # RXA-20 "^": once no status at all
def test_arbitrary_content_gives_valid_fhir_or_an_error_naming_the_field(
    fields: tuple[str, ...], time: str
) -> None:
    drug, amount, units, status, action, route = fields
    raw = ras(
        rxa(drug, amount, units, status, action, start=time)
        + f"\rRXR|{route}|{route}\rNTE|1||{drug}",
        orc=f"ORC|RE|{drug}",
    )
    try:
        first = EMAR.apply(parse_for_mapping(raw, "utf-8"))
    except MappingError as exc:
        assert exc.location and exc.location[:3] in ("RXA", "RXR", "ORC", "NTE", "PID", "PV1")
        return
    assert fhir_r4b(first) == []
    assert EMAR.apply(parse_for_mapping(raw, "utf-8")) == first  # ids are deterministic
