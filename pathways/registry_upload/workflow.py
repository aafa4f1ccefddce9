"""The upload state machine of one case and one registry, and the queries on its tables.

```
draft ─check─> validated | invalid
validated | accepted (changed) | rejected | dead_letter | invalid ─upload─> queued   (or invalid:
                                                                  local validation, never sent)
queued ─connector─> sending ─> accepted(REGISTER_ID) | rejected(reasons) | retry_wait ─> sending
                                                                          └─> dead_letter
accepted ─source data changed (rebuilt payload hash differs)─> draft (source_changed, REGISTER_ID
         and accepted hash kept) ─ready─> validated ─upload─> queued, as an update with its id
```

A change of the source data never sends anything by itself: the case goes back to draft with
the fields that changed, and registry staff review it and mark it ready again (issue 7).

Every function takes a synchronous SQLAlchemy `Connection` inside the caller's transaction and
never commits, so a state change and the journal message that carries the upload commit
together. Queueing journals the upload as a message of the registry's channel (`registry-cpc`),
whose destination connector sends it, retries it and reports back through `record_attempt`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.engine import Connection

from engine.connectors import Inbound
from engine.journal import ContentKind, MessageContent, journal_inbound
from pathways.registry_upload.tables import CaseState, FieldOverride, UploadAttempt

__all__ = [
    "DETECTED_BY",
    "IN_FLIGHT",
    "SOURCE_CHANGED",
    "STATES",
    "Attempt",
    "BuiltRecord",
    "changed_fields",
    "Problem",
    "QueueResult",
    "StateView",
    "add_override",
    "channel_for",
    "current_overrides",
    "enter_register_id",
    "envelope_of",
    "list_states",
    "load_state",
    "mark_sending",
    "override_history",
    "payload_hash",
    "queue_upload",
    "record_attempt",
    "record_check",
    "record_source_change",
    "upload_log",
]

STATES = (
    "draft",
    "validated",
    "invalid",
    "queued",
    "sending",
    "accepted",
    "rejected",
    "retry_wait",
    "dead_letter",
)
# An upload is on its way: another one for the same case would race it (and, for a first save,
# could create the case twice on the platform).
IN_FLIGHT = frozenset({"queued", "sending", "retry_wait"})
# The problem kind of a case sent back to draft because its source data changed after the
# platform accepted it; its problems name the fields that changed.
SOURCE_CHANGED = "source_changed"
# Who the state and the log say moved such a case: nobody did, the data changed.
DETECTED_BY = "automatic: source data changed"
MEDIA_TYPE = "application/json"


def channel_for(registry: str) -> str:
    """The channel that carries a registry's uploads: `registry-cpc` for `cpc`."""
    return f"registry-{registry}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a record cannot go, from local validation or from the platform; `message`
    is in the platform's `块:消息;` style (急救信息:来院方式必填;)."""

    block: str
    message: str
    field: str | None = None

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict[str, str | None]:
        return {"block": self.block, "field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class BuiltRecord:
    """A case's registry record as built now, overrides applied, and what validation found."""

    payload: dict[str, Any]
    spec_version: str
    mapping_version: str
    problems: tuple[Problem, ...] = ()
    case_month: str | None = None

    @property
    def hash(self) -> str:
        return payload_hash(self.payload)

    def __repr__(self) -> str:  # never the payload: it holds patient data
        return (
            f"BuiltRecord(spec={self.spec_version!r}, mapping={self.mapping_version!r}, "
            f"problems={len(self.problems)})"
        )


@dataclass(frozen=True, slots=True)
class StateView:
    """A case's upload state as the API and the CLI show it."""

    case_id: str
    registry: str
    state: str
    register_id: str | None
    payload_hash: str | None
    accepted_hash: str | None
    spec_version: str | None
    mapping_version: str | None
    problems: list[dict[str, Any]]
    problem_kind: str | None
    message_id: int | None
    uploads: int
    attempts: int
    next_attempt_at: datetime | None
    accepted_at: datetime | None
    updated_at: datetime
    updated_by: str

    @property
    def in_flight(self) -> bool:
        return self.state in IN_FLIGHT

    @property
    def changed_since_upload(self) -> bool:
        """Sent back to draft: the source data changed after the platform accepted the record."""
        return self.problem_kind == SOURCE_CHANGED

    def as_dict(self) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "case_id": self.case_id,
            "registry": self.registry,
            "state": self.state,
            "register_id": self.register_id,
            "payload_hash": self.payload_hash,
            "accepted_hash": self.accepted_hash,
            "spec_version": self.spec_version,
            "mapping_version": self.mapping_version,
            "problems": self.problems,
            "problem_kind": self.problem_kind,
            "changed_since_upload": self.changed_since_upload,
            "changed_fields": [
                f"{p['block']}.{p['field']}"
                for p in self.problems
                if self.changed_since_upload and p.get("field")
            ],
            "message_id": self.message_id,
            "uploads": self.uploads,
            "attempts": self.attempts,
            "next_attempt_at": when(self.next_attempt_at),
            "accepted_at": when(self.accepted_at),
            "updated_at": when(self.updated_at),
            "updated_by": self.updated_by,
        }


