"""Uploads through the engine's real channel runtime (the shipped `registry-cpc` channel, its
journal, queue and retries) to the local platform on a real port: accepted with a REGISTER_ID,
an update keeps the id, a wrong secret and a skewed clock are told apart, the platform's
validation reasons land on the case without a retry, transient failures retry and then
dead-letter, and a platform restart in the middle of a batch loses nothing."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from adapters.registry.cpc_sim import Platform, serve_platform
from engine.server import Engine
from engine.testing import running_engine, settings_for_tests, wait_until
from pathways.registry_upload import workflow
from pathways.registry_upload.workflow import BuiltRecord, Problem, StateView
from tests.adapters.registry_platform import (
    APP_ID,
    HOSPITAL_ID,
    SECRET,
    complete_record,
    write_credentials,
)
from tests.net import free_port

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
CHANNEL = "registry-cpc"
TOKEN = "test-admin-token-registry"
DONE = {"accepted", "rejected", "dead_letter", "invalid"}


def _channel_text(dead_letter_after: int = 8, timeout_s: float = 30) -> str:
    """The shipped channel with test-sized waits (the shipped one waits 30 s to retry)."""
    shipped = (ROOT / "channels" / f"{CHANNEL}.yaml").read_text(encoding="utf-8")
    shipped = shipped.replace(
        "retry: {initial_backoff_s: 30, max_backoff_s: 1800, jitter: 0.3, max_attempts: 0}",
        "retry: {initial_backoff_s: 0.2, max_backoff_s: 0.5, jitter: 0.3, max_attempts: 0}",
    )
    shipped = shipped.replace("dead_letter_after: 8", f"dead_letter_after: {dead_letter_after}")
    shipped = shipped.replace("timeout_s: 30", f"timeout_s: {timeout_s}")
    assert (
        "initial_backoff_s: 0.2" in shipped and f"dead_letter_after: {dead_letter_after}" in shipped
    )
    return shipped


def built(record: dict[str, Any], problems: tuple[Problem, ...] = ()) -> BuiltRecord:
    return BuiltRecord(
        payload=record, spec_version="2.1", mapping_version="cpc-2.1/1", problems=problems
    )


@dataclass
class Site:
    engine: Engine
    platform: Platform

    async def queue(self, case_id: str, record: BuiltRecord) -> workflow.QueueResult:
        """What `greenchannel registry upload` and POST /api/registry/cpc/upload do once the
        record is built: queue it in the engine's write transaction and wake the channel."""
        result: workflow.QueueResult = await self.engine.runtime.writes.run(
            functools.partial(
                workflow.queue_upload,
                case_id=case_id,
                registry="cpc",
                built=record,
                who="registry-staff-test",
                now=self.engine.now(),
            )
        )
        self.engine.runtime.wake(CHANNEL)
        return result

    async def state(self, case_id: str) -> StateView:
        async with self.engine.database.connect() as connection:
            view = await connection.run_sync(workflow.load_state, case_id, "cpc")
        assert view is not None
        return view

    async def settled(self, *case_ids: str, timeout_s: float = 30) -> list[StateView]:
        async def done() -> bool:
            states = [(await self.state(c)).state for c in case_ids]
            return all(state in DONE for state in states)

        await wait_until(done, timeout_s=timeout_s, every_s=0.1)
        return [await self.state(c) for c in case_ids]

    async def log(self, case_id: str) -> list[dict[str, Any]]:
        async with self.engine.database.connect() as connection:
            rows: list[dict[str, Any]] = await connection.run_sync(
                lambda c: workflow.upload_log(c, "cpc", case_id=case_id)
            )
        return rows[::-1]  # oldest first

    async def journal_status(self, message_id: int | None) -> str:
        async with self.engine.database.connect() as connection:
            status = await connection.scalar(
                text("SELECT status FROM journal_message WHERE id = :id"), {"id": message_id}
            )
        return str(status)


