"""Composite search parameters (`code-value-quantity=http://loinc.org|8480-6$gt100`), generated
from the `component` lists of the R4 definitions.

The components must match within the same element (the same Observation.component), so they
are indexed together: each value of the second component is written to the index table of its
type under a parameter name that carries the first component's token, `code$<digest>`, where
the digest stands for `system|code`, `|code` (no system) or `*|code` (any system). A search
then reads one table, one exact `param`, and compares the second component's value as its own
type would. A composite joining the elements of others (Observation's `combo-*`) is answered
by their rows. Supported: the R4 composites of two components whose first is a token (all but
MolecularSequence's coordinates and DocumentReference's relationship).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cache, lru_cache
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
    resource itself), the token component's paths, the second component's type and paths, and
    the composites whose rows answer it (itself, or those whose elements it joins)."""

    code: str
    elements: tuple[tuple[str, ...] | None, ...]
    token: tuple[tuple[str, ...], ...]
    kind: str
    value: tuple[tuple[str, ...], ...]
    searched_as: tuple[str, ...] = ()


def composite(resource_type: str, code: str) -> Composite | None:
    """The composite parameter `code` of `resource_type` this store indexes, if any."""
    return _composites().get(resource_type, {}).get(code)


def composite_codes(resource_type: str) -> list[str]:
    """The codes of the composite parameters of `resource_type` this store indexes."""
    return sorted(_composites().get(resource_type, {}))


@lru_cache(maxsize=16384)  # a store sees few distinct codes: hash each once
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
        if parameter.searched_as != (parameter.code,):
            continue  # answered by the rows of others
        for element in _elements(resource, parameter.elements):
            values = [value for path in parameter.value for value in _walk(element, path)]
            if not values:  # the cheaper side first: most elements lack one of the value types
                continue
            keys = [key for path in parameter.token for key in _token_keys(_walk(element, path))]
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
    if not code:  # not indexed: it would add a row per value for a rare search
        raise NotSupported(
            f"search parameter '{name}': a composite's token needs a code (system|code, |code "
            "or code), not a system alone",
            expression=[name],
        )
    return f"{system}|{code}", value


def refuse(name: str, resource_type: str) -> NotSupported:
    """The error for a composite this store does not index, or a modifier on one."""
    return NotSupported(
        f"search parameter '{name}': this composite parameter of {resource_type} (or the "
        "modifier) is not supported; composites of a token and one other value are",
        expression=[name],
    )


def _token_keys(values: list[Any]) -> Iterator[str]:
    """The keys a token value is found by: `system|code`, `*|code` or `|code`."""
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
                yield from (f"{system}|{code}", f"*|{code}")
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
                if value is None and name.islower():  # a value[x] named by its base (`value`)
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
                code = definition["code"]
                found.setdefault(base, {})[code] = Composite(
                    code, elements, token, str(kind), value, (code,)
                )
    return {base: _joined(composites) for base, composites in found.items()}


def _joined(composites: dict[str, Composite]) -> dict[str, Composite]:
    """The composites with `searched_as` set: one whose elements are exactly those of others
    with the same components (Observation's combo-code-value-quantity joins code-value-quantity
    and component-code-value-quantity) is answered by their rows instead of its own copies."""
    joined: dict[str, Composite] = {}
    for code, parameter in composites.items():
        parts = [
            other
            for other in composites.values()
            if other.code != code
            and (other.token, other.kind, other.value)
            == (parameter.token, parameter.kind, parameter.value)
            and set(other.elements) < set(parameter.elements)
        ]
        covered = {element for other in parts for element in other.elements}
        if parts and covered == set(parameter.elements):
            parameter = replace(parameter, searched_as=tuple(other.code for other in parts))
        joined[code] = parameter
    return joined


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
