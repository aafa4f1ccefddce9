"""The shipped emar-ras channel end to end, beside his-adt: a chest pain registration and the ED
nurse's RAS^O17 over MLLP become a case and drug administrations the pathways can search by drug
class, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_lis_oru import search
from tests.net import mllp_exchange as send

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "mappings" / "tests" / "samples"
DRUG_CLASS = "https://greenchannel.example.org/fhir/CodeSystem/drug-class"
CENTER = "https://greenchannel.example.org/fhir/CodeSystem/center"

pytestmark = pytest.mark.slow


def test_loading_doses_charted_in_the_ed_are_searchable_by_drug_class(
    server_factory, tmp_path: Path, database_url: str
) -> None:
    server = server_factory(tmp_path, database_url)
    emar_port = server.add_channel("emar-ras")
    server.start()
    assert b"MSA|AA|ADT-A04-CP-01" in send(
        server.mllp_port, (SAMPLES / "adt-a04-chest-pain-utf8.hl7").read_bytes()
    )
    ack = send(emar_port, (SAMPLES / "emar-ras-chest-pain-utf8.hl7").read_bytes())
    assert b"MSA|AA|RAS-20261125-0001" in ack
    with server.http() as client:
        (episode,) = search(client, "EpisodeOfCare", type=f"{CENTER}|chest-pain")
        (aspirin,) = search(client, "MedicationAdministration", code=f"{DRUG_CLASS}|aspirin")
        assert aspirin["effectiveDateTime"] == "2026-11-25T08:20:00+08:00"  # RXA-3
        assert aspirin["subject"]["reference"] == episode["patient"]["reference"]
        visit = client.get(f"/fhir/{aspirin['context']['reference']}").json()
        assert visit["episodeOfCare"] == [{"reference": f"EpisodeOfCare/{episode['id']}"}]
        p2y12 = search(
            client,
            "MedicationAdministration",
            code=f"{DRUG_CLASS}|clopidogrel,{DRUG_CLASS}|ticagrelor",
        )
        given = {d["medicationCodeableConcept"]["text"]: d["status"] for d in p2y12}
        assert given == {"替格瑞洛片 90mg": "completed", "硫酸氢氯吡格雷片 75mg": "not-done"}
