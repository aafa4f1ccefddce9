"""Change events: every committed create, update and delete of the store, in one global order,
read by named subscribers that each keep a durable cursor.

The store writes a `fhir_change` row per new resource version in the same transaction as the
version itself, so an event exists exactly when its change committed: a rolled-back write leaves
none, and nothing is lost across a restart. A subscriber reads the events after its committed
cursor, processes them, then commits the cursor; a crash in between delivers them again
(at least once), so subscribers are idempotent. Usage::

    feed = ChangeFeed(database)
    async for events in feed.follow("pathways"):
        for event in events:
            ...  # e.g. read event.resource_type/event.resource_id at event.version_id
        await feed.commit("pathways", events[-1].sequence)

Ordering, and why a reader never skips an event. Sequence numbers are handed out from one row
(`fhir_change_sequence`) that the write transaction updates as its last statement before it
commits. On PostgreSQL that row stays locked until the commit, so a second writer waits there
for the first to finish: numbers are taken and committed in the same order, and a reader that
sees number N+1 always sees N (a rolled-back writer gives its numbers back). A reader can
therefore advance past everything it sees. The alternative, a database sequence with readers
that wait out gaps, either loses an event whose transaction commits after the grace period or
stalls every reader behind a rolled-back number; the lock costs only the tail of each write
(the change rows and the commit) running one at a time, and the FHIR destination writes whole
groups of Bundles per transaction. On SQLite writers are serialised by the database already.

Latency: a write of this process wakes the feeds of the same database as soon as it commits.
On PostgreSQL every write also sends a NOTIFY and each following feed LISTENs, so writes of
other processes (several engine nodes) wake it too. A feed also looks every `poll_interval_s`,
which covers a listening connection that is down. A busy feed (a read found 8 events or
more: the FHIR destination's groups under load) is read in rounds `gather_s` apart (0.2 s, as
a busy channel is processed), each taking all that committed meanwhile; single writes and
small ones still go at once. Under load a subscriber then handles large batches, which cost
far less per event (the pathway subscriber: 0.12 ms CPU a message in batches of 500 events,
0.39 ms in batches of 16, bench/pathway_subscriber.py), instead of a small batch per commit
competing for the engine's one core of Python with the messages still coming in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast

from sqlalchemy import Table, bindparam, case, insert, select, update
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store._change_log import NOTIFY_CHANNEL, Bell
from fhir_store.models import ChangeCursorRow, ChangeRow
from fhir_store.store import WriteRunner

__all__ = ["ChangeAction", "ChangeEvent", "ChangeFeed"]

ChangeAction = Literal["create", "update", "delete"]

_CHANGE = cast(Table, ChangeRow.__table__)
_CURSOR = cast(Table, ChangeCursorRow.__table__)
_READ = (
    select(
        _CHANGE.c.seq,
        _CHANGE.c.resource_type,
        _CHANGE.c.resource_id,
        _CHANGE.c.version_id,
        _CHANGE.c.action,
    )
    .where(_CHANGE.c.seq > bindparam("b_after"))
    .order_by(_CHANGE.c.seq)
    .limit(bindparam("b_limit"))
)
_POSITION = select(_CURSOR.c.seq).where(_CURSOR.c.name == bindparam("b_name"))
_LATEST = select(_CHANGE.c.seq).order_by(_CHANGE.c.seq.desc()).limit(1)
_ADVANCE = (
    update(_CURSOR)
    .where(_CURSOR.c.name == bindparam("b_name"))
    .values(
        # a cursor never moves back: a late commit of an older position changes nothing
        seq=case((_CURSOR.c.seq < bindparam("b_seq"), bindparam("b_seq")), else_=_CURSOR.c.seq),
        updated_at=bindparam("b_now"),
    )
)
_CREATE = insert(_CURSOR)
_MAX_NAME = 100
# Least time between two reads of a busy feed: each takes all that committed meanwhile. A
# feed is busy when a read finds at least GATHER_FROM events: writes come faster than one read
# per commit would keep up with at a low cost per event.
GATHER_S = 0.2
GATHER_FROM = 8


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One committed change: `resource_type/resource_id` reached `version_id` by `action`."""

    sequence: int  # increases by one per change, in commit order, across all resources
    resource_type: str
    resource_id: str
    version_id: int
    action: ChangeAction

    @property
    def reference(self) -> str:
        """The versioned reference of the change, `Observation/123/_history/2`."""
        return f"{self.resource_type}/{self.resource_id}/_history/{self.version_id}"