def payload_hash(payload: Mapping[str, Any]) -> str:
    """sha256 of the record's canonical JSON (sorted keys): equal records, equal hashes."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_STATE = cast(Table, CaseState.__table__)
_OVERRIDE = cast(Table, FieldOverride.__table__)
_LOG = cast(Table, UploadAttempt.__table__)
_COLUMNS = [
    CaseState.case_id,
    CaseState.target,
    CaseState.state,
    CaseState.register_id,
    CaseState.payload_hash,
    CaseState.accepted_hash,
    CaseState.spec_version,
    CaseState.mapping_version,
    CaseState.problems,
    CaseState.problem_kind,
    CaseState.message_id,
    CaseState.uploads,
    CaseState.attempts,
    CaseState.next_attempt_at,
    CaseState.accepted_at,
    CaseState.updated_at,
    CaseState.updated_by,
]


def _view(row: Any) -> StateView:
    values = list(row)
    values[8] = json.loads(values[8]) if values[8] else []
    return StateView(*values)


def load_state(connection: Connection, case_id: str, registry: str) -> StateView | None:
    """The case's state with the registry, or None when nobody has looked at it yet (draft)."""
    row = connection.execute(
        select(*_COLUMNS).where(CaseState.case_id == case_id, CaseState.target == registry)
    ).first()
    return _view(row) if row is not None else None


def list_states(
    connection: Connection,
    registry: str,
    *,
    states: Sequence[str] = (),
    case_ids: Sequence[str] | None = None,
) -> list[StateView]:
    """The states of a registry's cases, optionally only these states or cases."""
    query = select(*_COLUMNS).where(CaseState.target == registry).order_by(CaseState.id)
    if states:
        query = query.where(CaseState.state.in_(list(states)))
    if case_ids is not None:
        query = query.where(CaseState.case_id.in_(list(case_ids)))
    return [_view(row) for row in connection.execute(query)]


def _save(connection: Connection, case_id: str, registry: str, values: dict[str, Any]) -> StateView:
    """Update the case's row, or create it (as a draft that these values then move on)."""
    done = connection.execute(
        update(_STATE)
        .where(_STATE.c.case_id == case_id, _STATE.c.registry == registry)
        .values(**values)
    )
    if done.rowcount == 0:
        connection.execute(
            insert(_STATE).values(
                {
                    "case_id": case_id,
                    "registry": registry,
                    "state": "draft",
                    "uploads": 0,
                    "attempts": 0,
                    **values,
                }
            )
        )
    view = load_state(connection, case_id, registry)
    assert view is not None
    return view


def _problems_json(problems: Sequence[Problem]) -> str | None:
    return json.dumps([p.as_dict() for p in problems], ensure_ascii=False) if problems else None


