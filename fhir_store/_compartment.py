"""Compartments, from the official CompartmentDefinition: which resources are in a patient's
compartment (`Patient/1/Observation`, `Patient/1/$everything`), as subqueries over the
reference index.

A resource is in the compartment of Patient/1 when one of the search parameters the definition
lists for its type refers to Patient/1; the patient itself is in its own compartment too.
Only the Patient compartment is served: it is the only definition vendored.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any, cast

from sqlalchemy import ColumnElement, CompoundSelect, Table, or_, select, true, tuple_, union_all

from fhir_store._search_params import rows_of, search_parameter
from fhir_store.errors import InvalidRequest, NotSupported
from fhir_store.models import ReferenceIndexRow, ResourceRow

__all__ = [
    "COMPARTMENTS",
    "check_compartment",
    "compartment_members",
    "compartment_params",
    "in_compartment",
]

# The compartments served, by the type of their focal resource: the definitions' canonical URLs.
COMPARTMENTS = {"Patient": "http://hl7.org/fhir/CompartmentDefinition/patient"}
_FILES = {"Patient": "definitions/compartmentdefinition-patient.json"}

_RESOURCE = cast(Table, ResourceRow.__table__)
_REFERENCE = cast(Table, ReferenceIndexRow.__table__)


def compartment_params(compartment: str) -> dict[str, tuple[str, ...]]:
    """Per resource type that can be in the compartment, the reference parameters that put it
    there (types the definition lists without parameters are never in it)."""
    check_compartment(compartment)
    return _params(compartment)


def check_compartment(compartment: str, resource_type: str | None = None) -> None:
    """NotSupported unless `compartment` is served; InvalidRequest if no `resource_type`
    resource can ever be in it."""
    if compartment not in COMPARTMENTS:
        raise NotSupported(
            f"the {compartment} compartment is not supported; only the Patient compartment is "
            "(CompartmentDefinition/patient)",
            expression=[compartment],
        )
    if resource_type is not None and resource_type != compartment:
        if resource_type not in _params(compartment):
            raise InvalidRequest(
                f"a {resource_type} is never in a {compartment} compartment: "
                f"CompartmentDefinition/{compartment.lower()} lists no parameter for it",
                expression=[resource_type],
            )


def in_compartment(compartment: str, focus_id: str, resource_type: str) -> ColumnElement[bool]:
    """The condition on the resource table that a `resource_type` resource is in the
    compartment of `compartment`/`focus_id`."""
    check_compartment(compartment, resource_type)
    conditions: list[ColumnElement[bool]] = []
    if resource_type == compartment:
        conditions.append(_RESOURCE.c.id == focus_id)  # the focal resource itself
    codes = _stored_codes(compartment, resource_type)
    if codes:
        referring = select(_REFERENCE.c.resource_id).where(
            _REFERENCE.c.resource_type == resource_type,
            _REFERENCE.c.param.in_(codes),
            _REFERENCE.c.target_type == compartment,
            _REFERENCE.c.target_id == focus_id,
        )
        conditions.append(_RESOURCE.c.id.in_(referring))
    return or_(*conditions)


def compartment_members(compartment: str, focus_id: str | None) -> CompoundSelect[Any]:
    """(resource_type, id, key) of every resource in the compartment of `compartment`/`focus_id`
    (of every resource of type `compartment` if `focus_id` is None), the focal ones included;
    deleted ones may be listed (the caller joins the current resources)."""
    check_compartment(compartment)
    pairs = [
        (resource_type, code)
        for resource_type in sorted(_params(compartment))
        for code in _stored_codes(compartment, resource_type)
    ]
    reference = _REFERENCE.alias()
    referring = select(
        reference.c.resource_type, reference.c.resource_id, reference.c.resource_key
    ).where(
        reference.c.target_type == compartment,
        reference.c.target_id == focus_id if focus_id is not None else true(),
        # the two lists let the databases seek the lookup index (type, param, target); the
        # pairs then keep only the parameters listed for each type
        reference.c.resource_type.in_(sorted({resource_type for resource_type, _ in pairs})),
        reference.c.param.in_(sorted({code for _, code in pairs})),
        tuple_(reference.c.resource_type, reference.c.param).in_(pairs),
    )
    resource = _RESOURCE.alias()
    focal = select(resource.c.resource_type, resource.c.id, resource.c.key).where(
        resource.c.resource_type == compartment,
        resource.c.id == focus_id if focus_id is not None else true(),
    )
    return union_all(focal, referring)


def _stored_codes(compartment: str, resource_type: str) -> tuple[str, ...]:
    """The parameter codes whose rows hold the compartment's parameters of `resource_type`
    (`rows_of`): the rows are read with target type `compartment`, which also keeps only the
    references that a type-filtering parameter (`patient`: `subject` to a Patient) keeps."""
    codes: dict[str, None] = {}
    for code in _params(compartment).get(resource_type, ()):
        rows = rows_of(resource_type, code)
        if rows.target in (None, compartment):
            codes[rows.code] = None
    return tuple(codes)


@cache
def _params(compartment: str) -> dict[str, tuple[str, ...]]:
    text = files("fhir_store").joinpath(_FILES[compartment]).read_text("utf-8")
    definition = json.loads(text)
    params: dict[str, tuple[str, ...]] = {}
    for entry in definition.get("resource", []):
        codes = tuple(
            code
            for code in entry.get("param", [])
            # `{def}` in some definitions means "the resource's own reference to the focus";
            # it is not a search parameter and has no index rows
            if _is_reference(entry["code"], code)
        )
        if codes:
            params[entry["code"]] = codes
    return params


def _is_reference(resource_type: str, code: str) -> bool:
    parameter = search_parameter(resource_type, code)
    return parameter is not None and parameter.type == "reference"