class ChangeFeed:
    """The change events of the FHIR store in `database`, with a cursor per subscriber name.

    The database must be migrated (`fhir_store.migrate`).
    """

    def __init__(
        self,
        database: AsyncEngine,
        *,
        poll_interval_s: float = 1.0,
        run_write: WriteRunner | None = None,
        gather_s: float = GATHER_S,
    ) -> None:
        """`gather_s`: least time between two reads while events keep coming (0: none)."""
        self._database = database
        self._poll_interval_s = poll_interval_s
        self._gather_s = gather_s
        # A host that serialises writes (the engine on SQLite) commits cursors through it: a
        # second writing connection would make SQLite refuse the host's own transactions.
        self._run_write = run_write

    async def read(self, after: int, *, limit: int = 500) -> list[ChangeEvent]:
        """Up to `limit` events with a sequence number above `after`, in order."""
        async with self._database.connect() as connection:
            result = await connection.execute(_READ, {"b_after": after, "b_limit": limit})
            return [
                ChangeEvent(seq, resource_type, resource_id, version_id, action)
                for seq, resource_type, resource_id, version_id, action in result
            ]

    async def latest(self) -> int:
        """The sequence number of the newest event; 0 if there is none."""
        async with self._database.connect() as connection:
            value = (await connection.execute(_LATEST)).scalar()
            return int(value) if value is not None else 0

    async def position(self, name: str) -> int:
        """The committed cursor of subscriber `name`: the events up to it are processed.

        A subscriber never seen before is at 0, so it receives every event in the log.
        """
        found = await self._cursor(name)
        return found if found is not None else 0

    async def start(self, name: str, *, new: Literal["all", "future"] = "all") -> int:
        """The committed cursor of subscriber `name`; one never seen before gets one now: at 0
        (`new="all"`, the whole log) or committed at the newest event (`"future"`).

        A subscriber that must also read the current state (e.g. its configuration resources)
        calls this first and reads after: whatever commits after the read is then an event.
        """
        found = await self._cursor(name)
        if found is not None:
            return found
        if new == "future":
            found = await self.latest()
            await self.commit(name, found)
            return found
        return 0

    async def _cursor(self, name: str) -> int | None:
        _check_name(name)
        async with self._database.connect() as connection:
            value = (await connection.execute(_POSITION, {"b_name": name})).scalar()
            return int(value) if value is not None else None

    async def commit(self, name: str, sequence: int) -> None:
        """Record that subscriber `name` has processed every event up to `sequence`."""
        _check_name(name)
        now = datetime.now(UTC)
        parameters = {"b_name": name, "b_seq": sequence, "b_now": now}
        if self._run_write is not None:

            def advance(connection: Connection) -> None:
                if connection.execute(_ADVANCE, parameters).rowcount == 0:
                    connection.execute(_CREATE, {"name": name, "seq": sequence, "updated_at": now})

            await self._run_write(advance)
            return
        for _ in range(2):  # two first commits of a new name may race: the loser updates
            try:
                async with self._database.begin() as connection:
                    result = await connection.execute(_ADVANCE, parameters)
                    if result.rowcount == 0:
                        await connection.execute(
                            _CREATE, {"name": name, "seq": sequence, "updated_at": now}
                        )
                return
            except IntegrityError:
                continue
        raise RuntimeError(f"could not commit the cursor of change subscriber {name!r}")

    async def follow(
        self, name: str, *, batch: int = 500, new: Literal["all", "future"] = "all"
    ) -> AsyncIterator[list[ChangeEvent]]:
        """Batches of the events after subscriber `name`'s committed cursor, forever.

        Waits for new events when it has given out all there are. It does not commit: the
        caller commits once it has processed a batch, and a batch it never commits comes again
        after a restart (`commit` may lag behind what `follow` has given out). A subscriber
        never seen before gets the whole log (`new="all"`), or only what is committed from now
        on (`"future"`: its cursor is committed at the newest event at once, so what commits
        while it is down is still delivered after a restart).
        """
        after = await self.start(name, new=new)
        bell = Bell()
        bell.register(self._database.url)
        listener = None
        if self._database.dialect.name == "postgresql":
            listener = asyncio.create_task(_listen(self._database.url, bell, self._poll_interval_s))
        try:
            while True:
                started = time.monotonic()
                events = await self.read(after, limit=batch)
                if events:
                    after = events[-1].sequence
                    yield events
                    if GATHER_FROM <= len(events) < batch:  # busy: the next read gathers
                        gap = self._gather_s - (time.monotonic() - started)
                        if gap > 0:
                            await asyncio.sleep(gap)
                    continue
                await bell.wait(self._poll_interval_s)
        finally:
            bell.unregister(self._database.url)
            if listener is not None:
                listener.cancel()
                await asyncio.wait([listener])


async def _listen(url: URL, bell: Bell, retry_s: float) -> None:
    """On PostgreSQL, wake the feed on each committed change of any process (LISTEN); while
    the connection is down, the feed's polling covers the gap."""
    import psycopg  # PostgreSQL only

    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    while True:
        try:
            connection = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
            async with connection:
                await connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                bell.wake()  # a change may have committed before the LISTEN took effect
                async for _ in connection.notifies():
                    bell.wake()
        except psycopg.Error:
            await asyncio.sleep(max(retry_s, 1.0))


def _check_name(name: str) -> None:
    if not name or len(name) > _MAX_NAME:
        raise ValueError(f"a change subscriber name has 1 to {_MAX_NAME} characters")