@contextlib.asynccontextmanager
async def site_for(
    tmp_path: Path,
    platform: Platform,
    *,
    secret: str = SECRET,
    dead_letter_after: int = 8,
    timeout_s: float = 30,
    port: int = 0,
) -> AsyncIterator[Site]:
    settings = settings_for_tests(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'greenchannel.db'}",
        channels={CHANNEL: _channel_text(dead_letter_after, timeout_s)},
        admin_token=TOKEN,
    ).model_copy(update={"processing_workers": 0})
    async with serve_platform(platform, port=port) as base:
        write_credentials(settings.data_dir, base, secret=secret)
        async with running_engine(settings) as engine:
            yield Site(engine, platform)


def _platform(**kwargs: Any) -> Platform:
    return Platform(app_id=APP_ID, secret=SECRET, **kwargs)


async def test_a_complete_record_is_accepted_and_an_update_keeps_its_register_id(
    tmp_path: Path,
) -> None:
    async with site_for(tmp_path, _platform()) as site:
        first = await site.queue("case-1", built(complete_record()))
        (accepted,) = await site.settled("case-1")
        unchanged = await site.queue("case-1", built(complete_record()))
        changed_record = complete_record()
        changed_record["FirstAIDInfo"]["HEART_RATE"] = 104
        update = await site.queue("case-1", built(changed_record))
        (updated,) = await site.settled("case-1")
        log = await site.log("case-1")
        stored = dict(site.platform.records)
        first_status = await site.journal_status(first.state.message_id)

    assert (first.outcome, first.update) == ("queued", False)
    assert accepted.state == "accepted" and accepted.register_id
    assert accepted.accepted_hash == built(complete_record()).hash
    assert unchanged.outcome == "unchanged"
    assert (update.outcome, update.update) == ("queued", True)
    assert (updated.state, updated.register_id) == ("accepted", accepted.register_id)
    assert list(stored) == [accepted.register_id]  # one case on the platform, updated in place
    assert stored[accepted.register_id]["FirstAIDInfo"]["HEART_RATE"] == 104
    assert first_status == "sent"
    # The log: one attempt per upload, each with its own request id and what was sent.
    assert [(row["outcome"], row["http_status"], row["attempt"]) for row in log] == [
        ("accepted", 200, 1),
        ("accepted", 200, 1),
    ]
    assert log[0]["request_id"] != log[1]["request_id"]
    first_body, second_body = (json.loads(row["request_body"]) for row in log)
    assert "REGISTER_ID" not in first_body["RegisterInfo"]  # a first save carries none
    assert second_body["RegisterInfo"]["REGISTER_ID"] == accepted.register_id
    assert second_body["RegisterInfo"]["HOSPITAL_ID"] == HOSPITAL_ID
    assert log[1]["payload_hash"] == built(changed_record).hash
    assert (log[0]["spec_version"], log[0]["mapping_version"]) == ("2.1", "cpc-2.1/1")
    assert log[0]["triggered_by"] == "registry-staff-test"


async def test_no_name_or_id_number_reaches_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sentinel_name, sentinel_id = "哨兵病人", "110101190001019999"
    record = complete_record()
    record["RegisterInfo"].update(NAME=sentinel_name, IDCARD=sentinel_id)
    caplog.set_level(logging.DEBUG)
    platform = _platform()
    async with site_for(tmp_path, platform) as site:
        platform.faults.append({"status": 503})  # a retry logs too
        await site.queue("case-9", built(record))
        (state,) = await site.settled("case-9")

    assert state.state == "accepted"
    assert any(r.getMessage() == "registry.upload_attempt" for r in caplog.records)
    for logged in caplog.records:
        text = f"{logged.getMessage()} {vars(logged)!r}"
        assert sentinel_name not in text and sentinel_id not in text, logged.name