def record_check(
    connection: Connection,
    case_id: str,
    registry: str,
    built: BuiltRecord,
    *,
    who: str,
    now: datetime,
) -> StateView:
    """Staff mark the case ready: `validated` when the record passes local validation, else
    `invalid` with the problems. An upload on its way is left alone (its outcome decides)."""
    current = load_state(connection, case_id, registry)
    if current is not None and current.in_flight:
        return current
    values: dict[str, Any] = {
        "payload_hash": built.hash,
        "spec_version": built.spec_version,
        "mapping_version": built.mapping_version,
        "problems": _problems_json(built.problems),
        "problem_kind": "validation" if built.problems else None,
        "case_month": built.case_month,
        "updated_at": now,
        "updated_by": who,
    }
    if built.problems:
        values["state"] = "invalid"
    elif (
        current is not None
        and (current.state == "accepted" or current.changed_since_upload)
        and built.hash == current.accepted_hash
    ):
        values["state"] = "accepted"  # nothing changed since the platform accepted it
    else:
        values["state"] = "validated"
    return _save(connection, case_id, registry, values)


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (block, field) pairs whose value differs between two records, in the record's order
    (a field present in one only counts as changed; a block that is not a mapping is compared
    whole, with "" as its field)."""
    changed: list[tuple[str, str]] = []
    for block in dict.fromkeys([*before, *after]):
        old, new = before.get(block), after.get(block)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            for name in dict.fromkeys([*old, *new]):
                if old.get(name) != new.get(name):
                    changed.append((block, name))
        elif old != new:
            changed.append((block, ""))
    return changed


def _accepted_record(connection: Connection, view: StateView) -> dict[str, Any] | None:
    """The record the platform accepted, from the journal message that carried it; None when
    retention pruned it or the message carried another record (its hash differs)."""
    if view.message_id is None:
        return None
    raw = connection.execute(
        select(MessageContent.data).where(
            MessageContent.message_id == view.message_id, MessageContent.kind == ContentKind.RAW
        )
    ).scalar_one_or_none()
    if raw is None:
        return None
    envelope = json.loads(raw)
    if envelope.get("payload_hash") != view.accepted_hash:
        return None
    record = envelope.get("record")
    return record if isinstance(record, dict) else None


def record_source_change(
    connection: Connection,
    case_id: str,
    registry: str,
    built: BuiltRecord,
    *,
    now: datetime,
    who: str = DETECTED_BY,
) -> StateView | None:
    """An accepted case whose record, rebuilt now, differs from what the platform accepted goes
    back to `draft` for staff review, keeping its REGISTER_ID and accepted hash, with the fields
    that changed as its problems (kind `source_changed`) and a `changed` row in the upload log.
    Nothing is sent: staff mark it ready, and its next upload is an update.

    A case already sent back is refreshed when its record changed again, and returns to
    `accepted` when the change was undone. Other states are left alone: an upload on its way
    decides by its outcome (an accepted one is compared at the next look), and a rejected,
    dead-lettered, invalid or validated case is already waiting for staff. Returns the new
    state, or None when nothing moved."""
    current = load_state(connection, case_id, registry)
    if current is None or current.accepted_hash is None:
        return None
    if not (current.state == "accepted" or current.changed_since_upload):
        return None
    if built.hash == current.accepted_hash:
        if current.state == "accepted":
            return None
        state = _save(
            connection,
            case_id,
            registry,
            {
                "state": "accepted",
                "payload_hash": built.hash,
                "problems": None,
                "problem_kind": None,
                "updated_at": now,
                "updated_by": who,
            },
        )
        detail = "the source data are as the platform accepted them again"
        _log(
            connection,
            case_id=case_id,
            registry=registry,
            built=built,
            outcome="unchanged",
            detail=detail,
            who=who,
            now=now,
            register_id=current.register_id,
        )
        return state
    if current.changed_since_upload and current.payload_hash == built.hash:
        return None  # already sent back for this very record
    accepted = _accepted_record(connection, current)
    if accepted is not None:
        problems = [
            Problem(
                block=block,
                field=name or None,
                message=f"{block}.{name or '*'} changed since the platform accepted it",
            )
            for block, name in changed_fields(accepted, built.payload)
        ]
    else:
        problems = [
            Problem(
                block="",
                message="the source data changed since the platform accepted the record "
                "(which fields is unknown: the accepted record's journal content was pruned)",
            )
        ]
    state = _save(
        connection,
        case_id,
        registry,
        {
            "state": "draft",
            "payload_hash": built.hash,
            "spec_version": built.spec_version,
            "mapping_version": built.mapping_version,
            "case_month": built.case_month,
            "problems": _problems_json(problems),
            "problem_kind": SOURCE_CHANGED,
            "updated_at": now,
            "updated_by": who,
        },
    )
    fields = ", ".join(f"{p.block}.{p.field}" for p in problems if p.field) or "unknown fields"
    detail = (
        f"source data changed since upload ({fields}); back to draft: review and mark it ready "
        f"to send an update with REGISTER_ID {current.register_id}"
    )
    _log(
        connection,
        case_id=case_id,
        registry=registry,
        built=built,
        outcome="changed",
        detail=detail,
        who=who,
        now=now,
        register_id=current.register_id,
    )
    return state


@dataclass(frozen=True, slots=True)
class QueueResult:
    """What asking for an upload did: `queued` (message id), `invalid` (never sent),
    `unchanged` (accepted and identical), or `busy` (an upload is already on its way)."""

    outcome: str
    state: StateView
    update: bool = False  # an update of a record the platform already has

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "update": self.update, "state": self.state.as_dict()}


def envelope_of(
    case_id: str, registry: str, built: BuiltRecord, *, triggered_by: str
) -> dict[str, Any]:
    """The journal message of one upload: the record and what the log must say about it. The
    REGISTER_ID is not in it: the connector adds the one known when it sends, so an update
    queued behind the first save still carries the id the first save gets."""
    return {
        "case_id": case_id,
        "registry": registry,
        "spec_version": built.spec_version,
        "mapping_version": built.mapping_version,
        "payload_hash": built.hash,
        "triggered_by": triggered_by,
        "record": built.payload,
    }


def queue_upload(
    connection: Connection,
    case_id: str,
    registry: str,
    built: BuiltRecord,
    *,
    who: str,
    now: datetime,
    force: bool = False,
) -> QueueResult:
    """Queue the record for upload through the registry's channel, in the same transaction as
    the state change. A record that fails local validation is never sent: the case goes to
    `invalid` and the refusal is in the upload log."""
    current = load_state(connection, case_id, registry)
    if current is not None and current.in_flight:
        return QueueResult("busy", current)
    base: dict[str, Any] = {
        "payload_hash": built.hash,
        "spec_version": built.spec_version,
        "mapping_version": built.mapping_version,
        "case_month": built.case_month,
        "updated_at": now,
        "updated_by": who,
    }
    if built.problems:
        state = _save(
            connection,
            case_id,
            registry,
            {
                **base,
                "state": "invalid",
                "problems": _problems_json(built.problems),
                "problem_kind": "validation",
            },
        )
        _log(
            connection,
            case_id=case_id,
            registry=registry,
            built=built,
            outcome="invalid",
            detail="".join(str(p) for p in built.problems),
            who=who,
            now=now,
        )
        return QueueResult("invalid", state)
    if (
        not force
        and current is not None
        and current.state == "accepted"
        and current.accepted_hash == built.hash
    ):
        return QueueResult("unchanged", current)
    uploads = (current.uploads if current is not None else 0) + 1
    envelope = envelope_of(case_id, registry, built, triggered_by=who)
    (receipt,) = journal_inbound(
        connection,
        [
            (
                channel_for(registry),
                Inbound(
                    raw=json.dumps(envelope, ensure_ascii=False).encode("utf-8"),
                    media_type=MEDIA_TYPE,
                    received_at=now,
                    origin=f"registry-upload://{registry}/{case_id}",
                    dedup_key=f"registry/{registry}/{case_id}/upload/{uploads}",
                    charset="utf-8",
                    correlation_id=f"{case_id}#{uploads}",
                ),
            )
        ],
    )
    state = _save(
        connection,
        case_id,
        registry,
        {
            **base,
            "state": "queued",
            "problems": None,
            "problem_kind": None,
            "message_id": receipt.message_id,
            "uploads": uploads,
            "attempts": 0,
            "next_attempt_at": None,
        },
    )
    return QueueResult("queued", state, update=state.register_id is not None)


def mark_sending(
    connection: Connection,
    case_id: str,
    registry: str,
    *,
    message_id: int,
    attempt: int,
    now: datetime,
) -> str | None:
    """The connector starts an attempt: the case is `sending`. Returns the REGISTER_ID the
    platform gave the case (None for a first save)."""
    connection.execute(
        update(_STATE)
        .where(
            _STATE.c.case_id == case_id,
            _STATE.c.registry == registry,
            _STATE.c.message_id == message_id,
        )
        .values(state="sending", attempts=attempt, next_attempt_at=None, updated_at=now)
    )
    return connection.execute(
        select(CaseState.register_id).where(
            CaseState.case_id == case_id, CaseState.target == registry
        )
    ).scalar_one_or_none()


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt's facts, as the connector saw them, for the log and the case's state.

    `outcome`: accepted, rejected (the platform refused: validation, signature, clock), retry
    (transient: the engine retries it) or dead_letter (no more retries)."""

    case_id: str
    registry: str
    message_id: int
    attempt: int
    outcome: str
    triggered_by: str
    started_at: datetime
    finished_at: datetime
    spec_version: str | None = None
    mapping_version: str | None = None
    payload_hash: str | None = None
    request_id: str | None = None
    request_body: str | None = None
    http_status: int | None = None
    response_body: str | None = None
    detail: str | None = None
    register_id: str | None = None
    problems: tuple[Problem, ...] = ()
    problem_kind: str | None = None  # validation, signature, clock, transport
    next_attempt_at: datetime | None = None

    def __repr__(self) -> str:
        return (
            f"Attempt(case_id={self.case_id!r}, message_id={self.message_id}, "
            f"attempt={self.attempt}, outcome={self.outcome!r}, status={self.http_status})"
        )


