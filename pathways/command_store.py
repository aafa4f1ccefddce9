"""The FHIR store of the engine's database, opened by a command (`greenchannel case`, `qc`,
`registry`): one place that refuses a SQLite file `serve` never made and turns a store that
cannot be read into a ConfigError (exit 3) naming the cause, whichever command asked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, tzinfo

from sqlalchemy.exc import SQLAlchemyError

from engine.database import create_database_engine, require_existing_database
from engine.errors import ConfigError
from fhir_store import FhirStore, FhirStoreError

__all__ = ["check_database_file", "command_store"]


def check_database_file(url: str) -> None:
    """Refuse a SQLite file that does not exist, which SQLite would create empty."""
    require_existing_database(
        url,
        hint="pass the --data-dir that `greenchannel serve` uses, or set GREENCHANNEL_DATABASE_URL",
    )


@asynccontextmanager
async def command_store(
    url: str, *, timezone: tzinfo = UTC, check_references: bool = True
) -> AsyncIterator[FhirStore]:
    """The store on `url` for the command's work; closed (and its engine disposed) after."""
    check_database_file(url)
    database = create_database_engine(url, pool_size=2)
    store = FhirStore(database, timezone=timezone, check_references=check_references)
    try:
        yield store
    except (FhirStoreError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        raise ConfigError(
            f"cannot read the FHIR store: {reason}",
            key="database_url",
            hint="check --data-dir or GREENCHANNEL_DATABASE_URL; `greenchannel serve` creates "
            "the store's tables",
        ) from exc
    finally:
        await store.aclose()
        await database.dispose()
