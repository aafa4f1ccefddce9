"""The changes of a group of Bundles, kept in memory over the database until written in bulk.

Lookups answer with the database as the group has changed it so far, so a later Bundle sees an
earlier one's writes. Each Bundle (or batch entry) changes a layer of its own, kept only if it
succeeds (`atomic`); `flush` then writes the group's final state with a handful of statements.

A group can be resolved on a read connection, even in another process, and written on another
connection (`prepare`, `detach`, `still_current`, `flush(on=...)`): every database answer it
was built on is kept, so the write transaction checks them once and writes only if none has
changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from types import TracebackType
from typing import Any

from sqlalchemy.engine import Connection

from fhir_store._change_log import record_changes
from fhir_store._json import dumps
from fhir_store._requests import IdentifierToken
from fhir_store._storage import (
    Current,
    RowWrites,
    allocate_keys,
    fetch_current,
    fetch_identifiers,
    fetch_versions,
    find_ids,
    numbered,
    pipelined,
    search_rows,
    write_rows,
)

__all__ = ["Changes"]

Key = tuple[str, str]
# A database lookup other than by key, as made: the function, its arguments, its answer.
Lookup = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], Any]


class Changes:
    """A group's reads and writes on `connection`; nothing is written before `flush`."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._stored: dict[Key, Current | None] = {}  # as read from the database (None: absent)
        self._group: dict[Key, Current] = {}  # written by the layers kept so far
        self._group_ids: dict[str, dict[str, Current]] = {}  # the same, by type then id
        # (type, identifier value) -> (id, system) of the stored resources with it, if read ahead
        self._identifiers: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
        self._versions: list[tuple[Key, Current, str]] = []  # (key, state, method), in order
        self._layer: dict[Key, Current] = {}
        self._layer_versions: list[tuple[Key, Current, str]] = []
        self._open = False
        self._assumed_absent: set[Key] = set()  # in _stored as None, never read (`absent`)
        self._lookups: list[Lookup] = []
        self._reindex: dict[Key, bool] | None = None  # per changed key, found by `prepare`

    def atomic(self) -> AbstractContextManager[None]:
        """Changes made in the block are kept if it ends normally, forgotten if it raises."""
        return _Layer(self)

    def _open_layer(self) -> None:
        if self._open:
            raise RuntimeError("Changes.atomic() does not nest")
        self._open = True

    def _close_layer(self, keep: bool) -> None:
        if keep:
            self._group.update(self._layer)
            for (resource_type, resource_id), state in self._layer.items():
                self._group_ids.setdefault(resource_type, {})[resource_id] = state
            self._versions.extend(self._layer_versions)
        self._layer, self._layer_versions = {}, []
        self._open = False

    def prefetch(
        self, keys: Iterable[Key], identifiers: Iterable[tuple[str, IdentifierToken]] = ()
    ) -> None:
        """Read ahead, with a few queries for the whole group, the current rows of `keys`, the
        resources matching the (type, identifier) searches, and those resources' rows."""
        wanted = [
            (resource_type, token.value)
            for resource_type, token in identifiers
            if (resource_type, token.value) not in self._identifiers
        ]
        found_keys: list[Key] = []
        if wanted:
            found = self._lookup(fetch_identifiers, wanted)
            for pair in wanted:
                self._identifiers[pair] = matches = found.get(pair, [])
                found_keys.extend((pair[0], resource_id) for resource_id, _ in matches)
        self._read([*keys, *found_keys])

    def absent(self, keys: Iterable[Key]) -> None:
        """Note, without reading, keys that no resource has: new server-assigned ids (uuid4),
        which make up most of a bulk load. Were one taken after all, its insert would break
        the primary key and the write fail as a concurrent one."""
        for key in keys:
            if key not in self._stored:
                self._stored[key] = None
                self._assumed_absent.add(key)

    def current(self, keys: Iterable[Key]) -> dict[Key, Current]:
        """The current state of the keys that exist (deleted ones included)."""
        wanted = list(keys)
        self._read(wanted)
        found: dict[Key, Current] = {}
        for key in wanted:
            state = self._state(key)
            if state is not None:
                found[key] = state
        return found

    def find_ids(
        self, resource_type: str, token: IdentifierToken, *, limit: int | None = None
    ) -> list[str]:
        """Ids of current resources of `resource_type` with a matching identifier."""
        changed = self._changed_ids(resource_type)
        known = self._identifiers.get((resource_type, token.value))
        stored = (
            [resource_id for resource_id, system in known if token.matches(system, token.value)]
            if known is not None
            else self._lookup(find_ids, resource_type, token, limit=None if changed else limit)
        )
        ids = {resource_id for resource_id in stored if resource_id not in changed}
        ids.update(
            resource_id
            for resource_id, state in changed.items()
            if any(token.matches(system, value) for system, value in state.tokens())
        )
        return sorted(ids)[:limit]

    def search(self, resource_type: str, token: IdentifierToken) -> list[str]:
        """The JSON content of the current resources of `resource_type` with a matching
        identifier, by id."""
        changed = self._changed_ids(resource_type)
        rows = {
            resource_id: content
            for resource_id, content in self._lookup(search_rows, resource_type, token)
            if resource_id not in changed
        }
        for resource_id, state in changed.items():
            if state.content is not None and any(
                token.matches(system, value) for system, value in state.tokens()
            ):
                rows[resource_id] = state.content
        return [rows[resource_id] for resource_id in sorted(rows)]

    def put(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        *,
        version_id: int,
        last_updated: datetime,
        method: str,
    ) -> None:
        """A new version of a resource (create, update or revive after delete)."""
        content = dumps(resource)
        state = Current(version_id, False, content, resource, last_updated=last_updated)
        self._write(resource_type, resource_id, state, method)

    def delete(
        self, resource_type: str, resource_id: str, *, version_id: int, last_updated: datetime
    ) -> None:
        """The deletion of a current resource: a tombstone version."""
        state = Current(version_id, True, None, last_updated=last_updated)
        self._write(resource_type, resource_id, state, "DELETE")

    def prepare(self) -> None:
        """Work out ahead what `flush` needs of the content alone: which changed resources get
        their index rows rebuilt, and those rows. Done where the group was resolved (another
        process, `_planning`), it leaves the write transaction only the rows to write."""
        self._reindex = {}
        for key, state in self._group.items():
            self._reindex[key] = rebuilt = _reindexed(state, self._stored[key])
            if rebuilt:
                state.index()

    def detach(self) -> None:
        """Drop the connection and the parsed contents, for a prepared group to be sent to the
        process that writes it (pickled): `flush` needs only the JSON texts and index rows."""
        self._connection = None  # type: ignore[assignment]
        for state in (*self._stored.values(), *self._group.values()):
            if state is not None:
                state.forget_parsed()

    def still_current(self, connection: Connection) -> bool:
        """Whether every answer the group was built on is what `connection` reads now: the
        resources read (their version, deletion and number, or their absence) and the
        identifier lookups. Run in the write transaction before `flush(on=connection)`: if
        so, the group's changes are the ones it would make there; if not, nothing is written
        and the Bundles are applied on `connection` from the start."""
        read = [key for key in self._stored if key not in self._assumed_absent]
        now = fetch_versions(connection, read)
        for key in read:
            before = self._stored[key]
            found = now.get(key)
            if before is None:
                if found is not None:
                    return False
            elif found != (before.version_id, before.deleted, before.key):
                return False
        return all(
            _same_answer(query(connection, *args, **kwargs), answer)
            for query, args, kwargs, answer in self._lookups
        )

    def flush(self, on: Connection | None = None) -> None:
        """Write the final state of everything the kept layers changed, then forget it; on
        `on`, when the group was built on another connection (`still_current`)."""
        connection = self._connection if on is None else on
        writes = RowWrites(connection.dialect)
        new = [state for key, state in self._group.items() if self._stored[key] is None]
        for state, number in zip(new, allocate_keys(connection, len(new)), strict=True):
            state.key = number
        for key, state in self._group.items():
            before = self._stored[key]  # read before its first write
            if before is not None:
                state.key = before.key
                writes.superseded(*key, before)  # its version row gets the content back
            writes.resource(*key, state, exists=before is not None)
            if self._reindex[key] if self._reindex is not None else _reindexed(state, before):
                replace = before is not None and not before.deleted
                writes.index(*key, numbered(state.key), state.index(), replace=replace)
        for key, state, method in self._versions:
            writes.version(*key, state, method, current=state is self._group[key])
        with pipelined(connection):
            write_rows(connection, writes)
            # Last: numbering the changes locks the change sequence until the commit (events.py).
            record_changes(connection, self._versions)
        self._stored.update(self._group)
        self._group, self._group_ids, self._versions = {}, {}, []
        self._reindex = None

    def _write(self, resource_type: str, resource_id: str, state: Current, method: str) -> None:
        if not self._open:
            raise RuntimeError("Changes are made inside Changes.atomic()")
        key = (resource_type, resource_id)
        self._layer[key] = state
        self._layer_versions.append((key, state, method))

    def _read(self, keys: Iterable[Key]) -> None:
        missing = [
            key
            for key in dict.fromkeys(keys)
            if key not in self._stored and key not in self._group and key not in self._layer
        ]
        if missing:
            found = fetch_current(self._connection, missing)
            for key in missing:
                self._stored[key] = found.get(key)

    def _lookup(self, query: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        answer = query(self._connection, *args, **kwargs)
        self._lookups.append((query, args, kwargs, answer))
        return answer

    def _state(self, key: Key) -> Current | None:
        state = self._layer.get(key)
        if state is None:
            state = self._group.get(key)
        if state is None:
            state = self._stored.get(key)
        return state

    def _changed_ids(self, resource_type: str) -> dict[str, Current]:
        changed = self._group_ids.get(resource_type, {})
        if any(key[0] == resource_type for key in self._layer):
            changed = dict(changed)
            changed.update(
                (key[1], state) for key, state in self._layer.items() if key[0] == resource_type
            )
        return changed


def _reindexed(state: Current, before: Current | None) -> bool:
    """Whether a write's index rows are (re)built: for a new resource, and when the content
    changed (meta's version and time aside)."""
    if before is None:
        return not state.deleted
    return not state.same_content(before)


def _same_answer(now: Any, before: Any) -> bool:
    """Whether a lookup answers as before. Identifier lookups list each value's matches in the
    order the index gives them, which rows added for other values may change."""
    if isinstance(now, dict) and isinstance(before, dict):
        return now.keys() == before.keys() and all(
            sorted(now[key]) == sorted(before[key]) for key in now
        )
    return bool(now == before)


class _Layer(AbstractContextManager[None]):
    """The block of `Changes.atomic()`: a class rather than a generator, as it runs per Bundle."""

    __slots__ = ("_changes",)

    def __init__(self, changes: Changes) -> None:
        self._changes = changes

    def __enter__(self) -> None:
        self._changes._open_layer()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._changes._close_layer(keep=kind is None)
