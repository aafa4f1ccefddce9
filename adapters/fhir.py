"""The FHIR destination: writes a channel's FHIR Bundles and resources into the FHIR store.

Registered under `greenchannel.destinations` as `fhir`. It runs in the engine's process, on the
engine's database (already migrated by the engine with `fhir_store.migrate`).

Every resource is checked against the FHIR structure before it is stored, once: when the
channel's mapping output already passed `fhir_store.output_issues` (the `fhir-structure` output
check) in the processing worker, which the engine says in `ConnectorContext.checked_by`, the
destination does not check it again on the engine's single write thread; otherwise (no mapping,
`check_output: false`) it does, as `validate_structure` says.

An entry whose mapping declared a merge mode (`merge: {keep: [...]}`, its rules in the entry's
`request.extension`) is written as the mapping's resource plus the kept elements of the stored
version, with `ifMatch` of the version read; when another writer commits that resource in
between (412), the batch is rolled back and merged again from a fresh read, up to
`_MERGE_ATTEMPTS` times.

Before anything else, each Bundle goes through the channel's output adjusters
(`ConnectorContext.adjusters`, e.g. the device clock corrections of `devices.clock`), which may
change it from what the journal knows of its inbound message; the journalled payload itself
is never changed, so a retry or a reprocess adjusts afresh.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.connectors import (
    AttemptRecorder,
    ConnectorContext,
    Delivered,
    Outbound,
    OutputAdjuster,
)
from engine.errors import ConfigError, DeliveryError, RejectedDeliveryError, RetryableDeliveryError
from engine.mapping.merge import MERGE_KEEP_EXTENSION, KeepRule, keep_rules_of, merge_kept
from fhir_store import (
    FhirStore,
    FhirStoreError,
    JSONDecodeError,
    json_dumps_bytes,
    json_loads,
    output_issues,
)

__all__ = ["FhirDestination", "FhirDestinationConfig", "FhirDestinationFactory"]

# A Bundle's merge entries: entry index -> ((type, id) merged with, the entry's keep rules).
Merges = dict[int, tuple[tuple[str, str], tuple[KeepRule, ...]]]
_MERGE_ATTEMPTS = 5  # fresh reads of a merged resource before its 412 is the message's error


class _MergeRaced(Exception):
    """A merged entry's resource changed between the read and the write: merge again."""


