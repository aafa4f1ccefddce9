"""CLSI POCT1-A2 (the device messaging layer, "DML"): XML messages between point-of-care devices
and a data manager. Pure functions: `stream` splits a TCP byte stream into messages, `messages`
reads one (hardened XML) and builds the data manager's answers. The conversation lives in
`adapters.poct1a`."""

from __future__ import annotations

from devices.poct.messages import (
    MEDIA_TYPE,
    DeviceIdentity,
    PoctMessage,
    build_ack,
    build_message,
    parse_message,
    results_document,
)
from devices.poct.stream import MessageSplitter, Piece

__all__ = [
    "MEDIA_TYPE",
    "DeviceIdentity",
    "MessageSplitter",
    "Piece",
    "PoctMessage",
    "build_ack",
    "build_message",
    "parse_message",
    "results_document",
]
