"""The upload state machine and its tables on SQLite and PostgreSQL: migrations, overrides kept
as an append-only history, queueing in the same transaction as the journal message, outcomes
moving the state, updates recognised by the payload hash, and a change of the source data
after acceptance sending the case back to draft for staff review (issue 7)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.database import create_database_engine
from engine.database import migrate as migrate_engine
from pathways.registry_upload import migrate, workflow
from pathways.registry_upload.workflow import Attempt, BuiltRecord, Problem

pytestmark = pytest.mark.anyio

CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=CST)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_database_engine(database_url)
    await migrate_engine(engine)
    await migrate(engine)
    await migrate(engine)  # at every start: an up-to-date database is left as it is
    try:
        yield engine
    finally:
        await engine.dispose()


async def run(database: AsyncEngine, work: Any, *args: Any, **kwargs: Any) -> Any:
    async with database.begin() as connection:
        return await connection.run_sync(lambda c: work(c, *args, **kwargs))


def record(heart_rate: int = 88, problems: tuple[Problem, ...] = ()) -> BuiltRecord:
    return BuiltRecord(
        payload={"RegisterInfo": {"NAME": "张三"}, "FirstAIDInfo": {"HEART_RATE": heart_rate}},
        spec_version="2.1",
        mapping_version="cpc-2.1/1",
        problems=problems,
        case_month="2026-11",
    )


def accepted(message_id: int, register_id: str, payload_hash: str) -> Attempt:
    return Attempt(
        case_id="c1",
        registry="cpc",
        message_id=message_id,
        attempt=1,
        outcome="accepted",
        triggered_by="automatic",
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=1),
        payload_hash=payload_hash,
        register_id=register_id,
    )


async def test_overrides_are_an_append_only_history_and_the_latest_is_in_force(
    database: AsyncEngine,
) -> None:
    def enter(field: str, value: Any, reason: str, clear: bool = False) -> Any:
        return run(
            database,
            workflow.add_override,
            "c1",
            "cpc",
            field_path=field,
            value=value,
            reason=reason,
            who="登记员李",
            now=NOW,
            clear=clear,
        )

    await enter("FirstAIDInfo.HEART_RATE", 90, "monitor strip")
    await enter("FirstAIDInfo.HEART_RATE", 92, "corrected: second strip")
    await enter("FirstAIDInfo.BLOOD_PRESSURE", "130/80", "chart")
    await enter("FirstAIDInfo.BLOOD_PRESSURE", None, "the HIS sends it now", clear=True)
    await enter("RegisterInfo.CONTACT_PHONE", None, "patient asked not to be called")
    with pytest.raises(ValueError, match="reason"):
        await enter("FirstAIDInfo.HEART_RATE", 95, "  ")
    with pytest.raises(ValueError, match="Block.FIELD"):
        await enter("HEART_RATE", 95, "no block")
    current = await run(database, workflow.current_overrides, "c1", "cpc")
    history = await run(database, workflow.override_history, "c1", "cpc")

    assert current == {"FirstAIDInfo.HEART_RATE": 92, "RegisterInfo.CONTACT_PHONE": None}
    assert [(h["field"], h["value"], h["cleared"]) for h in history] == [
        ("FirstAIDInfo.HEART_RATE", 90, False),
        ("FirstAIDInfo.HEART_RATE", 92, False),
        ("FirstAIDInfo.BLOOD_PRESSURE", "130/80", False),
        ("FirstAIDInfo.BLOOD_PRESSURE", None, True),
        ("RegisterInfo.CONTACT_PHONE", None, False),
    ]
    assert {h["entered_by"] for h in history} == {"登记员李"}
    assert datetime.fromisoformat(history[0]["entered_at"]) == NOW


async def test_a_check_sets_validated_or_invalid(database: AsyncEngine) -> None:
    problem = Problem("FirstAIDInfo", "急救信息:来院方式必填;", "CW_COMING_WAY_CODE")
    invalid = await run(
        database, workflow.record_check, "c1", "cpc", record(problems=(problem,)), who="li", now=NOW
    )
    valid = await run(database, workflow.record_check, "c1", "cpc", record(), who="li", now=NOW)

    assert (invalid.state, invalid.problem_kind) == ("invalid", "validation")
    assert invalid.problems == [problem.as_dict()]
    assert (valid.state, valid.problems, valid.payload_hash) == ("validated", [], record().hash)


async def test_an_upload_is_journalled_with_its_state_and_an_update_needs_a_change(
    database: AsyncEngine,
) -> None:
    first = await run(database, workflow.queue_upload, "c1", "cpc", record(), who="li", now=NOW)
    busy = await run(database, workflow.queue_upload, "c1", "cpc", record(), who="li", now=NOW)
    message_id = first.state.message_id
    register_id = await run(
        database, workflow.mark_sending, "c1", "cpc", message_id=message_id, attempt=1, now=NOW
    )
    sending = await run(database, workflow.load_state, "c1", "cpc")
    await run(database, workflow.record_attempt, accepted(message_id, "R-1", record().hash))
    unchanged = await run(database, workflow.queue_upload, "c1", "cpc", record(), who="li", now=NOW)
    update = await run(database, workflow.queue_upload, "c1", "cpc", record(104), who="li", now=NOW)
    # A late answer to the first upload must not move the case's newer upload.
    await run(database, workflow.record_attempt, accepted(message_id, "R-1", record().hash))
    after_late_answer = await run(database, workflow.load_state, "c1", "cpc")
    async with database.connect() as connection:
        journal = (
            await connection.execute(
                text("SELECT channel, dedup_key, status FROM journal_message ORDER BY id")
            )
        ).all()
        content = await connection.scalar(
            text("SELECT data FROM message_content WHERE message_id = :id"),
            {"id": update.state.message_id},
        )
    log = await run(database, workflow.upload_log, "cpc", case_id="c1")

    assert (first.outcome, first.update, busy.outcome) == ("queued", False, "busy")
    assert (register_id, sending.state, sending.attempts) == (None, "sending", 1)
    assert unchanged.outcome == "unchanged"
    assert (update.outcome, update.update, update.state.register_id) == ("queued", True, "R-1")
    assert (after_late_answer.state, after_late_answer.message_id) == (
        "queued",
        update.state.message_id,
    )
    assert [tuple(row) for row in journal] == [
        ("registry-cpc", "registry/cpc/c1/upload/1", "received"),
        ("registry-cpc", "registry/cpc/c1/upload/2", "received"),
    ]
    envelope = json.loads(bytes(content))
    assert envelope["record"]["FirstAIDInfo"]["HEART_RATE"] == 104
    assert (envelope["payload_hash"], envelope["triggered_by"]) == (record(104).hash, "li")
    assert "REGISTER_ID" not in envelope["record"]["RegisterInfo"]  # added when it is sent
    assert [row["outcome"] for row in log] == ["accepted", "accepted"]


def rejected(message_id: int, payload_hash: str) -> Attempt:
    return Attempt(
        case_id="c1",
        registry="cpc",
        message_id=message_id,
        attempt=1,
        outcome="rejected",
        triggered_by="li",
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=1),
        payload_hash=payload_hash,
        problems=(Problem(block="急救信息", message="急救信息:心率超出范围;", field="HEART_RATE"),),
        problem_kind="validation",
    )


async def _accepted_case(database: AsyncEngine) -> int:
    queued = await run(database, workflow.queue_upload, "c1", "cpc", record(), who="li", now=NOW)
    message_id: int = queued.state.message_id
    await run(database, workflow.record_attempt, accepted(message_id, "R-1", record().hash))
    return message_id


async def test_a_source_change_after_acceptance_sends_the_case_back_to_draft_for_review(
    database: AsyncEngine,
) -> None:
    await _accepted_case(database)
    same = await run(database, workflow.record_source_change, "c1", "cpc", record(), now=NOW)
    draft = await run(database, workflow.record_source_change, "c1", "cpc", record(104), now=NOW)
    again = await run(database, workflow.record_source_change, "c1", "cpc", record(104), now=NOW)
    journal_before_review = await _count(database, "journal_message")
    ready = await run(database, workflow.record_check, "c1", "cpc", record(104), who="li", now=NOW)
    update = await run(database, workflow.queue_upload, "c1", "cpc", record(104), who="li", now=NOW)
    log = await run(database, workflow.upload_log, "cpc", case_id="c1")

    assert same is None  # the record is as the platform accepted it
    assert (draft.state, draft.register_id, draft.accepted_hash) == ("draft", "R-1", record().hash)
    assert draft.as_dict()["changed_since_upload"] is True
    assert draft.as_dict()["changed_fields"] == ["FirstAIDInfo.HEART_RATE"]
    assert (draft.problem_kind, draft.updated_by) == (workflow.SOURCE_CHANGED, workflow.DETECTED_BY)
    assert again is None  # already a draft for this record: not logged twice
    assert journal_before_review == 1  # nothing was queued by the change
    assert (ready.state, ready.as_dict()["changed_since_upload"]) == ("validated", False)
    assert (update.outcome, update.update, update.state.register_id) == ("queued", True, "R-1")
    assert [(row["outcome"], row["register_id"]) for row in log] == [
        ("changed", "R-1"),
        ("accepted", "R-1"),
    ]
    assert "FirstAIDInfo.HEART_RATE" in log[0]["detail"] and log[0]["request_id"] is None


async def test_a_change_undone_before_review_returns_the_case_to_accepted(
    database: AsyncEngine,
) -> None:
    await _accepted_case(database)
    await run(database, workflow.record_source_change, "c1", "cpc", record(104), now=NOW)
    moved = await run(database, workflow.record_source_change, "c1", "cpc", record(120), now=NOW)
    back = await run(database, workflow.record_source_change, "c1", "cpc", record(), now=NOW)
    log = await run(database, workflow.upload_log, "cpc", case_id="c1")

    assert (moved.state, moved.payload_hash) == ("draft", record(120).hash)
    assert (back.state, back.register_id, back.problems) == ("accepted", "R-1", [])
    assert [row["outcome"] for row in log] == ["unchanged", "changed", "changed", "accepted"]


async def test_a_source_change_leaves_uploads_on_their_way_and_rejected_cases_alone(
    database: AsyncEngine,
) -> None:
    message_id = await _accepted_case(database)
    # An update on its way: its outcome decides, the change is looked at once it is accepted.
    update = await run(database, workflow.queue_upload, "c1", "cpc", record(104), who="li", now=NOW)
    in_flight = await run(
        database, workflow.record_source_change, "c1", "cpc", record(120), now=NOW
    )
    await run(
        database,
        workflow.record_attempt,
        accepted(update.state.message_id, "R-1", record(104).hash),
    )
    after_flight = await run(
        database, workflow.record_source_change, "c1", "cpc", record(120), now=NOW
    )
    # A rejected upload already waits for staff, with the platform's reasons.
    await run(database, workflow.record_check, "c1", "cpc", record(120), who="li", now=NOW)
    third = await run(database, workflow.queue_upload, "c1", "cpc", record(120), who="li", now=NOW)
    await run(database, workflow.record_attempt, rejected(third.state.message_id, record(120).hash))
    on_rejected = await run(
        database, workflow.record_source_change, "c1", "cpc", record(130), now=NOW
    )
    state = await run(database, workflow.load_state, "c1", "cpc")

    assert message_id != update.state.message_id
    assert in_flight is None
    assert (after_flight.state, after_flight.accepted_hash) == ("draft", record(104).hash)
    assert after_flight.as_dict()["changed_fields"] == ["FirstAIDInfo.HEART_RATE"]
    assert on_rejected is None
    assert (state.state, state.problems[0]["message"]) == ("rejected", "急救信息:心率超出范围;")


async def _count(database: AsyncEngine, table: str) -> int:
    async with database.connect() as connection:
        return int(await connection.scalar(text(f"SELECT count(*) FROM {table}")) or 0)


def test_changed_fields_names_each_field_that_differs() -> None:
    before = {"RegisterInfo": {"NAME": "张三", "AGE": 58}, "ECG": [1, 2]}
    after = {"RegisterInfo": {"NAME": "张三", "AGE": 59, "SEX": "1"}, "ECG": [1]}
    assert workflow.changed_fields(before, after) == [
        ("RegisterInfo", "AGE"),
        ("RegisterInfo", "SEX"),
        ("ECG", ""),
    ]
    assert workflow.changed_fields(before, before) == []


async def test_the_payload_hash_ignores_key_order_but_not_values() -> None:
    a = {"RegisterInfo": {"NAME": "张三", "AGE": 58}, "FirstAIDInfo": {}}
    b = {"FirstAIDInfo": {}, "RegisterInfo": {"AGE": 58, "NAME": "张三"}}
    c = {"FirstAIDInfo": {}, "RegisterInfo": {"AGE": 59, "NAME": "张三"}}
    assert workflow.payload_hash(a) == workflow.payload_hash(b) != workflow.payload_hash(c)
