"""Parse a message at its source, before answering, for sources configured with `parse_check`:
the sender then learns at once (HTTP 422, HL7 AR) that what it sent cannot be read, instead of
an acknowledgement for a message that goes to ERROR in the channel worker a moment later."""

from __future__ import annotations

import asyncio

from engine.errors import InputError
from engine.plugins import load_plugins

__all__ = ["parse_problem"]


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
