"""ASTM E1381 (low-level framing) and E1394 (records) as laboratory analysers speak them.

Pure functions only: `framing` checks and builds frames, `records` turns a message into results.
The TCP conversation lives in `adapters.astm`.
"""

from __future__ import annotations

from devices.astm.framing import (
    ACK,
    CR,
    ENQ,
    EOT,
    ETB,
    ETX,
    LF,
    NAK,
    STX,
    Frame,
    FrameError,
    build_frames,
    checksum,
    parse_frame,
)
from devices.astm.records import MEDIA_TYPE, AstmMessage, parse_message, results_document

__all__ = [
    "ACK",
    "CR",
    "ENQ",
    "EOT",
    "ETB",
    "ETX",
    "LF",
    "MEDIA_TYPE",
    "NAK",
    "STX",
    "AstmMessage",
    "Frame",
    "FrameError",
    "build_frames",
    "checksum",
    "parse_frame",
    "parse_message",
    "results_document",
]
