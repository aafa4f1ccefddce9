"""What a test sees of a PostgreSQL database from the server's side: the sessions others hold
on it, and ending them (a server restart, a dropped link, as the pools meet it)."""

from __future__ import annotations

import psycopg
from sqlalchemy import URL, make_url

__all__ = ["other_sessions", "terminate_other_sessions"]

_OTHERS = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"


def other_sessions(database_url: str | URL) -> int:
    """How many sessions, other than the one asking, are connected to the database."""
    return _ask(database_url, f"SELECT count(*) {_OTHERS}")


def terminate_other_sessions(database_url: str | URL) -> int:
    """End every other session on the database; how many there were."""
    return _ask(database_url, f"SELECT count(pg_terminate_backend(pid)) {_OTHERS}")


def _ask(database_url: str | URL, sql: str) -> int:
    url = make_url(database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as admin:
        row = admin.execute(sql).fetchone()
    assert row is not None
    return int(row[0])
