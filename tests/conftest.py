"""Fixtures for every test: the async backend and a real database (SQLite, PostgreSQL)."""

from __future__ import annotations

import atexit
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
    """An empty PostgreSQL database for one test, emptied again afterwards.

    A test process keeps the databases it has used and gives each test one that was emptied
    (its backends ended, its `public` schema dropped and created again): a CREATE DATABASE
    copies the 7.5 MB template at 0.25 s of the server's CPU, a DROP waited up to 0.4 s, and
    535 tests take one each. The databases are dropped when the process exits.
    """
    import psycopg

    if not POSTGRES_URL:
        pytest.skip("GREENCHANNEL_TEST_POSTGRES_URL is not set")
    admin_url = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    if _EMPTIED:
        name = _EMPTIED.pop()
    else:
        name = f"gc_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        if not _KEPT:
            atexit.register(_drop_kept, admin_url)
        _KEPT.append(name)
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        _empty(admin_url, name)


_KEPT: list[str] = []  # every database this process created
_EMPTIED: list[str] = []  # those free for the next test


def _empty(admin_url: str, name: str) -> None:
    """End what the test left connected, then drop everything it created: the migrations
    create all of it in `public` (tables, sequences, types, extensions)."""
    import psycopg

    from tests.postgres import terminate_other_sessions

    url = f"{admin_url.rsplit('/', 1)[0]}/{name}"
    terminate_other_sessions(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    _EMPTIED.append(name)


def _drop_kept(admin_url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in _KEPT:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLAlchemy async URL to an empty database, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'greenchannel.db'}"
    else:
        yield from _postgres_database()
