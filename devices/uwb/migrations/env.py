"""Alembic environment of the UWB tables, run by `devices.uwb.schema.migrate` on the connection
it passes in; history in `uwb_alembic_version`, beside the engine's and the FHIR store's."""

from __future__ import annotations

from alembic import context

from devices.uwb.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="uwb_alembic_version",
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
