"""`greenchannel wristband register|bind|unbind|return|board`: the wristband desk on the
command line, on the engine's database (the settings' database URL), as /api/wristbands."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo
from typing import Any

from engine.database import create_database_engine
from engine.settings import load_settings

__all__ = ["register"]

EXAMPLE = """examples:
  greenchannel wristband bind T-0042 --patient p-1001 --encounter v-2001
  greenchannel wristband board
  greenchannel wristband unbind T-0042
  greenchannel wristband register B-0007 --badge prac-dr-li     # a staff badge
  greenchannel wristband return T-0042                          # back at the desk after discharge

exit status: 0 done, 1 refused (unknown tag, already bound, not bound), 3 configuration."""


def register(parser: argparse.ArgumentParser) -> None:
    """bind UWB wristbands to patients, unbind them, and show the board"""
    parser.description = "UWB wristbands: bind to a patient's encounter, unbind, board."
    parser.epilog = EXAMPLE
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    actions = parser.add_subparsers(title="wristband commands", metavar="ACTION")

    bind = actions.add_parser("bind", help="put a wristband on a patient for an encounter")
    bind.add_argument("tag", help="the tag id printed on the band")
    bind.add_argument("--patient", required=True, help="Patient id in the FHIR store")
    bind.add_argument("--encounter", required=True, help="Encounter id in the FHIR store")
    bind.set_defaults(handler=_run(_bind))

    unbind = actions.add_parser("unbind", help="take a wristband off (back at the desk)")
    unbind.add_argument("tag")
    unbind.set_defaults(handler=_run(_unbind))

    back = actions.add_parser("return", help="a band unbound at discharge is back at the desk")
    back.add_argument("tag")
    back.set_defaults(handler=_run(_return))

    new = actions.add_parser("register", help="add a tag to the pool (or a staff badge)")
    new.add_argument("tag")
    new.add_argument("--badge", metavar="PRACTITIONER", help="a staff badge worn by this "
                     "Practitioner id")  # fmt: skip
    new.add_argument("--label", help="a note shown on the board")
    new.set_defaults(handler=_run(_register))

    board = actions.add_parser("board", help="every tag: in use, idle, silent, overdue")
    board.add_argument("--json", action="store_true", help="one JSON object per line")
    board.add_argument("--status", choices=["in_use", "idle", "silent", "overdue"])
    board.set_defaults(handler=_run(_board))
    parser.set_defaults(handler=lambda args: _usage(parser))


Action = Callable[[Any, argparse.Namespace, datetime], Awaitable[None]]


def _run(action: Action) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        from devices.uwb.errors import WristbandError

        settings = load_settings(args.config, data_dir=args.data_dir)
        try:
            asyncio.run(_with_database(settings.resolved_database_url, settings.tz, action, args))
        except WristbandError as exc:
            print(f"greenchannel: {exc}", file=sys.stderr, flush=True)
            return 1
        return 0

    return handler


async def _with_database(url: str, zone: tzinfo, action: Action, args: argparse.Namespace) -> None:
    from devices.uwb.schema import migrate

    database = create_database_engine(url, pool_size=2)
    try:
        await migrate(database)
        await action(database, args, datetime.now(zone))  # the configured zone, not the host's
    finally:
        await database.dispose()


async def _bind(database: Any, args: argparse.Namespace, now: datetime) -> None:
    from devices.uwb.wristbands import bind

    await bind(database, args.tag, args.patient, args.encounter, now)
    print(f"{args.tag} bound to patient {args.patient}, encounter {args.encounter}")


async def _unbind(database: Any, args: argparse.Namespace, now: datetime) -> None:
    from devices.uwb.wristbands import unbind

    encounter = await unbind(database, args.tag, now)
    print(f"{args.tag} unbound from encounter {encounter}")


async def _return(database: Any, args: argparse.Namespace, now: datetime) -> None:
    from devices.uwb.wristbands import return_tag

    await return_tag(database, args.tag, now)
    print(f"{args.tag} returned")


async def _register(database: Any, args: argparse.Namespace, now: datetime) -> None:
    from devices.uwb.wristbands import TagKind
    from devices.uwb.wristbands import register as add

    kind: TagKind = "badge" if args.badge else "wristband"
    await add(database, args.tag, now, kind=kind, practitioner_id=args.badge, label=args.label)
    print(f"{args.tag} registered as a {kind}")


async def _board(database: Any, args: argparse.Namespace, now: datetime) -> None:
    from devices.uwb.wristbands import board
    from devices.uwb.zones import load_zones

    rows = [r for r in await board(database, load_zones(), now)
            if args.status is None or r.status == args.status]  # fmt: skip
    if args.json:
        for row in rows:
            print(json.dumps(row.to_json(), ensure_ascii=False))
        return
    print(f"{'TAG':<12} {'KIND':<10} {'STATUS':<8} {'WHERE':<10} {'ENCOUNTER':<14} LAST HEARD")
    for row in rows:
        heard = row.last_heard_at.astimezone(now.tzinfo).isoformat(timespec="seconds") if (
            row.last_heard_at) else "never"  # fmt: skip
        print(f"{row.tag_id:<12} {row.kind:<10} {row.status:<8} {row.where:<10} "
              f"{row.encounter_id or '-':<14} {heard}")  # fmt: skip


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2
