"""The engine's HTTP API: messages, channels, statistics and Prometheus metrics.

Every route sits behind the app-wide token dependency (see `engine.app`). Content is returned
only by `GET /api/messages/{id}`, which a later issue audits per role.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from engine import journal
from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.server import Engine

__all__ = ["build_api_router"]


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise HTTPException(
            400, f"{name} needs an offset (e.g. 2026-11-25T08:00:00+08:00): times are never naive"
        )
    return value


class ReprocessRequest(BaseModel):
    """Which messages to reprocess: explicit ids, or a filter."""

    ids: list[int] | None = Field(None, max_length=10_000)
    channel: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def build_api_router() -> APIRouter:
    router = APIRouter()

    @router.get("/api/health")
    async def health(request: Request) -> dict[str, Any]:
        engine = _engine(request)
        return {"status": "ok", "channels": sorted(engine.runtime.deployed)}

    @router.get("/api/stats")
    async def stats(request: Request) -> dict[str, Any]:
        engine = _engine(request)
        messages, deliveries = await engine.journal_counts()
        return engine.stats.snapshot(messages, deliveries, sorted(engine.runtime.deployed))

    @router.get("/metrics", response_class=PlainTextResponse)
    async def metrics(request: Request) -> PlainTextResponse:
        engine = _engine(request)
        messages, deliveries = await engine.journal_counts()
        return PlainTextResponse(
            engine.stats.prometheus(messages, deliveries, engine.subscribers_pending()),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    @router.get("/api/messages")
    async def list_messages(
        request: Request,
        channel: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before_id: int | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        engine = _engine(request)
        async with engine.sessions() as session:
            rows = await journal.list_messages(
                session,
                channel=channel,
                status=status,
                since=_aware(since, "since"),
                until=_aware(until, "until"),
                before_id=before_id,
                limit=limit,
            )
        return {
            "messages": [
                {
                    "id": r.id,
                    "channel": r.channel,
                    "status": r.status,
                    "received_at": r.received_at.astimezone(engine.settings.tz).isoformat(),
                    "origin": r.origin,
                    "media_type": r.media_type,
                    "correlation_id": r.correlation_id,
                    "size_bytes": r.size_bytes,
                    "error": r.error,
                }
                for r in rows
            ]
        }

    @router.get("/api/messages/{message_id}")
    async def show_message(request: Request, message_id: int) -> dict[str, Any]:
        engine = _engine(request)
        tz = engine.settings.tz
        async with engine.sessions() as session:
            detail = await journal.get_message(session, message_id)
        if detail is None:
            raise HTTPException(404, f"message {message_id} is not in the journal")
        m = detail.message

        def when(value: datetime | None) -> str | None:
            return value.astimezone(tz).isoformat() if value else None

        return {
            "id": m.id,
            "channel": m.channel,
            "status": m.status,
            "received_at": when(m.received_at),
            "processed_at": when(m.processed_at),
            "origin": m.origin,
            "media_type": m.media_type,
            "charset": m.charset,
            "dedup_key": m.dedup_key,
            "correlation_id": m.correlation_id,
            "reprocess_of": m.reprocess_of,
            "size_bytes": m.size_bytes,
            "error": m.error,
            "content_pruned": m.content_pruned,
            "raw": _content(detail.raw, m.charset),
            "transformed": _content(detail.transformed, "utf-8"),
            "transformed_media_type": m.transformed_media_type,
            "deliveries": [
                {
                    "destination": d.destination,
                    "status": d.status,
                    "attempts": d.attempts,
                    "lane": d.lane,
                    "next_attempt_at": when(d.next_attempt_at),
                    "sent_at": when(d.sent_at),
                    "last_error": d.last_error,
                    "attempt_log": [
                        {
                            "attempt": a.attempt,
                            "at": when(a.at),
                            "outcome": a.outcome,
                            "detail": a.detail,
                            "reply": _content(a.reply, "utf-8"),
                        }
                        for a in detail.attempts.get(d.id, [])
                    ],
                }
                for d in detail.deliveries
            ],
        }

    @router.post("/api/messages/{message_id}/reprocess")
    async def reprocess_one(request: Request, message_id: int) -> dict[str, Any]:
        engine = _engine(request)
        new_ids = await engine.reprocess([message_id])
        if not new_ids:
            raise HTTPException(404, f"message {message_id} is not in the journal")
        return {"reprocessed": {str(message_id): new_ids[0]}}

    @router.post("/api/messages/reprocess")
    async def reprocess_many(request: Request, body: ReprocessRequest) -> dict[str, Any]:
        engine = _engine(request)
        ids = body.ids
        if ids is None:
            if not (body.channel or body.status or body.since or body.until):
                raise HTTPException(400, "give ids or at least one filter (channel, status, time)")
            async with engine.sessions() as session:
                ids = await journal.matching_message_ids(
                    session,
                    channel=body.channel,
                    status=body.status,
                    since=_aware(body.since, "since"),
                    until=_aware(body.until, "until"),
                )
        new_ids = await engine.reprocess(ids)
        return {"requested": len(ids), "reprocessed": len(new_ids), "new_ids": new_ids}

    @router.get("/api/channels")
    async def list_channels(request: Request) -> dict[str, Any]:
        engine = _engine(request)
        files, problems = engine.channel_files()
        deployed = engine.runtime.deployed
        names = sorted(set(files) | set(deployed))
        return {
            "channels": [
                {
                    "name": name,
                    "file": (files.get(name) or deployed[name]).file,
                    "deployed": name in deployed,
                    "source": (files.get(name) or deployed[name]).spec.source.kind,
                    "destinations": [
                        d.name for d in (files.get(name) or deployed[name]).spec.destinations
                    ],
                    "changed_since_deploy": name in deployed
                    and name in files
                    and files[name].fingerprint != deployed[name].fingerprint,
                }
                for name in names
            ],
            "problems": [str(p) for p in problems],
        }

    @router.post("/api/channels/{name}/deploy")
    async def deploy(request: Request, name: str) -> dict[str, Any]:
        engine = _engine(request)
        try:
            channel = await engine.deploy_from_file(name)
        except ConfigError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {"deployed": channel.name, "file": channel.file}

    @router.post("/api/channels/{name}/undeploy")
    async def undeploy(request: Request, name: str) -> dict[str, Any]:
        engine = _engine(request)
        if not await engine.runtime.undeploy(name):
            raise HTTPException(404, f"channel {name!r} is not deployed")
        return {"undeployed": name}

    @router.post("/api/prune")
    async def prune(request: Request) -> dict[str, Any]:
        engine = _engine(request)
        return await engine.prune()

    return router


def _content(data: bytes | None, charset: str | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        return {"text": data.decode(charset or "utf-8")}
    except (UnicodeDecodeError, LookupError):
        return {"base64": base64.b64encode(data).decode("ascii")}
