"""Chained (`subject:Patient.name=`) and reverse chained (`_has:Observation:patient:code=`)
search parameters, as subqueries over the reference index.

A link of a chain is a reference parameter and the type it points to; the last link is any
search parameter of that type, with its modifiers, and is parsed by the ordinary search parser
(handed in as `parse`), so every parameter type and modifier works at the end of a chain. Each
link becomes `id IN (SELECT ... FROM fhir_reference_index WHERE ...)` around the resources that
match the rest of the chain: nothing is loaded into Python.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, Table, select
from sqlalchemy.sql.util import ClauseAdapter

from fhir_store._param_rows import param_is
from fhir_store._resources import R4_RESOURCE_TYPES
from fhir_store._search_params import search_parameter
from fhir_store.errors import FhirStoreError, InvalidRequest, NotSupported
from fhir_store.models import ReferenceIndexRow, ResourceRow

__all__ = ["CHAINING", "HAS", "LinkParser", "chained", "is_chained", "with_chaining"]

# The parser of one parameter on one resource type: the conditions it puts on the resource
# table, or none for a result parameter such as `_count` (which cannot end a chain).
LinkParser = Callable[[str, str, str], list[ColumnElement[bool]]]

# What the CapabilityStatement says about chains on every reference parameter, and about `_has`.
CHAINING = (
    "chaining: param:Type.param2=value, or param.param2=value when only one of the target "
    "types has param2; several links (subject:Patient.organization.name=); any parameter "
    "type and its modifiers at the end"
)
HAS = (
    "reverse chaining: _has:Type:referenceParam:param=value (the resources that a Type "
    "matching param refers to by referenceParam); nested _has: and chains in the last link"
)

_RESOURCE = cast(Table, ResourceRow.__table__)
_REFERENCE = cast(Table, ReferenceIndexRow.__table__)


def is_chained(name: str) -> bool:
    """Whether the query parameter `name` is a chain or a `_has` reverse chain."""
    return name.startswith("_has:") or name == "_has" or "." in name


def chained(
    resource_type: str, name: str, value: str, parse: LinkParser, *, strict: bool
) -> ColumnElement[bool] | None:
    """The condition on the resource table of a chained or `_has` parameter of `resource_type`.

    None if the last link names a parameter this store does not know and `strict` is off (the
    caller reports it as ignored); otherwise InvalidRequest or NotSupported naming `name`.
    """
    try:
        if name.startswith("_has"):
            return _reverse(resource_type, name, value, parse, strict=strict)
        return _forward(resource_type, name, value, parse, strict=strict)
    except FhirStoreError as error:
        if error.expression == [name]:
            raise
        # an error of an inner link: name the whole parameter, as the client wrote it
        raise type(error)(
            f"search parameter '{name}': {error.message}",
            expression=[name],
            status=error.status,
            code=error.code,
        ) from None


def with_chaining(params: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CapabilityStatement searchParam entries of a type, with chaining documented on its
    reference parameters and a `_has` entry added."""
    documented = [
        {**param, "documentation": f"{param.get('documentation', '')}; {CHAINING}".lstrip("; ")}
        if param.get("type") == "reference"
        else param
        for param in params
    ]
    return [*documented, {"name": "_has", "type": "special", "documentation": HAS}]


def _forward(
    resource_type: str, name: str, value: str, parse: LinkParser, *, strict: bool
) -> ColumnElement[bool] | None:
    """`ref[:Type].rest`: resources whose `ref` points to a Type matching `rest`."""
    head, _, rest = name.partition(".")
    code, _, typed = head.partition(":")
    if not rest or not code:
        raise InvalidRequest(
            f"search parameter '{name}' must be param.param2 or param:Type.param2",
            expression=[name],
        )
    parameter = search_parameter(resource_type, code)
    if parameter is None or parameter.type != "reference":
        raise InvalidRequest(
            f"search parameter '{name}': '{code}' is not a reference parameter of "
            f"{resource_type}, so it cannot be chained",
            expression=[name],
        )
    next_code = rest.partition(":")[0].partition(".")[0]
    target: str | None = typed
    if typed:
        if typed not in (parameter.targets or R4_RESOURCE_TYPES):
            raise InvalidRequest(
                f"search parameter '{name}': {resource_type}.{code} cannot refer to a "
                f"{typed}; it refers to {', '.join(parameter.targets) or 'R4 resources'}",
                expression=[name],
            )
    else:
        target = _inferred_target(resource_type, name, code, parameter.targets, next_code)
    if target is None or not _known(target, next_code):
        types = target or ", ".join(parameter.targets)
        if next_code.startswith("_"):
            raise _cannot_end(name, rest, types)  # a result parameter such as _count
        if strict:
            raise NotSupported(
                f"search parameter '{name}': '{next_code}' is not a search parameter of {types}",
                expression=[name],
            )
        return None
    matching = _matching(target, rest, value, parse)
    if matching is None:
        raise _cannot_end(name, rest, target)
    links = select(_REFERENCE.c.resource_key).where(
        _REFERENCE.c.resource_type == resource_type,
        *param_is(_REFERENCE, resource_type, code),
        _REFERENCE.c.target_type == target,
        _REFERENCE.c.target_id.in_(matching),
    )
    # a link never correlates with the index rows of the link around it: it is self-contained
    links = links.correlate(None)
    return _RESOURCE.c.key.in_(links)


