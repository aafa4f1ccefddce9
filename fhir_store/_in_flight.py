"""The store's work running in worker threads on its own engines, which closing waits for.

Cancelling the task that awaits such work does not stop its thread: the work runs on to its
end (a write commits). Disposing the engine under it would leave the connection it holds to be
checked back in to a pool nobody refers to any more, open on the server until the garbage
collector finds it. So `close` refuses new work and waits for the running work first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from fhir_store.errors import StoreUnavailable

__all__ = ["InFlight"]

P = ParamSpec("P")
T = TypeVar("T")


class InFlight:
    """Counts the work running on the store's own engines; `close` waits for it to end."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._running = 0
        self._closed = False

    def run(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `work` in the calling (worker) thread, unless the store has closed meanwhile."""
        with self._changed:
            if self._closed:
                raise StoreUnavailable(
                    "the FHIR store was closed (the engine is stopping) before this request "
                    "got a connection; nothing was done, send it again once the engine runs"
                )
            self._running += 1
        try:
            return work(*args, **kwargs)
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()

    def close(self, timeout_s: float) -> bool:
        """Refuse new work and wait up to `timeout_s` for the running work to end; whether
        it did."""
        with self._changed:
            self._closed = True
            return self._changed.wait_for(lambda: self._running == 0, timeout_s)
