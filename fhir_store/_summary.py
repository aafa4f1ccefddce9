"""`_summary=true|text|data`: a resource cut down to the specification's summary elements.

The summary flags (`isSummary`) and the mandatory elements of each resource type come from the
fhir.resources R4B models' field metadata (`summary_element_property`, `element_required`,
required fields and required choices), read once per type: the store has no StructureDefinitions
of its own. The cut is made on top-level elements; a kept element is kept whole. A cut resource
carries the SUBSETTED tag, as the specification asks.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fhir_store._models import model_of

__all__ = ["SUBSETTED", "SUMMARY_MODES", "summarise", "tag_subsetted"]

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
# The `_summary` values that change the resources (`count` and `false` do not).
SUMMARY_MODES = frozenset({"true", "text", "data"})
_ALWAYS = frozenset({"resourceType", "id", "meta"})


def summarise(resource: dict[str, Any], mode: str) -> dict[str, Any]:
    """The resource as `_summary=mode` returns it (a new dict; `resource` is not changed)."""
    if mode == "data":
        kept = {key: value for key, value in resource.items() if key not in ("text", "_text")}
    else:
        elements = _elements(str(resource.get("resourceType")), mode)
        if elements is None:  # a type without a model: nothing known to cut
            return resource
        kept = {
            key: value
            for key, value in resource.items()
            if key in _ALWAYS or key.removeprefix("_") in elements
        }
    return tag_subsetted(kept)


def tag_subsetted(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource with the SUBSETTED tag added to its meta (in place; returned)."""
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    resource["meta"] = meta
    return resource


@lru_cache(maxsize=512)
def _elements(resource_type: str, mode: str) -> frozenset[str] | None:
    """The JSON names of the top-level elements `mode` keeps: the summary ones (`true`), or
    text and the mandatory ones (`text`); None if fhir.resources has no model of the type."""
    model = model_of(resource_type)
    if model is None:
        return None
    names: set[str] = set()
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra
        if not isinstance(extra, dict) or not extra.get("element_property"):
            continue
        if mode == "true":
            wanted = bool(extra.get("summary_element_property"))
        else:
            wanted = (
                field.is_required()
                or bool(extra.get("element_required"))
                or bool(extra.get("one_of_many_required"))
            )
        if wanted:
            names.add(field.alias or name)
    if mode == "text":
        names.add("text")
    return frozenset(names)