class FhirDestinationConfig(BaseModel):
    """A destination that applies FHIR transaction/batch Bundles to the built-in FHIR store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["fhir"] = Field(description="Always `fhir`: the built-in FHIR store.")
    validate_structure: bool = Field(
        default=True,
        description=(
            "Check each resource against the FHIR structure (fhir.resources R4B models) "
            "before storing it, as every write to the store is; false skips it and saves "
            "about 0.07 ms of CPU per resource. Skipped anyway when the mapping's output was "
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

    def __init__(
        self,
        store: FhirStore,
        config: FhirDestinationConfig,
        adjusters: tuple[OutputAdjuster, ...] = (),
    ) -> None:
        self._store = store
        self._config = config
        self._adjusters = adjusters

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
        merging: list[Merges] = []
        for outbound in outbounds:
            try:
                bundle = _bundle_of(outbound.payload)
                for adjuster in self._adjusters:
                    await adjuster.adjust(bundle, outbound)
                merging.append(_merges_of(bundle))
                bundles.append(bundle)
                rejected.append(None)
            except RejectedDeliveryError as error:
                rejected.append(error)
        if not bundles:
            return [error for error in rejected if error is not None]
        for attempt in range(1, _MERGE_ATTEMPTS + 1):
            try:
                return await self._apply(
                    bundles, merging, rejected, recorder, last=attempt == _MERGE_ATTEMPTS
                )
            except _MergeRaced:
                continue
        raise AssertionError("unreachable: the last attempt records whatever happened")

    async def _apply(
        self,
        bundles: list[dict[str, Any]],
        merging: list[Merges],
        rejected: list[DeliveryError | None],
        recorder: AttemptRecorder | None,
        *,
        last: bool,
    ) -> list[Delivered | DeliveryError]:
        written: dict[str, Any] = {}  # Type/id → the resource an earlier Bundle here writes
        try:
            stored = await self._store.read_many(
                [key for merges in merging for key, _ in merges.values()]
            )
        except FhirStoreError as error:  # the store cannot be read: merged later, not blindly
            failure = _delivery_error(error)
            return [r if r is not None else failure for r in rejected]
        prepared = []
        for bundle, merges in zip(bundles, merging, strict=True):
            prepared.append(_merged(bundle, merges, written, stored) if merges else bundle)
            for entry in prepared[-1].get("entry") or []:
                request = entry.get("request") if isinstance(entry, dict) else None
                if isinstance(request, dict) and request.get("method") == "PUT":
                    written[str(request.get("url"))] = entry.get("resource")
        results: list[Delivered | DeliveryError] = []

        def record(connection: Any, applied: list[dict[str, Any] | FhirStoreError]) -> None:
            raced = any(
                merges and isinstance(answer, FhirStoreError) and answer.status == 412
                for merges, answer in zip(merging, applied, strict=True)
            )
            if raced and not last:
                raise _MergeRaced  # rolls the whole transaction back; merged again from a read
            answers = iter(zip(map(bool, merging), applied, strict=True))
            results.extend(r if r is not None else _delivered(*next(answers)) for r in rejected)
            if recorder is not None:
                recorder.record(connection, results)

        try:
            await self._store.transaction_many(
                prepared, return_resources=self._config.return_resources, then=record
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
            resolve_in_background=True,  # the engine process is bound by its Python
        )
        return FhirDestination(store, checked, context.adjusters)


def _bundle_of(payload: bytes) -> dict[str, Any]:
    """The payload as a transaction/batch Bundle; a single resource becomes a one-entry one."""
    try:
        document = json_loads(payload)
    except JSONDecodeError as error:
        try:  # the parser says "not valid UTF-8" without saying where
            payload.decode("utf-8")
        except UnicodeDecodeError as not_utf8:
            raise RejectedDeliveryError(
                f"the payload is not UTF-8 (byte {not_utf8.start}); the mapping must produce "
                "FHIR JSON"
            ) from error
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


def _merged(
    bundle: dict[str, Any],
    merges: Merges,
    written: dict[str, Any],
    stored: dict[tuple[str, str], dict[str, Any]],
) -> dict[str, Any]:
    """The Bundle with each merge entry's resource merged with the stored version (`stored`,
    read for the whole batch at once), or with the version an earlier Bundle of the same
    transaction writes (`written`): that one carries the stored version's kept elements and
    its own ifMatch already."""
    entries = []
    for index, entry in enumerate(bundle.get("entry") or []):
        if index not in merges:
            entries.append(entry)
            continue
        (resource_type, resource_id), rules = merges[index]
        request = entry["request"]
        plain = {k: v for k, v in request.items() if k != "extension"}
        others = [e for e in request.get("extension") or [] if not _is_keep(e)]
        if others:
            plain["extension"] = others
        earlier = written.get(f"{resource_type}/{resource_id}")
        if isinstance(earlier, dict):
            merged = merge_kept(earlier, entry.get("resource") or {}, rules)
            entries.append({**entry, "resource": merged, "request": plain})
            continue
        current = stored.get((resource_type, resource_id))
        if current is None:
            entries.append({**entry, "request": plain})  # nothing stored (or deleted): anew
            continue
        merged = merge_kept(current, entry.get("resource") or {}, rules)
        version = current.get("meta", {}).get("versionId")
        entries.append(
            {**entry, "resource": merged, "request": {**plain, "ifMatch": f'W/"{version}"'}}
        )
    return {**bundle, "entry": entries}


def _merges_of(bundle: dict[str, Any]) -> Merges:
    """The merge entries of the Bundle: by entry index, the (type, id) whose stored version the
    merge reads and the entry's keep rules. RejectedDeliveryError naming the entry when its keep
    rules are wrong (a mapping's were checked at load, a hand-made payload's not)."""
    merges: Merges = {}
    for index, entry in enumerate(bundle.get("entry") or []):
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict):
            continue
        try:
            rules = keep_rules_of(request)
        except ConfigError as error:
            raise RejectedDeliveryError(
                f"Bundle.entry[{index}].request.extension ({MERGE_KEEP_EXTENSION}): {error.message}"
            ) from error
        if not rules:
            continue
        if request.get("method") != "PUT":
            raise RejectedDeliveryError(
                f"Bundle.entry[{index}]: a merge (keep rules) needs a PUT of Type/id"
            )
        resource_type, _, resource_id = str(request.get("url", "")).partition("/")
        merges[index] = ((resource_type, resource_id), rules)
    return merges


def _is_keep(extension: Any) -> bool:
    return isinstance(extension, dict) and extension.get("url") == MERGE_KEEP_EXTENSION


def _delivered(merge: bool, result: dict[str, Any] | FhirStoreError) -> Delivered | DeliveryError:
    if isinstance(result, FhirStoreError):
        if merge and result.status == 412:  # still racing another writer: the queue retries
            return RetryableDeliveryError(
                f"another writer kept changing a merged resource ({result.message}); "
                "merged again on the next attempt"
            )
        return _delivery_error(result)
    entries = result.get("entry", [])
    failed = sum(1 for entry in entries if "outcome" in entry.get("response", {}))
    detail = f"{len(entries)} entries applied"
    if failed:
        detail = f"{failed} of {len(entries)} batch entries failed; see the reply"
    return Delivered(reply=json_dumps_bytes(result), detail=detail)


def _delivery_error(error: FhirStoreError) -> DeliveryError:
    where = f" (expression: {', '.join(error.expression)})" if error.expression else ""
    message = f"FHIR store {error.status} {error.code}: {error.message}{where}"
    delivery_error: DeliveryError = (
        RetryableDeliveryError(message) if error.retryable else RejectedDeliveryError(message)
    )
    delivery_error.__cause__ = error
    return delivery_error
