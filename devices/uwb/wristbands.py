"""Wristbands and badges in the UWB tables: register, bind a wristband to a patient's
encounter, unbind (by hand, or at discharge), take it back at the desk, and the board.

Board statuses, first that applies:
- `overdue`: unbound at discharge, not back at the desk `return_within_h` after;
- `silent`: bound, and no fix for `silent_after_s` (where the patient is is unknown);
- `in_use`: bound;
- `idle`: in the pool (never bound, returned, or unbound and not yet due back).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from devices.uwb.errors import UnknownTag, WristbandError
from devices.uwb.tables import Binding, Tag
from devices.uwb.tracker import TagState, presence
from devices.uwb.zones import ZoneMap

__all__ = [
    "BoardRow",
    "TagKind",
    "bind",
    "board",
    "open_binding",
    "register",
    "return_tag",
    "unbind",
    "unbind_encounter",
    "with_open_bands",
]

TagKind = Literal["wristband", "badge"]
Status = Literal["in_use", "idle", "silent", "overdue"]
_TAG = cast(Table, Tag.__table__)
_BINDING = cast(Table, Binding.__table__)


@dataclass(frozen=True, slots=True)
class BoardRow:
    tag_id: str
    kind: str
    status: Status
    where: str  # zone key, "outside" or "unknown"
    last_heard_at: datetime | None
    patient_id: str | None = None
    encounter_id: str | None = None
    bound_at: datetime | None = None
    due_back_at: datetime | None = None
    practitioner_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {name: _iso(getattr(self, name)) for name in self.__dataclass_fields__}


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


async def register(
    database: AsyncEngine,
    tag_id: str,
    at: datetime,
    *,
    kind: TagKind = "wristband",
    practitioner_id: str | None = None,
    label: str | None = None,
) -> None:
    """Add a tag to the pool (a badge with its practitioner); again for a known tag updates
    its kind, practitioner and label."""
    if kind == "badge" and not practitioner_id:
        raise WristbandError("a staff badge needs the practitioner who wears it")
    async with database.begin() as connection:
        await connection.run_sync(_register, tag_id, at, kind, practitioner_id, label)


def _register(
    connection: Connection,
    tag_id: str,
    at: datetime,
    kind: str,
    practitioner_id: str | None,
    label: str | None,
) -> None:
    known = connection.execute(select(_TAG.c.kind).where(_TAG.c.tag_id == tag_id)).first()
    values = {"kind": kind, "practitioner_id": practitioner_id, "label": label}
    if known is None:
        connection.execute(insert(_TAG).values(tag_id=tag_id, registered_at=at, **values))
    else:
        connection.execute(update(_TAG).where(_TAG.c.tag_id == tag_id).values(**values))


async def bind(
    database: AsyncEngine, tag_id: str, patient_id: str, encounter_id: str, at: datetime
) -> None:
    """Put a wristband on a patient for an encounter; a new tag id joins the pool first."""
    async with database.begin() as connection:
        await connection.run_sync(_bind, tag_id, patient_id, encounter_id, at)


def _bind(
    connection: Connection, tag_id: str, patient_id: str, encounter_id: str, at: datetime
) -> None:
    tag = connection.execute(select(_TAG.c.kind).where(_TAG.c.tag_id == tag_id)).first()
    if tag is None:
        _register(connection, tag_id, at, "wristband", None, None)
    elif tag.kind != "wristband":
        raise WristbandError(f"tag {tag_id} is a staff badge, not a patient wristband")
    current = _open(connection, tag_id)
    if current is not None:
        raise WristbandError(
            f"tag {tag_id} is bound to encounter {current.encounter_id} since "
            f"{current.bound_at.isoformat()}; unbind it first"
        )
    connection.execute(
        update(_BINDING)
        .where(_BINDING.c.tag_id == tag_id, _BINDING.c.returned_at.is_(None))
        .values(returned_at=at)  # put on a patient again: it was back at the desk
    )
    connection.execute(
        insert(_BINDING).values(
            tag_id=tag_id, patient_id=patient_id, encounter_id=encounter_id, bound_at=at
        )
    )


async def unbind(database: AsyncEngine, tag_id: str, at: datetime) -> str:
    """Take a wristband off by hand (it is back at the desk); returns the encounter id."""
    async with database.begin() as connection:
        return await connection.run_sync(_unbind, tag_id, at)


def _unbind(connection: Connection, tag_id: str, at: datetime) -> str:
    if connection.execute(select(_TAG.c.tag_id).where(_TAG.c.tag_id == tag_id)).first() is None:
        raise UnknownTag(f"tag {tag_id} is not registered", hint="check the number on the band")
    current = _open(connection, tag_id)
    if current is None:
        raise WristbandError(f"tag {tag_id} is not bound to anyone")
    connection.execute(
        update(_BINDING)
        .where(_BINDING.c.id == current.id)
        .values(unbound_at=at, unbind_reason="manual", returned_at=at)
    )
    return str(current.encounter_id)


def with_open_bands(connection: Connection, encounter_ids: Collection[str]) -> set[str]:
    """Which of the encounters have a band bound now (one query for a batch of Encounters)."""
    if not encounter_ids:
        return set()
    rows = connection.execute(
        select(_BINDING.c.encounter_id)
        .where(_BINDING.c.encounter_id.in_(list(encounter_ids)), _BINDING.c.unbound_at.is_(None))
        .distinct()
    )
    return set(rows.scalars())


async def unbind_encounter(database: AsyncEngine, encounter_id: str, at: datetime) -> list[str]:
    """The patient was discharged: every band of the encounter is unbound (not yet returned);
    returns the tag ids. Nothing bound is no error (a replayed discharge)."""
    async with database.begin() as connection:
        return await connection.run_sync(_unbind_encounter, encounter_id, at)


def _unbind_encounter(connection: Connection, encounter_id: str, at: datetime) -> list[str]:
    rows = connection.execute(
        select(_BINDING.c.id, _BINDING.c.tag_id).where(
            _BINDING.c.encounter_id == encounter_id, _BINDING.c.unbound_at.is_(None)
        )
    ).all()
    for row in rows:
        connection.execute(
            update(_BINDING)
            .where(_BINDING.c.id == row.id)
            .values(unbound_at=at, unbind_reason="discharge")
        )
    return [row.tag_id for row in rows]


async def return_tag(database: AsyncEngine, tag_id: str, at: datetime) -> None:
    """The band is back at the desk (after a discharge unbind)."""
    async with database.begin() as connection:
        done = await connection.execute(
            update(_BINDING)
            .where(
                _BINDING.c.tag_id == tag_id,
                _BINDING.c.unbound_at.is_not(None),
                _BINDING.c.returned_at.is_(None),
            )
            .values(returned_at=at)
        )
        if done.rowcount == 0:
            raise WristbandError(f"tag {tag_id} is not waiting to be returned")


async def open_binding(database: AsyncEngine, tag_id: str) -> Any:
    """The tag's current binding row (patient_id, encounter_id, bound_at), or None."""
    async with database.connect() as connection:
        return await connection.run_sync(_open, tag_id)


