"""`greenchannel registry ...`: national registry records from the center cases in the engine's
FHIR store (the settings' database URL), for registry staff.

- `registry check --center chest_pain [--case ID | --month 2026-10]`: per case "ready" or its
  problems, each with the FHIR data that would fill it; exit 1 when a case has errors;
- `registry export --registry cpc --case ID`: the record JSON the platform would receive;
  `registry export --registry wso --month 2026-10 --format xlsx --out FILE`: a file-template
  registry's CSV or XLSX (one row per case) with its validation report.
- `registry upload --registry cpc [--case ID | --ready]` and `registry sign`: see
  `pathways.registry_upload.command`.

Adding a subcommand (upload, sign ...): write `def register_NAME(actions) -> None` that calls
`actions.add_parser(...)` and sets `handler=` to a function `(argparse.Namespace) -> int`, then
append it to `SUBCOMMANDS` below. `open_store(args)` gives the store the way these commands use it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from engine.errors import ConfigError, GreenchannelError
from engine.settings import load_settings
from fhir_store import FhirStore
from pathways.command_store import command_store
from pathways.registry import (
    CaseNotFound,
    ExportedFile,
    NotATemplate,
    RegistryMapping,
    UnknownRegistryField,
    build_record,
    check_cases,
    checked_records,
    completeness_report,
    export_file,
    problem_lines,
    registry_mapping,
    validate_record,
)
from pathways.registry_upload.command import add_sign, add_upload

__all__ = ["SUBCOMMANDS", "open_store", "register"]

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
CHECK_EXAMPLE = """\
examples:
  greenchannel registry check --center chest_pain --month 2026-10
  greenchannel registry check --center chest_pain --case cp-20261003-0007 --hospital-id H123

One line per case (ready, or N problems) and its problems: the platform's message, the field,
and the FHIR data (resource, code, time node) or staff entry that would fill it. Exit codes:
0 every case ready; 1 a case has errors; 3 the database or a mapping file cannot be read."""
EXPORT_EXAMPLE = """\
examples:
  greenchannel registry export --registry cpc --case cp-20261003-0007
  greenchannel registry export --registry cpc --case cp-20261003-0007 --detail
  greenchannel registry export --registry wso --month 2026-10 --format xlsx --out wso-2026-10.xlsx
  greenchannel registry export --registry trauma-regional --case tr-0042 --format csv --out -

JSON (the default) prints the record the platform receives; --detail adds the mapping and spec
versions, each field's FHIR source and the validation problems. csv and xlsx write the registry's
file template (registries without an API: wso, trauma-regional), one row per case, and print the
validation report: an incomplete case is left out with its reasons, or exported with its row
flagged (--incomplete flag). CSV is UTF-8 with a BOM, so Excel shows the Chinese headers.
Exit codes: 0 printed or written, every case complete; 1 no such case, or a case incomplete
(skipped or flagged); 3 the database or the mapping file cannot be read."""


def register(parser: argparse.ArgumentParser) -> None:
    """national registry records: check, export, upload them; sign a request"""
    parser.description = "National registry records built from the center cases."
    actions = parser.add_subparsers(title="registry commands", metavar="ACTION")
    for add in SUBCOMMANDS:
        add(actions)
    parser.set_defaults(handler=lambda args: _usage(parser))


def register_check(actions: Any) -> None:
    check = actions.add_parser(
        "check",
        help="which cases are ready for the registry, and what is missing",
        description="Build and validate each case's registry record like the platform would.",
        epilog=CHECK_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument(
        "--center", required=True, choices=("chest_pain", "stroke", "trauma"), help="the center"
    )
    which = check.add_mutually_exclusive_group()
    which.add_argument("--case", metavar="ID", help="one case (its EpisodeOfCare id)")
    which.add_argument(
        "--month", metavar="YYYY-MM", help="the cases of a month, by door (default: this month)"
    )
    check.add_argument("--registry", help="the registry mapping (default: the center's)")
    _common(check)
    check.add_argument("--json", action="store_true", help="print the reports as JSON")
    check.set_defaults(handler=run_check)


def register_export(actions: Any) -> None:
    export = actions.add_parser(
        "export",
        help="print one case's registry record as JSON",
        description="Print the record of one case as the registry receives it.",
        epilog=EXPORT_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("--registry", required=True, help="the registry mapping (cpc, wso ...)")
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--case", metavar="ID", help="the case's EpisodeOfCare id")
    which.add_argument("--month", metavar="YYYY-MM", help="csv/xlsx: the cases of a month, by door")
    _common(export)
    export.add_argument(
        "--detail", action="store_true", help="add versions, FHIR sources and problems"
    )
    _file_options(export)
    export.set_defaults(handler=run_export)


def _file_options(export: argparse.ArgumentParser) -> None:
    export.add_argument(
        "--format",
        choices=("json", "csv", "xlsx"),
        default="json",
        help="json: one record; csv or xlsx: the registry's file template (default: json)",
    )
    export.add_argument(
        "--out", metavar="FILE", help="csv/xlsx: where to write (- for stdout; default: the "
        "template's file name in this directory)",
    )  # fmt: skip
    export.add_argument(
        "--incomplete",
        choices=("skip", "flag"),
        default="skip",
        help="csv/xlsx: leave incomplete cases out (default) or export them flagged",
    )


# The subcommands of `greenchannel registry`, in help order. Append yours here.
SUBCOMMANDS: list[Callable[[Any], None]] = [register_check, register_export, add_upload, add_sign]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hospital-id",
        metavar="ID",
        help="the HOSPITAL_ID the platform issued (a deployment value, kept out of the repo)",
    )


@asynccontextmanager
async def open_store(args: argparse.Namespace) -> AsyncIterator[FhirStore]:
    """The FHIR store of the engine's database (--data-dir / settings); ConfigError (exit 3)
    when it cannot be read."""
    settings = load_settings(args.config, data_dir=args.data_dir)
    async with command_store(settings.resolved_database_url, timezone=settings.tz) as store:
        yield store


def _params(args: argparse.Namespace) -> dict[str, str]:
    return {"hospital_id": args.hospital_id} if args.hospital_id else {}


def _mapping(name: str) -> RegistryMapping:
    return registry_mapping(name)


def run_check(args: argparse.Namespace) -> int:
    """Print each case's readiness; 1 when any case has errors."""
    settings = load_settings(args.config, data_dir=args.data_dir)
    if args.month is not None and not _MONTH.match(args.month):
        raise GreenchannelError(f"--month {args.month!r} is not YYYY-MM", hint="e.g. 2026-10")
    month = args.month or datetime.now(settings.tz).strftime("%Y-%m")
    mapping = _mapping(args.registry or _default_registry(args.center))
    if mapping.center != args.center:
        raise ConfigError(
            f"the {mapping.registry} mapping is for {mapping.center} cases, not {args.center}",
            file=mapping.file,
        )

    async def run() -> list[dict[str, Any]]:
        async with open_store(args) as store:
            return await check_cases(
                store, mapping, args.center, case_id=args.case, month=month, params=_params(args)
            )

    reports = asyncio.run(run())
    if args.json:
        print(json.dumps(reports, ensure_ascii=False, indent=2))
    else:
        if not reports:
            print(f"no {args.center} case counted in {month}")
        for report in reports:
            print(_headline(report))
            for line in report["lines"]:
                print(f"  {line}")
    return 1 if any(not report["ready"] for report in reports) else 0


