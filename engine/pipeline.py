"""What happens to a journalled message: parse, filter, transform, and fan out to destinations.

`compile_channel` turns a validated channel file into callables once, at deploy time, so that a
broken mapping or expression refuses the deploy instead of failing message by message.
`process` then runs them on one message; it is pure (no I/O), so the worker can batch commits.

Each transformer's output also goes through the installed output checks (the
`greenchannel.output_checks` entry point, e.g. a FHIR structure validator the engine itself does
not have) unless its `check_output` is false: a failure is a MappingError, so the message goes to
ERROR at the transform stage, before anything is queued, and can be reprocessed once the mapping
is fixed. The checks run where the mapping runs, in the processing worker process.
"""

from __future__ import annotations

import gc
import json
import logging
import multiprocessing
import os
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from engine.channels import Channel
from engine.errors import ConfigError, GreenchannelError, InputError, MappingError
from engine.journal import DeliveryStatus, MessageStatus
from engine.mapping import CompileContext, Scope, compile_expression, load_mapping
from engine.mapping.document import Document
from engine.mapping.expression import is_truthy
from engine.plugins import Plugins

__all__ = [
    "GC_THRESHOLD",
    "ChannelRef",
    "CompiledChannel",
    "CompiledDestination",
    "Outcome",
    "compile_channel",
    "exit_with_parent",
    "process",
    "process_rows",
    "warm_up",
    "warm_up_channels",
    "warm_up_parsers",
]

log = logging.getLogger(__name__)

Condition = Callable[[Document], bool]
Transform = Callable[[Document], bytes | None]
OutputCheck = Callable[[Any], list[str]]
# Problems quoted in the message's error; the rest are counted.
MAX_PROBLEMS = 5


@dataclass(frozen=True)
class CompiledDestination:
    name: str
    filter: Condition | None
    transform: Transform | None
    media_type: str | None
    # The output checks every payload this destination is given has passed (empty: the
    # destination checks for itself what it needs to).
    checked_by: tuple[OutputCheck, ...] = ()


