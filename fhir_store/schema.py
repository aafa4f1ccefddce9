"""Bring a database's FHIR store tables to the current schema with the store's Alembic history."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from engine.database import upgrade_to_head

__all__ = ["MIGRATIONS_DIR", "migrate"]

# Found from the package path, so migrations run from an installed wheel as from a checkout.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade the FHIR store's tables in `engine`'s database to the newest revision.

    Safe to call at every start: an up-to-date database is left as it is. The store's history is
    kept in `fhir_alembic_version`, apart from the engine's own.
    """
    await upgrade_to_head(engine, MIGRATIONS_DIR)
