"""`greenchannel case show ID [--json]`: print the patient archive of one center case, read
straight from the FHIR store in the engine's database (the settings' database URL).
`greenchannel case reindex --center X`: write every case's interval Observations again from the
indicator definitions now (after an edit made while no engine ran; a running engine does it by
itself when it sees the edit)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from engine.errors import GreenchannelError
from engine.settings import load_settings
from pathways.archive import CaseNotFound, build_archive
from pathways.archive_text import render_archive
from pathways.command_store import command_store
from pathways.vocabulary import CENTER_TYPE_CODES, Center

__all__ = ["register"]

EXAMPLE = """\
examples:
  greenchannel case show cp-20240305-0007
  greenchannel --data-dir /srv/greenchannel/var case show cp-20240305-0007 --json

ID is the id of the case's EpisodeOfCare. Exit codes: 0 printed; 1 no such center case;
3 the database cannot be read (wrong --data-dir or database URL, or never served)."""


def register(parser: argparse.ArgumentParser) -> None:
    """show a center case: its patient archive (sections, timeline, scores)"""
    parser.description = "Center cases (EpisodeOfCare) in the FHIR store."
    actions = parser.add_subparsers(title="case commands", metavar="ACTION")
    show = actions.add_parser(
        "show",
        help="print the patient archive of one case",
        description="Print the patient archive of one center case: emergency information, "
        "diagnosis, treatment, outcome, the timeline of time nodes with intervals, scores and "
        "what is missing. The JSON is the same as GET /api/cases/{id}/archive.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("case_id", metavar="ID", help="the case's EpisodeOfCare id")
    show.add_argument("--json", action="store_true", help="print the archive as JSON")
    show.set_defaults(handler=run_show)
    reindex = actions.add_parser(
        "reindex",
        help="write the cases' interval Observations again from the indicator definitions",
        description="Re-derive the interval Observations (one per case, standard and "
        "indicator) of every case of a center from the indicator definitions as they are now "
        "(config/pathways/<center>/*.yaml). A running engine does this by itself within "
        "seconds of an edit; run this after an edit made while it was stopped. Only what "
        "changed is written.",
        epilog="example:\n  greenchannel case reindex --center chest_pain",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reindex.add_argument("--center", required=True, choices=list(CENTER_TYPE_CODES))
    reindex.set_defaults(handler=run_reindex)
    parser.set_defaults(handler=lambda args: _usage(parser))


def run_reindex(args: argparse.Namespace) -> int:
    """Re-derive the intervals of every case of one center; prints how many cases."""
    settings = load_settings(args.config, data_dir=args.data_dir)
    cases = asyncio.run(_reindex(settings.resolved_database_url, args.center, settings.tz))
    print(f"{cases} {args.center} case(s): interval Observations written again where they changed")
    return 0


async def _reindex(url: str, center: Center, zone: Any) -> int:
    from pathways.indicator_loader import indicator_definitions
    from pathways.intervals import IntervalWriter, rederive_intervals
    from pathways.records import Records

    async with command_store(url, timezone=zone, check_references=False) as store:
        await store.search_parameters()  # the `case` search the pathway engine published
        writer = IntervalWriter(Records(store, zone), indicator_definitions().current)
        return await rederive_intervals(store, writer, center)


def run_show(args: argparse.Namespace) -> int:
    """Print one archive; 0 when printed, 1 for an unknown case (GreenchannelError)."""
    settings = load_settings(args.config, data_dir=args.data_dir)
    archive = asyncio.run(_archive(settings.resolved_database_url, args.case_id, settings.tz))
    if args.json:
        print(json.dumps(archive, ensure_ascii=False, indent=2))
    else:
        print(render_archive(archive), end="")
    return 0


async def _archive(url: str, case_id: str, zone: Any) -> dict[str, Any]:
    async with command_store(url) as store:
        try:
            return await build_archive(store, case_id, zone=zone)
        except CaseNotFound as exc:
            raise GreenchannelError(
                str(exc), hint="check the id (the EpisodeOfCare id of the case)"
            ) from exc


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2