@dataclass(frozen=True)
class CompiledChannel:
    """A channel ready to run: parsers looked up, mappings loaded, expressions compiled."""

    channel: Channel
    charset: str
    tz: timezone
    filter: Condition | None
    transform: Transform | None
    media_type: str | None
    partition: Callable[[Document], str | None] | None
    lanes: int
    destinations: tuple[CompiledDestination, ...]
    plugins: Plugins
    mappings_dir: Path
    default_charset: str
    default_tz: timezone
    # The media types its mappings read, whose parsers `warm_up` warms.
    inputs: tuple[str, ...] = ()

    def ref(self, generation: int) -> ChannelRef:
        """How a worker process can compile this same channel."""
        offset = self.default_tz.utcoffset(None) or timedelta(0)
        return ChannelRef(
            text=self.channel.text,
            file=self.channel.file,
            generation=generation,
            mappings_dir=str(self.mappings_dir),
            default_charset=self.default_charset,
            default_offset_minutes=int(offset.total_seconds() // 60),
        )


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    destination: str
    status: str  # queued | filtered
    lane: int
    payload: bytes | None
    media_type: str | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What processing decided for one message."""

    status: str
    error: str | None = None
    transformed: bytes | None = None
    media_type: str | None = None
    deliveries: tuple[DeliveryPlan, ...] = ()


def compile_value(text: str, *, file: str, key: str, tz: timezone) -> Callable[[Document], Any]:
    """Compile a channel-file expression (`"${MSH-9.1}"` or bare `MSH-9.1 == 'ADT'`)."""
    source = text.strip()
    if source.startswith("${") and source.endswith("}"):
        source = source[2:-1]
    evaluate = compile_expression(source, CompileContext(file=file, rule=key))

    def value(document: Document) -> Any:
        return evaluate(Scope(document, {}, tz, {}))

    return value


def compile_condition(text: str, *, file: str, key: str, tz: timezone) -> Condition:
    value = compile_value(text, file=file, key=key, tz=tz)
    return lambda document: is_truthy(value(document))


def _offset(text: str | None, default: timezone) -> timezone:
    if not text:
        return default
    sign = 1 if text[0] == "+" else -1
    hours, minutes = text[1:].split(":")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)))


def compile_channel(
    channel: Channel,
    *,
    mappings_dir: Path,
    plugins: Plugins,
    default_charset: str,
    default_tz: timezone,
) -> CompiledChannel:
    """Load every mapping and compile every expression the channel names."""
    spec = channel.spec
    tz = _offset(spec.timezone, default_tz)
    inputs: list[str] = []

    def checks_of(transformer_spec: Any) -> tuple[tuple[str, OutputCheck], ...]:
        if transformer_spec is None or not transformer_spec.check_output:
            return ()
        return tuple(sorted(plugins.output_checks.items()))

    def transformer(transformer_spec: Any, key: str) -> Transform | None:
        if transformer_spec is None:
            return None
        path = mappings_dir / transformer_spec.mapping
        if not path.is_file():
            raise ConfigError(
                f"mapping file {transformer_spec.mapping!r} not found in {mappings_dir}",
                file=channel.file,
                key=f"{key}.mapping",
            )
        mapping = load_mapping(path)
        if mapping.input:
            inputs.append(mapping.input)
        checks = checks_of(transformer_spec)

        def apply(document: Document) -> bytes | None:
            output = mapping.apply(document, timezone=tz)
            if output is None:
                return None
            for name, check in checks:
                problems = check(output)
                if problems:
                    raise _failed_check(transformer_spec.mapping, name, problems)
            return _json_bytes(output)

        return apply

    def condition(text: str | None, key: str) -> Condition | None:
        if text is None:
            return None
        return compile_condition(text, file=channel.file, key=key, tz=tz)

    partition = None
    if spec.partition is not None:
        key_of = compile_value(spec.partition.key, file=channel.file, key="partition.key", tz=tz)

        def partition(document: Document) -> str | None:
            value = key_of(document)
            return None if value is None else str(value)

    destinations = tuple(
        CompiledDestination(
            name=d.name,
            filter=condition(d.filter, f"destinations[{i}].filter"),
            transform=transformer(d.transformer, f"destinations[{i}].transformer"),
            media_type=d.transformer.media_type if d.transformer else None,
            checked_by=tuple(check for _, check in checks_of(d.transformer or spec.transformer)),
        )
        for i, d in enumerate(spec.destinations)
    )
    return CompiledChannel(
        channel=channel,
        charset=spec.charset or default_charset,
        tz=tz,
        filter=condition(spec.filter, "filter"),
        transform=transformer(spec.transformer, "transformer"),
        media_type=spec.transformer.media_type if spec.transformer else None,
        partition=partition,
        lanes=spec.partition.lanes if spec.partition else 1,
        destinations=destinations,
        plugins=plugins,
        mappings_dir=mappings_dir,
        default_charset=default_charset,
        default_tz=default_tz,
        inputs=tuple(dict.fromkeys(inputs)),
    )


def warm_up_parsers(*channels: CompiledChannel) -> None:
    """A parser may have a `warm_up()` (slow imports, models to load): the runtime runs it for
    deployed channels' mappings in each worker process (or, with none, on a thread), so the
    first message does not wait for it, and a deploy does not either."""
    for compiled in channels:
        for media_type in compiled.inputs:
            warm = getattr(compiled.plugins.parser(media_type), "warm_up", None)
            if callable(warm):
                warm()


def _failed_check(mapping: str, check: str, problems: list[str]) -> MappingError:
    """The checks name elements and reasons, never values, so the error can be journalled."""
    listed = "; ".join(problems[:MAX_PROBLEMS])
    more = len(problems) - MAX_PROBLEMS
    if more > 0:
        listed += f"; and {more} more"
    return MappingError(f"the output fails the {check!r} output check ({listed})", mapping=mapping)


def process(compiled: CompiledChannel, raw: bytes, media_type: str, charset: str | None) -> Outcome:
    """Parse, filter and transform one message; decide each destination's delivery."""
    parser = compiled.plugins.parser(media_type)
    if parser is None:
        return Outcome(
            MessageStatus.ERROR,
            error=f"no parser is installed for media type {media_type!r}",
        )
    try:
        document = parser(raw, charset or compiled.charset)
        if compiled.filter is not None and not compiled.filter(document):
            return Outcome(MessageStatus.FILTERED)
        if compiled.transform is not None:
            transformed = compiled.transform(document)
            if transformed is None:
                return Outcome(MessageStatus.FILTERED, error="the mapping does not apply")
            out_media = compiled.media_type
        else:
            # Passed on as received: the journal's raw content is what destinations send.
            transformed, out_media = None, media_type
        lane = 0
        if compiled.partition is not None and compiled.lanes > 1:
            key = compiled.partition(document) or ""
            lane = zlib.crc32(key.encode()) % compiled.lanes
        plans = []
        for destination in compiled.destinations:
            if destination.filter is not None and not destination.filter(document):
                plans.append(
                    DeliveryPlan(destination.name, DeliveryStatus.FILTERED, lane, None, None)
                )
                continue
            payload = destination.transform(document) if destination.transform else None
            if destination.transform is not None and payload is None:
                plans.append(
                    DeliveryPlan(destination.name, DeliveryStatus.FILTERED, lane, None, None)
                )
                continue
            plans.append(
                DeliveryPlan(
                    destination.name, DeliveryStatus.QUEUED, lane, payload, destination.media_type
                )
            )
    except (InputError, MappingError) as exc:
        return Outcome(MessageStatus.ERROR, error=f"{type(exc).__name__}: {exc}")
    except GreenchannelError as exc:
        return Outcome(MessageStatus.ERROR, error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        # A bug in a parser or mapping function must not stop the channel on this message
        # for ever: it goes to ERROR (with the traceback in the log) and the channel moves on.
        log.error("message.processing_crashed", exc_info=True)
        return Outcome(
            MessageStatus.ERROR,
            error=f"internal error ({type(exc).__name__}) while processing; "
            "report it with the engine log, then reprocess the message",
        )
    status = (
        MessageStatus.TRANSFORMED
        if any(p.status == DeliveryStatus.QUEUED for p in plans)
        else MessageStatus.SENT
    )
    return Outcome(status, transformed=transformed, media_type=out_media, deliveries=tuple(plans))


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """What a processing worker process needs to compile a deployed channel for itself.

    `generation` changes at every deploy, so a redeploy with changed mapping files is never
    served from a worker's cache.
    """

    text: str
    file: str
    generation: int
    mappings_dir: str
    default_charset: str
    default_offset_minutes: int


_COMPILED: dict[tuple[str, int], CompiledChannel] = {}


def process_rows(ref: ChannelRef, rows: list[tuple[bytes, str, str | None]]) -> list[Outcome]:
    """Process a batch in a worker process: compile the channel once, then each message."""
    compiled = _compiled(ref)
    return [process(compiled, raw, media_type, charset) for raw, media_type, charset in rows]


def warm_up_channels(refs: list[ChannelRef]) -> None:
    """The runtime's warm-up job in a worker process for channels just deployed: compile each
    and warm its parsers, so that the first message waits for neither, then collect garbage
    once for all of them. (Once per channel, the 22 default channels cost a worker 2 s of
    collections at every start, and the first message waited behind them.)"""
    warm_up_parsers(*(_compiled(ref) for ref in refs))
    # The compiled channels live until the next deploy: frozen, no collection walks them.
    # What an earlier deploy froze is let go first, so an old generation can be freed.
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _compiled(ref: ChannelRef) -> CompiledChannel:
    """This worker's compilation of the channel generation `ref` names."""
    key = (ref.file, ref.generation)
    compiled = _COMPILED.get(key)
    if compiled is None:
        from pathlib import Path

        from engine.channels import load_channel_text
        from engine.plugins import load_plugins

        plugins = load_plugins()
        channel = load_channel_text(ref.text, plugins, file=ref.file)
        compiled = compile_channel(
            channel,
            mappings_dir=Path(ref.mappings_dir),
            plugins=plugins,
            default_charset=ref.default_charset,
            default_tz=timezone(timedelta(minutes=ref.default_offset_minutes)),
        )
        # Old generations of the same channel are not needed any more.
        for old in [k for k in _COMPILED if k[0] == ref.file]:
            del _COMPILED[old]
        _COMPILED[key] = compiled
    return compiled


# The engine's processes collect garbage less often than CPython's default (700, 10, 10): a
# message allocates a few thousand objects (frames, rows, resources), so the collector ran
# several times a message, each time walking what the messages in flight hold.
GC_THRESHOLD = (10_000, 20, 20)


def exit_with_parent() -> None:
    """Initializer of each worker process: exit when the engine process is gone. A worker of
    ProcessPoolExecutor holds both ends of its call queue, so a kill -9 of the engine never
    reaches it as an end of file: it would wait for work forever, holding its memory."""
    parent = multiprocessing.parent_process()
    if parent is not None:

        def exit_when_gone() -> None:
            parent.join()
            os._exit(0)

        threading.Thread(target=exit_when_gone, daemon=True).start()


def warm_up() -> None:
    """Run once in each new worker process: imports and entry points loaded before work."""
    from engine.plugins import load_plugins

    gc.set_threshold(*GC_THRESHOLD)
    load_plugins()


def _json_bytes(output: Any) -> bytes:
    """A mapping's output as compact UTF-8 JSON, non-ASCII kept: orjson, 15 times as fast as
    `json` on an ADT's Bundle (0.1 ms of the processing worker's ~1 ms a message). What orjson
    cannot write (an integer beyond 64 bits, a key that is no string) `json` writes."""
    try:
        return orjson.dumps(output)
    except orjson.JSONEncodeError:
        return json.dumps(output, ensure_ascii=False, separators=(",", ":")).encode()
