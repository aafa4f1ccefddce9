"""The registry staff's workflow end to end on a running engine: a real STEMI case in the FHIR
store, the record rebuilt by `pathways.registry`, `/api/registry/cpc/...` with a registry-staff
token, the shipped `registry-cpc` channel and the local platform on a real port, and
`greenchannel registry upload` as a separate process.

The case misses fields the platform requires: local validation stops it (nothing is sent);
staff enter the missing values as overrides with reasons; it is accepted with a REGISTER_ID;
the patient's name is corrected at the HIS (source data change): the rebuilt record differs, the
case goes back to draft with the changed field (nothing is sent, `--ready` skips it), staff mark
it ready again and the CLI uploads it as an update with the same id, overrides still applied;
a later change found by the sweeper goes the same way (issue 7's staff workflow)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.registry.cpc_sim import Platform, serve_platform
from engine.auth import ApiToken, hash_token
from engine.server import Engine
from engine.testing import running_engine, settings_for_tests, wait_until
from fhir_store import FhirStore
from fhir_store.app import create_database
from pathways.registry_upload import workflow
from pathways.registry_upload.subscriber import AUTOMATIC, ChangedRecordSweeper
from tests.adapters.registry_platform import APP_ID, HOSPITAL_ID, SECRET, write_credentials
from tests.adapters.test_registry_cpc import VECTOR_REQUEST_ID, VECTOR_SIGN, VECTOR_TIME
from tests.pathways.archive_cases import stemi_by_120_with_primary_pci, write

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
CHANNEL = "registry-cpc"
VECTOR_SECRET = "greenchannel-demo-secret-0001"  # registries.md A.1 "Signing test vector"
ADMIN = "test-admin-token-registry-api"
STAFF = "registry-staff-secret-token"
CLINICIAN = "clinician-secret-token"
# What the case lacks for the platform, as registry staff fill it in from the paper chart.
MISSING = {
    "FirstAIDInfo.CONSCIOUSNESS_TYPE": "1",
    "FirstAIDInfo.RESPIRATION_RATE": 18,
    "FirstAIDInfo.BLOOD_PRESSURE": "130/80",
    "FirstAIDInfo.DISTRESS_CASE": "1",
    "FirstAIDInfo.CW_120_AMBULANCE_DEPARTMENT": "1",
    "FirstAIDInfo.CW_120_FIRST_DOCTOR_TIME": "2024-03-05T08:53:00",
    "FirstAIDInfo.CW_120_IS_TRANS_HOSPITAL": "0",
    "FirstAIDInfo.SCREENING": "3",
    "TreatmentInfo.ECGS": [
        {
            "ECG_TIME": "2024-03-05T08:18:00",
            "ECG_DIAGNOSE_TIME": "2024-03-05T08:24:45",
            "ECGImageFiles": ["data:image/jpeg;base64,/9j/4AAQSkZJRg=="],
        }
    ],
    "TreatmentInfo.REMOTE_ECG_TRANSMISSION": "2",
    "TreatmentInfo.STEMI_IS_BYPASS_EMERGENCY": "0",
    "TreatmentInfo.STEMI_IS_BYPASS_CCU": "1",
    "TreatmentInfo.STEMI_DECISION_OPERATION_TIME": "2024-03-05T08:30:30",
    "TreatmentInfo.STEMI_START_AGREE_TIME": "2024-03-05T08:35:00",
    "TreatmentInfo.STEMI_SIGN_AGREE_TIME": "2024-03-05T08:40:00",
    "TreatmentPciInfo.ACTIVATE_CONDUIT_TIME": "2024-03-05T08:32:00",
    "TreatmentPciInfo.ROUTE": "2",
    "TreatmentPciInfo.INTRACAVITY_IMAGE": "4",
    "TreatmentPciInfo.FUNCTION_TEST": "3",
    "TreatmentPciInfo.IABP": "0",
    "TreatmentPciInfo.PACEMAKER": "0",
    "TreatmentPciInfo.ECMO": "0",
    "TreatmentPciInfo.AUXILIARY_DEVICE": "0",
    "OutComeInfo.DIAGNOSIS_TIME": "2024-03-05T10:10:00",
    "OutComeInfo.IS_HEART_FAILURE": "0",
    "OutComeInfo.COMPLICATION": "99",
    "OutComeInfo.SMOKING": "0",
    "OutComeInfo.FAMILY_DISEASE": "0",
    "OutComeInfo.AF": "0",
    "OutComeInfo.TOTAL_COST": 35000.0,
    "OutComeInfo.OUTCOME_CODE": "1",
    "OutComeInfo.TREATMENT_RESULT_CODE": "2",
}
# Entered over HTTP; the rest as if entered earlier (straight into the override table).
THROUGH_API = ("FirstAIDInfo.CONSCIOUSNESS_TYPE", "OutComeInfo.TREATMENT_RESULT_CODE")


@dataclass
class Site:
    engine: Engine
    store: FhirStore
    platform: Platform
    database_url: str
    data_dir: Path

    def client(self, token: str = STAFF) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.engine.http_port}/api/registry/cpc",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )


@contextlib.asynccontextmanager
async def site_for(tmp_path: Path, database_url: str) -> AsyncIterator[Site]:
    shipped = (ROOT / "channels" / f"{CHANNEL}.yaml").read_text(encoding="utf-8")
    shipped = shipped.replace(
        "initial_backoff_s: 30, max_backoff_s: 1800", "initial_backoff_s: 0.2, max_backoff_s: 1"
    )
    settings = settings_for_tests(
        tmp_path, database_url, channels={CHANNEL: shipped}, admin_token=ADMIN
    ).model_copy(update={"processing_workers": 0})
    platform = Platform(app_id=APP_ID, secret=SECRET)
    async with serve_platform(platform) as base:
        write_credentials(settings.data_dir, base)
        async with running_engine(settings) as engine:
            async with engine.sessions() as session, session.begin():
                for name, role, token in (
                    ("登记员李", "registry-staff", STAFF),
                    ("护士甲", "clinician", CLINICIAN),
                ):
                    session.add(
                        ApiToken(
                            name=name,
                            role=role,
                            token_sha256=hash_token(token),
                            created_at=engine.now(),
                        )
                    )
            await engine.gate.load()
            database = create_database(database_url)
            store = FhirStore(database)
            try:
                yield Site(engine, store, platform, database_url, settings.data_dir)
            finally:
                await store.aclose()
                await database.dispose()


async def _state(client: httpx.AsyncClient, case_id: str) -> dict[str, Any]:
    response = await client.get(f"/cases/{case_id}/state")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _cli_upload(site: Site, *args: str) -> tuple[int, str]:
    """`greenchannel registry upload` as its own process on the engine's database."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine",
        "registry",
        "upload",
        "--registry",
        "cpc",
        "--data-dir",
        str(site.data_dir),
        "--database-url",
        site.database_url,
        "--by",
        "登记员李 (cli)",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, output.decode("utf-8")