def _reverse(
    resource_type: str, name: str, value: str, parse: LinkParser, *, strict: bool
) -> ColumnElement[bool] | None:
    """`_has:Type:ref:rest`: resources that a Type matching `rest` refers to with `ref`."""
    parts = name.split(":", 3)
    if len(parts) != 4 or not all(parts[1:]):
        raise InvalidRequest(
            f"search parameter '{name}' must be _has:Type:referenceParam:param, such as "
            "_has:Observation:patient:code",
            expression=[name],
        )
    _, source, code, rest = parts
    if source not in R4_RESOURCE_TYPES:
        raise InvalidRequest(
            f"search parameter '{name}': '{source}' is not an R4 resource type",
            expression=[name],
        )
    parameter = search_parameter(source, code)
    if parameter is None or parameter.type != "reference":
        raise InvalidRequest(
            f"search parameter '{name}': '{code}' is not a reference parameter of {source}",
            expression=[name],
        )
    if parameter.targets and resource_type not in parameter.targets:
        raise InvalidRequest(
            f"search parameter '{name}': {source}.{code} never refers to a {resource_type}; "
            f"it refers to {', '.join(parameter.targets)}",
            expression=[name],
        )
    next_code = rest.partition(":")[0].partition(".")[0]
    if next_code.startswith("_") and not _known(source, next_code):
        raise _cannot_end(name, rest, source)
    if not _known(source, next_code):
        if strict:
            raise NotSupported(
                f"search parameter '{name}': '{next_code}' is not a search parameter of {source}",
                expression=[name],
            )
        return None
    matching = _matching(source, rest, value, parse, column="key")
    if matching is None:
        raise _cannot_end(name, rest, source)
    links = select(_REFERENCE.c.target_id).where(
        _REFERENCE.c.resource_type == source,
        *param_is(_REFERENCE, source, code),
        _REFERENCE.c.target_type == resource_type,
        # the rows of the matching resources, through the index by resource key
        _REFERENCE.c.resource_key.in_(matching),
    )
    links = links.correlate(None)
    return _RESOURCE.c.id.in_(links)


def _inferred_target(
    resource_type: str, name: str, code: str, targets: tuple[str, ...], next_code: str
) -> str | None:
    """The one target type of `code` that has the next link's parameter (None if none has
    it); 400 if several have it (the client then names the type: `code:Type.`)."""
    candidates = [target for target in targets if _known(target, next_code)]
    if len(targets) == 1:
        return targets[0]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        if not targets:
            raise InvalidRequest(
                f"search parameter '{name}': {resource_type}.{code} may refer to any type; "
                f"name it, such as {code}:Patient.{name.partition('.')[2]}",
                expression=[name],
            )
        return None  # an unknown parameter, whatever the type
    raise InvalidRequest(
        f"search parameter '{name}' is ambiguous: {resource_type}.{code} may refer to "
        f"{', '.join(candidates)}, which all have '{next_code}'; name the type, such as "
        f"{code}:{candidates[0]}.{name.partition('.')[2]}",
        expression=[name],
    )


def _known(resource_type: str, code: str) -> bool:
    return code == "_has" or search_parameter(resource_type, code) is not None


def _matching(
    resource_type: str, name: str, value: str, parse: LinkParser, *, column: str = "id"
) -> Select[Any] | None:
    """The ids (or another `column`) of the current resources of `resource_type` that match
    `name=value`, as a subquery; None if `name` puts no condition on resources (a result
    parameter)."""
    conditions = parse(resource_type, name, value)
    if not conditions:
        return None
    # The conditions are written on the resource table; an alias keeps them on this link's
    # resources, apart from the resources of the link (or the search) around it.
    target = _RESOURCE.alias()
    adapter = ClauseAdapter(target)
    return (
        select(target.c[column])
        .where(
            target.c.resource_type == resource_type,
            target.c.deleted.is_(False),
            *(adapter.traverse(condition) for condition in conditions),
        )
        .correlate(None)
    )


def _cannot_end(name: str, rest: str, resource_type: str) -> InvalidRequest:
    return InvalidRequest(
        f"search parameter '{name}': '{rest}' does not select {resource_type} resources, so "
        "it cannot end a chain",
        expression=[name],
    )
