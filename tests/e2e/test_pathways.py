"""A chest pain case end to end through real channels: HIS ADT^A04, the ECG system's STEMI
ORU^R01 and the LIS troponin ORU^R01 over MLLP into `greenchannel serve`; the pathway
subscriber opens the case and its door, ECG and troponin nodes are found with plain FHIR search
(SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.net import free_port
from tests.net import mllp_exchange as send

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "mappings" / "tests" / "samples"
CATEGORY = "https://greenchannel.example.org/fhir/CodeSystem/observation-category|time-node"

pytestmark = pytest.mark.slow


def add_channel(server: Any, name: str, default_port: int) -> int:
    port = free_port()
    text = (ROOT / "channels" / f"{name}.yaml").read_text(encoding="utf-8")
    (server.channels_dir / f"{name}.yaml").write_text(
        text.replace(f"port: {default_port}", f"port: {port}\n  host: 127.0.0.1"), encoding="utf-8"
    )
    return port


def wait_for(client: httpx.Client, path: str, params: dict[str, str], count: int) -> list[Any]:
    deadline = time.monotonic() + 30
    found: list[Any] = []
    while time.monotonic() < deadline:
        bundle = client.get(path, params={**params, "_count": "100"}).json()
        found = [e["resource"] for e in bundle.get("entry", [])]
        if len(found) >= count:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{path} {params}: {len(found)} of {count} after 30 s")


def read_when_there(client: httpx.Client, path: str) -> Any:
    """A resource the engine writes at start in the background (the pathway subscriber
    publishes its CodeSystems): 404 until then, 30 s at most."""
    deadline = time.monotonic() + 30
    while True:
        answer = client.get(path)
        if answer.status_code != 404 or time.monotonic() > deadline:
            assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text}"
            return answer.json()
        time.sleep(0.2)


def test_hl7v2_in_gives_a_chest_pain_case_with_door_ecg_and_troponin_nodes(
    server_factory: Any, tmp_path: Path, database_url: str
) -> None:
    server = server_factory(tmp_path, database_url)
    ecg_port = add_channel(server, "ecg-oru", 2578)
    lis_port = add_channel(server, "lis-oru", 2576)
    server.start()
    assert b"MSA|AA|MSG00001" in send(server.mllp_port, (SAMPLES / "adt-a04.hl7").read_bytes())
    assert b"MSA|AA" in send(ecg_port, (SAMPLES / "ecg-oru-stemi-utf8.hl7").read_bytes())
    assert b"MSA|AA" in send(lis_port, (SAMPLES / "lis-oru-troponin-utf8.hl7").read_bytes())
    with server.http() as client:
        system = read_when_there(client, "/fhir/CodeSystem/time-node")
        assert {c["code"] for c in system["concept"]} >= {"door", "troponin_draw", "wire_crossing"}
        (case,) = wait_for(client, "/fhir/EpisodeOfCare", {"status": "active"}, 1)
        assert case["type"][0]["coding"][0]["code"] == "chest-pain"
        assert case["period"]["start"] == "2026-11-25T08:03:00+08:00"  # the STEMI ECG (OBR-7)
        expected = {
            "door": "2026-11-25T08:28:00+08:00",  # ADT A04 PV1-44 (a proxy)
            "first_ecg": "2026-11-25T08:03:00+08:00",  # ECG OBR-7
            "ecg_diagnosis": "2026-11-25T08:12:00+08:00",  # ECG OBR-22
            "troponin_draw": "2026-11-25T08:10:00+08:00",  # LIS OBR-7 → Specimen collection
            "troponin_report": "2026-11-25T08:35:00+08:00",  # LIS OBR-22
        }
        params = {"case": f"EpisodeOfCare/{case['id']}", "category": CATEGORY,
                  "status": "final,amended"}  # fmt: skip
        nodes = wait_for(client, "/fhir/Observation", params, len(expected))
        assert {n["code"]["coding"][0]["code"]: n["valueDateTime"] for n in nodes} == expected
        timeline = client.get(f"/api/cases/{case['id']}/timeline").json()
        door = next(n for n in timeline["nodes"] if n["key"] == "door")
        assert door["flags"] == ["proxy"]
        assert [c["source"] for c in door["candidates"]] == ["hl7v2"]
    assert server.stop() == 0
