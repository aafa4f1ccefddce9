"""`greenchannel qc`: monthly quality indicators of a center from the engine's database.

Registered under the `greenchannel.commands` entry point. Reads the FHIR store in the engine's
database (the data dir or database URL of the settings, as `greenchannel serve` uses them) and
the definitions in config/pathways/; prints a table, CSV or JSON, and can draw the QC chart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError
from pathways.months import REPORTING_ZONE, month_of, months_between, parse_month, shift_month
from pathways.vocabulary import CENTERS

if TYPE_CHECKING:
    from pathways.qc import QcReport

# Twelve months of trend by default (pathways.qc.TREND_MONTHS); this module stays light because
# every `greenchannel` invocation imports it to list the command.
DEFAULT_MONTHS = 12

__all__ = ["register", "run"]

EXAMPLE = """\
examples:
  greenchannel qc --center chest_pain --from 2026-01 --to 2026-10
  greenchannel qc --center stroke --standard nhc-neuro-qc-2020 --format csv > stroke.csv
  greenchannel qc --center chest_pain --indicator cpc.d2w --plot d2w.png

Without --from, the 12 months up to --to (default: this month, Asia/Shanghai). Without
--standard, every standard version of the center in config/pathways/<center>/. Exit codes:
0 report printed; 2 usage; 3 the database or the definitions cannot be read."""


def register(parser: argparse.ArgumentParser) -> None:
    """monthly quality indicators of a center: table, CSV, JSON or a chart"""
    parser.description = (
        "Monthly QC statistics (n, mean, median, P90, compliance, excluded, invalid,\n"
        "completeness, rates, trend) per indicator, from the cases in the engine's database."
    )
    parser.epilog = EXAMPLE
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--center", required=True, choices=CENTERS)
    parser.add_argument("--from", dest="first", type=_month, metavar="YYYY-MM")
    parser.add_argument("--to", dest="last", type=_month, metavar="YYYY-MM")
    parser.add_argument("--standard", help="standard version id, e.g. cpc-recert (default: all)")
    parser.add_argument(
        "--indicator", action="append", default=[], help="indicator id (repeatable; default: all)"
    )
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="also draw the QC chart")
    parser.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the data dir)")
    parser.add_argument(
        "--pathways-dir", type=Path, help="indicator definitions (default: config/pathways)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the report (and write the chart); 0 when done."""
    from engine.settings import load_settings
    from pathways.indicator_definitions import load_catalogue
    from pathways.qc_output import as_csv, as_table
    from pathways.qc_plot import NothingToPlot, render_plot
    from pathways.qc_service import reports_as_dict

    last = args.last or month_of(datetime.now(REPORTING_ZONE))
    first = args.first or shift_month(last, -(DEFAULT_MONTHS - 1))
    try:
        months = months_between(first, last)
    except ValueError as exc:
        raise ConfigError(str(exc), key="--from/--to", hint="give --from before --to") from None
    catalogue = load_catalogue(args.pathways_dir)
    settings = load_settings(args.config, data_dir=args.data_dir, database_url=args.database_url)
    reports = asyncio.run(
        _reports(
            settings.resolved_database_url,
            catalogue,
            args.center,
            months,
            args.standard,
            args.indicator,
        )
    )
    if args.format == "json":
        text = json.dumps(
            reports_as_dict(reports, args.center, months), ensure_ascii=False, indent=2
        )
    elif args.format == "csv":
        text = as_csv(reports)
    else:
        text = as_table(reports)
    print(text, end="" if text.endswith("\n") else "\n")
    if args.plot is not None:
        try:
            args.plot.write_bytes(render_plot(reports, args.indicator))
        except NothingToPlot as exc:
            raise ConfigError(
                str(exc), key="--plot", hint="name an interval or rate indicator"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"cannot write the chart: {exc.strerror}", file=str(args.plot)
            ) from None
    return 0


async def _reports(url: str, catalogue: Any, center: Any, months: list[str], standard: str | None,
                   indicators: list[str]) -> list[QcReport]:  # fmt: skip
    from pathways.command_store import command_store
    from pathways.qc_service import build_reports

    async with command_store(url) as store:
        return await build_reports(
            store, catalogue, center, months[0], months[-1], standard, indicators
        )


def _month(text: str) -> str:
    try:
        return parse_month(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
