"""The `greenchannel` command: run the engine, manage channels, inspect and reprocess messages.

Exit codes: 0 success; 1 ran and found failures; 2 usage; 3 environment or configuration.
Results go to stdout (`--json` for machines), errors to stderr as one line and a hint.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import gc
import json
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from engine.errors import ConfigError, GreenchannelError
from engine.settings import Settings, load_settings

__all__ = ["main"]

EXAMPLES = {
    "serve": "greenchannel serve --data-dir ./var --http-port 8080",
    "channels": "greenchannel channels validate   |   greenchannel channels deploy his-adt",
    "messages": "greenchannel messages list --channel his-adt --status error",
    "stats": "greenchannel stats --json",
    "prune": "greenchannel prune",
    "mappings": "greenchannel mappings test mappings/tests/his-adt-a04.yaml   |   "
    "greenchannel mappings lint",
    "map": "greenchannel map mappings/tests/samples/adt-a04.hl7 --tz +08:00",
}


class CommandError(Exception):
    """A command failed in a way the user can fix; `code` is the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        try:
            result: int = args.handler(args)
            return result
        except BaseExceptionGroup as group:
            # Task groups wrap what failed inside them; report the error we can explain.
            raise _explainable(group) from group
    except ConfigError as exc:
        _error(str(exc), args)
        return 3
    except CommandError as exc:
        _error(str(exc), args)
        return exc.code
    except GreenchannelError as exc:
        _error(str(exc), args)
        return 1
    except KeyboardInterrupt:
        return 130


