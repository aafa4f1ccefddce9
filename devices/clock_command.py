"""`greenchannel clocks`: every source's clock offset, drift, last message, sample count and
status, and the engine hosts' NTP offsets, from the engine's database. Imports the clock
package only when run, so listing the commands stays fast."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

__all__ = ["register", "run"]

EXAMPLE = """\
examples:
  greenchannel clocks
  greenchannel clocks --json
  greenchannel clocks --database-url postgresql+psycopg://greenchannel@db/greenchannel

OFFSET_S is how far the source's clock is ahead (+) or behind (-) true time, estimated from
its message timestamps (MSH-7) against their receipt; to the second, as HL7 sends. STATUS is
unknown until clocks.min_samples messages came, drifting while past clocks.alert_threshold_s.
Exit codes: 0 printed; 3 the database cannot be read."""


def register(parser: argparse.ArgumentParser) -> None:
    """every source's clock offset and drift, and the host's NTP offset"""
    parser.description = "Every message source's clock against true time, and the host's NTP."
    parser.epilog = EXAMPLE
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--json", action="store_true", help="one JSON object, as GET /api/clocks")
    parser.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the data dir)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the report; 0 when done."""
    from devices.clock.report import format_table
    from engine.database import require_existing_database
    from engine.settings import load_settings

    settings = load_settings(
        getattr(args, "config", None),
        data_dir=getattr(args, "data_dir", None),
        database_url=args.database_url,
    )
    url = settings.resolved_database_url
    require_existing_database(url, hint="pass --data-dir (or --database-url) of the engine")
    report = asyncio.run(_report(url, settings.tz))
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(format_table(report), end="")
    return 0


async def _report(url: str, zone: object) -> dict[str, object]:
    from sqlalchemy.exc import SQLAlchemyError

    from devices.clock.report import clocks_report
    from engine.database import create_database_engine
    from engine.errors import ConfigError

    database = create_database_engine(url)
    try:
        return await clocks_report(database, zone)  # type: ignore[arg-type]
    except SQLAlchemyError as exc:
        raise ConfigError(
            "cannot read the clock tables from the database",
            key="database_url",
            hint="is this the engine's database? `greenchannel serve` creates the tables",
        ) from exc
    finally:
        await database.dispose()
