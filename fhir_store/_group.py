"""Applying a group of Bundles in one database transaction: resolved in memory, written in bulk.

Every Bundle is checked and resolved against the group's in-memory `Changes` first, in order, so
a later Bundle sees an earlier one's changes and most failures cost no write at all. A Bundle
that fails leaves nothing behind and gets its error in the results. The group's changes are then
written with a handful of statements; only if that write breaks a constraint (another writer
committed the same resource meanwhile) is the group applied again one Bundle at a time, each
under a SAVEPOINT on the rows as they now are.

The resolution can also be done ahead, on a read connection of another process (`plan_bundles`,
`_planning`): `write_plan` then only checks, in the write transaction, that what the plan read
is still current, and writes its rows. The resolution (parsing, references, index values) is
most of a group's Python, and the engine's one process is bound by its Python.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from fhir_store._bundle import BundleRun
from fhir_store._changes import Changes
from fhir_store._requests import BundleType, Entry, parse_bundle
from fhir_store._validation import Issues, Prevalidated
from fhir_store.errors import FhirStoreError, VersionConflict

__all__ = [
    "LostRace",
    "Plan",
    "apply_bundles",
    "apply_entries",
    "concurrent_write",
    "plan_bundles",
    "write_plan",
]

Result = dict[str, Any] | FhirStoreError


def apply_bundles(
    connection: Connection,
    bundles: Sequence[object],
    now: datetime,
    validate_structure: bool,
    return_resources: bool,
    *,
    check_references: bool = True,
    prevalidated: Prevalidated | None = None,
    unguarded: bool = False,
) -> list[Result]:
    """Apply transaction/batch Bundles in `connection`'s transaction, each atomic on its own.

    Returns, per Bundle, its response Bundle or the FhirStoreError that kept it out.
    `check_references=False` accepts `Type/id` references to resources not stored yet.
    `prevalidated`: the Bundles' structure issues, being found in another process.

    A write that breaks a constraint lost a race: another writer (a concurrent lane of a channel
    creating the same Practitioner, say) committed the same resource after our reads. On
    PostgreSQL the insert waited for that commit before failing, so the rows as they now are
    hold it: the group is applied again on them, once, and converges (the same content is no
    new version) instead of failing as retryable and waiting for a retry. Only if that breaks a
    constraint too is each Bundle applied on its own (twice at most), under its own SAVEPOINT,
    so that the one that keeps conflicting fails alone. Each try costs the group's statements:
    applying the Bundles of a busy lane one by one cost ~14 statements a message, a redo of the
    group ~14 a group.

    `unguarded`: a lone Bundle is applied with no SAVEPOINT, as the transaction's only work
    (its failures cost no write: they happen before the flush). A SAVEPOINT and its RELEASE
    are two of a small transaction's five round trips on PostgreSQL. Should it lose a race,
    LostRace is raised: the caller rolls the transaction back and runs it again guarded.
    """
    checks = _Checks(validate_structure, check_references, prevalidated)
    if unguarded and len(bundles) == 1 and prevalidated is None:
        with _races_raised():
            return _apply(connection, bundles, now, checks, return_resources)
    if validate_structure and prevalidated is not None:
        # Applied unchecked while the other process validates; kept only if all is valid.
        # Else (rare) applied again below, each resource checked with the answer at hand.
        unchecked = _Checks(False, check_references)
        try:
            with connection.begin_nested():
                results = _apply(connection, bundles, now, unchecked, return_resources)
                if prevalidated.any_issues():
                    raise _SomeInvalid
                return results
        except _SomeInvalid:
            pass
        except DBAPIError as error:
            if not _lost_race(error):
                raise
    for _ in range(2 if len(bundles) > 1 else 0):
        try:
            with connection.begin_nested():
                return _apply(connection, bundles, now, checks, return_resources)
        except DBAPIError as error:
            if not _lost_race(error):
                raise  # another writer got there first: again, on the rows as they now are
    return [_apply_alone(connection, bundle, now, checks, return_resources) for bundle in bundles]


@dataclass(frozen=True, slots=True)
class Plan:
    """Bundles resolved on a read connection: the changes they make and their results."""

    changes: Changes
    results: list[Result]


def plan_bundles(
    connection: Connection,
    bundles: Sequence[object],
    now: datetime,
    validate_structure: bool,
    return_resources: bool,
    *,
    check_references: bool = True,
) -> Plan:
    """Resolve the Bundles as `apply_bundles` would, on a read connection, and write nothing;
    `write_plan` writes the changes in a write transaction. The index rows are extracted too."""
    checks = _Checks(validate_structure, check_references)
    changes, results = _resolve(connection, bundles, now, checks, return_resources)
    changes.prepare()
    return Plan(changes, results)


def write_plan(connection: Connection, plan: Plan) -> list[Result] | None:
    """Write a plan's changes in `connection`'s write transaction, and return its results.

    None, having written nothing, if a resource or identifier lookup it read has changed since
    (another write came first): then apply the Bundles with `apply_bundles`. A write that
    breaks a constraint raises LostRace, as an unguarded one does.
    """
    if not plan.changes.still_current(connection):
        return None
    with _races_raised():
        plan.changes.flush(on=connection)
    return plan.results


@contextmanager
def _races_raised() -> Iterator[None]:
    """A write with no SAVEPOINT of its own: a lost race in it is raised as LostRace."""
    try:
        yield
    except DBAPIError as error:
        if _lost_race(error):
            raise LostRace from error
        raise


class LostRace(Exception):
    """An unguarded lone Bundle lost a race with another writer; on PostgreSQL its transaction
    can only be rolled back. Run the transaction again, guarded."""


class _SomeInvalid(Exception):
    """A resource of the group is invalid: its unchecked application is rolled back."""


def _apply_alone(
    connection: Connection, bundle: object, now: datetime, checks: _Checks, return_resources: bool
) -> Result:
    """One Bundle under its own SAVEPOINT, tried twice: a busy lane can lose a race again to
    the other lane's next group; a third loss in a row is reported, retryable."""
    for _ in range(2):
        try:
            with connection.begin_nested():
                (result,) = _apply(connection, [bundle], now, checks, return_resources)
                return result
        except DBAPIError as error:
            if not _lost_race(error):
                raise
    return concurrent_write()


