"""The ECG channels end to end on one `greenchannel serve` (SQLite) shared by the module: the
Philips acute MI uploaded over HTTP is stored as tracing + reading + DiagnosticReport, alerts
the websocket clients and opens a chest pain case with its first ECG; the LVH look-alike does
neither; a broken recording is answered 422 and journalled; the same recording base64 in an ORU
over MLLP and dropped in the folder ends the same way (real data: ../shared/data/ecg)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from devices.ecg import read_ecg
from engine.mapping.functions import make_id
from tests.e2e.conftest import ROOT, Server
from tests.net import mllp_exchange

pytestmark = pytest.mark.slow

SIERRA = ROOT.parent / "shared" / "data" / "ecg" / "sierra"
ACUTE_MI = SIERRA / "129DYPRG.XML"
LVH = SIERRA / "3191723_ZZDEMOPTONLY_1-04_orig.xml"
CATEGORY = "https://greenchannel.example.org/fhir/CodeSystem/observation-category|time-node"


class EcgServer:
    def __init__(self, server: Server, upload_port: int, oru_port: int) -> None:
        self.server = server
        self.upload_url = f"http://127.0.0.1:{upload_port}/ecg"
        self.oru_port = oru_port
        self.client = server.http()

    def upload(self, content: bytes) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.server.token()}"}
        return httpx.post(self.upload_url, content=content, headers=headers, timeout=30)

    def search(self, kind: str, **params: str) -> list[dict[str, Any]]:
        bundle = self.client.get(f"/fhir/{kind}", params={**params, "_count": "100"}).json()
        return [e["resource"] for e in bundle.get("entry", [])]


@pytest.fixture(scope="module")
def ecg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EcgServer]:
    server = Server(tmp_path_factory.mktemp("ecg"), None)
    upload_port = server.add_channel("ecg-upload")
    oru_port = server.add_channel("ecg-waveform-oru")
    for name in ("ecg-files", "ecg-alerts", "pathway-alerts"):
        text = (ROOT / "channels" / f"{name}.yaml").read_text(encoding="utf-8")
        (server.channels_dir / f"{name}.yaml").write_text(text, encoding="utf-8")
    (server.data_dir / "ecg" / "inbox").mkdir(parents=True)  # the drop folder ops create
    try:
        server.start()  # inside: a start that times out must not leave the process running
        running = EcgServer(server, upload_port, oru_port)
        with running.client:
            yield running
    finally:
        server.stop()


def wait_for(find: Callable[[], Any], what: str, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what}: not there after {timeout_s} s")


def patient_of(path: Path) -> str:
    """The Patient id adt.yaml gives the HIS registration of the id typed on the monitor."""
    return f"Patient/{make_id('COUNTY-HOSP', read_ecg(path).patient.id)}"


def test_an_uploaded_stemi_is_stored_alerted_and_opens_a_chest_pain_case(ecg: EcgServer) -> None:
    patient = patient_of(ACUTE_MI)
    url = ecg.server.url.replace("http", "ws") + "/api/alerts/websocket"
    auth = {"Authorization": f"Bearer {ecg.server.token()}"}
    with connect(url, additional_headers=auth, open_timeout=10) as socket:
        answer = ecg.upload(ACUTE_MI.read_bytes())
        assert answer.status_code == 202, answer.text
        alert = json.loads(socket.recv(timeout=30))
    assert alert["kind"] == "ecg-alert" and alert["event"] == "stemi"
    assert alert["patient"]["reference"] == patient
    assert alert["territory"] == ["inferior"] and alert["leads"] == ["II", "III", "aVF"]
    assert alert["acquired_at"] == "2011-12-01T07:27:34+08:00"

    (report,) = ecg.search("DiagnosticReport", subject=patient)
    assert alert["report"] == f"DiagnosticReport/{report['id']}"
    assert "STEMI criteria met" in report["conclusion"]
    tracing = ecg.client.get(f"/fhir/{report['result'][0]['reference']}").json()
    assert len(tracing["component"]) == 12
    assert len(tracing["component"][6]["valueSampledData"]["data"].split()) == 5000  # V1

    cases = wait_for(lambda: ecg.search("EpisodeOfCare", patient=patient), "chest pain case")
    (case,) = cases
    assert case["type"][0]["coding"][0]["code"] == "chest-pain"
    assert case["period"]["start"] == "2011-12-01T07:27:34+08:00"  # the STEMI ECG
    nodes = wait_for(
        lambda: ecg.search(
            "Observation",
            case=f"EpisodeOfCare/{case['id']}",
            category=CATEGORY,
            status="final,amended",
        ),
        "time nodes",
    )
    first_ecg = [n for n in nodes if n["code"]["coding"][0]["code"] == "first_ecg"]
    assert [n["valueDateTime"] for n in first_ecg] == ["2011-12-01T07:27:34+08:00"]
    timeline = ecg.client.get(f"/api/cases/{case['id']}/timeline").json()
    node = next(n for n in timeline["nodes"] if n["key"] == "first_ecg")
    assert [c["source"] for c in node["candidates"]] == ["device"]  # the monitor's clock
    # a resend is acknowledged again and applied once: still one report, one alert
    assert ecg.upload(ACUTE_MI.read_bytes()).status_code in (200, 202)
    time.sleep(1)
    assert len(ecg.search("DiagnosticReport", subject=patient)) == 1
    alerts = ecg.client.get("/api/messages", params={"channel": "ecg-alerts"}).json()["messages"]
    assert [m["correlation_id"] for m in alerts].count(alert["alert"]) == 1


def test_the_lvh_look_alike_is_stored_without_alert_or_case(ecg: EcgServer) -> None:
    patient = patient_of(LVH)
    assert ecg.upload(LVH.read_bytes()).status_code == 202
    (report,) = wait_for(lambda: ecg.search("DiagnosticReport", subject=patient), "LVH report")
    assert "STEMI criteria not met" in report["conclusion"]
    time.sleep(1)  # what an alert would have needed, and more
    alerts = ecg.client.get("/api/messages", params={"channel": "ecg-alerts"}).json()["messages"]
    assert f"ecg-stemi/{report['id']}" not in [m["correlation_id"] for m in alerts]
    assert ecg.search("EpisodeOfCare", patient=patient) == []


def test_a_broken_recording_is_answered_422_and_journalled(ecg: EcgServer) -> None:
    broken = ACUTE_MI.read_bytes()[:40_000]  # cut in the middle of the waveform
    answer = ecg.upload(broken)
    assert answer.status_code == 422
    problem = answer.json()
    assert "not well-formed XML" in problem["detail"] and "journalled" in problem["detail"]
    message = ecg.client.get(f"/api/messages/{problem['message_id']}").json()
    assert message["status"] == "error" and message["channel"] == "ecg-upload"
    assert message["size_bytes"] == len(broken)  # kept whole, for reprocessing
    hostile = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    )
    answer = ecg.upload(hostile)
    assert answer.status_code == 422 and "DTD or entities" in answer.json()["detail"]


def test_an_oru_carrying_the_tracing_is_analysed_and_a_bare_one_refused(ecg: EcgServer) -> None:
    head = (
        "MSH|^~\\&|ECGNET|COUNTY-HOSP|GREENCHANNEL|ED|20261125080500+0800||ORU^R01^ORU_R01|"
        "ECGW{n}|P|2.5.1|||||CHN|UNICODE UTF-8\rPID|1||20099^^^COUNTY-HOSP^MR\r"
        "OBR|1|REQ-9|ECG-9{n}|11524-6^ECG^LN|||20261125080300+0800\r"
    )
    data = base64.b64encode(ACUTE_MI.read_bytes()).decode()
    with_tracing = head.format(n=1) + f"OBX|1|ED|11524-6^ECG^LN||^application^xml^Base64^{data}\r"
    assert b"MSA|AA" in mllp_exchange(ecg.oru_port, with_tracing.encode())
    patient = f"Patient/{make_id('COUNTY-HOSP', '20099')}"
    (report,) = wait_for(lambda: ecg.search("DiagnosticReport", subject=patient), "ORU report")
    assert report["identifier"][0]["value"] == "ECG-91"
    bare = head.format(n=2) + "OBX|1|TX|18844-1^ECG impression^LN||sinus rhythm\r"
    reply = mllp_exchange(ecg.oru_port, bare.encode())
    assert b"MSA|AR" in reply and b"OBX-5" in reply


def test_a_dropped_file_is_read_from_the_folder(ecg: EcgServer) -> None:
    normal = SIERRA / "2020-5-18_15-48-11.xml"  # Philips PageWriter TC, "otherwise normal"
    inbox = ecg.server.data_dir / "ecg" / "inbox"
    (inbox / ".normal.xml").write_bytes(normal.read_bytes())  # a dot name, then renamed
    (inbox / ".normal.xml").rename(inbox / "normal.xml")
    patient = patient_of(normal)
    (report,) = wait_for(lambda: ecg.search("DiagnosticReport", subject=patient), "dropped file")
    assert report["status"] == "preliminary" and "not met" in report["conclusion"]


def test_a_broken_dropped_file_goes_to_error_and_is_journalled_as_such(ecg: EcgServer) -> None:
    inbox = ecg.server.data_dir / "ecg" / "inbox"
    broken = ACUTE_MI.read_bytes()[:40_000]  # cut in the middle of the waveform
    (inbox / ".cut.xml").write_bytes(broken)
    (inbox / ".cut.xml").rename(inbox / "cut.xml")
    moved = wait_for(lambda: (inbox / "error" / "cut.xml").exists() or None, "error folder")
    assert moved and not (inbox / "processed" / "cut.xml").exists()
    (message,) = wait_for(
        lambda: ecg.client.get(
            "/api/messages", params={"channel": "ecg-files", "status": "error"}
        ).json()["messages"],
        "journalled error",
    )
    assert "not well-formed XML" in message["error"]
    assert message["size_bytes"] == len(broken)  # kept whole, for reprocessing
