"""ASTM E1381 frames: <STX> FN text <ETB|ETX> C1 C2 <CR><LF>, checked and built.

FN is the frame number, an ASCII digit cycling 1..7, 0, 1... (the first frame of a session is 1).
C1 C2 is the checksum: the sum of the bytes from FN through ETB/ETX inclusive, modulo 256, as two
upper-case hex characters. A frame carries at most 240 text characters (E1381 §6.3.1.2); a longer
message goes out as intermediate frames ending in ETB and a last frame ending in ETX.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import FramingError

__all__ = [
    "ACK",
    "CR",
    "ENQ",
    "EOT",
    "ETB",
    "ETX",
    "LF",
    "MAX_TEXT_BYTES",
    "NAK",
    "STX",
    "Frame",
    "FrameError",
    "build_frames",
    "checksum",
    "next_frame_number",
    "parse_frame",
]

ENQ = b"\x05"
ACK = b"\x06"
NAK = b"\x15"
EOT = b"\x04"
STX = b"\x02"
ETX = b"\x03"
ETB = b"\x17"
CR = b"\x0d"
LF = b"\x0a"
MAX_TEXT_BYTES = 240
_HEX = b"0123456789ABCDEFabcdef"


class FrameError(FramingError):
    """One E1381 frame is malformed (checksum, frame number, terminators): the receiver NAKs it
    and the sender retransmits the same frame."""

    hint = "the analyser retransmits a NAKed frame; if it keeps failing check the cable or the "
    "serial-to-TCP converter's settings (8N1, no flow control bytes in the data)"


@dataclass(frozen=True, slots=True)
class Frame:
    """A checked frame: its number, its text (without FN and terminators) and whether it ends the
    message (ETX) or continues it (ETB)."""

    number: int
    text: bytes
    final: bool

    def __repr__(self) -> str:  # the text holds patient data
        return f"Frame(number={self.number}, bytes={len(self.text)}, final={self.final})"


def checksum(body: bytes) -> bytes:
    """The two hex characters over `body` (FN through ETB/ETX inclusive)."""
    return b"%02X" % (sum(body) % 256)


def next_frame_number(number: int) -> int:
    """1, 2, ... 7, 0, 1, ...: the frame number after `number`."""
    return (number + 1) % 8


def parse_frame(data: bytes) -> Frame:
    """Check one frame from <STX> through <LF>; FrameError says what is wrong and where."""
    if not data.startswith(STX):
        raise FrameError("the frame does not start with STX (0x02)", location="frame byte 0")
    if len(data) < 7:
        raise FrameError(
            f"the frame is {len(data)} bytes, shorter than the 7 of an empty frame (truncated)",
            location="frame",
        )
    if not data.endswith(CR + LF):
        raise FrameError("the frame does not end with CR LF", location=f"frame byte {len(data)}")
    terminator_at = len(data) - 5
    terminator = data[terminator_at : terminator_at + 1]
    if terminator not in (ETX, ETB):
        raise FrameError(
            "no ETX (0x03) or ETB (0x17) before the checksum",
            location=f"frame byte {terminator_at}",
        )
    number_byte = data[1:2]
    if not number_byte.isdigit() or int(number_byte) > 7:
        raise FrameError("the frame number is not a digit 0-7", location="frame byte 1")
    given = data[terminator_at + 1 : terminator_at + 3]
    if any(byte not in _HEX for byte in given):
        raise FrameError("the checksum is not two hex characters", location="frame checksum")
    expected = checksum(data[1 : terminator_at + 1])
    if given.upper() != expected:
        raise FrameError(
            f"checksum mismatch: the frame says {given.decode('ascii')}, its bytes sum to "
            f"{expected.decode('ascii')}",
            location="frame checksum",
        )
    text = data[2:terminator_at]
    if len(text) > MAX_TEXT_BYTES + 7:  # some analysers run a few bytes over; be lenient, not lax
        raise FrameError(
            f"the frame carries {len(text)} text bytes, more than E1381's {MAX_TEXT_BYTES}",
            location="frame",
        )
    return Frame(number=int(number_byte), text=text, final=terminator == ETX)


def build_frames(message: bytes, *, first_number: int = 1) -> list[bytes]:
    """Split a message (records ended by CR) into E1381 frames numbered from `first_number`.

    Each record starts a new frame, as analysers do, and records longer than 240 bytes continue
    in ETB frames; the last frame of the message ends with ETX."""
    records = [r + CR for r in message.split(CR) if r]
    chunks: list[bytes] = []
    for record in records:
        for start in range(0, len(record), MAX_TEXT_BYTES):
            chunks.append(record[start : start + MAX_TEXT_BYTES])
    frames: list[bytes] = []
    number = first_number % 8
    for index, chunk in enumerate(chunks):
        # E1381 ends a record's last frame with ETX only at the end of the message; every frame
        # that ends a record but not the message is an ETX frame too (one record per frame), so
        # ETB marks only a record split across frames.
        ends_record = chunk.endswith(CR)
        terminator = ETX if ends_record or index == len(chunks) - 1 else ETB
        body = b"%d" % number + chunk + terminator
        frames.append(STX + body + checksum(body) + CR + LF)
        number = next_frame_number(number)
    return frames
