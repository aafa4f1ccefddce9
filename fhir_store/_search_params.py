"""The search parameter registry, built once from the official R4 SearchParameter definitions.

Each definition's FHIRPath `expression` may join several resource types with `|`; the registry
keeps, per resource type, only the parts for that type. Simple paths (`Patient.identifier`,
`(Observation.value as Quantity)`, `Encounter.subject.where(resolve() is Patient)`) are
evaluated by a small walker; anything else is compiled once with fhirpathpy.

Parameters that select the same values share index rows (`rows_of`): `phonetic` has the rows
of `name` (both `Patient.name`), and `Encounter.patient` (`subject.where(resolve() is
Patient)`) the rows of `subject` that refer to a Patient. Only the first is written, so a
clinical resource stores one row per reference, not two (an ADT message wrote ~51 index rows,
six of them such copies, and the copies cost more than their share: each lands on a page of
its own in a value-ordered index). A reference parameter's logical references (identifier
only, no type to filter the shared rows by) keep rows of their own, `code:identifier`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Set
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib.resources import files
from typing import Any

from fhir_store._resources import R4_RESOURCE_TYPES

__all__ = [
    "RowsOf",
    "SearchParameter",
    "Step",
    "definition_parameter",
    "element_names",
    "index_plan",
    "modifier_rows_code",
    "parameters_for",
    "rows_of",
    "search_parameter",
    "use_custom",
]

# Parameters answered from the resource table itself rather than from index rows.
RESOURCE_COLUMNS = frozenset({"_id", "_lastUpdated"})
# Parameter types this store indexes; composite and special ones are not searchable yet.
INDEXED_TYPES = frozenset({"string", "token", "reference", "date", "number", "quantity", "uri"})
# The plan's kind for a reference parameter whose typed references another's rows hold.
LOGICAL_REFERENCE = "logical-reference"

# `(Type.a.b as X)...` is written `Type.a.b.as(X)...` before the steps are read.
_AS_GROUP = re.compile(r"^\((?P<path>[A-Z][A-Za-z]+(?:\.[a-z][A-Za-z0-9]*)+) as (?P<type>\w+)\)")
_ROOT = re.compile(r"^[A-Z][A-Za-z]+")
_STEP = re.compile(
    r"\.(?:(?P<name>[a-z][A-Za-z0-9]*)(?![\w(])|as\((?P<as>\w+)\)"
    r"|where\((?P<field>[a-z][A-Za-z0-9]*)\s*=\s*'(?P<literal>[^'\\]*)'\)"
    r"|where\(resolve\(\) is (?P<target>[A-Z][A-Za-z]+)\))"
)

# The values a part of an expression selects in a resource (only read: it may be the resource's
# own list).
Evaluator = Callable[[dict[str, Any]], list[Any]]


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a simple path: an element (`choice`: it may be a value[x] one), or a filter
    keeping elements whose `name` is `literal`."""

    name: str
    choice: bool = False
    literal: str | None = None


@dataclass(slots=True)
class _Part:
    """One `|`-separated part of an expression: a simple path, or a FHIRPath expression."""

    steps: tuple[Step, ...] | None
    target: str | None  # only references to this type (`where(resolve() is X)`)
    expression: str
    first: str | None = None  # the first element the expression reads, if known
    _compiled: Callable[..., Any] | None = None

    def evaluate(self, resource: dict[str, Any]) -> list[Any]:
        """The values this part selects in `resource`."""
        if self.steps is not None:
            values = _walk(resource, self.steps)
            if self.target is not None:
                values = [value for value in values if _refers_to(value, self.target)]
            return values
        if (
            self.first is not None
            and self.first not in resource
            and _choice(resource, self.first) is None
        ):
            return []  # nothing to read: skip the (slow) FHIRPath evaluation
        if self._compiled is None:
            self._compiled = _compile(self.expression)
        try:
            result = self._compiled(resource, {})
        except Exception:  # a FHIRPath evaluation error indexes nothing
            return []
        return list(result) if isinstance(result, list) else [result]