def _open(connection: Connection, tag_id: str) -> Any:
    return connection.execute(
        select(_BINDING).where(_BINDING.c.tag_id == tag_id, _BINDING.c.unbound_at.is_(None))
    ).first()


async def board(database: AsyncEngine, zones: ZoneMap, now: datetime) -> list[BoardRow]:
    """Every registered tag with its status, where it is and whom it is bound to."""
    async with database.connect() as connection:
        tags = (await connection.execute(select(_TAG).order_by(_TAG.c.tag_id))).all()
        latest = (
            await connection.execute(select(_BINDING).order_by(_BINDING.c.id))
        ).all()  # the last row per tag wins below
    last: dict[str, Any] = {row.tag_id: row for row in latest}
    due = timedelta(hours=zones.return_within_h)
    rows: list[BoardRow] = []
    for tag in tags:
        state = TagState.from_json(_loads(tag.state)) if tag.state else TagState()
        heard = tag.last_heard_at
        where = presence(state, now, zones.timing)
        binding = last.get(tag.tag_id)
        status: Status = "idle"
        extra: dict[str, Any] = {}
        if binding is not None and binding.unbound_at is None:
            silent = heard is None or (now - heard).total_seconds() > zones.timing.silent_after_s
            status = "silent" if silent else "in_use"
            extra = {
                "patient_id": binding.patient_id,
                "encounter_id": binding.encounter_id,
                "bound_at": binding.bound_at,
            }
        elif binding is not None and binding.returned_at is None:
            back_by = binding.unbound_at + due
            extra = {"due_back_at": back_by, "encounter_id": binding.encounter_id}
            if now > back_by:
                status = "overdue"
        rows.append(
            BoardRow(
                tag.tag_id, tag.kind, status, where, heard,
                practitioner_id=tag.practitioner_id, **extra,
            )
        )  # fmt: skip
    return rows


def _loads(text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(text)
    return data
