"""A quick check that a resource certainly matches the R4B structure, ahead of the models.

Validating with the `fhir.resources` models builds a pydantic object for every element, each
through Python validators: 0.1-0.3 ms per resource, which was more than half of what mapping
an ADT^A04 cost and most of what a 20-result ORU^R01 cost. This check walks the JSON once with
a plan derived from the same models (element names, cardinality, element types, required
elements, choice groups) and validates each primitive value with the model's own annotation
(a pydantic `TypeAdapter`, remembered per distinct value): about ten times faster.

It answers only "certainly valid" or "not sure". Anything it does not follow exactly (a null,
an empty list or object, an element given by its Python name, `fhir_comments`, a primitive
list's extensions, a model with validators of its own) is "not sure", and the caller then
validates with the models, which stay the authority: they alone say what is wrong and where.
The property that matters is one-sided: what this accepts, the models accept
(tests/fhir_store/test_structure_check.py checks it on mutated Synthea and mapping output).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from fhir_store._models import model_of

__all__ = ["certainly_valid"]

# The model validators whose rules the plan below enforces (null list items, required
# elements, choice groups; a primitive extension's "id or extension"); a model with any other
# is never "certainly valid" here, so a newer fhir.resources cannot slip a rule past it.
_FOLLOWED_VALIDATORS = frozenset(
    {
        "reject_null_complex_elements",
        "validate_after_model_construction",
        "validate_extension_or_fhir_comment_required",
    }
)
_LEAF_CACHE_LIMIT = 4096  # distinct valid values remembered per primitive type (33 types)
_LEAF_CACHE_LONGEST = 64  # longer texts (names with addresses, notes) seldom come again
_JSON_PRIMITIVES = frozenset({str, int, float, bool})

LeafCheck = Callable[[Any], bool]


def certainly_valid(resource: dict[str, Any], model: type[BaseModel]) -> bool:
    """True when `resource` certainly passes `model`'s validation; False when not sure."""
    return _valid(resource, _plan(model))


class _Field(typing.NamedTuple):
    repeats: bool
    leaf: LeafCheck | None  # a primitive's check
    model: type[BaseModel] | None  # a complex type's model; neither: a resource (contained)


class _Plan(typing.NamedTuple):
    fields: dict[str, _Field]  # by JSON name
    required: tuple[str, ...]
    choices: tuple[tuple[frozenset[str], bool], ...]  # (JSON names, one required)
    resource_type: str | None  # for resources: the `resourceType` they must carry
    followed: bool  # False: the model has validators this check does not follow


@cache
def _plan(model: type[BaseModel]) -> _Plan:
    from fhir_core.types import FhirBase

    declared = model.__pydantic_decorators__
    own_validators = set(declared.model_validators) | set(declared.field_validators)
    fields: dict[str, _Field] = {}
    required: list[str] = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        if info.is_required():
            required.append(key)
        shape = _shape(info.annotation)
        if name == "fhir_comments" or shape is None:
            continue  # not in the plan: a resource that has it is "not sure"
        repeats, inner = shape
        if isinstance(inner, type) and issubclass(inner, FhirBase):
            target = inner.get_model_klass()
            if target.__name__ == "Resource":
                fields[key] = _Field(repeats, None, None)
            elif target.__name__ != "Element":  # an abstract Element: left to the models
                fields[key] = _Field(repeats, None, target)
        else:
            fields[key] = _Field(repeats, _leaf_check(inner), None)
    # Required primitives (the models accept an extension in place of the value; this does not)
    aliases = {name: info.alias or name for name, info in model.model_fields.items()}
    by_element = model.get_alias_mapping()  # type: ignore[attr-defined]
    for element, _extension in model.get_required_fields(None):  # type: ignore[attr-defined]
        required.append(aliases[by_element.get(element, element)])
    choices = []
    for names in model.get_one_of_many_fields(None).values():  # type: ignore[attr-defined]
        extra = model.model_fields[names[0]].json_schema_extra
        one_required = isinstance(extra, dict) and extra.get("one_of_many_required") is True
        choices.append((frozenset(aliases[name] for name in names), one_required))
    resource_type: str | None = None
    if model.has_resource_base():  # type: ignore[attr-defined]
        resource_type = model.__resource_type__  # type: ignore[attr-defined]
    return _Plan(
        fields,
        tuple(required),
        tuple(choices),
        resource_type,
        own_validators <= _FOLLOWED_VALIDATORS,
    )


def _shape(annotation: Any) -> tuple[bool, Any] | None:
    """(repeats, element type) of an optional or list field; None for any other shape."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) != 1:
            return None
        annotation = members[0]
    if typing.get_origin(annotation) is list:
        (inner,) = typing.get_args(annotation)
        return True, inner
    return False, annotation


@cache
def _leaf_check(annotation: Any) -> LeafCheck:
    """Whether a JSON value passes the model's validation of a primitive with `annotation`.
    Codes, systems, units and dates repeat from message to message: a value once found valid
    is remembered (by type too, `True == 1`; short texts only), and the cache is emptied when
    full, which bounds it to a few MB a process."""
    validate = TypeAdapter(annotation).validate_python
    valid_values: dict[tuple[type, Any], bool] = {}

    def check(value: Any) -> bool:
        kind = type(value)
        if kind not in _JSON_PRIMITIVES:
            return False
        key = (kind, value)
        if key in valid_values:
            return True
        try:
            validate(value)
        except (ValidationError, ValueError, TypeError):
            return False
        if kind is not str or len(value) <= _LEAF_CACHE_LONGEST:
            if len(valid_values) >= _LEAF_CACHE_LIMIT:
                valid_values.clear()
            valid_values[key] = True
        return True

    return check


def _valid(node: Any, plan: _Plan) -> bool:
    if type(node) is not dict or not node or not plan.followed:
        return False
    fields = plan.fields
    for key, value in node.items():
        if key == "resourceType":
            if plan.resource_type is None or value != plan.resource_type:
                return False
            continue
        field = fields.get(key)
        if field is None or value is None:
            return False
        if field.repeats:
            if type(value) is not list or not value:
                return False
            items = value
        elif type(value) is list:
            return False
        else:
            items = [value]
        if field.leaf is not None:
            if not all(map(field.leaf, items)):
                return False
        elif field.model is not None:
            element = _plan(field.model)
            if not all(_valid(item, element) for item in items):
                return False
        elif not all(_valid_resource(item) for item in items):
            return False
    for key in plan.required:
        if key not in node:
            return False
    for names, one_required in plan.choices:
        present = len(names.intersection(node))
        if present > 1 or (one_required and present == 0):
            return False
    return plan.resource_type is None or node.get("resourceType") == plan.resource_type


def _valid_resource(node: Any) -> bool:
    """A contained resource or a Bundle entry's: a resource type with an R4B model."""
    if type(node) is not dict:
        return False
    resource_type = node.get("resourceType")
    model = model_of(resource_type) if type(resource_type) is str else None
    if model is None or not model.has_resource_base():  # type: ignore[attr-defined]
        return False
    return _valid(node, _plan(model))