@dataclass(slots=True)
class SearchParameter:
    """A search parameter of one resource type: its code, type and expression parts."""

    code: str
    type: str
    expression: str
    parts: list[_Part] = field(default_factory=list)
    targets: tuple[str, ...] = ()

    def values(self, resource: dict[str, Any], present: Set[str] | None = None) -> list[Any]:
        """The values of the parameter in `resource` (FHIR JSON elements or primitives);
        `present` (from `element_names`) lets parts that read an absent element be skipped."""
        found: list[Any] = []
        for part in self.parts:
            if present is not None and part.first is not None and part.first not in present:
                continue
            found.extend(part.evaluate(resource))
        return found


def element_names(resource: dict[str, Any]) -> set[str]:
    """The resource's top-level element names, value[x] ones also without their type suffix."""
    names = set(resource)
    for key in resource:
        if not key.islower():
            base = _choice_base(key)
            if base:
                names.add(base)
    return names


def index_plan(resource_type: str) -> tuple[tuple[str | None, str, str, Evaluator], ...]:
    """(first element read or None, code, type, evaluator) of every part of every parameter
    `parameters_for(resource_type)` gives, in that order: the extraction work of the type,
    laid out once so that a resource's index costs no lookups and no parsing."""
    return _plan(resource_type)


@dataclass(frozen=True, slots=True)
class RowsOf:
    """Where a parameter's index rows are: under `code`, and only those referring to a
    `target` when the parameter keeps only references to that type."""

    code: str
    target: str | None = None


def rows_of(resource_type: str, code: str) -> RowsOf:
    """The rows that hold the values of parameter `code` of `resource_type` (its own, unless
    another parameter selects the same values)."""
    return _shared_rows(resource_type).get(code) or RowsOf(code)


def modifier_rows_code(resource_type: str, code: str) -> str:
    """The code whose modifier rows (`code:text`, `code:identifier`, ...) hold those of `code`:
    a reference parameter that filters by type keeps its own `:identifier` rows."""
    rows = rows_of(resource_type, code)
    return code if rows.target is not None else rows.code


def search_parameter(resource_type: str, code: str) -> SearchParameter | None:
    """The parameter `code` of `resource_type` (a custom one first), or None if there is none."""
    custom = _CUSTOM.get(resource_type)
    if custom is not None and code in custom:
        return custom[code]
    return _registry().get(resource_type, {}).get(code)


def parameters_for(resource_type: str) -> list[SearchParameter]:
    """The parameters of `resource_type` that the store indexes at write time, the custom
    ones (`use_custom`) included."""
    official = _indexed().get(resource_type, [])
    custom = _CUSTOM.get(resource_type)
    if not custom:
        return official
    return [p for p in official if p.code not in custom] + [
        p for p in custom.values() if p.type in INDEXED_TYPES and p.parts
    ]


def definition_parameter(definition: dict[str, Any], resource_type: str) -> SearchParameter | None:
    """The parameter a SearchParameter resource defines for one of its base types."""
    return _parameter(definition, resource_type)


def use_custom(parameters: dict[str, dict[str, SearchParameter]]) -> None:
    """Search and index with these custom parameters (per resource type, by code) on top of the
    specification's, in place of the previous custom ones. Callers also drop the plans that
    depend on the registry (`_indexing.forget_plans`)."""
    global _CUSTOM  # one rebinding: a search or write in another thread sees old or new
    _CUSTOM = {resource_type: dict(by_code) for resource_type, by_code in parameters.items()}
    _shared_rows.cache_clear()
    _plan.cache_clear()


# Custom parameters (SearchParameter resources of the store), per resource type, by code.
_CUSTOM: dict[str, dict[str, SearchParameter]] = {}


@lru_cache(maxsize=256)  # the R4 resource types, with room for unknown ones
def _plan(resource_type: str) -> tuple[tuple[str | None, str, str, Evaluator], ...]:
    shared = _shared_rows(resource_type)
    plan: list[tuple[str | None, str, str, Evaluator]] = []
    for parameter in parameters_for(resource_type):
        kind = parameter.type
        rows = shared.get(parameter.code)
        if rows is not None and rows.target is None:
            continue  # the same values as another parameter: its rows answer for both
        if rows is not None:
            kind = LOGICAL_REFERENCE  # only the logical references, which have no type
        plan.extend(
            (part.first, parameter.code, kind, _evaluator(part)) for part in parameter.parts
        )
    return tuple(plan)


