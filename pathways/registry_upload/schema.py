"""Bring a database's registry workflow tables to the current schema (their own Alembic history,
`registry_alembic_version`); the engine calls `migrate` at start through the
`greenchannel.migrations` entry point."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from engine.database import upgrade_to_head

__all__ = ["MIGRATIONS_DIR", "migrate"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade the registry workflow's tables in `engine`'s database to the newest revision."""
    await upgrade_to_head(engine, MIGRATIONS_DIR)
