"""`$reindex`: the search index rows of stored resources extracted again with today's search
parameters (after a custom SearchParameter is added, or an index change), in batches by id.

`POST /fhir/SearchParameter/{id}/$reindex` reindexes the base types of that parameter;
`POST /fhir/{type}/$reindex` every resource of one type. Each batch is its own write
transaction: searches stay answered meanwhile, and a stopped reindex can simply be run again.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from fhir_store._indexing import extract_index
from fhir_store._json import loads
from fhir_store._storage import RowWrites, numbered, pipelined, write_rows
from fhir_store.models import ResourceRow

__all__ = ["BATCH", "reindex_batch"]

BATCH = 500  # resources per write transaction

_RESOURCE = cast(Table, ResourceRow.__table__)


def reindex_batch(
    connection: Connection, resource_type: str, after: str | None, size: int = BATCH
) -> tuple[int, str | None]:
    """Rebuild the index rows of the next `size` current resources of `resource_type` by id
    after `after`; returns how many, and the id to continue after (None: done)."""
    statement = (
        select(_RESOURCE.c.id, _RESOURCE.c.content, _RESOURCE.c.key)
        .where(_RESOURCE.c.resource_type == resource_type, _RESOURCE.c.deleted.is_(False))
        .order_by(_RESOURCE.c.id)
        .limit(size)
    )
    if after is not None:
        statement = statement.where(_RESOURCE.c.id > after)
    rows = list(connection.execute(statement))
    writes = RowWrites(connection.dialect)
    for resource_id, content, key in rows:
        if content:
            index = extract_index(loads(content))
            writes.index(resource_type, resource_id, numbered(key), index, replace=True)
    with pipelined(connection):
        write_rows(connection, writes)
    if len(rows) < size:
        return len(rows), None
    return len(rows), rows[-1][0]
