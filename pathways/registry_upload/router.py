"""`/api/registry/{registry}/...`: the registry staff's upload workflow over HTTP.

Registered under `greenchannel.routers` as `registry-upload`; behind the app's token check, and
each route also requires the `registry-staff` (or `admin`) role, whose token name is recorded
as who entered an override or queued an upload.

- `GET  /api/registry/cpc/cases/{id}/state` — state, REGISTER_ID, problems, overrides (and their
  history), and whether the record changed since the platform accepted it (an accepted case
  that changed goes back to draft: `changed_since_upload`, `changed_fields`)
- `POST /api/registry/cpc/cases/{id}/overrides` `{"field": "FirstAIDInfo.ATTACK_TIME",
  "value": "2026-10-02T08:10:00", "reason": "…"}` (`"clear": true` withdraws it)
- `POST /api/registry/cpc/cases/{id}/ready` — validate now: validated or invalid
- `POST /api/registry/cpc/cases/{id}/register-id` `{"register_id": "…", "reason": "…"}` — the id
  staff found on the platform after a first save went unanswered; the next upload is an update
- `POST /api/registry/cpc/upload` `{"case_ids": [...]}` or `{"ready": true}` (`"force": true`
  re-sends an unchanged accepted record)
- `GET  /api/registry/cpc/log?case=ID` — the upload log, newest first
- `GET  /api/registry/cpc/reconciliation?month=YYYY-MM` — eligible vs uploaded vs accepted, stuck
- `POST /api/registry/cpc/sign` `{"time": "20240612093045", "request_id": "…", "secret": "…"}` —
  the request signature, as `greenchannel registry sign` prints it (the secret is the caller's:
  the configured one is never used here, so a token cannot make signatures it could not make)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.auth import require_role, token_name
from fhir_store import FhirStore, Gone, NotFound
from pathways.registry_upload.platform import sign
from pathways.registry_upload.service import RegistryUploads, UnknownRegistry
from pathways.registry_upload.workflow import channel_for

if TYPE_CHECKING:
    from engine.server import Engine

__all__ = ["build_registry_upload_router"]

ROLES = frozenset({"registry-staff", "admin"})
Month = Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")]


class OverrideRequest(BaseModel):
    """One field override with its reason."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(min_length=3, max_length=120, description="Block.FIELD")
    value: Any = None
    reason: str = Field(min_length=1, max_length=2000)
    clear: bool = False


class RegisterIdRequest(BaseModel):
    """The REGISTER_ID staff found on the platform for a case whose first save went unanswered."""

    model_config = ConfigDict(extra="forbid")

    register_id: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=2000)


class UploadRequest(BaseModel):
    """Which cases to upload: ids, or every one staff marked ready (`validated`)."""

    model_config = ConfigDict(extra="forbid")

    case_ids: list[str] = Field(default_factory=list, max_length=1000)
    ready: bool = False
    force: bool = False


class SignRequest(BaseModel):
    """What `registry sign` takes: the signed time, the request id and the secret key."""

    model_config = ConfigDict(extra="forbid")

    time: str = Field(pattern=r"^\d{14}$", description="yyyyMMddHHmmss, Beijing time")
    request_id: str = Field(min_length=1, max_length=128)
    secret: str = Field(min_length=1, max_length=512)


_may_upload = require_role(*sorted(ROLES))


async def _caller(request: Request, _: None = Depends(_may_upload)) -> str:
    """The token's name (kept with every state change and override), once its role may work on
    registry uploads (403 naming the roles otherwise)."""
    return token_name(request)


Caller = Annotated[str, Depends(_caller)]


def build_registry_upload_router(database: AsyncEngine) -> APIRouter:
    """The workflow routes over the engine's database and its FHIR store."""
    store = FhirStore(database)
    router = APIRouter(prefix="/api/registry", tags=["registry"], lifespan=store.closing)

    def uploads(request: Request, registry: str) -> RegistryUploads:
        engine: Engine = request.app.state.engine
        try:
            RegistryUploads.check_registry(registry)
        except UnknownRegistry as exc:
            raise HTTPException(404, str(exc)) from None
        return RegistryUploads(
            database,
            store,
            now=engine.now,
            data_dir=engine.settings.data_dir,
            run_write=engine.runtime.writes.run,
        )

    async def guarded(work: Any) -> Any:
        try:
            return await work
        except (LookupError, NotFound, Gone) as exc:  # NotACase, the record's CaseNotFound
            raise HTTPException(404, str(exc) or "no such case") from None
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None

    @router.get("/{registry}/cases/{case_id}/state")
    async def state(request: Request, registry: str, case_id: str, who: Caller) -> Any:
        return await guarded(uploads(request, registry).state(case_id, registry))

    @router.post("/{registry}/cases/{case_id}/overrides")
    async def override(
        request: Request, registry: str, case_id: str, body: OverrideRequest, who: Caller
    ) -> Any:
        view = await guarded(
            uploads(request, registry).override(
                case_id,
                registry,
                field=body.field,
                value=body.value,
                reason=body.reason,
                who=who,
                clear=body.clear,
            )
        )
        return view.as_dict()

    @router.post("/{registry}/cases/{case_id}/ready")
    async def ready(request: Request, registry: str, case_id: str, who: Caller) -> Any:
        view = await guarded(uploads(request, registry).mark_ready(case_id, registry, who=who))
        return view.as_dict()

    @router.post("/{registry}/cases/{case_id}/register-id")
    async def register_id(
        request: Request, registry: str, case_id: str, body: RegisterIdRequest, who: Caller
    ) -> Any:
        view = await guarded(
            uploads(request, registry).enter_register_id(
                case_id, registry, register_id=body.register_id, reason=body.reason, who=who
            )
        )
        return view.as_dict()

    @router.post("/{registry}/upload")
    async def upload(request: Request, registry: str, body: UploadRequest, who: Caller) -> Any:
        workflow = uploads(request, registry)
        if not body.case_ids and not body.ready:
            raise HTTPException(400, "give case_ids, or ready: true")
        case_ids = list(body.case_ids)
        if body.ready:
            case_ids += [c for c in await workflow.ready_cases(registry) if c not in case_ids]
        results = await guarded(workflow.upload(case_ids, registry, who=who, force=body.force))
        engine: Engine = request.app.state.engine
        engine.runtime.wake(channel_for(registry))
        return {"results": [{"case_id": c, **r.as_dict()} for c, r in results]}

    @router.get("/{registry}/log")
    async def log(
        request: Request,
        registry: str,
        who: Caller,
        case: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> Any:
        return {"attempts": await uploads(request, registry).log(registry, case, limit)}

    @router.post("/{registry}/sign")
    async def sign_request(request: Request, registry: str, body: SignRequest, who: Caller) -> Any:
        uploads(request, registry)  # 404 for a registry without a signed upload
        return {"sign": sign(body.secret, body.time, body.request_id)}

    @router.get("/{registry}/reconciliation")
    async def reconciliation(request: Request, registry: str, month: Month, who: Caller) -> Any:
        return await uploads(request, registry).reconciliation(registry, month)

    return router
