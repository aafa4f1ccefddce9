"""`greenchannel serve` mounts the score API through its entry point, behind the API token: a
score posted for a patient registered by HL7 ADT over MLLP is read back from `/fhir`."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.net import mllp_exchange

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "mappings" / "tests" / "samples" / "adt-a04.hl7"

pytestmark = pytest.mark.slow


def wait_for_patient(client: httpx.Client, identifier: str) -> str:
    """The patient's reference once the channel has written it (the ACK comes first)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        bundle = client.get("/fhir/Patient", params={"identifier": identifier}).json()
        if bundle.get("entry"):
            return f"Patient/{bundle['entry'][0]['resource']['id']}"
        time.sleep(0.1)
    raise AssertionError(f"no Patient with identifier {identifier} after 30 s")


def test_score_for_a_patient_from_his_is_stored_behind_the_token(
    server_factory, tmp_path: Path
) -> None:
    server = server_factory(tmp_path, None)
    server.start()
    ack = mllp_exchange(server.mllp_port, SAMPLE.read_bytes().replace(b"\n", b"\r"))
    assert b"MSA|AA" in ack
    body = {"input": {"eye": 3, "verbal": "T", "motor": 5}, "phase": "admission",
            "effective": "2026-11-25T08:41:07+08:00"}  # fmt: skip

    anonymous = httpx.post(f"{server.url}/api/scores/GCS", json=body, timeout=30)
    assert anonymous.status_code == 401

    with server.http() as client:
        patient = wait_for_patient(client, "10086")
        response = client.post("/api/scores/GCS", json={**body, "patient": patient})
        assert response.status_code == 201, response.text
        assert response.json()["result"]["display"] == "E3VTM5"
        found = client.get(
            "/fhir/Observation", params={"subject": patient, "code": "http://loinc.org|9269-2"}
        ).json()
        (entry,) = found["entry"]
        observation = entry["resource"]
        assert observation["effectiveDateTime"] == "2026-11-25T08:41:07+08:00"
        assert observation["dataAbsentReason"]["coding"][0]["code"] == "not-applicable"
        assert [c["code"]["coding"][0]["code"] for c in observation["component"]] == [
            "9267-6", "9270-0", "9268-4"
        ]  # fmt: skip
        listed = client.get("/api/scores").json()
        assert len(listed) == 18
