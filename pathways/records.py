"""Reading and writing the pathway's resources in the FHIR store, each write with its Provenance.

`Records.write` stores a resource only when its content changed, in one transaction with the
Provenance of the new version (If-Match on the version it read, so a concurrent writer makes it
read again): an event processed twice writes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import tzinfo
from typing import Any

from fhir_store import FhirStore, Gone, NotFound, VersionConflict
from pathways.batch_memo import BatchMemo
from pathways.case_store import search_all
from pathways.shapes import Note, provenance

__all__ = ["Records", "content_of"]

_ATTEMPTS = 3
_UPDATE_ATTEMPTS = 5  # another writer (the HIS, staff) changed it meanwhile: derive again
_CHUNK = 100  # values ORed in one search (`search_any`)


class Records:
    """The store operations of the pathway engine."""

    def __init__(self, store: FhirStore, timezone: tzinfo) -> None:
        self.store = store
        self.timezone = timezone
        # searches remembered within one batch of change events (`batch`), else None
        self.memo: BatchMemo | None = None

    @contextmanager
    def batch(self) -> Iterator[BatchMemo]:
        """Remember the open cases and fed cases searched for until the block ends (one
        batch of change events); the writes here forget what they change."""
        self.memo = BatchMemo()
        try:
            yield self.memo
        finally:
            self.memo = None

    async def read(self, reference: str) -> dict[str, Any] | None:
        """The current version of `Type/id` (or `Type/id/_history/n`), None when missing or
        deleted."""
        kind, _, rest = reference.partition("/")
        identifier, _, version = rest.partition("/_history/")
        try:
            if version:
                return await self.store.vread(kind, identifier, version)
            return await self.store.read(kind, identifier)
        except (NotFound, Gone):
            return None

    async def read_many(self, references: Sequence[str]) -> list[dict[str, Any]]:
        """The current versions of several `Type/id`, of any types, in one read (what a
        search by `_id` per type found, for a fraction of its cost); missing and deleted ones
        are left out."""
        keys = [reference.partition("/")[::2] for reference in references]
        return list((await self.store.read_many(keys)).values())

    async def search(self, kind: str, pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Every current resource of `kind` matching the search, all pages."""
        return await search_all(self.store, kind, pairs)

    async def search_any(
        self,
        kind: str,
        parameter: str,
        values: Sequence[str],
        more: Sequence[tuple[str, str]] = (),
    ) -> list[dict[str, Any]]:
        """Every `kind` whose `parameter` is one of `values` (ORed), a search per chunk."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(values), _CHUNK):
            chunk = ",".join(values[start : start + _CHUNK])
            found += await self.search(kind, [(parameter, chunk), *more])
        return found

    async def write(
        self, resource: dict[str, Any], note: Note, *, base: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Store `resource` (by its id) with a Provenance, unless the content is unchanged;
        returns the stored resource either way.

        `resource` as a whole replaces whatever version is current, unless `base` is the stored
        version it was derived from, as read (a change to another writer's resource, as a case
        link on the HIS's Encounter): then it is written only over that version (If-Match), and
        VersionConflict says another writer came first, so that the caller derives it again
        from the new version instead of overwriting it (a discharge, say).
        """
        kind, identifier = resource["resourceType"], resource["id"]
        if self.memo is not None:
            self.memo.written(resource)
        for _ in range(_ATTEMPTS):
            # the base as the caller read it: If-Match finds out if it is still current
            current = base if base is not None else await self.read(f"{kind}/{identifier}")
            if current is not None and content_of(current) == content_of(resource):
                return dict(current)
            version = int(current["meta"]["versionId"]) if current is not None else 0
            request: dict[str, Any] = {"method": "PUT", "url": f"{kind}/{identifier}"}
            if current is not None:
                request["ifMatch"] = f'W/"{version}"'
            record = provenance(
                resource, version + 1, self.store.now().astimezone(self.timezone), note
            )
            bundle = {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {"resource": resource, "request": request},
                    {
                        "resource": record,
                        "request": {"method": "PUT", "url": f"Provenance/{record['id']}"},
                    },
                ],
            }
            try:
                await self.store.transaction(bundle)
            except VersionConflict:
                if base is not None:
                    raise
                continue  # written meanwhile (the API and the subscriber): read again
            stored = await self.read(f"{kind}/{identifier}")
            assert stored is not None
            return stored
        raise VersionConflict(f"{kind}/{identifier} kept changing while being written")

    async def update(
        self,
        reference: str,
        derive: Callable[[dict[str, Any]], Awaitable[tuple[dict[str, Any], Note] | None]],
    ) -> dict[str, Any] | None:
        """Read-modify-write of `Type/id`: `derive(current)` gives the new content and its
        note (None: nothing to write), written only over the version it was derived from.
        When another writer came first (the HIS's discharge, a doctor's fact), it is derived
        again from the newer version, never written over it. None if missing or unchanged."""
        for _ in range(_UPDATE_ATTEMPTS):
            current = await self.read(reference)
            if current is None:
                return None
            change = await derive(current)
            if change is None:
                return None
            updated, note = change
            try:
                return await self.write(updated, note, base=current)
            except VersionConflict:
                continue
        raise VersionConflict(f"{reference} kept changing while being updated")

    async def delete(self, reference: str) -> None:
        kind, _, identifier = reference.partition("/")
        if self.memo is not None:
            self.memo.forget()
        await self.store.delete(kind, identifier)


def content_of(resource: Mapping[str, Any]) -> dict[str, Any]:
    """The resource without its `meta`: what a write sends (the store sets versionId and
    lastUpdated) and what two versions are compared by."""
    return {k: v for k, v in resource.items() if k != "meta"}
