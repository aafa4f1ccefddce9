"""The registry staff's actions on cases, for the HTTP API and the CLI alike: look at a case's
state, mark it ready, override a field, queue uploads, read the upload log, reconcile a month.

Every action that needs the record rebuilds it from the FHIR store now (`pathways.registry`),
with the overrides in force applied, so an override is never lost to a rebuild and a change of
the source data after acceptance shows as a different payload hash: the case goes back to draft
for staff review (issue 7), and the upload staff then ask for is an update.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store import FhirStore
from pathways.case_store import load_case, load_cases
from pathways.months import month_bucket
from pathways.registry_upload import workflow
from pathways.registry_upload.platform import hospital_id
from pathways.registry_upload.workflow import BuiltRecord, Problem, QueueResult, StateView

__all__ = ["CENTER_OF", "RegistryUploads", "UnknownRegistry", "build_with_pathways"]

T = TypeVar("T")
log = logging.getLogger(__name__)
# The center whose cases a registry takes.
CENTER_OF = {"cpc": "chest_pain"}
TERMINAL = frozenset({"accepted", "rejected", "dead_letter", "invalid"})

Builder = Callable[[FhirStore, str, str, dict[str, Any], dict[str, str]], Awaitable[BuiltRecord]]


class UnknownRegistry(LookupError):
    """The registry named is not one this engine uploads to."""

    def __init__(self, registry: str) -> None:
        super().__init__(f"unknown registry {registry!r}; known: {', '.join(sorted(CENTER_OF))}")


async def build_with_pathways(
    store: FhirStore,
    case_id: str,
    registry: str,
    overrides: dict[str, Any],
    params: dict[str, str],
) -> BuiltRecord:
    """The record of `pathways.registry` (its mapping file, its validation), as the upload
    workflow keeps it: payload, versions, the problems that stop an upload (errors; warnings
    do not), and the month the case counts in."""
    from pathways.registry import build_record, validate_record

    record = await build_record(
        store, case_id, registry, overrides=overrides, params=params or None
    )
    problems = tuple(
        Problem(block=p.block, message=p.message, field=p.field or None)
        for p in validate_record(record)
        if p.severity == "error"
    )
    case = await load_case(store, case_id)
    return BuiltRecord(
        payload=dict(record.payload),
        spec_version=str(record.spec_version),
        mapping_version=str(record.mapping_version),
        problems=problems,
        case_month=month_bucket(case.timeline),
    )


class RegistryUploads:
    """One registry workflow over the engine's database and its FHIR store."""

    def __init__(
        self,
        database: AsyncEngine,
        store: FhirStore,
        *,
        now: Callable[[], datetime],
        data_dir: Path | None = None,
        run_write: Callable[[Callable[[Connection], Any]], Awaitable[Any]] | None = None,
        builder: Builder = build_with_pathways,
    ) -> None:
        self._data_dir = data_dir
        self._database = database
        self._store = store
        self._now = now
        self._run_write = run_write
        self._builder = builder

    @staticmethod
    def check_registry(registry: str) -> str:
        if registry not in CENTER_OF:
            raise UnknownRegistry(registry)
        return registry

    async def _read(self, work: Callable[[Connection], T]) -> T:
        async with self._database.connect() as connection:
            return await connection.run_sync(work)

    async def _write(self, work: Callable[[Connection], T]) -> T:
        if self._run_write is not None:
            result: T = await self._run_write(work)
            return result
        async with self._database.begin() as connection:
            return await connection.run_sync(work)

    async def build(
        self, case_id: str, registry: str, *, extra: dict[str, Any] | None = None
    ) -> BuiltRecord:
        """The record now, with the overrides in force (and `extra` ones, to try them)."""
        overrides = await self._read(lambda c: workflow.current_overrides(c, case_id, registry))
        overrides.update(extra or {})
        params: dict[str, str] = {}
        if self._data_dir is not None:
            hospital = await asyncio.to_thread(hospital_id, self._data_dir)
            if hospital:
                params["hospital_id"] = hospital
        try:
            return await self._builder(self._store, case_id, registry, overrides, params)
        except KeyError as exc:  # an override of a field the mapping does not have
            raise ValueError(str(exc)) from None

    async def state(self, case_id: str, registry: str) -> dict[str, Any]:
        """The case's upload state, its overrides, and whether the record changed since the
        platform accepted it (rebuilt now: an accepted case that changed is sent back to draft
        here, as the sweeper would)."""
        built = await self.build(case_id, registry)
        await self._send_back_if_changed(case_id, registry, built)
        found = await self._read(lambda c: workflow.load_state(c, case_id, registry))
        history = await self._read(lambda c: workflow.override_history(c, case_id, registry))
        overrides = await self._read(lambda c: workflow.current_overrides(c, case_id, registry))
        view = found.as_dict() if found is not None else {"case_id": case_id, "state": "draft"}
        return {
            **view,
            "current": {
                "payload_hash": built.hash,
                "spec_version": built.spec_version,
                "mapping_version": built.mapping_version,
                "problems": [p.as_dict() for p in built.problems],
                "changed_since_accepted": bool(
                    found is not None
                    and found.accepted_hash is not None
                    and found.accepted_hash != built.hash
                ),
            },
            "overrides": overrides,
            "override_history": history,
        }

    async def mark_ready(self, case_id: str, registry: str, *, who: str) -> StateView:
        """Validate the record now: the case becomes `validated` or `invalid`."""
        built = await self.build(case_id, registry)
        now = self._now()
        return await self._write(
            lambda c: workflow.record_check(c, case_id, registry, built, who=who, now=now)
        )

    async def override(
        self,
        case_id: str,
        registry: str,
        *,
        field: str,
        value: Any,
        reason: str,
        who: str,
        clear: bool = False,
    ) -> StateView:
        """Keep a staff override (or withdraw it), then validate the record with it."""
        if not clear:  # refused now, not at the next rebuild: an unknown field, a missing case
            await self.build(case_id, registry, extra={field: value})
        now = self._now()
        await self._write(
            lambda c: workflow.add_override(
                c,
                case_id,
                registry,
                field_path=field,
                value=value,
                reason=reason,
                who=who,
                now=now,
                clear=clear,
            )
        )
        return await self.mark_ready(case_id, registry, who=who)

    async def enter_register_id(
        self, case_id: str, registry: str, *, register_id: str, reason: str, who: str
    ) -> StateView:
        """Keep the REGISTER_ID staff found on the platform; the next upload is an update."""
        await self._store.read("EpisodeOfCare", case_id)  # NotFound for an unknown case
        now = self._now()
        return await self._write(
            functools.partial(
                workflow.enter_register_id,
                case_id=case_id,
                registry=registry,
                register_id=register_id,
                reason=reason,
                who=who,
                now=now,
            )
        )

    async def upload(
        self, case_ids: Sequence[str], registry: str, *, who: str, force: bool = False
    ) -> list[tuple[str, QueueResult]]:
        """Rebuild, validate and queue each case; one result per case, in order."""
        results = []
        for case_id in case_ids:
            built = await self.build(case_id, registry)
            now = self._now()
            result = await self._write(
                functools.partial(
                    workflow.queue_upload,
                    case_id=case_id,
                    registry=registry,
                    built=built,
                    who=who,
                    now=now,
                    force=force,
                )
            )
            results.append((case_id, result))
        return results

    async def ready_cases(self, registry: str) -> list[str]:
        """What `--ready` uploads: the cases staff marked ready (`validated`), re-readied ones
        included; never an accepted case whose data changed (it is a draft until staff look)."""
        validated = await self._read(
            lambda c: workflow.list_states(c, registry, states=("validated",))
        )
        return [view.case_id for view in validated]

    async def _send_back_if_changed(
        self, case_id: str, registry: str, built: BuiltRecord
    ) -> StateView | None:
        now = self._now()
        return await self._write(
            lambda c: workflow.record_source_change(c, case_id, registry, built, now=now)
        )

    async def send_back_changed(self, registry: str) -> list[StateView]:
        """Send every accepted case whose record, rebuilt now, differs from what the platform
        accepted back to draft (and refresh the ones already sent back); nothing is uploaded.
        A case that cannot be rebuilt any more (deleted from the store) is left out, with a
        warning. Returns the states that moved."""
        candidates = await self._read(
            lambda c: workflow.list_states(c, registry, states=("accepted", "draft"))
        )
        moved = []
        for view in candidates:
            if view.state == "draft" and not view.changed_since_upload:
                continue
            try:
                built = await self.build(view.case_id, registry)
            except LookupError:
                log.warning("registry.case_gone", extra={"case_id": view.case_id})
                continue
            state = await self._send_back_if_changed(view.case_id, registry, built)
            if state is not None:
                moved.append(state)
        return moved

    async def states(self, registry: str, case_ids: Sequence[str]) -> list[StateView]:
        return await self._read(lambda c: workflow.list_states(c, registry, case_ids=case_ids))

    async def log(self, registry: str, case_id: str | None, limit: int = 200) -> list[Any]:
        return await self._read(
            lambda c: workflow.upload_log(c, registry, case_id=case_id, limit=limit)
        )

    async def reconciliation(self, registry: str, month: str) -> dict[str, Any]:
        """A month's eligible cases (the center's cases counted in it) against what was
        uploaded and accepted, and the cases stuck (rejected, dead letter, invalid)."""
        cases = await load_cases(self._store, CENTER_OF[registry], month, month)  # type: ignore[arg-type]
        eligible = sorted(case.timeline.case_id for case in cases)
        states = {
            view.case_id: view
            for view in await self._read(
                lambda c: workflow.list_states(c, registry, case_ids=eligible)
            )
        }
        uploaded = [c for c in eligible if c in states and states[c].uploads > 0]
        accepted = [c for c in eligible if c in states and states[c].register_id]
        stuck = [
            {
                "case_id": c,
                "state": states[c].state,
                "problem_kind": states[c].problem_kind,
                "problems": states[c].problems,
            }
            for c in eligible
            if c in states and states[c].state in ("rejected", "dead_letter", "invalid")
        ]
        return {
            "registry": registry,
            "month": month,
            "eligible": len(eligible),
            "uploaded": len(uploaded),
            "accepted": len(accepted),
            "not_uploaded": [c for c in eligible if c not in uploaded],
            "in_flight": [c for c in eligible if c in states and states[c].in_flight],
            "stuck": stuck,
        }
