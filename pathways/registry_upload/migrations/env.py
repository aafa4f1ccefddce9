"""Alembic environment of the registry upload tables: runs on the connection
`pathways.registry_upload.migrate` passes in, with its own history in `registry_alembic_version`."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from pathways.registry_upload.tables import Base

VERSION_TABLE = "registry_alembic_version"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("migrate with pathways.registry_upload.migrate(engine)")
    _run(connection)


_main()
