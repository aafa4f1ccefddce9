"""Fixtures for every test: the async backend and a real database (SQLite, PostgreSQL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
POSTGRES_URL = os.environ.get("GREENCHANNEL_TEST_POSTGRES_URL", "")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def shared_data() -> Path:
    """The project's shared real test data (`../shared/data`), see its SOURCES.md."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.fail(f"shared data not found at {path}")
    return path


def _postgres_database() -> Iterator[str]:
    """Create a fresh PostgreSQL database for one test and drop it afterwards."""
    import psycopg

    if not POSTGRES_URL:
        pytest.skip("GREENCHANNEL_TEST_POSTGRES_URL is not set")
    admin_url = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"gc_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLAlchemy async URL to an empty database, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'greenchannel.db'}"
    else:
        yield from _postgres_database()
