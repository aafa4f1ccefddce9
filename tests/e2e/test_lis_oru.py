"""The shipped lis-oru channel end to end: a GB 18030 troponin result over MLLP becomes searchable
Observation, DiagnosticReport and Specimen with their own times, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.net import mllp_exchange as send

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "mappings" / "tests" / "samples" / "lis-oru-troponin-gb18030.hl7"

pytestmark = pytest.mark.slow


def search(client: httpx.Client, kind: str, **params: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        bundle = client.get(f"/fhir/{kind}", params=params).json()
        if bundle.get("entry"):
            return [entry["resource"] for entry in bundle["entry"]]
        time.sleep(0.1)
    raise AssertionError(f"no {kind} matching {params} after 30 s")


def test_a_gb18030_troponin_result_is_stored_with_its_times(
    server_factory, tmp_path: Path, database_url: str
) -> None:
    server = server_factory(tmp_path, database_url)
    lis_port = server.add_channel("lis-oru")
    server.start()
    ack = send(lis_port, SAMPLE.read_bytes())
    assert b"MSA|AA|LIS20261125001" in ack
    with server.http() as client:
        (troponin,) = search(client, "Observation", code="http://loinc.org|89579-7")
        assert troponin["valueQuantity"]["value"] == 52.3
        assert troponin["code"]["coding"][1]["display"] == "高敏肌钙蛋白I"  # decoded from GB 18030
        assert troponin["effectiveDateTime"] == "2026-11-25T08:20:00+08:00"  # OBX-14
        (report,) = search(client, "DiagnosticReport", identifier="LAB0001")
        assert report["issued"] == "2026-11-25T08:35:00+08:00"  # OBR-22
        assert {"reference": f"Observation/{troponin['id']}"} in report["result"]
        specimen = client.get(f"/fhir/{troponin['specimen']['reference']}").json()
        assert specimen["collection"]["collectedDateTime"] == "2026-11-25T08:10:00+08:00"  # OBR-7
