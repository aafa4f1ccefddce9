"""The FHIR destination: writes a channel's FHIR Bundles and resources into the FHIR store.

Registered under `greenchannel.destinations` as `fhir`. It runs in the engine's process, on the
engine's database (already migrated by the engine with `fhir_store.migrate`).

Every resource is checked against the FHIR structure before it is stored, once: when the
channel's mapping output already passed `fhir_store.output_issues` (the `fhir-structure` output
check) in the processing worker, which the engine says in `ConnectorContext.checked_by`, the
destination does not check it again on the engine's single write thread; otherwise (no mapping,
`check_output: false`) it does, as `validate_structure` says.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.connectors import AttemptRecorder, ConnectorContext, Delivered, Outbound
from engine.errors import DeliveryError, RejectedDeliveryError, RetryableDeliveryError
from fhir_store import FhirStore, FhirStoreError, output_issues

__all__ = ["FhirDestination", "FhirDestinationConfig", "FhirDestinationFactory"]


class FhirDestinationConfig(BaseModel):
    """A destination that applies FHIR transaction/batch Bundles to the built-in FHIR store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["fhir"] = Field(description="Always `fhir`: the built-in FHIR store.")
    validate_structure: bool = Field(
        default=True,
        description=(
            "Check each resource against the FHIR structure (fhir.resources R4B models) "
            "before storing it, as every write to the store is; false skips it and saves "
            "about 0.2 ms of CPU per resource. Skipped anyway when the mapping's output was "
            "already checked in the processing worker (the transformer's `check_output`)."
        ),
    )
    check_references: bool = Field(
        default=False,
        description=(
            "Refuse a Bundle whose `Type/id` references name a resource the store does not "
            "have (the store's REST API does). Off by default: interfaces deliver in any order "
            "(a lab result before its patient's registration), and mappings reference by "
            "deterministic ids, so the reference resolves once the other message arrives."
        ),
    )
    return_resources: bool = Field(
        default=False,
        description=(
            "Put the stored resources in the reply Bundle kept with the delivery attempt; by "
            "default the reply has only each entry's status, location and version."
        ),
    )


class FhirDestination:
    """Applies each message's Bundle atomically; `send_many` applies several in one database
    transaction, each message still atomic on its own, and the engine's record of the attempts
    commits in that transaction too."""

    records_attempts: ClassVar[bool] = True

    def __init__(self, store: FhirStore, config: FhirDestinationConfig) -> None:
        self._store = store
        self._config = config

    async def send(self, outbound: Outbound) -> Delivered:
        """Apply one message; raise RejectedDeliveryError or RetryableDeliveryError."""
        (result,) = await self.send_many([outbound])
        if isinstance(result, DeliveryError):
            raise result
        return result

    async def send_many(
        self, outbounds: list[Outbound], recorder: AttemptRecorder | None = None
    ) -> list[Delivered | DeliveryError]:
        """Apply several messages in one database transaction; one result per message, in order.

        A message that fails leaves nothing written and gets its DeliveryError, the others are
        applied; a failure of the database itself makes every message's result retryable.
        With a `recorder`, the attempts are recorded in the same transaction.
        """
        rejected: list[DeliveryError | None] = []
        bundles: list[dict[str, Any]] = []
        for outbound in outbounds:
            try:
                bundles.append(_bundle_of(outbound.payload))
                rejected.append(None)
            except RejectedDeliveryError as error:
                rejected.append(error)
        if not bundles:
            return [error for error in rejected if error is not None]
        results: list[Delivered | DeliveryError] = []

        def record(connection: Any, applied: list[dict[str, Any] | FhirStoreError]) -> None:
            answers = iter(applied)
            results.extend(r if r is not None else _delivered(next(answers)) for r in rejected)
            if recorder is not None:
                recorder.record(connection, results)

        try:
            await self._store.transaction_many(
                bundles, return_resources=self._config.return_resources, then=record
            )
        except FhirStoreError as error:
            failure = _delivery_error(error)
            return [r if r is not None else failure for r in rejected]
        if recorder is not None:
            recorder.committed = True
        return results

    async def aclose(self) -> None:
        """Close the store's write connections; the database engine belongs to the engine."""
        await self._store.aclose()


class FhirDestinationFactory:
    """Builds FHIR destinations on the engine's database."""

    config_model: ClassVar[type[BaseModel]] = FhirDestinationConfig

    def build(self, config: Any, context: ConnectorContext) -> FhirDestination:
        """A destination writing to the FHIR store in `context.database`."""
        checked = (
            config
            if isinstance(config, FhirDestinationConfig)
            else FhirDestinationConfig.model_validate(config)
        )
        store = FhirStore(
            context.database,
            validate_structure=checked.validate_structure
            and output_issues not in context.checked_by,
            check_references=checked.check_references,
            timezone=context.timezone,
            run_write=context.run_write,
        )
        return FhirDestination(store, checked)


def _bundle_of(payload: bytes) -> dict[str, Any]:
    """The payload as a transaction/batch Bundle; a single resource becomes a one-entry one."""
    try:
        document = json.loads(payload)
    except UnicodeDecodeError as error:
        raise RejectedDeliveryError(
            f"the payload is not UTF-8 (byte {error.start}); the mapping must produce FHIR JSON"
        ) from error
    except json.JSONDecodeError as error:
        raise RejectedDeliveryError(
            f"the payload is not valid JSON ({error.msg} at line {error.lineno} column "
            f"{error.colno}); the mapping must produce FHIR JSON"
        ) from error
    if not isinstance(document, dict):
        raise RejectedDeliveryError("the payload is not a JSON object; expected a FHIR resource")
    if document.get("resourceType") == "Bundle" and document.get("type") in (
        "transaction",
        "batch",
    ):
        return document
    resource_type = document.get("resourceType")
    if not isinstance(resource_type, str) or resource_type == "Bundle":
        raise RejectedDeliveryError(
            "the payload is neither a transaction/batch Bundle nor a single resource "
            "(resourceType, Bundle.type)"
        )
    resource_id = document.get("id")
    request = (
        {"method": "PUT", "url": f"{resource_type}/{resource_id}"}
        if isinstance(resource_id, str)
        else {"method": "POST", "url": resource_type}
    )
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": document, "request": request}],
    }


def _delivered(result: dict[str, Any] | FhirStoreError) -> Delivered | DeliveryError:
    if isinstance(result, FhirStoreError):
        return _delivery_error(result)
    entries = result.get("entry", [])
    failed = sum(1 for entry in entries if "outcome" in entry.get("response", {}))
    detail = f"{len(entries)} entries applied"
    if failed:
        detail = f"{failed} of {len(entries)} batch entries failed; see the reply"
    reply = json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Delivered(reply=reply, detail=detail)


def _delivery_error(error: FhirStoreError) -> DeliveryError:
    where = f" (expression: {', '.join(error.expression)})" if error.expression else ""
    message = f"FHIR store {error.status} {error.code}: {error.message}{where}"
    delivery_error: DeliveryError = (
        RetryableDeliveryError(message) if error.retryable else RejectedDeliveryError(message)
    )
    delivery_error.__cause__ = error
    return delivery_error
