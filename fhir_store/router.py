"""The FHIR REST API under `/fhir`: CRUD, identifier search, transaction/batch and metadata.

Authentication is not done here: the app adds its auth dependency when including the router.
Store errors become OperationOutcome responses in one place, the route class below.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store._capability import capability_statement
from fhir_store._compartment import check_compartment
from fhir_store._everything import parse_everything
from fhir_store._history import history_bundle, parse_history_query
from fhir_store._json import dumps_bytes
from fhir_store._patch import JSON_PATCH
from fhir_store._requests import parse_etag, parse_json, too_deeply_nested
from fhir_store._resources import check_resource, check_type
from fhir_store._search import parse_search
from fhir_store._searchset import search_bundle
from fhir_store._validation import structure_issues
from fhir_store.errors import (
    FhirStoreError,
    InvalidRequest,
    InvalidResource,
    NotSupported,
    PayloadTooLarge,
)
from fhir_store.store import FhirStore

__all__ = ["FHIR_JSON", "FhirResponse", "build_router"]

FHIR_JSON = "application/fhir+json"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
# Media types of a FHIR JSON body; as a PATCH body, they carry a FHIRPath Patch.
_FHIR_MEDIA_TYPES = (FHIR_JSON, "application/json+fhir")


class FhirResponse(Response):
    """A FHIR JSON response (`application/fhir+json`, UTF-8, non-ASCII kept as is)."""

    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        if content is None:
            return b""
        return dumps_bytes(content)


class _FhirRoute(APIRoute):
    """Turns FhirStoreError into an OperationOutcome response, for every route of the router."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except FhirStoreError as error:
                headers = {"Retry-After": "1"} if error.status == 503 else None
                return FhirResponse(
                    error.to_operation_outcome(), status_code=error.status, headers=headers
                )
            except RecursionError:  # JSON that parsed, nested too deeply to process
                outcome = too_deeply_nested().to_operation_outcome()
                return FhirResponse(outcome, status_code=400)

        return handle