async def test_a_case_is_stopped_locally_completed_by_overrides_accepted_and_reviewed_again(
    tmp_path: Path, database_url: str
) -> None:
    case = stemi_by_120_with_primary_pci()
    async with site_for(tmp_path, database_url) as site:
        await write(site.store, case)
        async with site.client() as staff, site.client(CLINICIAN) as clinician:
            forbidden = await clinician.get(f"/cases/{case.case_id}/state")
            # `registry sign` over HTTP, against registries.md A.1's signing test vector.
            vector = {"time": VECTOR_TIME, "request_id": VECTOR_REQUEST_ID, "secret": VECTOR_SECRET}
            signed = await staff.post("/sign", json=vector)
            assert signed.status_code == 200, signed.text
            assert signed.json() == {"sign": VECTOR_SIGN}
            assert (await clinician.post("/sign", json=vector)).status_code == 403
            bad_time = await staff.post("/sign", json={**vector, "time": "2024-06-12 09:30"})
            assert bad_time.status_code == 422 and "time" in bad_time.text
            draft = await _state(staff, case.case_id)
            stopped = (await staff.post("/upload", json={"case_ids": [case.case_id]})).json()
            # Staff fill what the chart has and the HIS did not send.
            now = site.engine.now()
            entered = {k: v for k, v in MISSING.items() if k not in THROUGH_API}
            await site.engine.runtime.writes.run(
                lambda c: [
                    workflow.add_override(
                        c,
                        case.case_id,
                        "cpc",
                        field_path=key,
                        value=value,
                        reason="from the paper chart",
                        who="登记员李",
                        now=now,
                    )
                    for key, value in entered.items()
                ]
            )
            no_reason = await staff.post(
                f"/cases/{case.case_id}/overrides",
                json={"field": "FirstAIDInfo.CONSCIOUSNESS_TYPE", "value": "1", "reason": ""},
            )
            unknown_field = await staff.post(
                f"/cases/{case.case_id}/overrides",
                json={"field": "FirstAIDInfo.NO_SUCH_FIELD", "value": "1", "reason": "x"},
            )
            for key in THROUGH_API:
                response = await staff.post(
                    f"/cases/{case.case_id}/overrides",
                    json={"field": key, "value": MISSING[key], "reason": "护理记录单"},
                )
                assert response.status_code == 200, response.text
            ready = (await staff.post(f"/cases/{case.case_id}/ready")).json()
            queued = (await staff.post("/upload", json={"ready": True})).json()

            async def accepted() -> bool:
                return (await _state(staff, case.case_id))["state"] == "accepted"

            await wait_until(accepted, timeout_s=60, every_s=0.2)
            first = await _state(staff, case.case_id)
            # The HIS corrects the patient's name: reading the state sends the case back to
            # draft for review, and `--ready` does not send it.
            patient = await site.store.read("Patient", case.patient_id)
            patient["name"] = [{"family": "王", "given": ["建华"], "text": "王建华"}]
            await site.store.update("Patient", case.patient_id, patient)
            changed = await _state(staff, case.case_id)
            skipped_code, skipped = await _cli_upload(site, "--ready", "--timeout", "5")
            # Staff review it and mark it ready again: the update carries the REGISTER_ID.
            reready = (await staff.post(f"/cases/{case.case_id}/ready")).json()
            code, output = await _cli_upload(site, "--ready", "--timeout", "60")
            updated = await _state(staff, case.case_id)
            # A discharge-summary correction later: the sweeper finds the change by itself and
            # sends the case back to draft, uploading nothing.
            patient = await site.store.read("Patient", case.patient_id)
            patient["name"] = [{"family": "王", "given": ["建民"], "text": "王建民"}]
            await site.store.update("Patient", case.patient_id, patient)
            sweeper = ChangedRecordSweeper(site.engine.subscriber_context("registry-upload"))
            try:
                swept = await sweeper.sweep()
                swept_again = await sweeper.sweep()  # already a draft for this record
            finally:
                await sweeper.aclose()
            names_before_review = [
                r["RegisterInfo"]["NAME"] for r in site.platform.records.values()
            ]
            swept_state = await _state(staff, case.case_id)
            await staff.post(f"/cases/{case.case_id}/ready")
            requeued = (await staff.post("/upload", json={"ready": True})).json()
            site.engine.runtime.wake(CHANNEL)
            await wait_until(accepted, timeout_s=60, every_s=0.2)
            log = (await staff.get("/log", params={"case": case.case_id})).json()["attempts"]
            no_reason_id = await staff.post(
                f"/cases/{case.case_id}/register-id", json={"register_id": "x", "reason": ""}
            )
            month = (await staff.get("/reconciliation", params={"month": "2024-03"})).json()

    assert forbidden.status_code == 403
    assert draft["state"] == "draft"
    assert "急救信息:意识必填;" in [p["message"] for p in draft["current"]["problems"]]
    (refused,) = stopped["results"]
    assert refused["outcome"] == "invalid"
    assert no_reason.status_code == 422 and no_reason_id.status_code == 422
    assert unknown_field.status_code == 400 and "NO_SUCH_FIELD" in unknown_field.text
    assert (ready["state"], ready["problems"]) == ("validated", [])
    assert [r["outcome"] for r in queued["results"]] == ["queued"]
    assert first["register_id"] and first["updated_by"] == "登记员李"
    assert changed["current"]["changed_since_accepted"] is True
    assert (changed["state"], changed["register_id"]) == ("draft", first["register_id"])
    assert changed["accepted_hash"] == first["accepted_hash"]
    assert changed["changed_since_upload"] is True
    assert changed["changed_fields"] == ["RegisterInfo.NAME"]
    assert skipped_code == 0 and "nothing to upload" in skipped, skipped
    assert reready["state"] == "validated" and reready["changed_since_upload"] is False
    assert code == 0, output
    assert f"{case.case_id}: queued (update" in output
    assert f"{case.case_id}: accepted REGISTER_ID {first['register_id']}" in output
    assert (updated["state"], updated["register_id"]) == ("accepted", first["register_id"])
    assert updated["changed_since_upload"] is False
    assert [(c, v.state, v.register_id) for c, v in swept] == [
        (case.case_id, "draft", first["register_id"])
    ]
    assert swept_again == []
    # Nothing was queued or sent before the review.
    assert names_before_review == ["王建华"]
    assert (swept_state["state"], swept_state["changed_fields"]) == ("draft", ["RegisterInfo.NAME"])
    assert swept_state["uploads"] == updated["uploads"]
    assert [(r["outcome"], r["update"]) for r in requeued["results"]] == [("queued", True)]
    # One record on the platform, updated in place, with the staff's values still in it.
    (stored,) = site.platform.records.values()
    assert stored["RegisterInfo"]["NAME"] == "王建民"
    assert stored["RegisterInfo"]["REGISTER_ID"] == first["register_id"]
    assert stored["RegisterInfo"]["HOSPITAL_ID"] == HOSPITAL_ID
    assert stored["FirstAIDInfo"]["CONSCIOUSNESS_TYPE"] == "1"
    assert stored["OutComeInfo"]["TREATMENT_RESULT_CODE"] == "2"
    assert len(updated["override_history"]) == len(MISSING)
    assert updated["overrides"] == MISSING
    # The log: the local refusal, the first save, each change of the source data (no request
    # sent) and the update staff asked for after it, newest first.
    assert [(a["outcome"], a["attempt"], a["triggered_by"]) for a in log] == [
        ("accepted", 1, "登记员李"),
        ("changed", 0, AUTOMATIC),
        ("accepted", 1, "登记员李 (cli)"),
        ("changed", 0, AUTOMATIC),
        ("accepted", 1, "登记员李"),
        ("invalid", 0, "登记员李"),
    ]
    assert "RegisterInfo.NAME" in log[1]["detail"] and first["register_id"] in log[1]["detail"]
    assert log[1]["register_id"] == first["register_id"] and log[1]["http_status"] is None
    assert log[0]["spec_version"] and log[0]["mapping_version"]
    # (The pathway engine may open more cases from the same resources: they count as eligible
    # and not uploaded.)
    assert (month["uploaded"], month["accepted"]) == (1, 1)
    assert case.case_id not in month["not_uploaded"]
    assert month["eligible"] == 1 + len(month["not_uploaded"])
    assert month["stuck"] == []
