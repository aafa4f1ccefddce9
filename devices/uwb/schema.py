"""Bring a database's UWB tables to the current schema (entry point `greenchannel.migrations:
uwb`); safe at every start, history in `uwb_alembic_version`."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from engine.database import upgrade_to_head

__all__ = ["migrate"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade the UWB tables in `engine`'s database to the newest revision."""
    await upgrade_to_head(engine, MIGRATIONS_DIR)
