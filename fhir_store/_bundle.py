"""Applying a list of Bundle entries to a group's in-memory `Changes`, FHIR's way.

Order of work: conditions are resolved (ifNoneExist, conditional PUT/DELETE), ids assigned,
`fullUrl` and conditional references (`Patient?identifier=...`) rewritten, current states looked
up together, new versions recorded; GET entries are answered last. Entries are processed in
FHIR's order (DELETE, POST, PUT, GET) and answered in the Bundle's order. Nothing here writes to
the database: the caller flushes the `Changes` once for the whole group.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fhir_store._changes import Changes
from fhir_store._json import loads
from fhir_store._requests import Entry, IdentifierToken, parse_query_string, parse_search_query
from fhir_store._resources import (
    R4_RESOURCE_TYPES,
    Reference,
    find_references,
    identifier_tokens,
    local_reference,
    same_content,
    with_references,
)
from fhir_store._storage import Current
from fhir_store._validation import Issues, structure_error, validate_structure
from fhir_store.errors import (
    ConditionFailed,
    FhirStoreError,
    Gone,
    InvalidRequest,
    InvalidResource,
    NotFound,
    VersionConflict,
)

__all__ = ["BundleRun", "searchset"]

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}


@dataclass(slots=True)
class _Step:
    entry: Entry
    target_id: str | None = None
    matched: bool = False  # POST ifNoneExist found an existing resource
    fresh: bool = False  # the id is a new server-assigned one: no resource has it yet
    resource: dict[str, Any] | None = None
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def writes(self) -> bool:
        return self.entry.method == "PUT" or (self.entry.method == "POST" and not self.matched)


class BundleRun:
    """One application of entries to `changes`; `label` prefixes errors with the entry index.

    Call it inside `changes.atomic()`: an error leaves some of the entries' changes recorded.
    """

    def __init__(
        self,
        changes: Changes,
        now: datetime,
        validate_structure: bool,
        *,
        label: bool,
        stamp: str | None = None,
        check_references: bool = True,
        structure_of: Callable[[Entry], Issues] | None = None,
    ) -> None:
        self._changes = changes
        # the entries' structure issues found by the validating process (large groups)
        self._structure_of = structure_of
        self._now = now
        self._stamp = stamp or now.isoformat()  # meta.lastUpdated; a group passes it, made once
        self._validate = validate_structure
        self._label = label
        self._conditional_refs: dict[str, str] = {}
        self._writes: list[_Step] = []  # the steps that write a resource
        # per resource type, the (id, identifiers) of the Bundle's writes of it, read when a
        # conditional reference first names the type: a Synthea Bundle has ~700 writes, and its
        # references name Practitioners, Organizations and Locations only
        self._in_bundle: dict[str, list[tuple[str, list[tuple[str | None, str]]]]] = {}
        self._local_references: list[tuple[Entry, Reference]] = []  # Type/id, as sent
        self._check_references = check_references

    def apply(self, entries: list[Entry], return_resources: bool) -> list[dict[str, Any]]:
        """Apply the entries and return one response entry each, in the given order."""
        steps = [_Step(entry) for entry in entries]
        if len(steps) > 1:
            steps.sort(key=_order)
        at: Entry | None = None  # the entry being worked on, named in its errors
        try:
            for step in steps:
                at = step.entry
                self._resolve_target(step)
            at = None
            self._check_duplicates(steps)
            full_urls = self._targets(steps)
            for step in self._writes:
                at = step.entry
                self._resolve_references(step, full_urls)
            # new server-assigned ids are known to be absent: only the others are read
            self._changes.absent(
                (step.entry.resource_type, step.target_id)
                for step in steps
                if step.fresh and step.target_id is not None
            )
            keys = [
                (step.entry.resource_type, step.target_id)
                for step in steps
                if step.target_id is not None and step.entry.method != "GET" and not step.fresh
            ]
            current = self._changes.current(keys)
            at = None  # the reference check names the entry itself
            self._check_local_references(steps)
            if self._validate:  # a replay of the current content is no new version: not checked
                for step in steps:
                    if step.resource is not None and not _unchanged(step, current):
                        at = step.entry
                        self._check_structure(step.entry, step.resource)
            for step in steps:
                at = step.entry
                self._stage(step, current, return_resources)
            for step in steps:
                if step.entry.method == "GET":
                    at = step.entry
                    self._get(step)
        except FhirStoreError as error:
            if self._label and at is not None:
                raise error.with_prefix(at.where) from None
            raise
        if len(steps) > 1:
            steps.sort(key=_index)
        return [step.response for step in steps]

    def _check_structure(self, entry: Entry, resource: dict[str, Any]) -> None:
        """Validate here, or take the answer of the validating process for a large group."""
        if self._structure_of is None:
            validate_structure(resource)
        elif issues := self._structure_of(entry):
            raise structure_error(issues)

    def _resolve_target(self, step: _Step) -> None:
        entry = step.entry
        if entry.method == "GET":
            return
        resource = entry.resource
        body_id = resource.get("id") if resource is not None else None
        if entry.condition is not None:
            ids = self._changes.find_ids(entry.resource_type, entry.condition, limit=2)
            if len(ids) > 1:
                raise ConditionFailed(
                    f"the condition matches more than one {entry.resource_type}; make it "
                    "specific enough to match one (system|value)",
                    expression=["request.url" if entry.method != "POST" else "ifNoneExist"],
                )
            if entry.method == "POST":
                if ids:
                    step.target_id, step.matched = ids[0], True
                else:
                    step.target_id, step.fresh = _new_id(), True
            elif entry.method == "PUT":
                if ids and body_id is not None and body_id != ids[0]:
                    raise InvalidResource(
                        "the resource id differs from the id of the resource the condition "
                        "matched; remove the id or correct it",
                        expression=[f"{entry.resource_type}.id"],
                    )
                step.target_id = ids[0] if ids else (body_id if isinstance(body_id, str) else None)
                if not step.target_id:
                    step.target_id, step.fresh = _new_id(), True
            else:
                step.target_id = ids[0] if ids else None
        elif entry.method == "POST":
            step.target_id, step.fresh = _new_id(), True
        else:
            step.target_id = entry.resource_id
            if entry.method == "PUT" and body_id is not None and body_id != entry.resource_id:
                raise InvalidResource(
                    "the resource id differs from the id in the request URL",
                    expression=[f"{entry.resource_type}.id"],
                )

    def _check_duplicates(self, steps: list[_Step]) -> None:
        seen: dict[tuple[str, str], int] = {}
        for step in steps:
            if step.target_id is None or step.entry.method == "GET" or step.matched:
                continue
            key = (step.entry.resource_type, step.target_id)
            if key in seen:
                raise InvalidRequest(
                    f"Bundle.entry[{seen[key]}] and Bundle.entry[{step.entry.index}] change the "
                    f"same {key[0]}; a Bundle may change each resource only once"
                )
            seen[key] = step.entry.index

    def _targets(self, steps: list[_Step]) -> dict[str, str]:
        """Note the steps that write a resource; return the Bundle's fullUrls' local ids."""
        full_urls: dict[str, str] = {}
        for step in steps:
            entry = step.entry
            if entry.method not in ("POST", "PUT") or step.target_id is None:
                continue
            if entry.full_url is not None:
                full_urls[entry.full_url] = f"{entry.resource_type}/{step.target_id}"
            if step.writes and entry.resource is not None:
                self._writes.append(step)
        return full_urls

    def _resolve_references(self, step: _Step, full_urls: dict[str, str]) -> None:
        entry = step.entry
        resource = entry.resource
        assert resource is not None and step.target_id is not None
        references = find_references(resource)
        self._local_references += [(entry, r) for r in references if local_reference(r.value)]
        replacements: dict[str, str] = {}
        for reference in references:
            value = reference.value
            if value in full_urls:
                replacements[value] = full_urls[value]
            elif value.startswith(("urn:uuid:", "urn:oid:")):
                path = reference.path(entry.resource_type)
                raise InvalidResource(
                    f"the reference at {path} names a fullUrl that no entry of this "
                    "Bundle has; add the entry or correct the reference",
                    expression=[path],
                )
            elif "?" in value and not value.startswith("#"):
                replacements[value] = self._conditional_reference(entry.resource_type, reference)
        if replacements:
            resource = with_references(resource, references, replacements)
        step.resource = _with_id_first(resource, step.target_id)

    def _check_local_references(self, steps: list[_Step]) -> None:
        """Every `Type/id` reference sent must name a resource of this Bundle or one that
        exists (HAPI's default, referential integrity on write); InvalidResource (400) if not.
        References rewritten from `urn:uuid:` or a condition were resolved already."""
        if not self._local_references or not self._check_references:
            return
        in_bundle = {
            (step.entry.resource_type, step.target_id)
            for step in steps
            if step.target_id is not None and step.entry.method in ("POST", "PUT")
        }
        wanted: dict[tuple[str, str], tuple[Entry, Reference]] = {}
        for entry, reference in self._local_references:
            key = local_reference(reference.value)
            if key is not None and key not in in_bundle:
                wanted.setdefault(key, (entry, reference))
        if not wanted:
            return
        found = self._changes.current(wanted)
        for key, (entry, reference) in wanted.items():
            state = found.get(key)
            if state is None or state.deleted:
                path = reference.path(entry.resource_type)
                error = InvalidResource(
                    f"the reference at {path} names a {key[0]} that "
                    f"{'was deleted' if state is not None else 'does not exist'} on this "
                    "server; store it first (or in the same transaction) or correct the reference",
                    expression=[path],
                    code="not-found",
                )
                raise error.with_prefix(entry.where) if self._label else error

    def _conditional_reference(self, referring_type: str, reference: Reference) -> str:
        value = reference.value
        known = self._conditional_refs.get(value)
        if known is not None:
            return known
        path = reference.path(referring_type)
        resource_type, _, query = value.partition("?")
        if resource_type not in R4_RESOURCE_TYPES:
            raise InvalidResource(
                f"the conditional reference at {path} does not start with an R4 resource type",
                expression=[path],
            )
        try:
            token = parse_search_query(parse_query_string(query))
        except FhirStoreError as error:
            raise type(error)(
                f"the conditional reference at {path}: {error.message}",
                expression=[path],
                status=error.status,
            ) from None
        in_bundle = self._in_bundle.get(resource_type)
        if in_bundle is None:
            in_bundle = self._in_bundle[resource_type] = [
                (other.target_id or "", identifier_tokens(resource))
                for other in self._writes
                if other.entry.resource_type == resource_type
                and (resource := other.entry.resource) is not None
            ]
        matches = {
            f"{resource_type}/{resource_id}"
            for resource_id, tokens in in_bundle
            if _any_match(token, tokens)
        }
        ids = self._changes.find_ids(resource_type, token, limit=2)
        matches.update(f"{resource_type}/{resource_id}" for resource_id in ids)
        if len(matches) != 1:
            raise ConditionFailed(
                f"the conditional reference at {path} matches "
                f"{'no' if not matches else 'more than one'} {resource_type}; "
                + (
                    "load the referenced resource first, then resend"
                    if not matches
                    else "make the condition specific enough to match one"
                ),
                expression=[path],
                code="not-found" if not matches else "multiple-matches",
            )
        resolved = matches.pop()
        self._conditional_refs[value] = resolved
        return resolved

    def _stage(
        self,
        step: _Step,
        current_rows: dict[tuple[str, str], Current],
        return_resources: bool,
    ) -> None:
        entry = step.entry
        if entry.method == "GET":
            return
        resource_type = entry.resource_type
        current = (
            current_rows.get((resource_type, step.target_id))
            if step.target_id is not None
            else None
        )
        if entry.method == "DELETE":
            if entry.if_match is not None and (
                current is None or current.deleted or current.version_id != entry.if_match
            ):
                raise VersionConflict(
                    f"If-Match names version {entry.if_match}, but the current version is "
                    + (str(current.version_id) if current and not current.deleted else "absent")
                    + "; read the resource again before deleting it",
                    expression=[f"{resource_type}.meta.versionId"],
                    status=412,
                )
            if step.target_id is None or current is None or current.deleted:
                step.response = {"response": {"status": "204 No Content"}}
                return
            version = current.version_id + 1
            self._changes.delete(
                resource_type, step.target_id, version_id=version, last_updated=self._now
            )
            step.response = {"response": {"status": "204 No Content", "etag": f'W/"{version}"'}}
            return
        assert step.target_id is not None
        if step.matched:
            if current is None or current.deleted:
                raise VersionConflict(
                    "the resource matching ifNoneExist changed meanwhile; resend", retryable=True
                )
            step.response = _response("200 OK", resource_type, current.resource(), return_resources)
            return
        resource = step.resource
        assert resource is not None
        alive = current is not None and not current.deleted
        if entry.if_match is not None and (
            current is None or not alive or current.version_id != entry.if_match
        ):
            raise VersionConflict(
                f"If-Match names version {entry.if_match}, but the current version is "
                + (str(current.version_id) if current is not None and alive else "absent")
                + "; read the resource again and reapply the change",
                expression=[f"{resource_type}.meta.versionId"],
                status=412,
            )
        if current is not None and alive and same_content(current.resource(), resource):
            step.response = _response("200 OK", resource_type, current.resource(), return_resources)
            return
        version = current.version_id + 1 if current is not None else 1
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = self._stamp
        if "meta" in resource:  # step.resource is this run's own copy: set meta in its place
            resource["meta"] = meta
        else:
            resource = {
                "resourceType": resource_type,
                "id": step.target_id,
                "meta": meta,
                **resource,
            }
        self._changes.put(
            resource_type,
            step.target_id,
            resource,
            version_id=version,
            last_updated=self._now,
            method=entry.method,
        )
        status = "200 OK" if alive else "201 Created"
        step.response = _response(status, resource_type, resource, return_resources)

    def _get(self, step: _Step) -> None:
        entry = step.entry
        if entry.resource_id is not None:
            rows = self._changes.current([(entry.resource_type, entry.resource_id)])
            current = rows.get((entry.resource_type, entry.resource_id))
            if current is None:
                raise NotFound(f"no {entry.resource_type} with this id exists")
            if current.deleted:
                raise Gone(f"this {entry.resource_type} was deleted")
            step.response = _response("200 OK", entry.resource_type, current.resource(), True)
            return
        assert entry.condition is not None
        contents = self._changes.search(entry.resource_type, entry.condition)
        step.response = {
            "resource": searchset([_loads(content) for content in contents]),
            "response": {"status": "200 OK"},
        }


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A searchset Bundle of matches."""
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {
                "fullUrl": f"{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            }
            for resource in resources
        ],
    }


