"""greenchannel's FHIR R4 store: versioned resources, transactions and a REST router.

It knows nothing of HL7 v2, channels or the engine, and can run alone (`fhir_store.app`).
"""

from __future__ import annotations

from fhir_store._json import JSONDecodeError
from fhir_store._json import dumps_bytes as json_dumps_bytes
from fhir_store._json import loads as json_loads
from fhir_store._search import SearchPage, SearchQuery, parse_search
from fhir_store._validation import output_issues
from fhir_store.errors import (
    ConditionFailed,
    FhirStoreError,
    Gone,
    InvalidRequest,
    InvalidResource,
    NotFound,
    NotSupported,
    PayloadTooLarge,
    StoreUnavailable,
    VersionConflict,
)
from fhir_store.events import ChangeAction, ChangeEvent, ChangeFeed
from fhir_store.router import build_router
from fhir_store.schema import migrate
from fhir_store.store import FhirStore

__all__ = [
    "ChangeAction",
    "ChangeEvent",
    "ChangeFeed",
    "ConditionFailed",
    "FhirStore",
    "FhirStoreError",
    "Gone",
    "InvalidRequest",
    "InvalidResource",
    "JSONDecodeError",
    "NotFound",
    "NotSupported",
    "PayloadTooLarge",
    "SearchPage",
    "SearchQuery",
    "StoreUnavailable",
    "VersionConflict",
    "build_router",
    "json_dumps_bytes",
    "json_loads",
    "migrate",
    "output_issues",
    "parse_search",
]
