"""What a test sees of a PostgreSQL database from the server's side: the sessions others hold
on it, and ending them (a server restart, a dropped link, as the pools meet it)."""

from __future__ import annotations

import time

import psycopg
from sqlalchemy import URL, make_url

__all__ = ["busy_sessions", "other_sessions", "sessions_left", "terminate_other_sessions"]

_OTHERS = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"


def other_sessions(database_url: str | URL) -> int:
    """How many sessions, other than the one asking, are connected to the database."""
    return _ask(database_url, f"SELECT count(*) {_OTHERS}")


def busy_sessions(database_url: str | URL) -> int:
    """How many other sessions are running a statement or are inside a transaction."""
    return _ask(database_url, f"SELECT count(*) {_OTHERS} AND state <> 'idle'")


def sessions_left(database_url: str | URL, *, within_s: float = 5.0) -> int:
    """Other sessions still connected after `within_s` seconds, or 0 as soon as there are
    none: a backend leaves pg_stat_activity a moment after its client closed the connection
    (longer on a loaded machine), while one that was never closed stays."""
    deadline = time.monotonic() + within_s
    while (left := other_sessions(database_url)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def terminate_other_sessions(database_url: str | URL) -> int:
    """End every other session on the database; how many there were."""
    return _ask(database_url, f"SELECT count(pg_terminate_backend(pid)) {_OTHERS}")


def _ask(database_url: str | URL, sql: str) -> int:
    url = make_url(database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as admin:
        row = admin.execute(sql).fetchone()
    assert row is not None
    return int(row[0])
