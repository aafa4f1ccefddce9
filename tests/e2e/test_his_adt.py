"""The shipped his-adt channel end to end: an admission (GB 18030), a transfer, a discharge and a
merge over MLLP leave the FHIR store with the visit's history and the retired duplicate linked to
the surviving Patient, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.net import mllp_exchange as send

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "mappings" / "tests" / "samples"

pytestmark = pytest.mark.slow


def wait_for(
    client: httpx.Client, kind: str, params: dict[str, str], ready: Callable[[Any], bool]
) -> dict[str, Any]:
    """The one resource the search finds, once `ready` holds for it (the channel is async)."""
    deadline = time.monotonic() + 30
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        bundle = client.get(f"/fhir/{kind}", params=params).json()
        found = [entry["resource"] for entry in bundle.get("entry", [])]
        if len(found) == 1 and ready(found[0]):
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"{kind} {params} not as expected after 30 s: {found}")


def segment(sample: str, name: str, encoding: str = "utf-8") -> list[str]:
    """The fields of the first `name` segment of a sample, read independently of the engine."""
    text = (SAMPLES / sample).read_bytes().decode(encoding)
    return next(s for s in text.split("\r") if s.startswith(name + "|")).split("|")


def test_admit_transfer_discharge_and_merge_leave_the_visit_and_the_link(
    server_factory, tmp_path: Path, database_url: str
) -> None:
    server = server_factory(tmp_path, database_url)
    server.start()
    for sample in ("adt-a01-gb18030", "adt-a02-transfer", "adt-a03-discharge", "adt-a40-merge"):
        raw = (SAMPLES / f"{sample}.hl7").read_bytes()
        control_id = segment(f"{sample}.hl7", "MSH", "latin-1")[9]  # ASCII either way
        assert b"MSA|AA|" + control_id.encode() in send(server.mllp_port, raw), sample

    pid = segment("adt-a01-gb18030.hl7", "PID", "gb18030")
    national_id = pid[3].split("~")[1].split("^")[0]
    visit = segment("adt-a03-discharge.hl7", "PV1")[19]
    discharged = segment("adt-a03-discharge.hl7", "PV1")[45]
    retired = segment("adt-a40-merge.hl7", "MRG")[1].split("^")[0]
    with server.http() as client:
        # the discharge finished the visit: status, end time (PV1-45) and disposition
        # ... and the chest pain pathway (the admission's I21.0 opens a case) linked it to its case
        encounter = wait_for(
            client,
            "Encounter",
            {"identifier": visit},
            lambda e: e["status"] == "finished" and "episodeOfCare" in e,
        )
        end = encounter["period"]["end"]
        assert end.replace("-", "").replace("T", "").replace(":", "")[:12] == discharged[:12]
        assert end.endswith("+08:00")
        assert encounter["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "home"
        # the transfer is in the visit's history: the version it wrote has both wards
        history = client.get(f"/fhir/Encounter/{encounter['id']}/_history").json()
        versions = [entry["resource"] for entry in history["entry"]]
        # admitted, transferred, discharged, and (whenever the pathway got to it) linked to the
        # case: the HIS's versions kept the link, the pathway's version changed nothing else
        his_content = [
            {k: v for k, v in version.items() if k not in ("meta", "episodeOfCare")}
            for version in reversed(versions)
        ]
        assert len(versions) == 4
        assert sum(a == b for a, b in zip(his_content, his_content[1:], strict=False)) == 1
        linked = [i for i, version in enumerate(reversed(versions)) if "episodeOfCare" in version]
        assert linked == list(range(linked[0], 4))
        transferred = next(v for v in versions if v["status"] == "in-progress" and
                           len(v.get("location", [])) == 2)  # fmt: skip
        assert [loc["status"] for loc in transferred["location"]] == ["completed", "active"]
        assert [loc["location"]["display"] for loc in transferred["location"]] == [
            "心内科监护室",  # decoded from the GB 18030 admission's ward, same Location id
            "心血管内科病区",
        ]
        # the discharge (whose PV1 names only the last ward) keeps the whole ward history
        assert [(loc["location"]["display"], loc["status"]) for loc in encounter["location"]] == [
            ("心内科监护室", "completed"),
            ("心血管内科病区", "completed"),
        ]
        assert encounter["location"][1]["period"]["end"] == end
        # the diagnosis the admission sent is searchable by the patient
        patient = wait_for(
            client, "Patient", {"identifier": f"urn:oid:2.16.156.10011.1.3|{national_id}"},
            lambda p: "link" in p,
        )  # fmt: skip
        assert patient["name"][0]["text"] == "王建国" and patient["active"] is True
        conditions = client.get("/fhir/Condition", params={"subject": f"Patient/{patient['id']}"})
        assert {"I21.0", "I10"} <= {
            e["resource"]["code"]["coding"][0]["code"] for e in conditions.json()["entry"]
        }
        # the merge: the duplicate is retired and both sides of the link are stored
        old = wait_for(client, "Patient", {"identifier": retired}, lambda p: True)
        assert old["active"] is False
        assert old["link"] == [
            {"other": {"reference": f"Patient/{patient['id']}"}, "type": "replaced-by"}
        ]
        assert patient["link"] == [
            {"other": {"reference": f"Patient/{old['id']}"}, "type": "replaces"}
        ]


def test_a_batch_over_mllp_is_acked_per_message_and_every_message_is_applied(
    server_factory, tmp_path: Path, database_url: str
) -> None:
    server = server_factory(tmp_path, database_url)
    server.start()
    messages = [
        (SAMPLES / "adt-a04.hl7").read_bytes(),
        (SAMPLES / "adt-a02-transfer.hl7").read_bytes(),
    ]
    batch = (
        b"BHS|^~\\&|HIS|COUNTY-HOSP|GREENCHANNEL|ED|20261125110000+0800||||B-1\r"
        + b"".join(message if message.endswith(b"\r") else message + b"\r" for message in messages)
        + b"BTS|2\r"
    )
    reply = send(server.mllp_port, batch).strip(b"\x0b\x1c\r").split(b"\r")
    assert [segment[:3] for segment in reply] == [b"BHS", b"MSH", b"MSA", b"MSH", b"MSA", b"BTS"]
    controls = [segment.split(b"|")[9] for segment in (m.split(b"\r")[0] for m in messages)]
    assert [s.split(b"|")[1:3] for s in reply if s.startswith(b"MSA")] == [
        [b"AA", control] for control in controls
    ]
    with server.http() as client:
        for sample in ("adt-a04.hl7", "adt-a02-transfer.hl7"):
            visit = segment(sample, "PV1")[19]
            wait_for(client, "Encounter", {"identifier": visit}, lambda e: True)