def _lost_race(error: DBAPIError) -> bool:
    """A constraint another writer's commit broke, or a deadlock with another writer that
    PostgreSQL broke by failing our statement (SQLSTATE 40P01): both leave the rows as the
    other writer made them, to apply the Bundles on again."""
    return isinstance(error, IntegrityError) or getattr(error.orig, "sqlstate", None) == "40P01"


def apply_entries(
    connection: Connection,
    entries: list[Entry],
    now: datetime,
    validate_structure: bool,
    *,
    check_references: bool = True,
) -> list[dict[str, Any]]:
    """Apply the entries of one request atomically; raise its FhirStoreError, unlabelled."""
    changes = Changes(connection)
    with changes.atomic():
        run = BundleRun(
            changes, now, validate_structure, label=False, check_references=check_references
        )
        responses = run.apply(entries, True)
    changes.flush()
    return responses


def concurrent_write() -> VersionConflict:
    """The error of a write that lost a race with another writer of the same resource."""
    return VersionConflict(
        "another writer changed the same resource at the same time; nothing was written, "
        "resend the request",
        retryable=True,
    )


@dataclass(frozen=True, slots=True)
class _Checks:
    """What every write of a group is checked for."""

    structure: bool
    references: bool
    prevalidated: Prevalidated | None = None

    def structure_of(self, bundle: object) -> Callable[[Entry], Issues] | None:
        """How a Bundle's runs look up an entry's structure issues found in advance."""
        found = self.prevalidated
        if found is None or not self.structure:
            return None
        return lambda entry: found.issues(bundle, entry.index)


def _apply(
    connection: Connection,
    bundles: Sequence[object],
    now: datetime,
    checks: _Checks,
    return_resources: bool,
) -> list[Result]:
    changes, results = _resolve(connection, bundles, now, checks, return_resources)
    changes.flush()
    return results


def _resolve(
    connection: Connection,
    bundles: Sequence[object],
    now: datetime,
    checks: _Checks,
    return_resources: bool,
) -> tuple[Changes, list[Result]]:
    """The Bundles' changes, resolved in memory over what `connection` reads, and their
    results: nothing written yet."""
    parsed: list[tuple[BundleType, list[Entry]] | FhirStoreError] = []
    for bundle in bundles:
        try:
            parsed.append(parse_bundle(bundle))
        except FhirStoreError as error:
            parsed.append(error)
    entries = [
        entry for item in parsed if not isinstance(item, FhirStoreError) for entry in item[1]
    ]
    changes = Changes(connection)
    changes.prefetch(
        [(entry.resource_type, entry.resource_id) for entry in entries if entry.resource_id],
        [(entry.resource_type, entry.condition) for entry in entries if entry.condition],
    )
    stamp = now.isoformat()
    results: list[Result] = []
    for bundle, item in zip(bundles, parsed, strict=True):
        if isinstance(item, FhirStoreError):
            results.append(item)
            continue
        try:
            results.append(
                _run(changes, *item, now, stamp, checks, return_resources, bundle=bundle)
            )
        except FhirStoreError as error:
            results.append(error)
    return changes, results


def _run(
    changes: Changes,
    bundle_type: BundleType,
    entries: list[Entry],
    now: datetime,
    stamp: str,
    checks: _Checks,
    return_resources: bool,
    *,
    bundle: object,
) -> dict[str, Any]:
    responses: list[dict[str, Any]] = []
    structure_of = checks.structure_of(bundle)
    if bundle_type == "transaction":
        with changes.atomic():
            run = BundleRun(
                changes,
                now,
                checks.structure,
                label=True,
                stamp=stamp,
                check_references=checks.references,
                structure_of=structure_of,
            )
            responses = run.apply(entries, return_resources)
    else:
        for entry in entries:
            try:
                with changes.atomic():
                    run = BundleRun(
                        changes,
                        now,
                        checks.structure,
                        label=False,
                        stamp=stamp,
                        check_references=checks.references,
                        structure_of=structure_of,
                    )
                    responses += run.apply([entry], return_resources)
            except FhirStoreError as error:
                responses.append(_error_entry(error))
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": f"{bundle_type}-response",
        "entry": responses,
    }


def _error_entry(error: FhirStoreError) -> dict[str, Any]:
    return {
        "response": {
            "status": _status_text(error.status),
            "outcome": error.to_operation_outcome(),
        }
    }


def _status_text(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)
