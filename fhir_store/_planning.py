"""Resolving a group of Bundles in the store's background process, ahead of its write.

The engine's process is bound by its one core of Python (docs/performance.md), and resolving a
group of Bundles (parsing, matching conditional writes, resolving references, extracting the
index rows) is most of a FHIR write's Python. The background process (`_background`) resolves
the group on a read connection of its own and sends back the prepared changes
(`_group.plan_bundles`); the write transaction checks that what they were built on is still
current and writes them (`_group.write_plan`), or resolves the group itself if not.

Nothing depends on this succeeding: should the background process die, fail or know other
custom search parameters than the writer's, the group is resolved in the write transaction, as
without a plan.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from fhir_store._background import forget, submit
from fhir_store._custom_params import load_custom_parameters, parameters_in_use
from fhir_store._group import Plan, plan_bundles
from fhir_store._json import dumps_bytes, loads
from fhir_store._writer import read_engine_at

__all__ = ["plan_in_background"]

logger = logging.getLogger(__name__)


async def plan_in_background(
    database: URL,
    bundles: Sequence[Any],
    now: datetime,
    validate_structure: bool,
    return_resources: bool,
    check_references: bool,
) -> Plan | None:
    """The Bundles resolved by the background process on `database`, or None if it could not
    (resolve them in the write transaction then). Call with this process's custom search
    parameters loaded: the plan is made with the same ones, or not at all."""
    future = submit(
        _plan,
        database,
        dumps_bytes(bundles),  # what the other process would pickle, in a tenth of the time
        now,
        validate_structure,
        return_resources,
        check_references,
        parameters_in_use(),
    )
    if future is None:
        return None
    try:
        prepared = await asyncio.wrap_future(future)
    except BrokenProcessPool:
        forget()
        logger.warning("the FHIR store's background process died; another starts at the next group")
        return None
    except Exception:
        logger.warning(
            "resolving a group of Bundles in the background failed; resolved in the write",
            exc_info=True,
        )
        return None
    if prepared is None:
        return None
    plan: Plan = pickle.loads(prepared)
    return plan


# In the background process: a read engine per database it was asked to read lately, the
# least recently used closed beyond a few (a test run asks for a database per test).
_ENGINES: OrderedDict[URL, Engine] = OrderedDict()
_ENGINES_KEPT = 4


def _plan(
    database: URL,
    payload: bytes,
    now: datetime,
    validate_structure: bool,
    return_resources: bool,
    check_references: bool,
    custom: list[tuple[str, str, str, str]],
) -> bytes | None:
    engine = _read_engine(database)
    if engine is None:
        return None
    bundles = loads(payload)
    for attempt in range(2):
        try:
            with engine.connect() as connection:
                if custom != parameters_in_use():
                    load_custom_parameters(connection)
                    if custom != parameters_in_use():  # a SearchParameter written meanwhile
                        return None
                plan = plan_bundles(
                    connection,
                    bundles,
                    now,
                    validate_structure,
                    return_resources,
                    check_references=check_references,
                )
            break
        except DBAPIError as error:
            # a pooled connection the server closed (a restart): once more on a new one
            if not error.connection_invalidated or attempt:
                raise
    plan.changes.detach()
    return pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL)


def _read_engine(database: URL) -> Engine | None:
    engine = _ENGINES.get(database)
    if engine is not None:
        _ENGINES.move_to_end(database)
        return engine
    engine = read_engine_at(database)
    if engine is None:
        return None
    _ENGINES[database] = engine
    while len(_ENGINES) > _ENGINES_KEPT:
        _, oldest = _ENGINES.popitem(last=False)
        oldest.dispose()
    return engine
