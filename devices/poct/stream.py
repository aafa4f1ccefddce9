"""Splits a POCT1-A2 TCP byte stream into XML messages.

POCT1-A2 over TCP has no framing bytes: one XML document follows another, and a message ends
where its root element closes. The splitter finds the root's name (after an optional XML
declaration, comments or a DOCTYPE, which the parser later refuses) and cuts after its end tag.
Bytes that cannot start a message, oversized messages and a stream that stops mid-message come
back as pieces with a FramingError, so the caller can journal them and tell the device.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import FramingError

__all__ = ["MAX_MESSAGE_BYTES", "MessageSplitter", "Piece"]

MAX_MESSAGE_BYTES = 1024 * 1024  # an OBS.R01 with a few dozen results is a few kB
_BLANK = b" \t\r\n\x00"
_ROOT = re.compile(rb"<([A-Za-z_][A-Za-z0-9_.:\-]*)")
_NAME_START = re.compile(rb"[A-Za-z_]")
_PROLOG = re.compile(rb"\s*(<\?[^>]*\?>\s*|<!--.*?-->\s*)*", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Piece:
    """One message's bytes, or bytes that are not one and why (`problem`)."""

    content: bytes
    problem: FramingError | None = None

    def __repr__(self) -> str:
        return f"Piece(bytes={len(self.content)}, problem={self.problem})"


class MessageSplitter:
    """Feed bytes as they arrive; take out whole messages. Pure: no I/O, no clock."""

    def __init__(self, *, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._max_bytes = max_bytes
        self._discarding: bytes | None = None  # the end tag of an oversized message being dropped

    @property
    def pending(self) -> int:
        """Bytes held that do not yet form a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Piece]:
        """Add bytes; return every message (or problem piece) now complete."""
        self._buffer += data
        pieces: list[Piece] = []
        while True:
            piece = self._next()
            if piece is None:
                return pieces
            pieces.append(piece)

    def finish(self, why: str = "the connection closed") -> Piece | None:
        """The stream ended: what is left, as a truncated piece; None when nothing is left."""
        content = bytes(self._buffer.strip(_BLANK))
        self._buffer.clear()
        self._discarding = None
        if not content:
            return None
        return Piece(
            content[: self._max_bytes],
            FramingError(
                f"{why} in the middle of a message after {len(content)} bytes (truncated)",
                location="POCT1-A message",
            ),
        )

    def _next(self) -> Piece | None:
        buffer = self._buffer
        if self._discarding is not None:
            end = buffer.find(self._discarding)
            if end < 0:
                keep = len(self._discarding)
                del buffer[: max(0, len(buffer) - keep)]
                return None
            del buffer[: end + len(self._discarding)]
            self._discarding = None
        blank = len(buffer) - len(buffer.lstrip(_BLANK))
        del buffer[:blank]
        if not buffer:
            return None
        if buffer[:1] != b"<":
            start = buffer.find(b"<")
            cut = start if start > 0 else len(buffer)
            junk = bytes(buffer[:cut])
            del buffer[:cut]
            return Piece(
                junk[: self._max_bytes],
                FramingError(
                    f"{len(junk)} bytes that are not a POCT1-A XML message (no '<' to start one)",
                    location="POCT1-A stream",
                ),
            )
        prolog = _PROLOG.match(buffer)
        offset = prolog.end() if prolog else 0
        if buffer[offset : offset + 9].upper() == b"<!DOCTYPE":
            close = _doctype_end(buffer, offset)
            if close < 0:
                return self._wait_or_oversize(None)
            offset = close
            prolog = _PROLOG.match(buffer, offset)
            offset = prolog.end() if prolog else offset
        root = _ROOT.match(buffer, offset)
        if root is None:
            following = bytes(buffer[offset + 1 : offset + 2])
            if following and following not in (b"?", b"!") and not _NAME_START.match(following):
                # '<' followed by something that cannot start an element: not XML.
                junk = bytes(buffer[: offset + 1])
                del buffer[: offset + 1]
                return Piece(
                    junk,
                    FramingError(
                        "'<' not followed by an element name: not a POCT1-A XML message",
                        location=f"POCT1-A stream byte {offset}",
                    ),
                )
            return self._wait_or_oversize(None)
        name = root.group(1)
        tag_end = buffer.find(b">", root.end())
        if tag_end < 0:
            return self._wait_or_oversize(name)
        if buffer[tag_end - 1 : tag_end] == b"/":
            end = tag_end + 1
        else:
            closing = re.compile(rb"</" + re.escape(name) + rb"\s*>")
            match = closing.search(buffer, tag_end)
            if match is None:
                return self._wait_or_oversize(name)
            end = match.end()
        if end > self._max_bytes:
            return self._oversized(end)
        content = bytes(buffer[:end])
        del buffer[:end]
        return Piece(content)

    def _wait_or_oversize(self, name: bytes | None) -> Piece | None:
        if len(self._buffer) <= self._max_bytes:
            return None
        content = bytes(self._buffer[: self._max_bytes])
        self._buffer.clear()
        if name is not None:
            self._discarding = b"</" + name + b">"
        return Piece(content, self._problem())

    def _oversized(self, end: int) -> Piece:
        content = bytes(self._buffer[: self._max_bytes])
        del self._buffer[:end]
        return Piece(content, self._problem())

    def _problem(self) -> FramingError:
        return FramingError(
            f"the message is larger than {self._max_bytes} bytes; only the first "
            f"{self._max_bytes} are journalled (truncated)",
            location="POCT1-A message",
        )


def _doctype_end(buffer: bytearray, start: int) -> int:
    """Just past the `>` that closes a DOCTYPE (an internal subset in [...] skipped); -1 if
    it has not arrived yet."""
    depth = 0
    for index in range(start + 9, len(buffer)):
        byte = buffer[index]
        if byte == 0x5B:  # [
            depth += 1
        elif byte == 0x5D:  # ]
            depth -= 1
        elif byte == 0x3E and depth <= 0:  # >
            return index + 1
    return -1