def _explainable(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for leaf in _leaves(group):
        if isinstance(leaf, ConfigError):
            return leaf
    for leaf in _leaves(group):
        if isinstance(leaf, GreenchannelError | CommandError | KeyboardInterrupt):
            return leaf
    return group


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def _error(message: str, args: argparse.Namespace) -> None:
    print(f"greenchannel: {message}", file=sys.stderr)
    if getattr(args, "debug", False):
        import traceback

        traceback.print_exc()


def _parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The whole command line; of the plugins' commands, only the one `argv` runs (all of them
    for the overall help, or for an unknown command)."""
    parser = argparse.ArgumentParser(
        prog="greenchannel",
        description="HL7 v2 / FHIR integration engine for chest pain, stroke and trauma centers.",
    )
    parser.add_argument("--config", type=Path, help="settings file (config/greenchannel.yaml)")
    parser.add_argument("--data-dir", type=Path, help="where the engine keeps its data (./var)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        example = EXAMPLES.get(name)
        return commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example: {example}" if example else None,
        )

    serve = command("serve", "run the engine: channels, journal, HTTP API and FHIR store")
    serve.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    serve.add_argument("--http-port", type=int, help="HTTP API port (8080)")
    serve.add_argument("--http-host", help="HTTP API address (127.0.0.1)")
    serve.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the data dir)")
    serve.add_argument("--text-logs", action="store_true", help="plain log lines, not JSON")
    serve.set_defaults(handler=_serve)

    channels = command("channels", "list, validate, deploy and undeploy channels")
    channel_commands = channels.add_subparsers(title="channel commands", metavar="ACTION")
    listing = channel_commands.add_parser("list", help="channels on disk and deployed")
    validate = channel_commands.add_parser(
        "validate", help="check channel files and their mappings without deploying"
    )
    validate.add_argument("files", nargs="*", type=Path, help="files (default: every channel)")
    deploy = channel_commands.add_parser("deploy", help="(re)deploy a channel from its file")
    deploy.add_argument("name")
    undeploy = channel_commands.add_parser("undeploy", help="stop a channel; its queue stays")
    undeploy.add_argument("name")
    reference = channel_commands.add_parser(
        "reference", help="print the channel file reference (every key, from the models)"
    )
    reference.set_defaults(handler=_channels_reference)
    for sub, handler in (
        (listing, _channels_list),
        (validate, _channels_validate),
        (deploy, _channels_deploy),
        (undeploy, _channels_undeploy),
    ):
        _client_options(sub)
        sub.set_defaults(handler=handler)

    messages = command("messages", "list, show and reprocess journalled messages")
    message_commands = messages.add_subparsers(title="message commands", metavar="ACTION")
    listing = message_commands.add_parser("list", help="newest first, filtered")
    _filter_options(listing)
    listing.add_argument("--limit", type=int, default=50)
    show = message_commands.add_parser("show", help="one message with content and deliveries")
    show.add_argument("id", type=int)
    reprocess = message_commands.add_parser(
        "reprocess", help="run messages again from their raw content with today's mapping"
    )
    reprocess.add_argument("ids", nargs="*", type=int, help="message ids (or use filters)")
    _filter_options(reprocess)
    for sub, handler in (
        (listing, _messages_list),
        (show, _messages_show),
        (reprocess, _messages_reprocess),
    ):
        _client_options(sub)
        sub.set_defaults(handler=handler)

    mapping = command("map", "print the FHIR Bundle (JSON) one message maps to")
    mapping.add_argument("file", type=Path, help="the message, as received (bytes)")
    mapping.add_argument("--mapping", type=Path, help="mapping file (default: chosen by `when`)")
    mapping.add_argument("--tz", help="offset for times sent without one (default: settings)")
    mapping.add_argument("--charset", help="charset when the message declares none")
    mapping.set_defaults(handler=_map)

    mappings = command("mappings", "test and lint the analysts' mapping files")
    mapping_commands = mappings.add_subparsers(title="mapping commands", metavar="ACTION")
    mapping_test = mapping_commands.add_parser(
        "test", help="run mappings/tests/*.yaml (and *.txt case files); say what failed where"
    )
    mapping_test.add_argument(
        "files", nargs="*", type=Path, help="test files, or IZ Gateway style .txt case files"
    )
    mapping_test.set_defaults(handler=_mappings_test)
    mapping_lint = mapping_commands.add_parser(
        "lint", help="load every mapping, template file and code table; print file:line key"
    )
    mapping_lint.add_argument("folder", nargs="?", type=Path, help="default: the mappings folder")
    mapping_lint.set_defaults(handler=_mappings_lint)

    stats = command("stats", "per channel and destination counters, queues and latency")
    _client_options(stats)
    stats.set_defaults(handler=_stats)

    prune = command("prune", "apply the retention settings now")
    _client_options(prune)
    prune.set_defaults(handler=_prune)

    from engine.plugins import load_commands

    word = _command_word(argv)
    if word in commands.choices:  # a built-in command
        plugin_commands = {}
    else:
        plugin_commands = (load_commands(word) if word else {}) or load_commands()
    for name, register in sorted(plugin_commands.items()):
        sub = commands.add_parser(name, help=getattr(register, "__doc__", "") or name)
        register(sub)
    return parser


def _command_word(argv: Sequence[str]) -> str | None:
    """The command `argv` names: its first word that is neither an option nor an option's
    value (the global options --config and --data-dir take one)."""
    words = iter(argv)
    for word in words:
        if word in ("--config", "--data-dir"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="engine HTTP API (default from the settings)")
    parser.add_argument("--token-file", type=Path, help="API token file (DATA_DIR/admin.token)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _filter_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--channel")
    parser.add_argument("--status", help="received, filtered, transformed, queued, sent, error")
    parser.add_argument(
        "--since", type=_aware, help="ISO time with offset, e.g. 2026-11-25T08:00+08:00"
    )
    parser.add_argument("--until", type=_aware, help="ISO time with offset")


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no offset; write e.g. {text}+08:00")
    return value


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(args.config, data_dir=args.data_dir, **overrides)


# -- serve --------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from engine.logs import configure_logging
    from engine.pipeline import GC_THRESHOLD
    from engine.server import Engine

    settings = _settings(
        args,
        http_port=args.http_port,
        http_host=args.http_host,
        database_url=args.database_url,
    )
    configure_logging(settings.log_level, json_lines=not args.text_logs)
    gc.set_threshold(*GC_THRESHOLD)
    if hasattr(signal, "SIGUSR1"):
        # `kill -USR1 <pid>` writes every thread's stack to stderr (the log): what an operator
        # sends a process that hangs, before killing it, to see where.
        faulthandler.register(signal.SIGUSR1, all_threads=True)

    def ready(engine: Engine) -> None:
        # What start-up built lives about as long as the process: compiled channels, pathway
        # definitions and their FHIRPath, search parameters, the FHIR models. Frozen, a full
        # collection no longer walks it. (A channel redeployed later leaves its first compiled
        # form frozen: a one-off per redeploy, against a walk of it on every full collection.)
        gc.freeze()
        print(
            f"greenchannel is running: HTTP API on http://{settings.http_host}:{engine.http_port}, "
            f"channels {', '.join(sorted(engine.runtime.deployed)) or '(none)'}",
            flush=True,
        )
        if engine.admin_token_file is not None:
            print(
                f"first start: an admin API token was written to {engine.admin_token_file} "
                "(mode 0600); send it as 'Authorization: Bearer <token>'",
                flush=True,
            )

    asyncio.run(Engine(settings).run(on_ready=ready))
    return 0


# -- client commands ----------------------------------------------------------------------------


class _Client:
    def __init__(self, args: argparse.Namespace) -> None:
        settings = _settings(args)
        self.url = (args.url or f"http://{settings.http_host}:{settings.http_port}").rstrip("/")
        token_file = args.token_file or settings.data_dir / "admin.token"
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise CommandError(
                f"cannot read the API token from {token_file} ({exc.strerror}); "
                "pass --token-file or --data-dir",
                code=3,
            ) from exc
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise CommandError(
                f"cannot reach the engine at {self.url} ({type(exc).__name__}); "
                "is `greenchannel serve` running? (--url)",
                code=3,
            ) from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise CommandError(f"{method} {path}: HTTP {response.status_code}: {detail}")
        return response.json()


def _print(args: argparse.Namespace, data: Any, text: Callable[[Any], str]) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else text(data))


def _channels_list(args: argparse.Namespace) -> int:
    data = _Client(args).call("GET", "/api/channels")

    def text(d: Any) -> str:
        lines = [f"{'NAME':<24} {'DEPLOYED':<9} {'SOURCE':<8} DESTINATIONS"]
        for c in d["channels"]:
            changed = " (file changed since deploy)" if c["changed_since_deploy"] else ""
            lines.append(
                f"{c['name']:<24} {'yes' if c['deployed'] else 'no':<9} {c['source']:<8} "
                f"{', '.join(c['destinations'])}{changed}"
            )
        lines.extend(f"problem: {p}" for p in d["problems"])
        return "\n".join(lines)

    _print(args, data, text)
    return 1 if data["problems"] else 0


def _channels_validate(args: argparse.Namespace) -> int:
    from engine.channels import ChannelFileErrors, load_channel, load_channel_dir
    from engine.pipeline import compile_channel
    from engine.plugins import load_plugins

    settings = _settings(args)
    plugins = load_plugins()
    problems: list[str] = []
    channels = []
    if args.files:
        for path in args.files:
            try:
                channels.append(load_channel(path, plugins))
            except ChannelFileErrors as exc:
                problems.extend(str(e) for e in exc.errors)
            except ConfigError as exc:
                problems.append(str(exc))
    else:
        found, errors = load_channel_dir(settings.resolved_channels_dir, plugins)
        channels = list(found.values())
        problems.extend(str(e) for e in errors)
    for channel in channels:
        try:
            compile_channel(
                channel,
                mappings_dir=settings.resolved_mappings_dir,
                plugins=plugins,
                default_charset=settings.default_charset,
                default_tz=settings.tz,
            )
        except ConfigError as exc:
            problems.append(str(exc))
    result = {"valid": [c.name for c in channels], "problems": problems}

    def text(d: Any) -> str:
        lines = [f"ok: {name}" for name in d["valid"]]
        lines.extend(f"error: {p}" for p in d["problems"])
        return "\n".join(lines) or "no channel files found"

    _print(args, result, text)
    return 1 if problems else 0


def _channels_reference(args: argparse.Namespace) -> int:
    from engine.plugins import load_plugins
    from engine.reference import render_reference

    print(render_reference(load_plugins()), end="")
    return 0


def _channels_deploy(args: argparse.Namespace) -> int:
    data = _Client(args).call("POST", f"/api/channels/{args.name}/deploy")
    _print(args, data, lambda d: f"deployed {d['deployed']} from {d['file']}")
    return 0


def _channels_undeploy(args: argparse.Namespace) -> int:
    data = _Client(args).call("POST", f"/api/channels/{args.name}/undeploy")
    _print(args, data, lambda d: f"undeployed {d['undeployed']}; its queued messages stay queued")
    return 0


def _query(args: argparse.Namespace) -> dict[str, Any]:
    query = {"channel": args.channel, "status": args.status}
    if args.since:
        query["since"] = args.since.isoformat()
    if args.until:
        query["until"] = args.until.isoformat()
    return {k: v for k, v in query.items() if v}


def _messages_list(args: argparse.Namespace) -> int:
    data = _Client(args).call("GET", "/api/messages", params={**_query(args), "limit": args.limit})

    def text(d: Any) -> str:
        lines = [
            f"{'ID':>8} {'RECEIVED':<26} {'CHANNEL':<16} {'STATUS':<12} {'CONTROL ID':<20} ERROR"
        ]
        for m in d["messages"]:
            received = datetime.fromisoformat(m["received_at"]).isoformat(timespec="seconds")
            lines.append(
                f"{m['id']:>8} {received:<26} {m['channel']:<16} {m['status']:<12} "
                f"{(m['correlation_id'] or '-'):<20} {m['error'] or ''}"
            )
        return "\n".join(lines)

    _print(args, data, text)
    return 0


def _messages_show(args: argparse.Namespace) -> int:
    data = _Client(args).call("GET", f"/api/messages/{args.id}")

    def text(d: Any) -> str:
        lines = [
            f"message {d['id']} on {d['channel']}: {d['status']}",
            f"received {d['received_at']} from {d['origin']} ({d['media_type']}, "
            f"{d['size_bytes']} bytes, charset {d['charset'] or '-'})",
            f"control id {d['correlation_id'] or '-'}; dedup key {d['dedup_key'] or '-'}",
        ]
        if d["reprocess_of"]:
            lines.append(f"reprocessed from message {d['reprocess_of']}")
        if d["error"]:
            lines.append(f"error: {d['error']}")
        for title, content in (("raw", d["raw"]), ("transformed", d["transformed"])):
            if content is None:
                lines.append(f"--- {title}: (none{', pruned' if d['content_pruned'] else ''})")
            elif "text" in content:
                lines.append(f"--- {title}:\n" + content["text"].replace("\r", "\n").rstrip())
            else:
                lines.append(f"--- {title} (base64):\n{content['base64']}")
        for delivery in d["deliveries"]:
            lines.append(
                f"--- destination {delivery['destination']}: {delivery['status']}, "
                f"{delivery['attempts']} attempt(s)"
                + (f", next {delivery['next_attempt_at']}" if delivery["next_attempt_at"] else "")
            )
            for attempt in delivery["attempt_log"]:
                lines.append(
                    f"    #{attempt['attempt']} {attempt['at']} {attempt['outcome']} "
                    f"{attempt['detail'] or ''}"
                )
        return "\n".join(lines)

    _print(args, data, text)
    return 0


def _messages_reprocess(args: argparse.Namespace) -> int:
    client = _Client(args)
    ids: list[int] = list(args.ids)
    if not ids:
        query = _query(args)
        if not query:
            raise CommandError("give message ids or a filter (--channel, --status, --since)", 2)
        before: int | None = None
        while True:
            page = client.call(
                "GET",
                "/api/messages",
                params={**query, "limit": 1000, **({"before_id": before} if before else {})},
            )["messages"]
            ids.extend(m["id"] for m in page)
            if len(page) < 1000:
                break
            before = page[-1]["id"]
        ids.sort()
    done: list[int] = []
    chunk = 100
    for start in range(0, len(ids), chunk):
        data = client.call(
            "POST", "/api/messages/reprocess", json={"ids": ids[start : start + chunk]}
        )
        done.extend(data["new_ids"])
        if not args.json and len(ids) > chunk:
            print(f"reprocessed {min(start + chunk, len(ids))}/{len(ids)}", file=sys.stderr)
    result = {"requested": len(ids), "reprocessed": len(done), "new_ids": done}
    _print(
        args,
        result,
        lambda d: (
            f"reprocessed {d['reprocessed']} of {d['requested']} message(s) "
            f"as new message(s) {', '.join(map(str, d['new_ids'][:20]))}"
            + (" ..." if len(d["new_ids"]) > 20 else "")
        ),
    )
    return 0 if len(done) == len(ids) else 1


def _mappings_test(args: argparse.Namespace) -> int:
    from engine.mapping import load_mapping
    from engine.mapping.catalog import mapping_files
    from engine.mapping.testing import run_case_file, run_mapping_test
    from engine.plugins import load_plugins

    settings = _settings(args)
    tests = settings.resolved_mappings_dir / "tests"
    files = list(args.files) or sorted([*tests.glob("*.yaml"), *tests.glob("*.txt")])
    if not files:
        raise CommandError(f"no mapping tests in {tests}", 1)
    failed = 0
    for path in files:
        if path.suffix == ".txt":  # a case file: many messages, mapped by their `when`
            folder = settings.resolved_mappings_dir
            kinds = load_plugins().mapping_kinds
            mappings = [load_mapping(file) for file in mapping_files(folder, kinds)]
            count, failures = run_case_file(path, mappings, charset=settings.default_charset)
            label = f"{path} ({count} messages)"
        else:
            failures, label = run_mapping_test(path), str(path)
        print(f"{'ok  ' if not failures else 'FAIL'} {label}")
        for failure in failures:
            print(f"     {failure}")
        failed += bool(failures)
    print(f"{len(files) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _mappings_lint(args: argparse.Namespace) -> int:
    from engine.mapping.catalog import lint_folder
    from engine.plugins import load_plugins

    folder = args.folder or _settings(args).resolved_mappings_dir
    if not folder.is_dir():
        raise CommandError(f"{folder} is not a folder", 1)
    checked, problems = lint_folder(folder, load_plugins().mapping_kinds)
    for problem in problems:
        print(problem.message)
    print(f"{checked} files checked, {len(problems)} with problems")
    return 1 if problems else 0


def _map(args: argparse.Namespace) -> int:
    from engine.mapping import Document, load_mapping, parse_timezone
    from engine.mapping.catalog import NoMappingError, choose_mapping, mapping_files
    from engine.plugins import load_plugins

    settings = _settings(args)
    try:
        zone = parse_timezone(args.tz or settings.timezone)
    except ValueError:
        raise CommandError(f"--tz {args.tz!r}: write an offset like +08:00", 2) from None
    try:
        raw = args.file.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror}", 1) from None
    charset = args.charset or settings.default_charset
    plugins = load_plugins()

    def parse(media_type: str, data: bytes) -> Document:
        parser = plugins.parser(media_type) if media_type else None
        if parser is None:
            raise ConfigError(f"no parser is installed for input type {media_type!r}")
        return parser(data, charset)

    if args.mapping is not None:
        mapping = load_mapping(args.mapping)
        document = parse(mapping.input or "", raw)
        output = mapping.apply(document, timezone=zone)
        if output is None:
            raise CommandError(f"{args.mapping}: its `when` is false for this message", 1)
    else:
        folder = settings.resolved_mappings_dir
        mappings = [load_mapping(path) for path in mapping_files(folder, plugins.mapping_kinds)]
        try:
            mapping, document = choose_mapping(raw, mappings, parse, timezone=zone)
        except NoMappingError as exc:
            raise CommandError(f"{exc}; name the mapping with --mapping", 1) from None
        print(f"mapping: {mapping.file}", file=sys.stderr)
        output = mapping.apply(document, timezone=zone)
    print(json.dumps(output, ensure_ascii=False, indent=2))
    return 0


def _stats(args: argparse.Namespace) -> int:
    data = _Client(args).call("GET", "/api/stats")

    def text(d: Any) -> str:
        lines = []
        for name, channel in d["channels"].items():
            since = channel.get("since_start", {})
            lines.append(
                f"{name}{'' if channel.get('deployed') else ' (not deployed)'}: "
                + ", ".join(f"{k} {v}" for k, v in since.items())
                + " | journal: "
                + ", ".join(f"{k} {v}" for k, v in channel.get("journal", {}).items())
            )
            commit = channel.get("journal_commit_latency", {})
            if commit.get("count"):
                lines.append(
                    f"  journal commit: mean {commit['mean_ms']} ms, "
                    f"p99 <= {commit['p99_le_ms']} ms"
                )
            for dest, info in channel.get("destinations", {}).items():
                lines.append(
                    f"  -> {dest}: "
                    + ", ".join(f"{k} {v}" for k, v in info["since_start"].items())
                    + " | queue: "
                    + (", ".join(f"{k} {v}" for k, v in info["queue"].items()) or "empty")
                )
        return "\n".join(lines) or "no channels"

    _print(args, data, text)
    return 0


def _prune(args: argparse.Namespace) -> int:
    data = _Client(args).call("POST", "/api/prune")
    _print(
        args,
        data,
        lambda d: f"pruned content of {d['content']} and rows of {d['metadata']} message(s)",
    )
    return 0