_STATE_OF_OUTCOME = {
    "accepted": "accepted",
    "rejected": "rejected",
    "retry": "retry_wait",
    "dead_letter": "dead_letter",
}


def record_attempt(connection: Connection, attempt: Attempt) -> None:
    """Append the attempt to the upload log and move the case on. The REGISTER_ID the platform
    returns is always kept; the state moves only if the attempt is of the case's current upload."""
    connection.execute(
        insert(_LOG).values(
            case_id=attempt.case_id,
            registry=attempt.registry,
            spec_version=attempt.spec_version,
            mapping_version=attempt.mapping_version,
            message_id=attempt.message_id,
            attempt=attempt.attempt,
            request_id=attempt.request_id,
            payload_hash=attempt.payload_hash,
            request_body=attempt.request_body,
            http_status=attempt.http_status,
            response_body=attempt.response_body,
            outcome=attempt.outcome,
            detail=attempt.detail,
            register_id=attempt.register_id,
            triggered_by=attempt.triggered_by,
            started_at=attempt.started_at,
            finished_at=attempt.finished_at,
        )
    )
    where = (_STATE.c.case_id == attempt.case_id, _STATE.c.registry == attempt.registry)
    if attempt.register_id:
        connection.execute(update(_STATE).where(*where).values(register_id=attempt.register_id))
    values: dict[str, Any] = {
        "state": _STATE_OF_OUTCOME[attempt.outcome],
        "attempts": attempt.attempt,
        "next_attempt_at": attempt.next_attempt_at,
        "problems": _problems_json(attempt.problems),
        "problem_kind": attempt.problem_kind,
        "updated_at": attempt.finished_at,
        "updated_by": attempt.triggered_by,
    }
    if attempt.outcome == "accepted":
        values.update(accepted_hash=attempt.payload_hash, accepted_at=attempt.finished_at)
    connection.execute(
        update(_STATE).where(*where, _STATE.c.message_id == attempt.message_id).values(**values)
    )


