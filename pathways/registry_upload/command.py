"""`greenchannel registry sign` and `greenchannel registry upload`: the platform's request
signature for a given time and request id, and uploads queued through the registry's channel
with a progress line per case until each is accepted, rejected or dead-lettered.

`upload` writes to the engine's database (the data dir or database URL of the settings, as
`greenchannel serve` uses them): it journals one message per case on the `registry-cpc`
channel, which the running engine delivers (its workers look at the journal every second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

__all__ = ["add_sign", "add_upload", "run_sign", "run_upload"]

UPLOAD_EXAMPLE = """\
examples:
  greenchannel registry upload --registry cpc --case 8f3c…
  greenchannel registry upload --registry cpc --ready --timeout 600

Each case's record is rebuilt (overrides applied) and validated; an invalid one is not sent.
The rest are queued on the registry-cpc channel and delivered by `greenchannel serve`.
Exit codes: 0 every case accepted (or unchanged); 1 some rejected, invalid, dead-lettered or
still waiting at --timeout; 3 the database cannot be read."""


def add_sign(commands: Any) -> None:
    """Register `registry sign`."""
    parser = commands.add_parser(
        "sign",
        help="print the platform's request signature for a time and request id",
        description="sign = lowercase hex HMAC-SHA256(secretKey, upper(time + requestId))",
        epilog="example:\n  greenchannel registry sign --time 20240612093045 "
        "--request-id 5d1c8a7e-2b3f-4c6d-9e8f-0a1b2c3d4e5f --secret greenchannel-demo-secret-0001",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--time", required=True, help="yyyyMMddHHmmss, Beijing time")
    parser.add_argument("--request-id", required=True)
    parser.add_argument("--secret", required=True, help="the secretKey as issued")
    parser.set_defaults(handler=run_sign)


def run_sign(args: argparse.Namespace) -> int:
    """Print the signature (the same function the connector signs with)."""
    from pathways.registry_upload.platform import sign

    print(sign(args.secret, args.time, args.request_id))
    return 0


def add_upload(commands: Any) -> None:
    """Register `registry upload`."""
    parser = commands.add_parser(
        "upload",
        help="queue case uploads to the registry and follow them until done",
        epilog=UPLOAD_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--registry", default="cpc", choices=("cpc",))
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--case", action="append", dest="cases", metavar="ID")
    which.add_argument(
        "--ready", action="store_true", help="every case staff marked ready (validated)"
    )
    parser.add_argument("--force", action="store_true", help="re-send unchanged accepted records")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (0: none)")
    parser.add_argument("--by", default="cli", help="who triggered it, for the upload log")
    parser.add_argument("--json", action="store_true", help="print the final states as JSON")
    parser.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the data dir)")
    parser.add_argument("--config", type=Path, help="settings file")
    parser.set_defaults(handler=run_upload)


def run_upload(args: argparse.Namespace) -> int:
    """Queue, then print a line per state change until every case is done or the timeout."""
    from engine.settings import load_settings

    settings = load_settings(
        args.config, data_dir=getattr(args, "data_dir", None), database_url=args.database_url
    )
    return asyncio.run(_upload(settings, args))


async def _upload(settings: Any, args: argparse.Namespace) -> int:
    from datetime import datetime

    from engine.database import create_database_engine
    from fhir_store import FhirStore, FhirStoreError
    from pathways.registry_upload.service import TERMINAL, RegistryUploads

    database = create_database_engine(settings.resolved_database_url)
    store = FhirStore(database)
    uploads = RegistryUploads(
        database, store, now=lambda: datetime.now(settings.tz), data_dir=settings.data_dir
    )
    try:
        cases = list(args.cases or []) or await uploads.ready_cases(args.registry)
        if not cases:
            print("nothing to upload: no case is marked ready (validated)")
            return 0
        results = await uploads.upload(cases, args.registry, who=args.by, force=args.force)
        waiting: dict[str, str] = {}
        failed = False
        for case_id, result in results:
            print(_line(case_id, result.state, result.outcome, result.update), flush=True)
            if result.outcome == "queued":
                waiting[case_id] = "queued"
            elif result.outcome == "busy":
                waiting[case_id] = result.state.state
            elif result.outcome == "invalid":
                failed = True
        deadline = time.monotonic() + args.timeout
        while waiting and args.timeout and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            for view in await uploads.states(args.registry, list(waiting)):
                if view.state != waiting[view.case_id] or view.attempts:
                    if view.state != waiting[view.case_id]:
                        print(_line(view.case_id, view, view.state, False), flush=True)
                    waiting[view.case_id] = view.state
                if view.state in TERMINAL:
                    failed = failed or view.state != "accepted"
                    del waiting[view.case_id]
        for case_id, state in waiting.items():
            print(
                f"{case_id}: still {state} after {args.timeout:g} s — is `greenchannel serve` "
                "running with the registry-cpc channel deployed?",
                flush=True,
            )
        if args.json:
            final = await uploads.states(args.registry, cases)
            print(json.dumps([v.as_dict() for v in final], ensure_ascii=False, indent=2))
        return 1 if failed or waiting else 0
    except (LookupError, FhirStoreError) as exc:  # NotACase, the record's CaseNotFound
        raise ConfigError(
            str(exc), key="--case", hint="give the EpisodeOfCare id of a case"
        ) from exc
    finally:
        await store.aclose()
        await database.dispose()


def _line(case_id: str, view: Any, outcome: str, update: bool) -> str:
    """One progress line: `<case>: accepted REGISTER_ID …` / `rejected 块:消息;…`."""
    if outcome == "queued":
        kind = "update" if update else "first save"
        return f"{case_id}: queued ({kind}, message {view.message_id})"
    if outcome == "accepted":
        return f"{case_id}: accepted REGISTER_ID {view.register_id}"
    if outcome in ("invalid", "rejected", "dead_letter"):
        reasons = "".join(str(p.get("message")) for p in view.problems)
        kind = f" [{view.problem_kind}]" if view.problem_kind else ""
        return f"{case_id}: {outcome}{kind} {reasons}".rstrip()
    if outcome == "busy":
        return f"{case_id}: already {view.state} (message {view.message_id}); following it"
    if outcome == "unchanged":
        return f"{case_id}: unchanged since accepted (REGISTER_ID {view.register_id}); not sent"
    if outcome in ("sending", "retry_wait"):
        return f"{case_id}: {outcome} (attempt {view.attempts})"
    return f"{case_id}: {outcome}"