def _response(
    status: str, resource_type: str, resource: dict[str, Any], return_resource: bool
) -> dict[str, Any]:
    meta = resource.get("meta", {})
    version = meta.get("versionId")
    response: dict[str, Any] = {
        "status": status,
        "location": f"{resource_type}/{resource['id']}/_history/{version}",
        "etag": f'W/"{version}"',
        "lastModified": meta.get("lastUpdated"),
    }
    entry: dict[str, Any] = {"fullUrl": f"{resource_type}/{resource['id']}"}
    if return_resource:
        entry["resource"] = resource
    entry["response"] = response
    return entry


def _unchanged(step: _Step, current_rows: dict[tuple[str, str], Current]) -> bool:
    """Whether the step writes what the resource holds already (a replay): no new version."""
    if step.target_id is None or step.resource is None:
        return False
    current = current_rows.get((step.entry.resource_type, step.target_id))
    alive = current is not None and not current.deleted
    return alive and current is not None and same_content(current.resource(), step.resource)


def _order(step: _Step) -> int:
    return _ORDER[step.entry.method]


def _index(step: _Step) -> int:
    return step.entry.index


def _any_match(token: IdentifierToken, tokens: list[tuple[str | None, str]]) -> bool:
    return any(token.matches(system, value) for system, value in tokens)


def _with_id_first(resource: dict[str, Any], resource_id: str) -> dict[str, Any]:
    ordered = {"resourceType": resource["resourceType"], "id": resource_id}
    if "meta" in resource:
        ordered["meta"] = resource["meta"]
    ordered.update(resource)
    ordered["id"] = resource_id
    return ordered


def _new_id() -> str:
    return str(uuid.uuid4())


def _loads(content: str) -> dict[str, Any]:
    value: dict[str, Any] = loads(content)
    return value
