"""Alerts as the journal of the `pathway-alerts` channel holds them: which alert keys are already
journalled (so a restarted scheduler raises nothing twice) and the open or all alerts for the API.

The journal is the record of alerts, not a table of our own: every raise and every resolution is
one message with the dedup key `alert/<case>/<rule>/<step>/raised|resolved`, so an alert is open
exactly when its `raised` key is journalled and its `resolved` key is not. That keeps one truth
on every engine node (PostgreSQL) and needs no migration; content pruning (retention
`content_days`) leaves old alerts listed by key with their message gone.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, Literal

from sqlalchemy import exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import aliased

from engine.journal import ContentKind, JournalMessage, MessageContent
from pathways.alerts import CHANNEL, LATE_SUFFIX

__all__ = ["AlertStatus", "journalled_alert_keys", "list_alerts"]

AlertStatus = Literal["open", "all"]
_CHUNK = 200  # case ids per query: keeps the OR list well inside every database's limits


async def journalled_alert_keys(
    database: AsyncEngine, case_ids: Collection[str], *, channel: str = CHANNEL
) -> set[str]:
    """The alert dedup keys of these cases that the channel's journal already holds, plus
    `alert/<case>/<rule>/<step>/late` for each alert raised late-discovered (so a restarted
    scheduler flags its resolution too and it reaches no pager)."""
    found: set[str] = set()
    raised: dict[int, str] = {}
    ids = sorted(set(case_ids))
    async with database.connect() as connection:
        for start in range(0, len(ids), _CHUNK):
            prefixes = [
                JournalMessage.dedup_key.startswith(f"alert/{case_id}/", autoescape=True)
                for case_id in ids[start : start + _CHUNK]
            ]
            rows = await connection.execute(
                select(JournalMessage.id, JournalMessage.dedup_key).where(
                    JournalMessage.channel == channel, or_(*prefixes)
                )
            )
            for message_id, key in rows:
                if key:
                    found.add(key)
                    if key.endswith("/raised"):
                        raised[int(message_id)] = key
        unresolved = [
            id_ for id_, key in raised.items() if key[: -len("raised")] + "resolved" not in found
        ]
        for start in range(0, len(unresolved), _CHUNK):
            contents = await _contents(connection, unresolved[start : start + _CHUNK])
            for message_id, message in contents.items():
                if isinstance(message, dict) and message.get("late_discovered") is True:
                    found.add(raised[message_id][: -len("raised")] + LATE_SUFFIX)
    return found


async def list_alerts(
    database: AsyncEngine,
    *,
    status: AlertStatus = "open",
    case_id: str | None = None,
    limit: int = 200,
    channel: str = CHANNEL,
) -> list[dict[str, Any]]:
    """Alerts newest first: each with its raised and (if any) resolved message."""
    raised = JournalMessage
    resolved = aliased(JournalMessage)
    prefix = f"alert/{case_id}/" if case_id else "alert/"
    query = select(raised.id, raised.dedup_key).where(
        raised.channel == channel,
        raised.dedup_key.startswith(prefix, autoescape=True),
        raised.dedup_key.endswith("/raised"),
    )
    if status == "open":
        query = query.where(
            ~exists().where(
                resolved.channel == channel,
                resolved.dedup_key == func.replace(raised.dedup_key, "/raised", "/resolved"),
            )
        )
    query = query.order_by(raised.id.desc()).limit(limit)
    async with database.connect() as connection:
        raised_rows = (await connection.execute(query)).all()
        keys = [str(key).removesuffix("/raised") for _, key in raised_rows]
        resolved_ids: dict[str, int] = {}
        if keys and status == "all":
            rows = await connection.execute(
                select(JournalMessage.id, JournalMessage.dedup_key).where(
                    JournalMessage.channel == channel,
                    JournalMessage.dedup_key.in_([f"{k}/resolved" for k in keys]),
                )
            )
            resolved_ids = {str(key).removesuffix("/resolved"): id_ for id_, key in rows}
        wanted = [id_ for id_, _ in raised_rows] + list(resolved_ids.values())
        contents = await _contents(connection, wanted)
    alerts = []
    for (message_id, _), key in zip(raised_rows, keys, strict=True):
        alert_id = key.removeprefix("alert/")
        case, rule, step = _parts(alert_id)
        resolved_id = resolved_ids.get(key)
        alerts.append(
            {
                "alert": alert_id,
                "status": "resolved" if resolved_id is not None else "open",
                "case": case,
                "rule": rule,
                "step": step,
                "raised": contents.get(message_id),
                "resolved": contents.get(resolved_id) if resolved_id is not None else None,
                "message_ids": [m for m in (message_id, resolved_id) if m is not None],
            }
        )
    return alerts


async def _contents(connection: AsyncConnection, message_ids: list[int]) -> dict[int, Any]:
    """The raw JSON of each message that still has its content."""
    if not message_ids:
        return {}
    rows = await connection.execute(
        select(MessageContent.message_id, MessageContent.data).where(
            MessageContent.message_id.in_(message_ids),
            MessageContent.kind == ContentKind.RAW.value,
        )
    )
    found: dict[int, Any] = {}
    for message_id, data in rows:
        try:
            found[int(message_id)] = json.loads(data)
        except ValueError:
            continue  # not written by the scheduler (a hand-made message): listed without it
    return found


def _parts(alert_id: str) -> tuple[str, str, str]:
    case, _, rest = alert_id.partition("/")
    rule, _, step = rest.rpartition("/")
    return case, rule, step
