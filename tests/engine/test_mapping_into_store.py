"""The standard mappings' Bundles, written in arrival order into the real FHIR store (SQLite and
PostgreSQL): every one is accepted, and replays and status changes converge on the same resources.

The engine knows no FHIR store (DESIGN.md); this test joins the two the way a channel's FHIR
destination does, so a mapping that writes something the store refuses fails here, not in a ward.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.hl7v2 import parse_for_mapping
from engine.mapping import load_mapping, make_id
from fhir_store import FhirStore, migrate
from fhir_store.app import create_database

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
HL7V2 = ROOT / "mappings" / "hl7v2"
SAMPLES = ROOT / "mappings" / "tests" / "samples"

# (mapping, sample) in the order a morning's chest pain case would send them
ARRIVALS = [
    ("adt.yaml", "adt-a04.hl7"),
    ("orders.yaml", "orders-omg-ecg-utf8.hl7"),
    ("oru_ecg.yaml", "ecg-oru-stemi-utf8.hl7"),
    ("oru_ecg.yaml", "ecg-oru-stemi-gb18030.hl7"),  # the same report again, in GB 18030
    ("orders.yaml", "orders-oml-lab-gb18030.hl7"),
    ("oru_monitor.yaml", "monitor-pcd01-utf8.hl7"),
    ("orders.yaml", "orders-omi-ct-utf8.hl7"),
    ("oru_imaging.yaml", "ris-oru-stroke-ct-utf8.hl7"),
    ("orders.yaml", "orders-orm-cancel-utf8.hl7"),
    ("mdm.yaml", "emr-mdm-rescue-gb18030.hl7"),
    ("siu.yaml", "cathlab-siu-s12-utf8.hl7"),
    ("siu.yaml", "cathlab-siu-s15-utf8.hl7"),
    ("emar.yaml", "emar-ras-chest-pain-utf8.hl7"),
    ("emar.yaml", "emar-ras-stroke-gb18030.hl7"),
    ("emar.yaml", "emar-ras-stroke-gb18030.hl7"),  # the nursing system resends
    ("vxu.yaml", "vxu-tetanus-utf8.hl7"),
    ("vxu.yaml", "vxu-tetanus-utf8.hl7"),
]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[FhirStore]:
    database = create_database(database_url)
    await migrate(database)
    # as the engine's FHIR destination writes: messages arrive in any order (check_references)
    fhir = FhirStore(database, check_references=False)
    try:
        yield fhir
    finally:
        await fhir.aclose()
        await database.dispose()


def _bundle(mapping: str, sample: str) -> dict[str, Any]:
    bundle = load_mapping(HL7V2 / mapping).apply(
        parse_for_mapping((SAMPLES / sample).read_bytes(), "utf-8")
    )
    assert isinstance(bundle, dict) and bundle["entry"], sample
    return bundle


async def test_a_days_messages_are_accepted_and_converge(store: FhirStore) -> None:
    written: dict[str, set[str]] = {}
    for mapping, sample in ARRIVALS:
        bundle = _bundle(mapping, sample)
        response = await store.transaction(bundle)
        statuses = [e["response"]["status"] for e in response["entry"]]
        assert all(s.startswith(("200", "201")) for s in statuses), (sample, statuses)
        for entry in bundle["entry"]:
            kind, _, resource_id = entry["request"]["url"].partition("/")
            written.setdefault(kind, set()).add(resource_id)

    # the GB 18030 resend of the ECG report landed on the same two resources, unchanged
    ecg = _resources(_bundle("oru_ecg.yaml", "ecg-oru-stemi-utf8.hl7"))
    imaging = _resources(_bundle("oru_imaging.yaml", "ris-oru-stroke-ct-utf8.hl7"))
    assert written["DiagnosticReport"] == {r["id"] for r in ecg + imaging if "conclusion" in r}
    for resource in ecg:
        stored = await store.read(resource["resourceType"], resource["id"])
        assert {k: v for k, v in stored.items() if k != "meta"} == resource

    # the CT order: created (NW at 09:01), then cancelled; the order time stays in version 1
    (ct_order,) = _resources(_bundle("orders.yaml", "orders-omi-ct-utf8.hl7"))
    current = await store.read("ServiceRequest", ct_order["id"])
    first = await store.vread("ServiceRequest", ct_order["id"], "1")
    assert current["status"] == "revoked" and "authoredOn" not in current
    assert first["status"] == "active" and first["authoredOn"] == "2026-11-25T09:01:00+08:00"

    # the six doses charted, the resent thrombolysis written once
    assert len(written["MedicationAdministration"]) == 6
    assert len(written["Immunization"]) == 1  # the tetanus vaccine, resent, is one

    # the cath-lab booking and its cancel are one Appointment
    (appointment_id,) = written["Appointment"]
    assert (await store.read("Appointment", appointment_id))["status"] == "cancelled"

    # 张三's results, orders and documents point at the Patient the ADT feed wrote; 李明 (the CT
    # patient, no ADT in this sequence) at the id the ADT feed will give him
    (patient_id,) = [r["id"] for r in _resources(_bundle("adt.yaml", "adt-a04.hl7"))
                     if r["resourceType"] == "Patient"]  # fmt: skip
    assert len(written["Patient"]) == 2  # 张三 (ADT) and 赵小龙 (the vaccine's VXU)
    li_ming = make_id("COUNTY-HOSP", "20010")
    subjects = set()
    for kind in ("Observation", "ServiceRequest", "DocumentReference"):
        for resource_id in written[kind]:
            subjects.add((await store.read(kind, resource_id))["subject"]["reference"])
    assert subjects == {f"Patient/{patient_id}", f"Patient/{li_ming}"}


def _resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"]]


async def test_a_chest_pain_case_opened_in_the_ed_continues_when_the_patient_is_admitted(
    store: FhirStore,
) -> None:
    registration = (SAMPLES / "adt-a04-chest-pain-utf8.hl7").read_bytes()
    # the ED visit MZ20261125001 becomes inpatient visit ZY20260099 (A06, MRG-5 the prior visit);
    # the HIS sends ZGC again (with the same green channel number, ZGC-2): the case must not split
    admission = (
        registration.replace(b"ADT^A04^ADT_A01|ADT-A04-CP-01", b"ADT^A06^ADT_A06|ADT-A06-CP-01")
        .replace(b"EVN|A04", b"EVN|A06")
        .replace(b"PV1|1|E|EICU^1^", b"PV1|1|I|CCU^3^")
        .replace(b"MZ20261125001", b"ZY20260099")
        + b"MRG|MZ0098766^^^COUNTY-HOSP^MZ||||MZ20261125001\r"
    )
    adt = load_mapping(HL7V2 / "adt.yaml")
    for raw in (registration, registration, admission):  # the registration is sent twice
        bundle = adt.apply(parse_for_mapping(raw, "utf-8"))
        response = await store.transaction(bundle)
        assert all(e["response"]["status"].startswith(("200", "201")) for e in response["entry"])

    episodes = await store.search_identifier("EpisodeOfCare", "XT2026112501")
    assert [e["type"][0]["coding"][0]["code"] for e in episodes] == ["chest-pain"]
    (episode,) = episodes  # resent, then admitted: still one case
    assert (
        episode["status"] == "active" and episode["period"]["start"] == "2026-11-25T08:10:00+08:00"
    )
    (ed_visit,) = await store.search_identifier("Encounter", "MZ20261125001")
    (ward_visit,) = await store.search_identifier("Encounter", "ZY20260099")
    for visit in (ed_visit, ward_visit):
        assert visit["episodeOfCare"] == [{"reference": f"EpisodeOfCare/{episode['id']}"}]
    assert ward_visit["partOf"]["identifier"]["value"] == "MZ20261125001"
    # the doctors' roles at the hospital converge: five roles of four doctors, written once each
    roles = await store.search_identifier("PractitionerRole", "urn:oid:2.16.156.10011.1.4|D0301")
    assert sorted(r["code"][0]["coding"][0]["code"] for r in roles) == ["ADM", "ATND"]
    (hospital,) = await store.search_identifier("Organization", "12420100MB0A12345X")
    patient = await store.read("Patient", ed_visit["subject"]["reference"].split("/")[1])
    assert patient["managingOrganization"]["reference"] == f"Organization/{hospital['id']}"