def build_router(
    database: AsyncEngine,
    *,
    store: FhirStore | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> APIRouter:
    """The FHIR API as a FastAPI router with prefix `/fhir`, over a store on `database`.

    The database must be migrated (`fhir_store.migrate`). Pass `store` to configure it
    (structural validation, time zone); the caller then closes it. A store the router builds
    itself is closed by the router's lifespan, which the including app runs.
    """
    fhir = store if store is not None else FhirStore(database)

    router = APIRouter(
        prefix="/fhir",
        route_class=_FhirRoute,
        tags=["fhir"],
        lifespan=fhir.closing if store is None else None,
    )

    async def read_json(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            raise _too_large(max_body_bytes)
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > max_body_bytes:
                raise _too_large(max_body_bytes)
        return parse_json(bytes(body))

    @router.get("/metadata")
    async def metadata() -> FhirResponse:
        return FhirResponse(capability_statement())

    _add_interaction_routes(router, fhir, read_json)
    _add_compartment_routes(router, fhir)
    _add_reindex_routes(router, fhir)

    @router.post("")
    @router.post("/", include_in_schema=False)
    async def transaction(request: Request) -> FhirResponse:
        bundle = await read_json(request)
        prefer = _prefer_return(request)
        result = await fhir.transaction(bundle, return_resources=prefer == "representation")
        if prefer == "OperationOutcome":
            for entry in result.get("entry", []):
                response = entry.get("response", {})
                response.setdefault("outcome", _outcome(f"{response.get('status')}"))
        return FhirResponse(result)

    @router.post("/{resource_type}")
    async def create(resource_type: str, request: Request) -> FhirResponse:
        check_type(resource_type)
        resource = await read_json(request)
        if isinstance(resource, dict) and resource.get("resourceType") == resource_type:
            resource = {key: value for key, value in resource.items() if key != "id"}
        if_none_exist = request.headers.get("if-none-exist")
        stored, created = await fhir.conditional_create(
            _typed(resource, resource_type), if_none_exist
        )
        return _resource_response(
            stored, 201 if created else 200, location=True, prefer=_prefer_return(request)
        )

    @router.put("/{resource_type}")
    async def conditional_update(resource_type: str, request: Request) -> FhirResponse:
        check_type(resource_type)
        condition = _condition(request)
        resource = await read_json(request)
        stored, created = await fhir.conditional_update(resource_type, condition, resource)
        return _resource_response(
            stored, 201 if created else 200, location=created, prefer=_prefer_return(request)
        )

    @router.put("/{resource_type}/{resource_id}")
    async def update(resource_type: str, resource_id: str, request: Request) -> FhirResponse:
        check_type(resource_type)
        header = request.headers.get("if-match")
        if_match = parse_etag(header) if header else None
        resource = await read_json(request)
        stored, created = await fhir.update(resource_type, resource_id, resource, if_match)
        return _resource_response(
            stored, 201 if created else 200, location=created, prefer=_prefer_return(request)
        )

    @router.get("/{resource_type}/{resource_id}")
    async def read(resource_type: str, resource_id: str) -> FhirResponse:
        return _resource_response(await fhir.read(resource_type, resource_id), 200)

    @router.delete("/{resource_type}/{resource_id}")
    async def delete(resource_type: str, resource_id: str, request: Request) -> Response:
        header = request.headers.get("if-match")
        if_match = parse_etag(header) if header else None
        version = await fhir.delete(resource_type, resource_id, if_match)
        headers = {"ETag": f'W/"{version}"'} if version is not None else {}
        return Response(status_code=204, headers=headers)

    @router.delete("/{resource_type}")
    async def conditional_delete(resource_type: str, request: Request) -> Response:
        version = await fhir.conditional_delete(resource_type, _condition(request))
        headers = {"ETag": f'W/"{version}"'} if version is not None else {}
        return Response(status_code=204, headers=headers)

    @router.get("/{resource_type}")
    async def search(resource_type: str, request: Request) -> FhirResponse:
        check_type(resource_type)
        strict = _prefer(request, "handling") == "strict"
        pairs = list(request.query_params.multi_items())
        await fhir.search_parameters()  # custom ones are read at the first use
        query = parse_search(resource_type, pairs, strict=strict)
        page = await fhir.search(query)
        return FhirResponse(search_bundle(query, page, str(request.url)))

    return router


def _resource_response(
    resource: dict[str, Any],
    status: int,
    *,
    location: bool = False,
    prefer: str | None = None,
) -> FhirResponse:
    meta = resource.get("meta", {})
    version = meta.get("versionId")
    headers = {"ETag": f'W/"{version}"'}
    last_updated = meta.get("lastUpdated")
    if isinstance(last_updated, str):
        moment = datetime.fromisoformat(last_updated).astimezone(UTC)
        headers["Last-Modified"] = format_datetime(moment, usegmt=True)
    if location:
        headers["Location"] = f"{resource['resourceType']}/{resource['id']}/_history/{version}"
    if prefer == "minimal":
        return FhirResponse(None, status_code=status, headers=headers)
    if prefer == "OperationOutcome":
        text = f"{resource['resourceType']} {'created' if status == 201 else 'stored'}"
        return FhirResponse(_outcome(text), status_code=status, headers=headers)
    return FhirResponse(resource, status_code=status, headers=headers)


def _condition(request: Request) -> str:
    query = request.url.query
    if not query:
        raise InvalidRequest(
            "a conditional request needs a search in the URL, such as ?identifier=system|value"
        )
    return query


def _typed(resource: Any, resource_type: str) -> Any:
    if not isinstance(resource, dict):
        return resource  # check_resource says what is wrong
    if "resourceType" not in resource:
        raise InvalidResource(
            f'the resource has no resourceType; add "resourceType": "{resource_type}"',
            expression=["resourceType"],
        )
    if resource["resourceType"] != resource_type:
        raise InvalidResource(
            f"the resourceType does not match the type in the URL ({resource_type})",
            expression=["resourceType"],
        )
    return resource


def _prefer_return(request: Request) -> str | None:
    """The `return` preference of the Prefer header: minimal, representation or
    OperationOutcome; None if absent or another value."""
    value = _prefer(request, "return")
    return value if value in ("minimal", "representation", "OperationOutcome") else None


def _prefer(request: Request, preference: str) -> str | None:
    """The value of one preference of the Prefer headers (`handling`, `return`), if given."""
    for header in request.headers.getlist("prefer"):
        for part in header.replace(";", ",").split(","):
            name, _, value = part.strip().partition("=")
            if name.strip().lower() == preference:
                return value.strip().strip('"')
    return None


def _outcome(text: str) -> dict[str, Any]:
    """An OperationOutcome with one information issue."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": text}],
    }


def _base_url(request: Request) -> str:
    """The server's FHIR base URL, ending in '/'."""
    return str(request.url_for("metadata")).removesuffix("metadata")


def _add_interaction_routes(
    router: APIRouter, fhir: FhirStore, read_json: Callable[[Request], Coroutine[Any, Any, Any]]
) -> None:
    """History, vread, PATCH and $validate. Registered before the CRUD and search routes,
    whose patterns (`/{type}/{id}`, `/{type}`) would otherwise take `_history`."""

    async def history(
        request: Request, resource_type: str | None = None, resource_id: str | None = None
    ) -> FhirResponse:
        query = parse_history_query(
            list(request.query_params.multi_items()), fhir.timezone, resource_type, resource_id
        )
        total, versions = await fhir.history(query)
        links = {"self": str(request.url)}
        if query.offset + len(versions) < total:
            following = query.offset + len(versions)
            links["next"] = str(
                request.url.include_query_params(_count=query.count, _offset=following)
            )
        return FhirResponse(
            history_bundle(versions, total, _base_url(request), links, fhir.timezone)
        )

    @router.get("/_history")
    async def system_history(request: Request) -> FhirResponse:
        return await history(request)

    @router.get("/{resource_type}/_history")
    async def type_history(resource_type: str, request: Request) -> FhirResponse:
        check_type(resource_type)
        return await history(request, resource_type)

    @router.get("/{resource_type}/{resource_id}/_history")
    async def instance_history(
        resource_type: str, resource_id: str, request: Request
    ) -> FhirResponse:
        check_type(resource_type)
        return await history(request, resource_type, resource_id)

    @router.get("/{resource_type}/{resource_id}/_history/{version_id}")
    async def vread(resource_type: str, resource_id: str, version_id: str) -> FhirResponse:
        return _resource_response(await fhir.vread(resource_type, resource_id, version_id), 200)

    @router.patch("/{resource_type}/{resource_id}")
    async def patch(resource_type: str, resource_id: str, request: Request) -> FhirResponse:
        check_type(resource_type)
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in (JSON_PATCH, *_FHIR_MEDIA_TYPES):
            raise NotSupported(
                f"PATCH accepts {JSON_PATCH} (JSON Patch, RFC 6902) or {FHIR_JSON} (a FHIRPath "
                "Patch Parameters resource); set Content-Type to one of them",
                expression=["Content-Type"],
                status=415,
            )
        header = request.headers.get("if-match")
        if_match = parse_etag(header) if header else None
        operations = await read_json(request)
        fhirpath = media_type != JSON_PATCH
        stored = await fhir.patch(
            resource_type, resource_id, operations, if_match, fhirpath=fhirpath
        )
        return _resource_response(stored, 200, prefer=_prefer_return(request))

    @router.post("/{resource_type}/$validate")
    async def validate_type(resource_type: str, request: Request) -> FhirResponse:
        check_type(resource_type)
        return FhirResponse(_validate(await read_json(request), resource_type, None))

    @router.post("/{resource_type}/{resource_id}/$validate")
    async def validate_instance(
        resource_type: str, resource_id: str, request: Request
    ) -> FhirResponse:
        check_type(resource_type)
        return FhirResponse(_validate(await read_json(request), resource_type, resource_id))


def _add_compartment_routes(router: APIRouter, fhir: FhirStore) -> None:
    """`Patient/$everything`, `Patient/1/$everything`, and compartment search
    (`Patient/1/Observation`, `Patient/1/*`). Registered before the CRUD routes, whose
    `/{type}/{id}` would otherwise take `Patient/$everything`."""

    async def everything(
        request: Request, patient_id: str | None, *, referenced: bool = True
    ) -> FhirResponse:
        strict = "handling=strict" in request.headers.get("prefer", "")
        pairs = list(request.query_params.multi_items())
        query = parse_everything(patient_id, pairs, strict=strict, referenced=referenced)
        page = await fhir.everything(query)
        return FhirResponse(search_bundle(query.as_search(), page, str(request.url)))

    @router.get("/Patient/$everything")
    async def everything_all(request: Request) -> FhirResponse:
        return await everything(request, None)

    @router.get("/Patient/{patient_id}/$everything")
    async def everything_one(patient_id: str, request: Request) -> FhirResponse:
        return await everything(request, patient_id)

    @router.get("/{compartment}/{focus_id}/{resource_type}")
    async def compartment_search(
        compartment: str, focus_id: str, resource_type: str, request: Request
    ) -> FhirResponse:
        check_type(compartment)
        check_compartment(compartment)
        if resource_type == "*":
            return await everything(request, focus_id, referenced=False)
        check_type(resource_type)
        strict = "handling=strict" in request.headers.get("prefer", "")
        pairs = list(request.query_params.multi_items())
        query = parse_search(resource_type, pairs, strict=strict)
        page = await fhir.search_compartment(compartment, focus_id, query)
        return FhirResponse(search_bundle(query, page, str(request.url)))


def _add_reindex_routes(router: APIRouter, fhir: FhirStore) -> None:
    """`$reindex` (`_reindex`): of the base types of one SearchParameter, or of one type."""

    @router.post("/SearchParameter/{resource_id}/$reindex")
    async def reindex_parameter(resource_id: str) -> FhirResponse:
        definition = await fhir.read("SearchParameter", resource_id)
        problem = (await fhir.search_parameters()).get(resource_id)
        if problem is not None:
            raise InvalidRequest(
                f"SearchParameter/{resource_id} cannot be used: {problem}",
                expression=["SearchParameter"],
            )
        bases = [base for base in definition.get("base", []) if isinstance(base, str)]
        return FhirResponse(_reindexed(await fhir.reindex(bases), bases))

    @router.post("/{resource_type}/$reindex")
    async def reindex_type(resource_type: str) -> FhirResponse:
        check_type(resource_type)
        return FhirResponse(_reindexed(await fhir.reindex([resource_type]), [resource_type]))


def _reindexed(count: int, resource_types: list[str]) -> dict[str, Any]:
    """The Parameters answer of `$reindex`: how many resources of which types."""
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "count", "valueInteger": count},
            *({"name": "type", "valueCode": name} for name in resource_types),
        ],
    }


def _validate(body: Any, resource_type: str, resource_id: str | None) -> dict[str, Any]:
    """$validate: an OperationOutcome with the resource's problems, or one information issue.

    The body is the resource, or a Parameters resource with it in the `resource` parameter.
    Structure is checked against fhir.resources whatever the store's own setting.
    """
    resource = body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        resource = next(
            (
                parameter.get("resource")
                for parameter in body.get("parameter") or []
                if isinstance(parameter, dict) and parameter.get("name") == "resource"
            ),
            None,
        )
    try:
        checked = check_resource(resource, expected_type=resource_type)
    except FhirStoreError as error:
        return error.to_operation_outcome()
    issues: list[dict[str, Any]] = []
    if resource_id is not None and checked.get("id") != resource_id:
        issues.append(
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": "the resource id differs from the id in the request URL",
                "expression": [f"{resource_type}.id"],
            }
        )
    issues += [
        {"severity": "error", "code": "structure", "diagnostics": reason, "expression": [path]}
        for path, reason in structure_issues(checked)
    ]
    if not issues:
        return _outcome(f"the {resource_type} is valid")
    return {"resourceType": "OperationOutcome", "issue": issues}


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the body is larger than {limit} bytes; split the Bundle into smaller ones"
    )
