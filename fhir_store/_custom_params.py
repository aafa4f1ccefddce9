"""Custom search parameters: the store's own SearchParameter resources, searchable and indexed
like the specification's.

A SearchParameter resource (status other than retired, type token, string, reference, date,
number, quantity or uri, a code of letters, digits, `-` and `_`, R4 base types and a FHIRPath
`expression`) takes effect for the store's searches and writes once it is stored: the store
reads them all at its first use and again after each write of a SearchParameter. Resources
written before need `$reindex` (`_reindex`) to be found by it. The registry is one per process
(`_search_params.use_custom`): a process serves one FHIR database, and another process sees a
new parameter at its next start or its own next write of a SearchParameter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from fhir_store._capability import forget_capabilities
from fhir_store._indexing import forget_plans
from fhir_store._resources import R4_RESOURCE_TYPES
from fhir_store._search_params import (
    INDEXED_TYPES,
    SearchParameter,
    definition_parameter,
    use_custom,
)
from fhir_store.models import ResourceRow

__all__ = [
    "load_custom_parameters",
    "parameter_problem",
    "parameters_in_use",
    "touches_search_parameters",
]

_RESOURCE = cast(Table, ResourceRow.__table__)
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")


def load_custom_parameters(connection: Connection) -> dict[str, str]:
    """Read the store's SearchParameter resources and use those that can be used; returns the
    problem of each one that cannot, by id."""
    rows = connection.execute(
        select(_RESOURCE.c.id, _RESOURCE.c.content)
        .where(_RESOURCE.c.resource_type == "SearchParameter", _RESOURCE.c.deleted.is_(False))
        .order_by(_RESOURCE.c.id)
    )
    custom: dict[str, dict[str, SearchParameter]] = {}
    problems: dict[str, str] = {}
    for resource_id, content in rows:
        definition: dict[str, Any] = json.loads(content or "{}")
        if definition.get("status") == "retired":
            continue
        problem = parameter_problem(definition)
        if problem is not None:
            problems[resource_id] = problem
            continue
        for base in definition["base"]:
            parameter = definition_parameter(definition, base)
            if parameter is not None and parameter.parts:
                custom.setdefault(base, {})[parameter.code] = parameter
    signature = sorted(
        (base, code, parameter.type, parameter.expression)
        for base, parameters in custom.items()
        for code, parameter in parameters.items()
    )
    if signature != _IN_USE:  # the plans are only rebuilt when something changed
        _IN_USE[:] = signature
        use_custom(custom)
        forget_plans()
        forget_capabilities()
    return problems


# (base, code, type, expression) of the custom parameters in use.
_IN_USE: list[tuple[str, str, str, str]] = []


def parameters_in_use() -> list[tuple[str, str, str, str]]:
    """(base, code, type, expression) of the custom parameters this process indexes with, as
    `load_custom_parameters` last set them."""
    return list(_IN_USE)


def parameter_problem(definition: dict[str, Any]) -> str | None:
    """Why a SearchParameter resource cannot be used as a custom parameter, or None."""
    code = definition.get("code")
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        return "SearchParameter.code must be 1 to 40 letters, digits, '-' or '_'"
    if definition.get("type") not in INDEXED_TYPES:
        return (
            "SearchParameter.type must be one of " + ", ".join(sorted(INDEXED_TYPES)) + "; "
            f"{definition.get('type')!r} is not supported for custom parameters"
        )
    bases = definition.get("base")
    if not isinstance(bases, list) or not bases or not set(bases) <= R4_RESOURCE_TYPES:
        return "SearchParameter.base must list R4 resource types"
    expression = definition.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        return "SearchParameter.expression must be a FHIRPath expression"
    from fhirpathpy import compile as compile_fhirpath  # slow import: only when needed
    from fhirpathpy.models import models

    try:  # fhirpathpy finds some errors only when evaluating: try it on an empty resource
        compile_fhirpath(expression, models["r4"])({"resourceType": bases[0]}, {})
    except Exception as error:  # fhirpathpy raises several kinds for a bad expression
        return f"SearchParameter.expression is not valid FHIRPath: {error}"
    if not any(
        (parameter := definition_parameter(definition, base)) is not None and parameter.parts
        for base in bases
    ):
        return "SearchParameter.expression has no part that starts with one of its base types"
    return None


def touches_search_parameters(bundles: Iterable[Any]) -> bool:
    """Whether any entry of these Bundles writes a SearchParameter."""
    for bundle in bundles:
        entries = bundle.get("entry") if isinstance(bundle, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            resource = entry.get("resource")
            request = entry.get("request")
            url = request.get("url") if isinstance(request, dict) else None
            if isinstance(resource, dict) and resource.get("resourceType") == "SearchParameter":
                return True
            if isinstance(url, str) and url.lstrip("/").startswith("SearchParameter"):
                return True
    return False
