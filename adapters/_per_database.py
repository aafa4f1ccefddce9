"""One object per engine database in this process, where a destination and an HTTP router (built
separately through entry points) meet: the websockets a destination sends to, for example."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["PerDatabase"]

T = TypeVar("T")


class PerDatabase(Generic[T]):
    """Hands out the one `T` of each database (by URL: backend, host, port, database name)."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._found: dict[tuple[str, str | None, int | None, str | None], T] = {}
        self._lock = threading.Lock()

    def get(self, database: AsyncEngine) -> T:
        url = database.url
        key = (url.get_backend_name(), url.host, url.port, url.database)
        with self._lock:
            found = self._found.get(key)
            if found is None:
                found = self._found[key] = self._factory()
            return found
