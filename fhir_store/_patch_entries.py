"""PATCH: the checks on a patched resource, and PATCH entries of batch and transaction Bundles.

A PATCH entry (`request.method` PATCH, `request.url` Type/id) carries a FHIRPath Patch
`Parameters` resource, or a JSON Patch in a `Binary` of contentType
`application/json-patch+json`, as the specification says. The current version is read before the
Bundle is applied, patched, and the entry goes on as a PUT with `ifMatch` of the version read: a
change in between makes it fail with 412 rather than be lost. A PATCH of a resource the same
Bundle creates is therefore not supported: it is read before the Bundle applies.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fhir_store._fhirpath_patch import apply_fhirpath_patch
from fhir_store._patch import JSON_PATCH, apply_json_patch
from fhir_store._requests import parse_etag
from fhir_store._resources import check_id, check_resource, check_type
from fhir_store.errors import FhirStoreError, InvalidRequest, InvalidResource, VersionConflict

__all__ = ["check_patched", "patch_entries"]

# Reads the current version of (type, id): NotFound or Gone if there is none.
Read = Callable[[str, str], Awaitable[dict[str, Any]]]


async def patch_entries(bundle: object, read: Read) -> tuple[object, dict[int, FhirStoreError]]:
    """The Bundle with each PATCH entry turned into a PUT of the patched resource, and the
    error of each PATCH entry that could not be (by entry index, prefixed `Bundle.entry[i]`),
    which the new Bundle leaves out. A Bundle without PATCH entries is returned as it is."""
    if not isinstance(bundle, dict) or not isinstance(bundle.get("entry"), list):
        return bundle, {}
    entries: list[Any] = bundle["entry"]
    if not any(_is_patch(entry) for entry in entries):
        return bundle, {}
    kept: list[Any] = []
    failed: dict[int, FhirStoreError] = {}
    for index, entry in enumerate(entries):
        if not _is_patch(entry):
            kept.append(entry)
            continue
        try:
            kept.append(await _as_put(entry, read))
        except FhirStoreError as error:
            failed[index] = error.with_prefix(f"Bundle.entry[{index}]")
    return {**bundle, "entry": kept}, failed


def check_patched(patched: object, resource_type: str, resource_id: str) -> dict[str, Any]:
    """A patched resource must still be a resource of the same type and id (422); its structure
    is validated where every write is, on the way in (unless the store's validation is off)."""
    try:
        resource = check_resource(patched, expected_type=resource_type)
    except InvalidResource as error:
        raise InvalidResource(
            f"the patched resource is not valid: {error.message}",
            expression=error.expression,
            status=422,
        ) from None
    if resource.get("id") != resource_id:
        raise InvalidResource(
            "a patch cannot remove or change the resource id",
            expression=[f"{resource_type}.id"],
            status=422,
        )
    return resource


def _is_patch(entry: object) -> bool:
    request = entry.get("request") if isinstance(entry, dict) else None
    return isinstance(request, dict) and request.get("method") == "PATCH"


async def _as_put(entry: dict[str, Any], read: Read) -> dict[str, Any]:
    request = entry["request"]
    url = request.get("url")
    parts = url.split("/") if isinstance(url, str) and "?" not in url else []
    if len(parts) != 2:
        raise InvalidRequest(
            "a PATCH entry's request.url must be Type/id (conditional PATCH is not supported)",
            expression=["request.url"],
        )
    resource_type, resource_id = parts
    try:
        check_type(resource_type)
    except FhirStoreError as error:
        raise InvalidRequest(error.message, expression=["request.url"]) from None
    check_id(resource_id, expression="request.url")
    apply = _patcher(entry.get("resource"))
    current = await read(resource_type, resource_id)
    version = int(current["meta"]["versionId"])
    expected = request.get("ifMatch")
    if isinstance(expected, str) and expected:
        seen = parse_etag(expected, expression="request.ifMatch")
        if seen != version:
            raise VersionConflict(
                f"ifMatch names version {seen}, but the current version is {version}; read the "
                "resource again and reapply the change",
                expression=[f"{resource_type}.meta.versionId"],
                status=412,
            )
    patched = check_patched(apply(current), resource_type, resource_id)
    put: dict[str, Any] = {
        "resource": patched,
        "request": {"method": "PUT", "url": url, "ifMatch": f'W/"{version}"'},
    }
    if "fullUrl" in entry:
        put["fullUrl"] = entry["fullUrl"]
    return put


def _patcher(resource: object) -> Callable[[dict[str, Any]], Any]:
    """How the entry's resource patches: a FHIRPath Patch, or a JSON Patch in a Binary."""
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    if kind == "Parameters":
        return lambda current: apply_fhirpath_patch(current, resource)
    if isinstance(resource, dict) and kind == "Binary":
        if resource.get("contentType") == JSON_PATCH:
            operations = _binary_json(resource.get("data"))
            return lambda current: apply_json_patch(current, operations)
    raise InvalidRequest(
        "a PATCH entry's resource must be a Parameters resource (FHIRPath Patch) or a Binary "
        f"with contentType {JSON_PATCH} (JSON Patch)",
        expression=["resource"],
    )


def _binary_json(data: object) -> Any:
    try:
        return json.loads(base64.b64decode(str(data), validate=True))
    except (binascii.Error, ValueError, RecursionError):
        raise InvalidRequest(
            "the Binary's data is not base64 of a JSON Patch document in UTF-8",
            expression=["resource.data"],
        ) from None
