"""Bring a database's UWB tables to the current schema (entry point `greenchannel.migrations:
uwb`); safe at every start, history in `uwb_alembic_version`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["migrate"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade the UWB tables in `engine`'s database to the newest revision."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
