"""The FHIR store's background process: work a write hands to another core.

Two kinds of work go there: validating a large group's resources (`_validation.prevalidate`)
and resolving a group of Bundles ahead of its write (`_planning`). Both only read: every write
stays with the store's write connection, in the process that asked. The process starts at the
first piece of work; should it die, the work it had is done where it was asked instead, and the
next piece starts another.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

__all__ = ["forget", "pool", "stop", "submit"]

T = TypeVar("T")

_POOL: ProcessPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def submit(work: Callable[..., T], *args: Any) -> Future[T] | None:
    """Start `work(*args)` in the background process; None if it cannot take work now (broken,
    or shut down as the interpreter exits): then do the work here."""
    try:
        return pool().submit(work, *args)
    except (BrokenProcessPool, RuntimeError):
        forget()
        return None


def pool() -> ProcessPoolExecutor:
    """One background process per process that uses the store, started at the first work."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            # spawn, not fork: the engine process has threads (a forked lock may be held)
            _POOL = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=_exit_with_parent
            )
            atexit.register(_POOL.shutdown, wait=False, cancel_futures=True)
        return _POOL


def forget() -> None:
    """Drop a broken process: the next work starts another."""
    global _POOL
    with _POOL_LOCK:
        _POOL = None


def stop() -> None:
    """Stop the background process, waiting for it, if one was started; the next work starts
    another. For whoever owns the process's end: the interpreter's own exit (the `atexit`
    above) never runs when a server re-raises the stopping signal to die of it, as uvicorn
    does after its graceful shutdown, and the pool's semaphores then outlive it."""
    global _POOL
    with _POOL_LOCK:
        stopping, _POOL = _POOL, None
    if stopping is not None:
        stopping.shutdown(wait=True, cancel_futures=True)


def _exit_with_parent() -> None:
    # A pool worker holds both ends of its call queue: a kill -9 of the process that started
    # it is no end of file to it, and it would wait for work forever. The engine's mapping
    # workers do the same (engine.pipeline.exit_with_parent): fhir_store runs alone and may
    # not import the engine, nor the engine the store.
    parent = multiprocessing.parent_process()
    if parent is not None:

        def exit_when_gone() -> None:
            parent.join()
            os._exit(0)

        threading.Thread(target=exit_when_gone, daemon=True).start()