def _headline(report: dict[str, Any]) -> str:
    if report["ready"]:
        return f"{report['case_id']}: ready"
    errors = report["errors"]
    return f"{report['case_id']}: {errors} problem{'s' if errors != 1 else ''}"


def run_export(args: argparse.Namespace) -> int:
    """Print one record; 0 when printed (problems go with --detail), 1 for an unknown case.
    With --format csv or xlsx, write the template file (run_file_export)."""
    if args.format != "json":
        return run_file_export(args)
    if args.case is None:
        raise GreenchannelError(
            "a JSON export is one case's record: give --case ID",
            hint="for a month's cases use --format csv or xlsx (file-template registries)",
        )
    mapping = _mapping(args.registry)

    async def run() -> dict[str, Any]:
        async with open_store(args) as store:
            try:
                record = await build_record(
                    store, args.case, mapping.registry, params=_params(args), mapping=mapping
                )
            except CaseNotFound as exc:
                raise GreenchannelError(
                    str(exc), hint="check the id (the EpisodeOfCare id of the case)"
                ) from exc
            except UnknownRegistryField as exc:  # pragma: no cover - the CLI sets no override
                raise GreenchannelError(str(exc)) from exc
        if not args.detail:
            return record.payload
        problems = validate_record(record, mapping)
        return {
            **record.as_dict(),
            "problems": [p.as_dict() for p in problems],
            "completeness": completeness_report(record, problems),
        }

    print(json.dumps(asyncio.run(run()), ensure_ascii=False, indent=2))
    return 0


def run_file_export(args: argparse.Namespace) -> int:
    """Write the template file of one case or a month's cases and print the validation report;
    1 when a case was left out or flagged (or no case was exported)."""
    if args.month is not None and not _MONTH.match(args.month):
        raise GreenchannelError(f"--month {args.month!r} is not YYYY-MM", hint="e.g. 2026-10")
    mapping = _mapping(args.registry)

    async def run() -> ExportedFile:
        async with open_store(args) as store:
            try:
                checked = await checked_records(
                    store, mapping, mapping.center, case_id=args.case, month=args.month,
                    params=_params(args),
                )  # fmt: skip
            except CaseNotFound as exc:
                raise GreenchannelError(
                    str(exc), hint="check the id (the EpisodeOfCare id of the case)"
                ) from exc
        try:
            return export_file(
                mapping, checked, args.format, incomplete=args.incomplete,
                suffix=args.month or args.case,
            )  # fmt: skip
        except NotATemplate as exc:
            raise GreenchannelError(exc.message, hint=exc.hint) from exc

    exported = asyncio.run(run())
    target = args.out or exported.filename
    report = sys.stderr if target == "-" else sys.stdout
    if target == "-":
        sys.stdout.buffer.write(exported.content)
        sys.stdout.buffer.flush()
    else:
        with open(target, "wb") as handle:
            handle.write(exported.content)
    print(_export_summary(exported, target), file=report)
    for case_id, problems in [*exported.skipped.items(), *exported.flagged.items()]:
        state = "skipped" if case_id in exported.skipped else "flagged"
        print(f"{case_id}: {state}, {len(problems)} problems", file=report)
        for line in problem_lines(problems):
            print(f"  {line}", file=report)
    incomplete = exported.skipped or exported.flagged or not exported.exported
    return 1 if incomplete else 0


def _export_summary(exported: ExportedFile, target: str) -> str:
    where = "stdout" if target == "-" else target
    return (
        f"{exported.registry} {exported.mapping_version}: {len(exported.exported)} cases "
        f"written to {where} ({len(exported.skipped)} skipped, {len(exported.flagged)} flagged)"
    )


def _default_registry(center: str) -> str:
    defaults = {"chest_pain": "cpc", "stroke": "wso", "trauma": "trauma-regional"}
    if center not in defaults:
        raise ConfigError(
            f"no registry mapping for {center} cases yet",
            hint="name one with --registry (a file in mappings/registry/)",
        )
    return defaults[center]


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2
