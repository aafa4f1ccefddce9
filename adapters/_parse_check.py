"""Parse a message at its source, before answering, for sources configured with `parse_check`:
the sender then learns at once (HTTP 422, HL7 AR) that what it sent cannot be read, instead of
an acknowledgement for a message that goes to ERROR in the channel worker a moment later."""

from __future__ import annotations

import asyncio
import logging

from engine.errors import InputError
from engine.plugins import load_plugins

__all__ = ["parse_problem", "warm_up_parser"]

log = logging.getLogger(__name__)


async def parse_problem(raw: bytes, media_type: str, charset: str) -> InputError | None:
    """What the installed parser for `media_type` says is wrong with `raw`, or None. Runs in a
    thread: parsers may be CPU work (an ECG is read and analysed) that must not block the loop."""
    parser = load_plugins().parser(media_type)
    if parser is None:
        return InputError(
            f"no parser is installed for media type {media_type[:80]}",
            location="media type",
            ack_code="AR",
            hint="check the source's media_type and the installed parser plugins",
        )
    try:
        await asyncio.to_thread(parser, raw, charset)
    except InputError as exc:
        return exc
    return None


def warm_up_parser(media_type: str | None) -> None:
    """Start the `warm_up()` of the parser for `media_type`, if it has one (slow imports,
    models), on a thread in the background. A source with `parse_check` calls this when it
    starts: it parses in the engine process, where the runtime does not warm parsers when
    worker processes do the channel's parsing, and its first answer should not wait for it."""
    parser = load_plugins().parser(media_type) if media_type else None
    warm = getattr(parser, "warm_up", None)
    if callable(warm):
        warming = asyncio.get_running_loop().run_in_executor(None, warm)
        warming.add_done_callback(_report_failed_warm_up)


def _report_failed_warm_up(warming: asyncio.Future[None]) -> None:
    if not warming.cancelled() and (error := warming.exception()) is not None:
        # The first message shows the same error, on its own record; this is the early word.
        log.warning("source.parser_warm_up_failed", extra={"error": repr(error)})
