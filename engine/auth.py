"""API tokens: the single authentication gate every HTTP endpoint passes.

Tokens are random secrets shown once; only their SHA-256 is stored. On first start with no
token, `ensure_admin_token` writes one to `DATA_DIR/admin.token` (mode 0600); `issue_token`
makes one for another role (`greenchannel token issue|list|revoke`, engine.token_command), and
`revoke_token` removes one: every gate forgets it within `RELOAD_AFTER_S`.

The app-wide dependency (engine.server) answers 401 without a valid token and leaves the token's
role in `request.state.role` and its name in `request.state.token_name`; a route that only some
roles may use adds `require_role(...)`, which answers 403 naming the roles allowed, and one that
records who acted reads `token_name(request)`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from fastapi import HTTPException
from sqlalchemy import String, delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column
from starlette.requests import HTTPConnection

from engine.database import Base

__all__ = [
    "ROLES",
    "ApiToken",
    "TokenError",
    "TokenGate",
    "ensure_admin_token",
    "hash_token",
    "issue_token",
    "list_tokens",
    "require_role",
    "revoke_token",
    "token_name",
]

RELOAD_AFTER_S = 5.0
ROLES = ("admin", "interface-analyst", "clinician", "registry-staff", "device")


class ApiToken(Base):
    """A named bearer token with a role; the secret itself is never stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def ensure_admin_token(database: AsyncEngine, data_dir: Path, now: datetime) -> Path | None:
    # The token file is a few bytes written once at first start: no thread hop needed.
    """Create the first admin token if there is none; returns the file it was written to."""
    sessions = async_sessionmaker(database, expire_on_commit=False)
    async with sessions() as session, session.begin():
        count = await session.scalar(select(func.count()).select_from(ApiToken))
        if count:
            return None
        token = secrets.token_urlsafe(32)
        session.add(
            ApiToken(name="admin", role="admin", token_sha256=hash_token(token), created_at=now)
        )
        path = data_dir / "admin.token"
        data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
        # Created with 0600 from the start, so the secret is never readable by others.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        os.chmod(path, 0o600)
    return path


class TokenError(ValueError):
    """A token command that cannot be done: an unknown role, a name in use, no such name."""


async def issue_token(database: AsyncEngine, name: str, role: str, now: datetime) -> str:
    """A new token named `name` for `role`; the secret is returned once and never stored."""
    if role not in ROLES:
        raise TokenError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not name.strip() or len(name) > 100:
        raise TokenError("a token's name is 1 to 100 characters (who or what uses it)")
    token = secrets.token_urlsafe(32)
    sessions = async_sessionmaker(database, expire_on_commit=False)
    async with sessions() as session, session.begin():
        taken = await session.scalar(select(ApiToken.id).where(ApiToken.name == name))
        if taken is not None:
            raise TokenError(
                f"a token named {name!r} exists already: revoke it first "
                f"(greenchannel token revoke {name}) or choose another name"
            )
        session.add(ApiToken(name=name, role=role, token_sha256=hash_token(token), created_at=now))
    return token


async def list_tokens(database: AsyncEngine) -> list[tuple[str, str, datetime]]:
    """Every stored token as (name, role, created_at), oldest first; never a secret."""
    sessions = async_sessionmaker(database, expire_on_commit=False)
    async with sessions() as session:
        rows = await session.execute(
            select(ApiToken.name, ApiToken.role, ApiToken.created_at).order_by(ApiToken.id)
        )
        return [(name, role, created) for name, role, created in rows]


async def revoke_token(database: AsyncEngine, name: str) -> str:
    """Remove the token named `name`; returns its role. TokenError when there is none."""
    sessions = async_sessionmaker(database, expire_on_commit=False)
    async with sessions() as session, session.begin():
        role = await session.scalar(select(ApiToken.role).where(ApiToken.name == name))
        if role is None:
            raise TokenError(f"no token named {name!r} (greenchannel token list shows them)")
        await session.execute(delete(ApiToken).where(ApiToken.name == name))
    return role


def require_role(*roles: str) -> Callable[[HTTPConnection], Awaitable[None]]:
    """A route dependency: 403 unless the request's token (checked by the app-wide gate, which
    sets `state.role`) has one of `roles`; 401 when no gate ran (no role at all)."""
    unknown = set(roles) - set(ROLES)
    if unknown or not roles:
        raise ValueError(f"unknown roles {sorted(unknown)}; roles are {', '.join(ROLES)}")
    allowed = ", ".join(roles)

    async def check(connection: HTTPConnection) -> None:
        role = getattr(connection.state, "role", None)
        if role is None:
            raise HTTPException(
                401,
                "a valid API token is required: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if role not in roles:
            raise HTTPException(
                403, f"this needs a token with the role {allowed}; this token's role is {role}"
            )

    return check


def token_name(connection: HTTPConnection) -> str:
    """The name of the request's token (who acted, for an audit trail), as the gate set it."""
    return str(getattr(connection.state, "token_name", None) or "unknown")


class TokenGate:
    """Checks `Authorization: Bearer <token>` against the stored token hashes."""

    def __init__(self, database: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(database, expire_on_commit=False)
        self._known: dict[str, tuple[str, str]] = {}  # digest -> (role, name)
        self._loaded_at = 0.0

    async def load(self) -> None:
        async with self._sessions() as session:
            rows = await session.execute(
                select(ApiToken.token_sha256, ApiToken.role, ApiToken.name)
            )
            self._known = {digest: (role, name) for digest, role, name in rows}
        self._loaded_at = time.monotonic()

    async def role_for(self, authorization: str | None) -> str | None:
        """The token's role, or None when the header is missing or the token unknown."""
        found = await self.identify(authorization)
        return found[0] if found is not None else None

    async def identify(self, authorization: str | None) -> tuple[str, str] | None:
        """The token's (role, name), or None when the header is missing or the token unknown."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        # Looking up a SHA-256 of the token leaks nothing useful through timing.
        digest = hash_token(token.strip())
        if time.monotonic() - self._loaded_at > RELOAD_AFTER_S:
            # Tokens revoked since we last looked (by `greenchannel token` or another node): a
            # revoked token stops working within RELOAD_AFTER_S.
            await self.load()
        found = self._known.get(digest)
        if found is None:
            # A token issued since the last load works at once: one indexed lookup of this
            # digest, not a reload of every token, so unknown tokens cost no more than a request.
            async with self._sessions() as session:
                row = (
                    await session.execute(
                        select(ApiToken.role, ApiToken.name).where(ApiToken.token_sha256 == digest)
                    )
                ).first()
            if row is not None:
                found = self._known[digest] = (str(row.role), str(row.name))
        return found

    async def authorize(self, authorization: str | None) -> bool:
        return await self.role_for(authorization) is not None
