"""Bring a database's FHIR store tables to the current schema with the store's Alembic history."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["MIGRATIONS_DIR", "migrate"]

# Found from the package path, so migrations run from an installed wheel as from a checkout.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade the FHIR store's tables in `engine`'s database to the newest revision.

    Safe to call at every start: an up-to-date database is left as it is. The store's history is
    kept in `fhir_alembic_version`, apart from the engine's own.
    """
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


def _upgrade(connection: Connection) -> None:
    # alembic costs 0.2 s to import: only for the processes that migrate (`serve`), not for
    # the commands and workers that import the store to read or validate
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
