"""The FHIR store's own error tree: each error knows its HTTP status and OperationOutcome code.

```
FhirStoreError               .status (HTTP), .code (OperationOutcome issue code), .expression
├── NotFound                 404 not-found     no such resource
├── Gone                     410 deleted       the resource was deleted
├── InvalidResource          400 / 422 invalid / structure / value
├── InvalidRequest           400 invalid       malformed request, bundle or URL
├── NotSupported             400 not-supported a feature this server does not implement yet
├── VersionConflict          409 / 412 conflict If-Match mismatch, concurrent update
├── ConditionFailed          412 multiple-matches a conditional write or reference matched many
├── PayloadTooLarge          413 too-long
└── StoreUnavailable         503 transient     the database is locked or unreachable
```

Messages say what is wrong, where and what to do; they name element paths, never field values.
"""

from __future__ import annotations

__all__ = [
    "ConditionFailed",
    "FhirStoreError",
    "Gone",
    "InvalidRequest",
    "InvalidResource",
    "NotFound",
    "NotSupported",
    "PayloadTooLarge",
    "StoreUnavailable",
    "VersionConflict",
]


class FhirStoreError(Exception):
    """Base of every error the store raises on purpose.

    `status` is the HTTP status a FHIR client gets, `code` the OperationOutcome issue code
    (http://hl7.org/fhir/issue-type), `expression` the FHIRPath-like locations of the problem.
    """

    status: int = 500
    code: str = "exception"

    def __init__(
        self,
        message: str,
        *,
        expression: list[str] | None = None,
        status: int | None = None,
        code: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.expression = list(expression or [])
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        # Whether resending the same request later may succeed without changing it.
        self.retryable = self.status >= 500 if retryable is None else retryable

    def with_prefix(self, prefix: str) -> FhirStoreError:
        """The same error with `prefix` (e.g. "Bundle.entry[3]") prepended to its message."""
        return type(self)(
            f"{prefix}: {self.message}",
            expression=self.expression,
            status=self.status,
            code=self.code,
            retryable=self.retryable,
        )

    def to_operation_outcome(self) -> dict[str, object]:
        """This error as a FHIR OperationOutcome resource."""
        issue: dict[str, object] = {
            "severity": "error",
            "code": self.code,
            "diagnostics": self.message,
        }
        if self.expression:
            issue["expression"] = list(self.expression)
        return {"resourceType": "OperationOutcome", "issue": [issue]}


class NotFound(FhirStoreError):
    """The resource (or resource type) does not exist."""

    status = 404
    code = "not-found"


class Gone(FhirStoreError):
    """The resource existed and was deleted; its history remains."""

    status = 410
    code = "deleted"


class InvalidResource(FhirStoreError):
    """The resource content is not acceptable: wrong type, bad id, not FHIR-shaped."""

    status = 400
    code = "invalid"


class InvalidRequest(FhirStoreError):
    """The request itself is malformed: bad bundle, bad URL, bad header, unreadable JSON."""

    status = 400
    code = "invalid"


class NotSupported(FhirStoreError):
    """The request uses a feature this server does not implement (yet); nothing was ignored."""

    status = 400
    code = "not-supported"


class VersionConflict(FhirStoreError):
    """The resource changed under the client (If-Match mismatch: 412) or concurrently (409,
    retryable: another writer committed the same resource first)."""

    status = 409
    code = "conflict"


class ConditionFailed(FhirStoreError):
    """A conditional create, update or reference matched more than one resource."""

    status = 412
    code = "multiple-matches"


class PayloadTooLarge(FhirStoreError):
    """The request body is bigger than the server accepts."""

    status = 413
    code = "too-long"


class StoreUnavailable(FhirStoreError):
    """The database is locked, busy or unreachable: retry later, nothing was written."""

    status = 503
    code = "transient"
