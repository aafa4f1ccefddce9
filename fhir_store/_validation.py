"""Structural validation of resources with the `fhir.resources` models, on every write.

`fhir.resources` 8.x ships R5 (default), R4B and STU3 models but no R4 ones, so resources are
checked against R4B (4.3), the closest: R4 types that R4B dropped (MedicinalProduct*,
EffectEvidenceSynthesis, RiskEvidenceSynthesis, SubstanceSpecification, ...) are not checked.
The parsed JSON is validated as it is (`model_validate`), with the model looked up once per
type; that costs a few tenths of a millisecond per resource (bench/fhir_validation_cost.py), so
a quick walk of the JSON (`_structure_check`) goes first and the models see only what it is not
sure of: the invalid resources, whose issues they name, and the rare shapes it leaves to them.

A large group of writes (a Synthea transaction holds ~700 resources) is validated in the
store's background process (`prevalidate`, `_background`) while the write thread applies it
unchecked under a SAVEPOINT: the write waits for the answer only before its changes are kept,
so validation costs the other core's time instead of adding to the write's. Should a resource
be invalid, the group is applied again checking each resource with the answer, so that the
errors are those of inline validation (the first invalid entry, ahead of any failure met
later).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import orjson
from pydantic import ValidationError

from fhir_store._background import forget as forget_background
from fhir_store._background import submit
from fhir_store._json import dumps_bytes, loads
from fhir_store._models import model_of
from fhir_store._structure_check import certainly_valid
from fhir_store.errors import InvalidResource

__all__ = [
    "Prevalidated",
    "output_issues",
    "prevalidate",
    "structure_error",
    "structure_issues",
    "validate_structure",
]

Issues = list[tuple[str, str]]  # (element path, reason)

# Below this many resources the round trip to the other process costs more than it saves.
BACKGROUND_MIN = 32
_ISSUES_LIMIT = 10  # per resource, in the error

# Contents found valid lately, by their JSON: a sender repeats the same Practitioner,
# Organization and Location in every message (four of an ADT^A04's six resources), and their
# JSON costs 0.5-0.7 µs against 12-21 µs for the check. Small contents only, first in first
# out: at most ~8 MB a process. A plain dict, whose single steps the GIL keeps whole, so the
# threads that validate may share it.
_known_valid: dict[bytes, None] = {}
_KNOWN_VALID_MAX = 2048
_KNOWN_VALID_LARGEST = 4096  # bytes of JSON


def validate_structure(resource: dict[str, Any]) -> None:
    """Raise InvalidResource (422) naming the element paths that break the R4B structure."""
    issues = structure_issues(resource, limit=_ISSUES_LIMIT)
    if issues:
        raise structure_error(issues)


def structure_error(issues: Issues) -> InvalidResource:
    """The error of a resource with these structure issues."""
    reasons = "; ".join(f"{path}: {reason}" for path, reason in issues)
    return InvalidResource(
        f"the resource does not match the FHIR structure ({reasons})",
        expression=[path for path, _ in issues],
        status=422,
        code="structure",
    )


class Prevalidated:
    """The structure issues of a group of Bundles' resources, being found in another process.

    `issues(bundle, entry_index)` waits for the answer the first time it is asked. Should the
    other process die, the resources are validated here instead: never unchecked.
    """

    def __init__(
        self,
        future: Future[dict[str, Issues]],
        resources: dict[str, Any],
        positions: dict[int, int],
    ) -> None:
        self._future = future
        self._resources = resources  # as sent, to validate here if the other process fails
        self._positions = positions  # id(bundle) → its position in the group
        self._found: dict[str, Issues] | None = None

    def any_issues(self) -> bool:
        """Whether any resource of the group is invalid (waits for the answer)."""
        return bool(self._answer())

    def issues(self, bundle: object, entry_index: int) -> Issues:
        return self._answer().get(_key(self._positions[id(bundle)], entry_index), [])

    def _answer(self) -> dict[str, Issues]:
        if self._found is None:
            try:
                self._found = self._future.result()
            except BrokenProcessPool:
                forget_background()
                self._found = _issues_of(self._resources)
        return self._found


def prevalidate(bundles: Sequence[object]) -> Prevalidated | None:
    """Start validating the resources of `bundles` in another process, or None when they are
    too few for that to pay (they are then validated inline, one by one)."""
    resources: dict[str, Any] = {}
    for position, bundle in enumerate(bundles):
        entries = bundle.get("entry") if isinstance(bundle, dict) else None
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict):
                # The write gives every resource its id (the URL's, a matched or a new one),
                # always a valid one, before it is validated: the one sent is no problem here.
                resources[_key(position, index)] = {**resource, "id": "0"}
    if len(resources) < BACKGROUND_MIN:
        return None
    # Serialised now: the write thread changes the resources (references, ids) while the
    # other process works, and the pool would pickle them later, in another thread.
    future = submit(_issues_of_json, dumps_bytes(resources))
    if future is None:
        return None
    positions = {id(bundle): position for position, bundle in enumerate(bundles)}
    return Prevalidated(future, resources, positions)


def _key(position: int, entry_index: int) -> str:
    return f"{position}/{entry_index}"


def _issues_of_json(payload: bytes) -> dict[str, Issues]:
    return _issues_of(loads(payload))


def _issues_of(resources: dict[str, Any]) -> dict[str, Issues]:
    found = {}
    for key, resource in resources.items():
        issues = structure_issues(resource, limit=_ISSUES_LIMIT)
        if issues:
            found[key] = issues
    return found


def structure_issues(resource: dict[str, Any], *, limit: int = 100) -> list[tuple[str, str]]:
    """The (element path, reason) of each way the resource breaks the R4B structure."""
    resource_type = str(resource.get("resourceType"))
    model = model_of(resource_type)
    if model is None or _known_valid_content(resource, model):
        return []
    try:
        model.model_validate(resource)
    except ValidationError as error:
        issues = error.errors(include_input=False, include_url=False)[:limit]
        return [
            (_path(resource_type, issue["loc"]), issue["msg"].removeprefix("Value error, "))
            for issue in issues
        ]
    return []


def _known_valid_content(resource: dict[str, Any], model: Any) -> bool:
    """`certainly_valid`, remembered for small contents seen before."""
    try:
        content = orjson.dumps(resource)
    except orjson.JSONEncodeError:  # no JSON (a key that is no string): checked as it is
        return certainly_valid(resource, model)
    if content in _known_valid:
        return True
    if not certainly_valid(resource, model):
        return False
    if len(content) <= _KNOWN_VALID_LARGEST:
        if len(_known_valid) >= _KNOWN_VALID_MAX:
            _known_valid.pop(next(iter(_known_valid), b""), None)
        _known_valid[content] = None
    return True


def output_issues(document: Any) -> list[str]:
    """The structure problems of a mapping's output, as "element path: reason": each resource
    of a Bundle on its own (paths from `Bundle.entry[n].resource`), or a single resource.
    Registered as a `greenchannel.output_checks` entry point, so `greenchannel mappings test`
    proves every analyst test's output is valid FHIR."""
    if not isinstance(document, dict):
        return ["the output is not a JSON object"]
    if document.get("resourceType") != "Bundle":
        return [f"{path}: {reason}" for path, reason in structure_issues(document)]
    problems = [
        f"{path}: {reason}" for path, reason in structure_issues(_without_entries(document))
    ]
    for index, entry in enumerate(document.get("entry") or []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict):
            where = f"Bundle.entry[{index}].resource"
            problems += [
                f"{where} ({path}): {reason}" for path, reason in structure_issues(resource)
            ]
    return problems


def _without_entries(bundle: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in bundle.items() if key != "entry"}


def _path(resource_type: str, location: tuple[int | str, ...]) -> str:
    path = resource_type
    for part in location:
        path = f"{path}[{part}]" if isinstance(part, int) else f"{path}.{part}"
    return path