async def test_a_record_that_fails_local_validation_is_never_sent(tmp_path: Path) -> None:
    record = complete_record()
    del record["FirstAIDInfo"]["CW_COMING_WAY_CODE"]
    problem = Problem("FirstAIDInfo", "急救信息:来院方式必填;", "CW_COMING_WAY_CODE")
    async with site_for(tmp_path, _platform()) as site:
        result = await site.queue("case-2", built(record, (problem,)))
        state = await site.state("case-2")
        log = await site.log("case-2")

    assert result.outcome == "invalid"
    assert (state.state, state.problem_kind, state.message_id) == ("invalid", "validation", None)
    assert [p["message"] for p in state.problems] == ["急救信息:来院方式必填;"]
    assert site.platform.requests == []
    assert [(row["outcome"], row["attempt"], row["request_id"]) for row in log] == [
        ("invalid", 0, None)
    ]


async def test_a_wrong_secret_is_reported_as_a_signature_problem_and_not_retried(
    tmp_path: Path,
) -> None:
    async with site_for(tmp_path, _platform(), secret="an-old-rotated-secret") as site:
        await site.queue("case-3", built(complete_record()))
        (state,) = await site.settled("case-3")
        status = await site.journal_status(state.message_id)

    assert (state.state, state.problem_kind) == ("rejected", "signature")
    assert "app id or secret key is wrong" in state.problems[0]["message"]
    assert "clocks agree" in state.problems[0]["message"]
    assert len(site.platform.requests) == 1  # no automatic retry of a 403
    assert status == "error"


async def test_a_skewed_clock_is_reported_as_a_clock_problem(tmp_path: Path) -> None:
    platform = _platform(clock_offset_s=900, max_skew_s=300)  # the platform runs 15 min ahead
    async with site_for(tmp_path, platform) as site:
        await site.queue("case-4", built(complete_record()))
        (state,) = await site.settled("case-4")

    assert (state.state, state.problem_kind) == ("rejected", "clock")
    message = state.problems[0]["message"]
    # Both clocks are read to the second (the Date header, our signed time), a moment apart.
    ahead = re.search(r"clock is (\d+) s ahead of ours", message)
    assert ahead is not None and abs(int(ahead.group(1)) - 900) <= 1, message
    assert "NTP" in message
    assert len(platform.requests) == 1


async def test_the_platforms_validation_reasons_go_onto_the_case_without_a_retry(
    tmp_path: Path,
) -> None:
    # A platform whose rules moved on: it requires a field our copy of its rules does not.
    platform = _platform(extra_required=["TreatmentInfo.IS_CR"])
    async with site_for(tmp_path, platform) as site:
        await site.queue("case-5", built(complete_record()))
        (state,) = await site.settled("case-5")
        log = await site.log("case-5")
        status = await site.journal_status(state.message_id)

    assert (state.state, state.problem_kind) == ("rejected", "validation")
    assert [p["message"] for p in state.problems] == ["胸痛诊疗:IS_CR必填;"]
    assert len(platform.requests) == 1
    assert [(row["outcome"], row["http_status"]) for row in log] == [("rejected", 500)]
    assert json.loads(log[0]["response_body"])["Error"] == "胸痛诊疗:IS_CR必填;"
    assert status == "error"


async def test_transient_failures_retry_with_new_request_ids_then_dead_letter(
    tmp_path: Path,
) -> None:
    platform = _platform()
    async with site_for(tmp_path, platform, dead_letter_after=3) as site:
        platform.faults += [{"status": 503}, {"status": 500, "error": "null"}]  # then accepted
        await site.queue("case-6", built(complete_record()))
        (recovered,) = await site.settled("case-6")
        platform.faults += [{"status": 502}] * 3
        await site.queue("case-7", built(complete_record()))
        (dead,) = await site.settled("case-7")
        recovered_log = await site.log("case-6")
        dead_status = await site.journal_status(dead.message_id)

    assert (recovered.state, recovered.attempts) == ("accepted", 3)
    assert [(r["outcome"], r["http_status"]) for r in recovered_log] == [
        ("retry", 503),
        ("retry", 500),
        ("accepted", 200),
    ]
    assert len({r["request_id"] for r in recovered_log}) == 3
    assert (dead.state, dead.attempts, dead.register_id) == ("dead_letter", 3, None)
    assert dead_status == "error"


