"""HL7 v2 ER7 reading and writing: a cheap MSH reader for the wire, charset decoding by MSH-18,
a lazily split `Document` for mappings, ACK/NAK building and parsing, batches (FHS/BHS),
and an optional strict check of a message against its version's structure (hl7apy).

Positions are written as the spec writes them (`PID-3.1`, `OBX[2]-5`), counted from 1. Errors
name positions, never field values; header values are kept in ER7 form (escapes unresolved).
"""

from __future__ import annotations

from adapters.hl7v2._ack import AckResult, build_ack, parse_ack
from adapters.hl7v2._batch import batch_ack, is_batch, split_batch
from adapters.hl7v2._document import Hl7Document, parse, parse_for_mapping
from adapters.hl7v2._strict import StructureError, check_message, check_structure
from adapters.hl7v2._wire import (
    MEDIA_TYPE,
    DataTypeError,
    Delimiters,
    MessageHeader,
    MissingFieldError,
    UnknownTableValueError,
    UnsupportedMessageTypeError,
    UnsupportedVersionError,
    ack_wanted,
    channel_codec,
    charset_codec,
    decode,
    dedup_key,
    error_code,
    escape,
    message_time,
    read_header,
    sender_of,
    stamp_time,
    unescape,
)

__all__ = [
    "MEDIA_TYPE",
    "AckResult",
    "DataTypeError",
    "Delimiters",
    "Hl7Document",
    "MessageHeader",
    "StructureError",
    "MissingFieldError",
    "UnknownTableValueError",
    "UnsupportedMessageTypeError",
    "UnsupportedVersionError",
    "ack_wanted",
    "batch_ack",
    "build_ack",
    "channel_codec",
    "charset_codec",
    "check_message",
    "check_structure",
    "decode",
    "dedup_key",
    "error_code",
    "is_batch",
    "escape",
    "message_time",
    "parse",
    "parse_ack",
    "parse_for_mapping",
    "read_header",
    "sender_of",
    "stamp_time",
    "split_batch",
    "unescape",
]
