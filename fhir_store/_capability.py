"""The server's CapabilityStatement: only what this store implements today."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from fhir_store._compartment import COMPARTMENTS
from fhir_store._everything import EVERYTHING
from fhir_store._resources import R4_RESOURCE_TYPES
from fhir_store._search_chain import with_chaining
from fhir_store._search_composite import composite_codes
from fhir_store._search_params import parameters_for

__all__ = ["capability_statement", "forget_capabilities"]

_INTERACTIONS = [
    "read",
    "vread",
    "create",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
]


def capability_statement() -> dict[str, Any]:
    """A CapabilityStatement (R4) describing the implemented interactions and searches."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),
        "kind": "instance",
        "software": {"name": "greenchannel FHIR store"},
        "implementation": {"description": "greenchannel FHIR store"},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "resource": _resources(),
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
                "compartment": list(COMPARTMENTS.values()),
                "operation": [
                    {
                        "name": "validate",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                    },
                    {
                        # HAPI's name; POST [type]/$reindex or SearchParameter/[id]/$reindex
                        "name": "reindex",
                        "definition": "http://hapifhir.io/fhir/OperationDefinition/reindex",
                    },
                ],
            }
        ],
    }


def forget_capabilities() -> None:
    """Build the resources' part again at the next request: the search parameters changed."""
    _resources.cache_clear()


@lru_cache(maxsize=1)
def _resources() -> list[dict[str, Any]]:
    # Built once (about 0.1 s): it changes only with the code and the custom parameters.
    return [_resource(resource_type) for resource_type in sorted(R4_RESOURCE_TYPES)]


def _resource(resource_type: str) -> dict[str, Any]:
    resource = {
        "type": resource_type,
        "interaction": [{"code": code} for code in _INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "not-supported",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "referencePolicy": ["literal", "logical"],
        "searchParam": with_chaining(_search_params(resource_type)),
    }
    if resource_type == "Patient":  # Patient/1/$everything and Patient/$everything
        resource["operation"] = [{"name": "everything", "definition": EVERYTHING}]
    return resource


# What `_search.py` implements per parameter type; the CapabilityStatement says exactly this.
# Every indexed parameter also takes :missing=true|false.
_SUPPORT = {
    "token": "system|code, |code, code or system|; comma for OR; :not (also matches resources "
    "without the element), :text (start of the text or a display, ignoring case and accents), "
    ":of-type (Identifier: type-system|type-code|value), :missing; _sort by code; "
    ":in, :not-in, :above, :below are refused (no terminology server)",
    "string": "starts with, ignoring case and accents; :exact, :contains, :missing; _sort",
    "reference": "Type/id, id or an absolute URL; :Type, :identifier (system|value of "
    "Reference.identifier), :missing; _include and _revinclude "
    "(Type:param, Type:param:TargetType or *, :iterate)",
    "date": "prefixes eq ne gt lt ge le sa eb ap, with the precision of the value; :missing; "
    "_sort (ascending by the start of the range, descending by its end)",
    "number": "prefixes eq ne gt lt ge le sa eb ap; :missing; _sort",
    "quantity": "prefixes; value|system|code or value||unit; :missing; _sort by value",
    "uri": "exact; :below, :above (by whole path segments), :missing",
    "composite": "token$value, both matched within the same element (the same component); "
    "the value as its own type would be (prefixes, units); comma for OR",
}
_RESOURCE_SUPPORT = {
    "_id": "the logical id; comma for OR; _sort",
    "_lastUpdated": "prefixes eq ne gt lt ge le sa eb ap, with the precision of the value; _sort",
}


def _search_params(resource_type: str) -> list[dict[str, Any]]:
    params = [
        {"name": "_id", "type": "token", "documentation": _RESOURCE_SUPPORT["_id"]},
        {
            "name": "_lastUpdated",
            "type": "date",
            "documentation": _RESOURCE_SUPPORT["_lastUpdated"],
        },
    ]
    for parameter in parameters_for(resource_type):
        params.append(
            {
                "name": parameter.code,
                "type": parameter.type,
                "documentation": _SUPPORT.get(parameter.type, ""),
            }
        )
    params += [
        {"name": code, "type": "composite", "documentation": _SUPPORT["composite"]}
        for code in composite_codes(resource_type)
    ]
    return params