async def test_a_first_save_whose_answer_is_lost_waits_for_staff_then_updates(
    tmp_path: Path,
) -> None:
    """The platform stores the first save but its answer never arrives: sending it again could
    create the case twice, so the case waits for staff, who find it on the platform and enter
    its REGISTER_ID; the next upload is an update of that record. A lost answer to an update is
    simply retried."""
    platform = _platform()
    async with site_for(tmp_path, platform, timeout_s=1) as site:
        platform.faults.append({"slow_s": 3})
        await site.queue("case-8", built(complete_record()))
        (lost,) = await site.settled("case-8")
        (found_on_platform,) = list(platform.records)
        entered = await site.engine.runtime.writes.run(
            functools.partial(
                workflow.enter_register_id,
                case_id="case-8",
                registry="cpc",
                register_id=found_on_platform,
                reason="found on the platform by 登记员李",
                who="登记员李",
                now=site.engine.now(),
            )
        )
        changed = complete_record()
        changed["FirstAIDInfo"]["PULSE_RATE"] = 90
        platform.faults.append({"slow_s": 3})  # the update's first answer is lost too
        await site.queue("case-8", built(changed))
        (updated,) = await site.settled("case-8")
        log = await site.log("case-8")

    assert (lost.state, lost.problem_kind, lost.register_id) == (
        "rejected",
        "unknown_outcome",
        None,
    )
    assert "Look the case up on the platform" in lost.problems[0]["message"]
    assert (entered.state, entered.register_id) == ("validated", found_on_platform)
    assert (updated.state, updated.register_id, updated.attempts) == (
        "accepted",
        found_on_platform,
        2,
    )
    assert list(platform.records) == [found_on_platform]  # never created twice
    assert platform.records[found_on_platform]["FirstAIDInfo"]["PULSE_RATE"] == 90
    assert [row["outcome"] for row in log] == ["rejected", "register_id", "retry", "accepted"]


async def test_a_platform_restart_in_the_middle_of_a_batch_loses_nothing(tmp_path: Path) -> None:
    """The platform goes down after the first case of a batch (the rest are refused a
    connection: retried), comes back on the same port with its records, and every queued case
    is then accepted; the first case's update still finds its record."""
    store = tmp_path / "platform-records.json"
    port = free_port()
    settings = settings_for_tests(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'greenchannel.db'}",
        channels={CHANNEL: _channel_text(dead_letter_after=50)},
        admin_token=TOKEN,
    ).model_copy(update={"processing_workers": 0})
    write_credentials(settings.data_dir, f"http://127.0.0.1:{port}")
    before = Platform(app_id=APP_ID, secret=SECRET, store=store)
    async with running_engine(settings) as engine:
        site = Site(engine, before)
        async with serve_platform(before, port=port):
            await site.queue("case-a", built(complete_record()))
            (a,) = await site.settled("case-a")
        # Down: the batch is queued and its first attempts are refused.
        batch = ["case-b", "case-c", "case-d"]
        for case_id in batch:
            await site.queue(case_id, built(complete_record()))

        async def retrying() -> bool:
            states = [(await site.state(c)).state for c in batch]
            return "retry_wait" in states

        await wait_until(retrying, timeout_s=30, every_s=0.1)
        after = Platform(app_id=APP_ID, secret=SECRET, store=store)
        site.platform = after
        async with serve_platform(after, port=port):
            states = await site.settled(*batch, timeout_s=60)
            changed = complete_record()
            changed["TreatmentInfo"]["IS_NOTICE_IMCD"] = "1"
            await site.queue("case-a", built(changed))
            (a_again,) = await site.settled("case-a")
        log_b = await site.log("case-b")

    assert a.state == "accepted"
    assert [s.state for s in states] == ["accepted"] * 3
    assert len({s.register_id for s in states} | {a.register_id}) == 4
    # The restarted platform still knows case-a: its update keeps the id.
    assert a_again.register_id == a.register_id
    assert len(after.records) == 4
    assert log_b[0]["outcome"] == "retry" and "cannot reach" in log_b[0]["detail"]
    assert log_b[-1]["outcome"] == "accepted"
