"""Alembic environment for the engine's tables, run by `engine.database.migrate`."""

from __future__ import annotations

from alembic import context

from engine import auth as _auth  # noqa: F401
from engine import journal as _journal  # noqa: F401  (registers the tables on Base.metadata)
from engine.database import VERSION_TABLE, Base

connection = context.config.attributes["connection"]


def _own_tables(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    # The FHIR store keeps its own migrations in the same database.
    return not (type_ == "table" and name is not None and name.startswith("fhir_"))


context.configure(
    connection=connection,
    include_object=_own_tables,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
