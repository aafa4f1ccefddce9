"""Alembic environment of the device clock tables: runs on the connection `migrate` passes in.

Their history is kept in `clock_alembic_version`, apart from the engine's and the FHIR store's.
"""

from __future__ import annotations

from alembic import context

from devices.clock.tables import ClockBase

VERSION_TABLE = "clock_alembic_version"

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=ClockBase.metadata,
    version_table=VERSION_TABLE,
    include_object=lambda obj, name, type_, reflected, compare_to: (
        type_ != "table" or bool(name and name.startswith("clock_"))
    ),
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
