"""`greenchannel token issue|list|revoke`: the API tokens of engine.auth on the command line, in
the engine's database (the settings' database URL), the one store every token gate reads.

`issue` prints the new secret once (only its SHA-256 is stored); `list` shows names, roles and
when each was made, never a secret; `revoke` removes a token, and a running engine refuses it
within `engine.auth.RELOAD_AFTER_S`. The settings' `GREENCHANNEL_ADMIN_TOKEN` is not stored, so
it is listed as such and is revoked by removing it from the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from engine.auth import ROLES, TokenError, issue_token, list_tokens, revoke_token
from engine.database import create_database_engine, migrate
from engine.settings import Settings, load_settings

__all__ = ["register"]

EXAMPLE = f"""examples:
  greenchannel token issue --role clinician --name ed-board-1     # prints the token once
  greenchannel token list
  greenchannel token revoke ed-board-1

roles: {", ".join(ROLES)}
exit status: 0 done, 1 refused (unknown role, name in use, no such token), 3 configuration."""

Action = Callable[[AsyncEngine, argparse.Namespace, Settings], Awaitable[None]]


def register(parser: argparse.ArgumentParser) -> None:
    """issue, list and revoke API tokens (a role each)"""
    parser.description = "API tokens: issue one for a role, list them, revoke one."
    parser.epilog = EXAMPLE
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    actions = parser.add_subparsers(title="token commands", metavar="ACTION")

    issue = actions.add_parser("issue", help="a new token for a role, printed once")
    issue.add_argument("--role", required=True, choices=ROLES)
    issue.add_argument("--name", required=True, help="who or what uses it (unique)")
    issue.set_defaults(handler=_run(_issue))

    listing = actions.add_parser("list", help="every token's name, role and creation time")
    listing.set_defaults(handler=_run(_list))

    revoke = actions.add_parser("revoke", help="remove a token; engines refuse it from then on")
    revoke.add_argument("name")
    revoke.set_defaults(handler=_run(_revoke))
    parser.set_defaults(handler=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _run(action: Action) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        settings = load_settings(args.config, data_dir=args.data_dir)
        try:
            asyncio.run(_with_database(settings, action, args))
        except TokenError as exc:
            print(f"greenchannel: {exc}", file=sys.stderr, flush=True)
            return 1
        return 0

    return handler


async def _with_database(settings: Settings, action: Action, args: argparse.Namespace) -> None:
    database = create_database_engine(settings.resolved_database_url, pool_size=2)
    try:
        await migrate(database)  # the token table, on a database no engine has started on yet
        await action(database, args, settings)
    finally:
        await database.dispose()


async def _issue(database: AsyncEngine, args: argparse.Namespace, settings: Settings) -> None:
    token = await issue_token(database, args.name, args.role, datetime.now(settings.tz))
    print(token)
    print(
        f"token {args.name!r} (role {args.role}) issued: it is shown only this once",
        file=sys.stderr,
    )


async def _list(database: AsyncEngine, args: argparse.Namespace, settings: Settings) -> None:
    rows = [(n, r, c.astimezone(settings.tz).isoformat(timespec="seconds")) for n, r, c in
            await list_tokens(database)]  # fmt: skip
    if settings.admin_token is not None:
        rows.append(("(GREENCHANNEL_ADMIN_TOKEN)", "admin", "from the environment"))
    width = max([len("NAME")] + [len(n) for n, _, _ in rows])
    print(f"{'NAME':<{width}}  {'ROLE':<17}  CREATED")
    for name, role, created in rows:
        print(f"{name:<{width}}  {role:<17}  {created}")


async def _revoke(database: AsyncEngine, args: argparse.Namespace, settings: Settings) -> None:
    role = await revoke_token(database, args.name)
    print(f"token {args.name!r} (role {role}) revoked")