def _log(
    connection: Connection,
    *,
    case_id: str,
    registry: str,
    built: BuiltRecord,
    outcome: str,
    detail: str,
    who: str,
    now: datetime,
    register_id: str | None = None,
) -> None:
    """A local event in the upload log (a refusal, a change of the source data): nothing was
    sent (attempt 0, no request id)."""
    connection.execute(
        insert(_LOG).values(
            case_id=case_id,
            registry=registry,
            spec_version=built.spec_version,
            mapping_version=built.mapping_version,
            message_id=None,
            attempt=0,
            request_id=None,
            payload_hash=built.hash,
            request_body=None,
            http_status=None,
            response_body=None,
            outcome=outcome,
            detail=detail,
            register_id=register_id,
            triggered_by=who,
            started_at=now,
            finished_at=now,
        )
    )


def enter_register_id(
    connection: Connection,
    case_id: str,
    registry: str,
    *,
    register_id: str,
    reason: str,
    who: str,
    now: datetime,
) -> StateView:
    """Registry staff found the case on the platform (a first save whose answer was lost):
    its REGISTER_ID is kept, the case is `validated` again, and its next upload is an update.
    Logged like an attempt (attempt 0), with the reason."""
    if not reason.strip():
        raise ValueError("say where the REGISTER_ID comes from (a reason is required)")
    if not register_id.strip():
        raise ValueError("the REGISTER_ID is empty")
    current = load_state(connection, case_id, registry)
    if current is not None and current.in_flight:
        raise ValueError(f"an upload of this case is {current.state}; wait for its outcome")
    state = _save(
        connection,
        case_id,
        registry,
        {
            "state": "validated",
            "register_id": register_id.strip(),
            "problems": None,
            "problem_kind": None,
            "updated_at": now,
            "updated_by": who,
        },
    )
    connection.execute(
        insert(_LOG).values(
            case_id=case_id,
            registry=registry,
            spec_version=state.spec_version,
            mapping_version=state.mapping_version,
            message_id=None,
            attempt=0,
            request_id=None,
            payload_hash=None,
            request_body=None,
            http_status=None,
            response_body=None,
            outcome="register_id",
            detail=reason.strip(),
            register_id=register_id.strip(),
            triggered_by=who,
            started_at=now,
            finished_at=now,
        )
    )
    return state


