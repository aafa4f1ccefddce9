"""Composite search parameters (`code-value-quantity=http://loinc.org|8480-6$gt100`), generated
from the `component` lists of the R4 definitions.

The components must match within the same element (the same Observation.component), so they
are indexed together: each value of the second component is written to the index table of its
type under a parameter name that carries the first component's token, `code$<digest>`, where
the digest stands for `system|code`, `|code` (no system), `*|code` (any system) or `system|*`
(any code of the system). A search then reads one table, one exact `param`, and compares the
second component's value as its own type would. Supported: the R4 composites of two components
whose first is a token (all but MolecularSequence's coordinates).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from fhir_store.errors import InvalidRequest, NotSupported

__all__ = [
    "Composite",
    "composite",
    "composite_param",
    "composite_codes",
    "composite_values",
    "refuse",
    "split_composite",
]

# An element name in a path (`value.as(Quantity)` becomes `valueQuantity`).
_STEP = re.compile(r"[a-z][A-Za-z0-9]*")
_COMPONENT_TYPES = frozenset({"string", "token", "reference", "date", "number", "quantity", "uri"})


@dataclass(frozen=True, slots=True)
class Composite:
    """A composite parameter of one resource type: the paths to its elements (None: the
    resource itself), the token component's paths, and the second component's type and paths."""

    code: str
    elements: tuple[tuple[str, ...] | None, ...]
    token: tuple[tuple[str, ...], ...]
    kind: str
    value: tuple[tuple[str, ...], ...]


def composite(resource_type: str, code: str) -> Composite | None:
    """The composite parameter `code` of `resource_type` this store indexes, if any."""
    return _composites().get(resource_type, {}).get(code)


def composite_codes(resource_type: str) -> list[str]:
    """The codes of the composite parameters of `resource_type` this store indexes."""
    return sorted(_composites().get(resource_type, {}))


def composite_param(code: str, key: str) -> str:
    """The index `param` of a composite's rows for one token key (`system|code` and so on)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()
    return f"{code}${digest}"


def composite_values(
    resource_type: str, resource: dict[str, Any]
) -> Iterator[tuple[str, str, Any]]:
    """(type, param, value) of the index rows of every composite parameter of the resource:
    each second component value under the param of each key of the same element's tokens."""
    for parameter in _composites().get(resource_type, {}).values():
        for element in _elements(resource, parameter.elements):
            keys = [key for path in parameter.token for key in _token_keys(_walk(element, path))]
            if not keys:
                continue
            values = [value for path in parameter.value for value in _walk(element, path)]
            for key in dict.fromkeys(keys):
                param = composite_param(parameter.code, key)
                for value in values:
                    yield parameter.kind, param, value


def split_composite(name: str, text: str) -> tuple[str, str]:
    """A composite search value's token key and second component: `system|code$value`
    (`\\$` is a dollar inside a part); InvalidRequest naming the parameter otherwise."""
    parts = re.split(r"(?<!\\)\$", text)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise InvalidRequest(
            f"search parameter '{name}' must be two values joined by $, such as "
            "http://loinc.org|8480-6$gt100",
            expression=[name],
        )
    token, value = (part.replace("\\$", "$") for part in parts)
    if "|" not in token:
        return f"*|{token}", value
    system, _, code = token.partition("|")
    if not code:
        return f"{system}|*", value
    return f"{system}|{code}", value


def refuse(name: str, resource_type: str) -> NotSupported:
    """The error for a composite this store does not index, or a modifier on one."""
    return NotSupported(
        f"search parameter '{name}': this composite parameter of {resource_type} (or the "
        "modifier) is not supported; composites of a token and one other value are",
        expression=[name],
    )


def _token_keys(values: list[Any]) -> Iterator[str]:
    """The keys a token value is found by: `system|code`, `*|code`, `system|*` or `|code`."""
    for value in values:
        if isinstance(value, str):
            yield from (f"|{value}", f"*|{value}")
        elif isinstance(value, dict):
            codings = value.get("coding")
            if isinstance(codings, list):
                yield from _token_keys(codings)
                continue
            code = value.get("code", value.get("value"))
            if not isinstance(code, str) or not code:
                continue
            system = value.get("system")
            if isinstance(system, str) and system:
                yield from (f"{system}|{code}", f"*|{code}", f"{system}|*")
            else:
                yield from (f"|{code}", f"*|{code}")


def _elements(
    resource: dict[str, Any], paths: tuple[tuple[str, ...] | None, ...]
) -> Iterator[dict[str, Any]]:
    for path in paths:
        if path is None:
            yield resource
        else:
            yield from (node for node in _walk(resource, path) if isinstance(node, dict))


def _walk(node: Any, path: tuple[str, ...]) -> list[Any]:
    current = [node]
    for name in path:
        following: list[Any] = []
        for item in current:
            if isinstance(item, dict):
                value = item.get(name)
                if value is None:  # a value[x] element named by its base (`value`)
                    value = next(
                        (
                            v
                            for k, v in item.items()
                            if k.startswith(name) and k[len(name) :][:1].isupper()
                        ),
                        None,
                    )
                if isinstance(value, list):
                    following.extend(value)
                elif value is not None:
                    following.append(value)
        current = following
    return current


def _paths(expression: str) -> tuple[tuple[str, ...], ...] | None:
    """The element paths of a relative expression (`code`, `value.as(Quantity) | value.as(
    Range)`), or None if it is anything else."""
    paths: list[tuple[str, ...]] = []
    for part in expression.split("|"):
        steps: list[str] = []
        for text in part.strip().split("."):
            if text.startswith("as(") and steps:
                kind = text[3:-1]
                steps[-1] += kind[:1].upper() + kind[1:]
                continue
            match = _STEP.fullmatch(text)
            if match is None:
                return None
            steps.append(text)
        paths.append(tuple(steps))
    return tuple(paths)


@cache
def _composites() -> dict[str, dict[str, Composite]]:
    text = files("fhir_store").joinpath("definitions/search-parameters-r4.json").read_text("utf-8")
    definitions = [entry.get("resource", {}) for entry in json.loads(text).get("entry", [])]
    kinds = {definition.get("url"): definition.get("type") for definition in definitions}
    found: dict[str, dict[str, Composite]] = {}
    for definition in definitions:
        if definition.get("type") != "composite":
            continue
        components = definition.get("component") or []
        if len(components) != 2:
            continue
        (first, second) = components
        kind = kinds.get(second.get("definition"))
        token, value = _paths(first.get("expression", "")), _paths(second.get("expression", ""))
        if kinds.get(first.get("definition")) != "token" or kind not in _COMPONENT_TYPES:
            continue
        if token is None or value is None:
            continue
        for base in definition.get("base", []):
            elements = _base_paths(definition.get("expression", ""), base)
            if elements:
                found.setdefault(base, {})[definition["code"]] = Composite(
                    definition["code"], elements, token, str(kind), value
                )
    return found


def _base_paths(expression: str, base: str) -> tuple[tuple[str, ...] | None, ...]:
    """The paths of the parts of a composite's expression that belong to `base`."""
    paths: list[tuple[str, ...] | None] = []
    for part in expression.split("|"):
        steps = part.strip().split(".")
        if steps[0] != base:
            continue
        if len(steps) == 1:
            paths.append(None)
        elif all(_STEP.fullmatch(step) for step in steps[1:]):
            paths.append(tuple(steps[1:]))
    return tuple(paths)
