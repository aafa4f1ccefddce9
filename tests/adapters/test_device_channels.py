"""The shipped POCT1-A2 and ASTM channels end to end, on SQLite and PostgreSQL: a simulated
analyser talks to `greenchannel serve`, and its results are FHIR Observations in the store
(LOINC, UCUM, sample and result time, the patient's adt.yaml id, the analyser Device); replays
converge; garbage is a journal row in ERROR; a POCT troponin is the chest pain troponin nodes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from engine import journal
from engine.mapping import make_id
from engine.server import Engine
from engine.testing import running_engine, settings_for_tests, wait_until
from pathways.capture import captures_in
from pathways.definitions import load_pathways
from tests.devices.analysers import (
    AstmAnalyser,
    PoctDevice,
    astm_results,
    poct_observations,
)
from tests.net import free_port

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-admin-token-for-devices"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CST = timezone(timedelta(hours=8))
PATIENT = f"Patient/{make_id('COUNTY-HOSP', '10086')}"  # what adt.yaml calls MRN 10086


@dataclass
class Site:
    engine: Engine
    ports: dict[str, int]

    async def search(self, query: str) -> list[dict[str, Any]]:
        base = f"http://127.0.0.1:{self.engine.http_port}"
        async with httpx.AsyncClient(base_url=base, headers=AUTH) as client:
            response = await client.get(f"/fhir/{query}")
        assert response.status_code == 200, response.text
        return [e["resource"] for e in response.json().get("entry", [])]

    async def rows(self, channel: str) -> list[journal.MessageSummary]:
        async with AsyncSession(self.engine.database) as session:
            return await journal.list_messages(session, channel=channel)

    async def processed(self, channel: str, count: int) -> None:
        async def done() -> bool:
            rows = await self.rows(channel)
            return len(rows) >= count and all(r.status in ("sent", "error") for r in rows)

        await wait_until(done)


def _shipped(name: str, port: int) -> str:
    text = (ROOT / "channels" / f"{name}.yaml").read_text(encoding="utf-8")
    return re.sub(r"port: \d+", f"port: {port}", text, count=1)


@pytest.fixture
async def site(database_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    ports = {"poct-poct1a": free_port(), "poct-astm": free_port()}
    settings = settings_for_tests(
        tmp_path,
        database_url,
        channels={name: _shipped(name, port) for name, port in ports.items()},
        admin_token=TOKEN,
    ).model_copy(update={"mappings_dir": ROOT / "mappings"})
    async with running_engine(settings, start_timeout_s=180) as engine:  # a loaded CI box
        yield Site(engine, ports)


async def test_a_poct_troponin_is_an_observation_and_the_chest_pain_troponin_nodes(
    site: Site,
) -> None:
    observations = poct_observations(
        results=(("cTnI", "0.12", "ng/mL"), ("Glu", "7.8", "mmol/L")),
        observed="2026-11-26T08:21:00+08:00",
    )
    async with PoctDevice(site.ports["poct-poct1a"]) as device:
        await device.conversation(observations)
    await site.processed("poct-poct1a", 1)
    (row,) = await site.rows("poct-poct1a")
    assert row.status == "sent", row.error

    (troponin,) = await site.search("Observation?code=http://loinc.org|42757-5")
    assert troponin["subject"]["reference"] == PATIENT
    assert troponin["valueQuantity"] == {
        "value": 0.12,
        "unit": "ng/mL",
        "system": "http://unitsofmeasure.org",
        "code": "ng/mL",
    }
    assert troponin["effectiveDateTime"] == "2026-11-26T08:21:00+08:00"
    assert troponin["issued"] == "2026-11-26T08:21:00+08:00"
    (device,) = await site.search("Device?identifier=urn:greenchannel:device:analyser|ISTAT-0815")
    assert troponin["device"]["reference"] == f"Device/{device['id']}"
    (glucose,) = await site.search("Observation?code=http://loinc.org|15074-8")
    assert glucose["valueQuantity"]["code"] == "mmol/L"

    # the chest pain pathway reads it as the troponin draw and report (source: device)
    chest_pain = load_pathways(ROOT / "config" / "pathways").by_center["chest_pain"]

    async def read(reference: str) -> None:
        return None

    found = {c.capture.node: c for c in await captures_in(troponin, chest_pain, CST, read)}
    assert found["troponin_draw"].instant == datetime(2026, 11, 26, 8, 21, tzinfo=CST)
    assert found["troponin_draw"].capture.source == "device"
    assert found["troponin_report"].instant == datetime(2026, 11, 26, 8, 21, tzinfo=CST)


async def test_an_astm_message_with_a_bad_frame_lands_once_and_a_resend_converges(
    site: Site,
) -> None:
    message = astm_results()
    async with AstmAnalyser(site.ports["poct-astm"]) as analyser:
        await analyser.send_message(message, corrupt_frame=3)
        await analyser.send_message(message)  # the analyser resends the whole message
    await site.processed("poct-astm", 1)
    (row,) = await site.rows("poct-astm")  # the resend is acknowledged, not journalled again
    assert row.status == "sent", row.error
    (troponin,) = await site.search("Observation?code=http://loinc.org|89579-7")
    assert troponin["subject"]["reference"] == PATIENT
    assert troponin["valueQuantity"]["value"] == 52.3
    assert troponin["valueQuantity"]["code"] == "ng/L"
    assert troponin["effectiveDateTime"] == "2026-11-26T08:10:00+08:00"  # O-8, the sample
    assert troponin["issued"] == "2026-11-26T08:23:00+08:00"  # R-13, the result
    assert troponin["interpretation"][0]["coding"][0]["code"] == "H"
    assert troponin["meta"]["versionId"] == "1"  # the resend changed nothing


async def test_garbage_on_both_sockets_is_an_error_row_with_the_raw_bytes_kept(
    site: Site,
) -> None:
    async with AstmAnalyser(site.ports["poct-astm"]) as analyser:
        await analyser.raw(b"\xff\xfe random noise from a misconfigured port")
    async with PoctDevice(site.ports["poct-poct1a"]) as device:
        answer = await device.exchange(b"hello? \x00\x01")
    assert b'ACK.type_cd V="AE"' in answer
    for channel, raw in (
        ("poct-astm", b"\xff\xfe random noise from a misconfigured port"),
        ("poct-poct1a", b"hello? \x00\x01"),
    ):
        await site.processed(channel, 1)
        (row,) = await site.rows(channel)
        assert row.status == "error" and row.error
        async with AsyncSession(site.engine.database) as session:
            detail = await journal.get_message(session, row.id)
        assert detail is not None and detail.raw == raw
