"""The orders mapping (ORM^O01, OMG^O19, OML^O21, OMI^O23 → ServiceRequest): a new order, its
status changes and its cancel are versions of one resource; the order time is ORC-9 of the new
order only; any content maps to valid FHIR or fails naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from adapters.hl7v2 import parse_for_mapping
from engine.errors import GreenchannelError, MappingError
from engine.mapping import load_mapping
from fhir_store._validation import structure_issues

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "mappings" / "tests" / "samples"
ORDERS = load_mapping(ROOT / "mappings" / "hl7v2" / "orders.yaml")
ADT = load_mapping(ROOT / "mappings" / "hl7v2" / "adt.yaml")


def _orders(raw: bytes) -> list[dict[str, Any]]:
    bundle = ORDERS.apply(parse_for_mapping(raw, "utf-8"))
    assert isinstance(bundle, dict)
    return [e["resource"] for e in bundle.get("entry", [])]


def _sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def test_the_new_order_and_its_cancel_are_one_service_request() -> None:
    (new,) = _orders(_sample("orders-omi-ct-utf8.hl7"))
    (cancel,) = _orders(_sample("orders-orm-cancel-utf8.hl7"))
    assert new["id"] == cancel["id"]
    assert (new["status"], cancel["status"]) == ("active", "revoked")
    assert new["authoredOn"] == "2026-11-25T09:01:00+08:00"  # ORC-9 of the NW
    assert "authoredOn" not in cancel  # ORC-9 of a CA is the cancel time


@pytest.mark.parametrize(
    ("control", "status", "expected"),
    [("NW", "", "active"), ("SC", "IP", "active"), ("SC", "CM", "completed"), ("SC", "", "active"),
     ("CA", "", "revoked"), ("CA", "SC", "revoked"), ("DC", "", "revoked"), ("HD", "", "on-hold"),
     ("SC", "ER", "entered-in-error"), ("ZZ", "", "unknown"), ("", "", "unknown")],
)  # fmt: skip
def test_status_follows_order_control_and_order_status(
    control: str, status: str, expected: str
) -> None:
    sent = f"ORC|{control}|REQ-CT-0001^HIS||GRP-0001|{status}|".encode()
    raw = _sample("orders-omi-ct-utf8.hl7").replace(b"ORC|NW|REQ-CT-0001^HIS||GRP-0001|SC|", sent)
    assert raw != _sample("orders-omi-ct-utf8.hl7") or (control, status) == ("NW", "SC")
    (order,) = _orders(raw)
    assert order["status"] == expected
    assert ("authoredOn" in order) == (control in ("NW", ""))


def test_each_orc_is_its_own_order_with_its_own_time_and_notes() -> None:
    raw = _sample("orders-oml-lab-gb18030.hl7")
    segments = raw.decode("gb18030").split("\r")
    orcs = [s.split("|") for s in segments if s.startswith("ORC|")]
    orders = _orders(raw)
    assert [o["identifier"][0]["value"] for o in orders] == [f[2].split("^")[0] for f in orcs]
    times = [f[9] for f in orcs]
    assert [o["authoredOn"] for o in orders] == [
        f"{t[:4]}-{t[4:6]}-{t[6:8]}T{t[8:10]}:{t[10:12]}:{t[12:14]}+08:00" for t in times
    ]
    assert "note" not in orders[0] and orders[1]["note"] == [{"text": "胸痛待查"}]


def test_orders_reference_the_patient_and_visit_the_adt_feed_writes() -> None:
    adt = ADT.apply(parse_for_mapping(_sample("adt-a04.hl7"), "utf-8"))
    assert isinstance(adt, dict)
    ids = {e["resource"]["resourceType"]: e["resource"]["id"] for e in adt["entry"]}
    for order in _orders(_sample("orders-oml-lab-gb18030.hl7")):
        assert order["subject"] == {"reference": f"Patient/{ids['Patient']}"}
        assert order["encounter"] == {"reference": f"Encounter/{ids['Encounter']}"}


def test_an_order_without_any_order_number_is_left_out() -> None:
    raw = _sample("orders-omg-ecg-utf8.hl7").replace(b"REQ-ECG-0001^EMR", b"")
    assert _orders(raw) == []


_TEXT = st.lists(
    st.sampled_from([*"09.<>=-+ ^&~\\", "急", "S", "R", "血常规", "\\F\\", "CT", "NW", "CA"]),
    max_size=10,
).map("".join)
_TIME = st.sampled_from(["", "2026", "20261125", "202611250820", "20261125082000+0800", "2026-11"])


@settings(max_examples=80, deadline=None)
@given(
    message=st.sampled_from(["ORM^O01", "OMG^O19", "OML^O21", "OMI^O23"]),
    control=st.sampled_from(["NW", "CA", "SC", "XO", "", "??"]), status=_TEXT, placer=_TEXT,
    times=st.tuples(_TIME, _TIME), priority=_TEXT, code=_TEXT, doctor=_TEXT, section=_TEXT,
)  # fmt: skip
def test_any_order_content_maps_to_valid_fhir_or_names_the_field(
    message: str, control: str, status: str, placer: str, times: tuple[str, str],
    priority: str, code: str, doctor: str, section: str,
) -> None:  # fmt: skip
    ordered, wanted = times
    raw = (
        f"MSH|^~\\&|HIS|H|GC|H|20261125084100+0800||{message}|X|P|2.5.1\r"
        "PID|1||10086^^^H^MR||张^三\rPV1|1|E||||||||||||||||||V1\r"
        f"ORC|{control}|{placer}|F1||{status}||^^^^^{priority}||{ordered}|||{doctor}\r"
        f"TQ1|1||||||{wanted}||{priority}\r"
        f"OBR|1|{placer}|F1|{code}^项目^L||{wanted}|||||||||||||||||{section}\rNTE|1||{code}\r"
    ).encode()
    try:
        document = parse_for_mapping(raw, "utf-8")
    except GreenchannelError:
        event("unreadable message")
        return
    try:
        bundle = ORDERS.apply(document)
    except MappingError as exc:
        event("refused naming the field")
        assert exc.location and exc.location.split(" ")[0][:3] in {"ORC", "OBR", "TQ1"}, str(exc)
        assert exc.rule.startswith("resources.orders"), str(exc)
        return
    event("mapped")
    assert isinstance(bundle, dict)
    for entry in bundle.get("entry", []):
        assert structure_issues(entry["resource"]) == [], entry["resource"]
