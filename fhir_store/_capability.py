"""The server's CapabilityStatement: only what this store implements today."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fhir_store._resources import R4_RESOURCE_TYPES

__all__ = ["capability_statement"]

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
        "rest": [
            {
                "mode": "server",
                "resource": [
                    _resource(resource_type) for resource_type in sorted(R4_RESOURCE_TYPES)
                ],
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
                "operation": [
                    {
                        "name": "validate",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                    }
                ],
            }
        ],
    }


def _resource(resource_type: str) -> dict[str, Any]:
    return {
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
        "searchParam": [
            {
                "name": "identifier",
                "type": "token",
                "documentation": "system|value, |value (no system) or value (any system); "
                "no modifiers, one value",
            }
        ],
    }
