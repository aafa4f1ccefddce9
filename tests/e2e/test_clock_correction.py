"""Device clock corrections end to end (SQLite and PostgreSQL): ECG systems send STEMI ORU^R01
over MLLP to `greenchannel serve`. Once the clock monitor knows from their MSH-7 that the ECG
network's clock is 5 minutes fast, the stored ECG Observation and DiagnosticReport carry true
time (device time − ~300 s) with the correction recorded on the element, and the chest pain
case and its first-ECG and ECG-diagnosis time nodes are built from the corrected times. A
trusted sender 5 minutes fast and a sender 1 s fast (within tolerance) are stored as sent."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.mapping.functions import make_id
from tests.e2e.conftest import poll
from tests.net import mllp_exchange as send

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "mappings" / "tests" / "samples" / "ecg-oru-stemi-utf8.hl7"
CATEGORY = "https://greenchannel.example.org/fhir/CodeSystem/observation-category|time-node"
EXTENSION = "https://greenchannel.example.org/fhir/StructureDefinition/device-clock-correction"
CST = timezone(timedelta(hours=8))
FAST = "ECG"  # the ECG network, its clock 5 minutes fast
TRUSTED = "GPSCART"  # 5 minutes fast too, but configured as a reference clock
CLOSE = "ECGOK"  # 1 s fast: within the 2-s tolerance
SKEWS = {FAST: 300, TRUSTED: 300, CLOSE: 1}

pytestmark = pytest.mark.slow


def _hl7_time(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S%z")


def _oru(app: str, number: int, now: datetime, *, stemi: bool) -> tuple[bytes, datetime]:
    """The ECG system's STEMI report (or a normal one) stamped by `app`'s clock: sent now,
    recorded 12 minutes before and signed 3 minutes before, by that clock. Returns the message
    and its recording time as the device stamped it (whole seconds)."""
    device_now = (now + timedelta(seconds=SKEWS[app])).replace(microsecond=0)
    recorded = device_now - timedelta(minutes=12)
    signed = device_now - timedelta(minutes=3)
    order = f"{app}{number:04d}"
    lines = SAMPLE.read_bytes().decode("utf-8").split("\r")
    out = []
    for line in lines:
        fields = line.split("|")
        if fields[0] == "MSH":
            fields[2], fields[6], fields[9] = app, _hl7_time(device_now), f"M{order}"
        elif fields[0] == "PID":
            fields[3] = f"P{order}^^^COUNTY-HOSP^MR"
        elif fields[0] == "PV1":
            fields[19] = f"V{order}"
        elif fields[0] == "ORC":
            fields[2], fields[3] = f"R{order}", order
        elif fields[0] == "OBR":
            fields[2], fields[3] = f"R{order}", order
            fields[7], fields[22] = _hl7_time(recorded), _hl7_time(signed)
        elif fields[0] == "OBX" and len(fields) > 14 and fields[14]:
            fields[14] = _hl7_time(recorded)
        elif fields[0] == "OBX" and not stemi and fields[1] in ("4", "5"):
            continue  # no STEMI: no case
        out.append("|".join(fields))
    return "\r".join(out).encode("utf-8"), recorded


def _search(client: httpx.Client, kind: str, **params: str) -> list[dict[str, Any]]:
    bundle = client.get(f"/fhir/{kind}", params={**params, "_count": "100"}).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def _correction(element: dict[str, Any] | None) -> dict[str, Any] | None:
    if element is None:
        return None
    (extension,) = element["extension"]
    assert extension["url"] == EXTENSION
    return {
        p["url"]: next(v for k, v in p.items() if k.startswith("value"))
        for p in extension["extension"]
    }


def test_a_fast_ecg_clock_is_corrected_into_the_record_and_the_pathway(
    server_factory: Any, tmp_path: Path, database_url: str
) -> None:
    server = server_factory(tmp_path, database_url)
    base_env = server.env

    def env() -> dict[str, str]:
        return base_env() | {
            "GREENCHANNEL_CLOCKS__MIN_SAMPLES": "3",
            "GREENCHANNEL_CLOCKS__POLL_S": "0.2",
            "GREENCHANNEL_CLOCKS__TRUSTED": f'["ecg-oru:{TRUSTED}/COUNTY-HOSP"]',
        }

    server.env = env  # type: ignore[method-assign]
    port = server.add_channel("ecg-oru")
    server.start()
    with server.http() as client:
        # The senders' first messages teach the monitor their clocks (and are stored as sent:
        # a clock not known yet is never guessed at).
        for n in range(3):
            for app in SKEWS:
                message, _ = _oru(app, n, datetime.now(CST), stemi=False)
                assert b"MSA|AA" in send(port, message)
        for app in SKEWS:
            poll(
                lambda: client.get("/api/clocks").json()["sources"],
                lambda sources, app=app: any(
                    s["source"] == f"ecg-oru:{app}/COUNTY-HOSP" and s["status"] != "unknown"
                    for s in sources
                ),
                f"the clock of {app}",
            )
        recorded = {}
        for app in SKEWS:
            message, recorded[app] = _oru(app, 9, datetime.now(CST), stemi=True)
            assert b"MSA|AA" in send(port, message)

        for app in SKEWS:
            patient = f"Patient/{make_id('COUNTY-HOSP', f'P{app}0009')}"
            (report,) = poll(
                lambda patient=patient: _search(client, "DiagnosticReport", subject=patient),
                bool,
                f"{app}'s ECG report",
            )
            (tracing,) = _search(client, "Observation", subject=patient, code="11524-6")
            device = recorded[app]
            correction = _correction(report.get("_effectiveDateTime"))
            if app == FAST:
                assert correction is not None
                offset = correction["offset"]["value"]
                assert offset in (299.0, 300.0)  # MSH-7 has whole seconds
                assert correction["deviceTime"] == device.isoformat()
                assert correction["source"] == f"ecg-oru:{FAST}/COUNTY-HOSP"
                true_time = device - timedelta(seconds=offset)
            else:
                assert correction is None and "_effectiveDateTime" not in tracing
                true_time = device
            signed = true_time + timedelta(minutes=9)
            assert datetime.fromisoformat(report["effectiveDateTime"]) == true_time
            assert datetime.fromisoformat(tracing["effectiveDateTime"]) == true_time
            assert datetime.fromisoformat(report["issued"]) == signed
            assert (_correction(tracing.get("_effectiveDateTime")) or {}).get("deviceTime") == (
                device.isoformat() if app == FAST else None
            )

            # The pathway reads what the store holds: the case and its nodes in true time.
            (case,) = poll(
                lambda patient=patient: _search(client, "EpisodeOfCare", patient=patient),
                bool,
                f"{app}'s chest pain case",
            )
            assert datetime.fromisoformat(case["period"]["start"]) == true_time
            nodes = poll(
                lambda case=case: _search(
                    client, "Observation", case=f"EpisodeOfCare/{case['id']}",
                    category=CATEGORY, status="final,amended",
                ),
                lambda found: {"first_ecg", "ecg_diagnosis"}
                <= {n["code"]["coding"][0]["code"] for n in found},
                f"{app}'s time nodes",
            )  # fmt: skip
            times = {
                n["code"]["coding"][0]["code"]: datetime.fromisoformat(n["valueDateTime"])
                for n in nodes
            }
            assert times["first_ecg"] == true_time, app
            assert times["ecg_diagnosis"] == signed, app
    assert server.stop() == 0