@lru_cache(maxsize=256)
def _shared_rows(resource_type: str) -> dict[str, RowsOf]:
    """The parameters of `resource_type` whose values another one's rows hold: those with
    the same type and expression parts as an earlier one, and reference parameters whose
    every part is another's with `.where(resolve() is X)` added.

    Only the specification's parameters share, and none that a custom one replaces: a custom
    parameter keeps rows of its own, so adding or removing one changes what the others read
    only where it replaces a holder (whose sharers then need `$reindex`, as the replaced
    parameter does)."""
    custom = _CUSTOM.get(resource_type, {})
    # `identifier` always keeps its own rows: the identifier lookups of conditional writes
    # read them by that code for any type.
    parameters = sorted(
        (p for p in _indexed().get(resource_type, []) if p.code not in custom),
        key=lambda p: (p.code != "identifier", p.code),
    )
    holders: dict[tuple[str, tuple[Any, ...]], str] = {}
    shared: dict[str, RowsOf] = {}
    for parameter in parameters:
        key = (parameter.type, _selection(parameter.parts, keep_target=True))
        holder = holders.setdefault(key, parameter.code)
        if holder != parameter.code:
            shared[parameter.code] = RowsOf(holder)
    for parameter in parameters:
        if parameter.type != "reference" or parameter.code in shared:
            continue
        targets = {part.target for part in parameter.parts}
        if len(targets) != 1 or None in targets or any(p.steps is None for p in parameter.parts):
            continue  # not every part one simple path filtered to the same type
        (target,) = targets
        unfiltered = holders.get(("reference", _selection(parameter.parts, keep_target=False)))
        if unfiltered is not None:
            shared[parameter.code] = RowsOf(unfiltered, target)
    return shared


def _selection(parts: list[_Part], *, keep_target: bool) -> tuple[Any, ...]:
    """What the parts select, comparable between parameters of one type."""
    return tuple(
        (part.steps, part.target if keep_target else None)
        if part.steps is not None
        else (part.expression,)
        for part in parts
    )


def _evaluator(part: _Part) -> Evaluator:
    """The part's evaluation; one element of the resource (`Patient.gender`) read directly."""
    steps = part.steps
    if steps is None or part.target is not None or len(steps) != 1 or steps[0].literal is not None:
        return part.evaluate
    name, choice = steps[0].name, steps[0].choice

    def element(resource: dict[str, Any]) -> list[Any]:
        value = resource.get(name)
        if value is None:
            value = _choice(resource, name) if choice else None
            if value is None:
                return []
        return value if isinstance(value, list) else [value]

    return element


@lru_cache(maxsize=4096)
def _choice_base(key: str) -> str:
    """`value` for `valueQuantity`: the key up to its first capital ("" if none)."""
    for position, char in enumerate(key):
        if char.isupper():
            return key[:position]
    return ""


@cache
def _registry() -> dict[str, dict[str, SearchParameter]]:
    text = files("fhir_store").joinpath("definitions/search-parameters-r4.json").read_text("utf-8")
    bundle = json.loads(text)
    registry: dict[str, dict[str, SearchParameter]] = {}
    common: list[dict[str, Any]] = []
    for entry in bundle.get("entry", []):
        definition = entry.get("resource", {})
        bases = definition.get("base", [])
        if "Resource" in bases or "DomainResource" in bases:
            common.append(definition)
            continue
        for base in bases:
            parameter = _parameter(definition, base)
            if parameter is not None:
                registry.setdefault(base, {})[parameter.code] = parameter
    for resource_type in list(registry) + _other_types(registry):
        for definition in common:
            parameter = _parameter(definition, resource_type)
            if parameter is not None:
                registry.setdefault(resource_type, {}).setdefault(parameter.code, parameter)
    return registry


