"""The SQL conditions that pick a search parameter's rows in an index table.

A parameter's values may be held by another parameter's rows (`_search_params.rows_of`):
`phonetic` reads the rows of `name`, `Encounter.patient` those of `subject` that refer to a
Patient. Every query of the index tables by parameter goes through `param_is`, so that no
query reads rows that are no longer written.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Table

from fhir_store._search_params import rows_of

__all__ = ["param_is"]


def param_is(table: Table, resource_type: str, code: str) -> list[ColumnElement[bool]]:
    """The conditions on `table` (an index table or an alias of one) for the rows of parameter
    `code` of `resource_type`; the caller adds the resource type's own condition if needed."""
    rows = rows_of(resource_type, code)
    conditions: list[ColumnElement[bool]] = [table.c.param == rows.code]
    if rows.target is not None:
        conditions.append(table.c.target_type == rows.target)
    return conditions