def upload_log(
    connection: Connection, registry: str, *, case_id: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """The latest attempts, newest first (optionally of one case)."""
    query = (
        select(_LOG)
        .where(UploadAttempt.target == registry)
        .order_by(UploadAttempt.id.desc())
        .limit(limit)
    )
    if case_id is not None:
        query = query.where(UploadAttempt.case_id == case_id)
    rows = connection.execute(query).mappings()
    return [
        {
            key: (value.isoformat() if isinstance(value, datetime) else value)
            for key, value in row.items()
        }
        for row in rows
    ]


def add_override(
    connection: Connection,
    case_id: str,
    registry: str,
    *,
    field_path: str,
    value: Any,
    reason: str,
    who: str,
    now: datetime,
    clear: bool = False,
) -> None:
    """Append a staff override of `field_path` ("Block.FIELD"), or its withdrawal (`clear`).
    A reason is required: the override is what the platform will be told instead of the data."""
    if not reason.strip():
        raise ValueError("an override needs a reason (what the source data get wrong)")
    block, dot, name = field_path.partition(".")
    if not dot or not block or not name:
        raise ValueError(f"{field_path!r} is not Block.FIELD, e.g. FirstAIDInfo.ATTACK_TIME")
    connection.execute(
        insert(_OVERRIDE).values(
            case_id=case_id,
            registry=registry,
            field=field_path,
            value=None if clear else json.dumps(value, ensure_ascii=False),
            cleared=clear,
            reason=reason.strip(),
            entered_by=who,
            entered_at=now,
        )
    )


def override_history(connection: Connection, case_id: str, registry: str) -> list[dict[str, Any]]:
    """Every override row of the case, oldest first: the audit trail."""
    rows = connection.execute(
        select(_OVERRIDE)
        .where(FieldOverride.case_id == case_id, FieldOverride.target == registry)
        .order_by(FieldOverride.id)
    ).mappings()
    return [
        {
            "field": row["field"],
            "value": json.loads(row["value"]) if row["value"] is not None else None,
            "cleared": bool(row["cleared"]),
            "reason": row["reason"],
            "entered_by": row["entered_by"],
            "entered_at": row["entered_at"].isoformat(),
        }
        for row in rows
    ]


def current_overrides(connection: Connection, case_id: str, registry: str) -> dict[str, Any]:
    """The overrides in force ("Block.FIELD" -> value): each field's latest row, unless it
    withdrew the override."""
    latest = (
        select(func.max(FieldOverride.id))
        .where(FieldOverride.case_id == case_id, FieldOverride.target == registry)
        .group_by(FieldOverride.field)
    )
    rows = connection.execute(
        select(FieldOverride.field, FieldOverride.value, FieldOverride.cleared).where(
            FieldOverride.id.in_(latest)
        )
    )
    return {
        name: json.loads(value)
        for name, value, cleared in rows
        if not cleared and value is not None
    }