def _other_types(registry: dict[str, dict[str, SearchParameter]]) -> list[str]:
    return sorted(R4_RESOURCE_TYPES - set(registry))


@cache
def _indexed() -> dict[str, list[SearchParameter]]:
    return {
        resource_type: [
            parameter
            for code, parameter in parameters.items()
            if parameter.type in INDEXED_TYPES and code not in RESOURCE_COLUMNS and parameter.parts
        ]
        for resource_type, parameters in _registry().items()
    }


def _parameter(definition: dict[str, Any], resource_type: str) -> SearchParameter | None:
    code = definition.get("code")
    kind = definition.get("type")
    if not isinstance(code, str) or not isinstance(kind, str):
        return None
    expression = definition.get("expression") or ""
    parts: list[_Part] = []
    for text in _split_union(expression):
        owner = text.lstrip("(").split(".", 1)[0]
        if owner in ("Resource", "DomainResource"):
            text = text.replace(owner + ".", resource_type + ".", 1)
        elif owner != resource_type:
            continue
        parts.append(_part(text))
    targets = tuple(definition.get("target", []))
    return SearchParameter(code, kind, expression, parts, targets)


def _part(text: str) -> _Part:
    """A simple path's steps, or None steps (fhirpathpy evaluates the part)."""
    normal = _AS_GROUP.sub(lambda match: f"{match['path']}.as({match['type']})", text)
    root = _ROOT.match(normal)
    first = re.match(r"^\(?[A-Z][A-Za-z]+\.([a-z][A-Za-z0-9]*)", text)
    fallback = _Part(None, None, text, first[1] if first else None)
    if root is None:
        return fallback
    steps: list[Step] = []
    target: str | None = None
    position = root.end()
    while position < len(normal):
        match = _STEP.match(normal, position)
        if match is None or target is not None:
            return fallback
        position = match.end()
        if match["name"] is not None:
            # Without `as`, any element may be a value[x]: the walker tries name + Type keys.
            steps.append(Step(match["name"], choice=True))
        elif match["as"] is not None:
            if not steps or steps[-1].literal is not None:
                return fallback
            as_type = match["as"]
            steps[-1] = Step(steps[-1].name + as_type[0].upper() + as_type[1:])
        elif match["field"] is not None:
            steps.append(Step(match["field"], literal=match["literal"]))
        else:
            target = match["target"]
    if not steps:
        return fallback
    return _Part(tuple(steps), target, text, steps[0].name)


def _split_union(expression: str) -> list[str]:
    """The top-level `|` parts of an expression (not those inside parentheses or strings)."""
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for position, char in enumerate(expression):
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(expression[start:position].strip())
            start = position + 1
    last = expression[start:].strip()
    if last:
        parts.append(last)
    return parts


def _walk(resource: dict[str, Any], steps: tuple[Step, ...]) -> list[Any]:
    current: list[Any] = [resource]
    for step in steps:
        name = step.name
        if step.literal is not None:
            literal = step.literal
            current = [
                node for node in current if isinstance(node, dict) and node.get(name) == literal
            ]
            if not current:
                return []
            continue
        following: list[Any] = []
        for node in current:
            if not isinstance(node, dict):
                continue
            value = node.get(name)
            if value is None:
                if not step.choice:
                    continue
                value = _choice(node, name)
                if value is None:
                    continue
            if isinstance(value, list):
                following.extend(value)
            else:
                following.append(value)
        if not following:
            return []
        current = following
    return current


def _choice(node: dict[str, Any], name: str) -> Any:
    size = len(name)
    for key, value in node.items():
        if len(key) > size and key.startswith(name) and key[size].isupper():
            return value
    return None


def _refers_to(value: Any, target: str) -> bool:
    if not isinstance(value, dict):
        return False
    reference = value.get("reference")
    if isinstance(reference, str):
        parts = reference.split("/")
        return len(parts) >= 2 and parts[-2] == target
    return value.get("type") == target


def _compile(expression: str) -> Callable[..., Any]:
    from fhirpathpy import compile as compile_fhirpath
    from fhirpathpy.models import models

    compiled: Callable[..., Any] = compile_fhirpath(expression, models["r4"])
    return compiled
