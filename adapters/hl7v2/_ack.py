"""HL7 v2 acknowledgments: building ACK/NAK (MSA, ERR) and reading a peer's ACK."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from adapters.hl7v2._document import Hl7Document, _parse_path
from adapters.hl7v2._wire import (
    _UTF8_BOM,
    DEFAULT_DELIMITERS,
    Delimiters,
    MessageHeader,
    UnknownTableValueError,
    _codec_for,
    error_code,
    escape,
    read_header,
)
from engine.errors import (
    InputError,
    ParseError,
)

# --- acknowledgments ----------------------------------------------------------------------------


_ENHANCED_CODES = {"AA": "CA", "AE": "CE", "AR": "CR"}


def build_ack(
    header: MessageHeader | None,
    code: str,
    *,
    error: InputError | None = None,
    control_id: str,
    now: datetime,
) -> str:
    """An HL7 v2.5.1 ACK for `header` (or a minimal one for unreadable input), segments ended by
    CR. In enhanced mode (MSH-15 set) AA/AE/AR become CA/CE/CR. `now` must be aware."""
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    d = header.delimiters if header is not None else DEFAULT_DELIMITERS
    if header is not None and header.accept_ack_type.strip():
        code = _ENHANCED_CODES.get(code, code)
    h = header or _EMPTY_HEADER
    msh = [
        "MSH",
        d.encoding_characters,
        h.receiving_application,
        h.receiving_facility,
        h.sending_application,
        h.sending_facility,
        now.strftime("%Y%m%d%H%M%S%z"),
        "",
        d.component.join(["ACK", h.trigger_event, "ACK"]),
        escape(control_id, d),
        h.processing_id or "P",
        h.version or "2.5.1",
        "",
        "",
        "",
        "",
        "",
        h.charset,
    ]
    segments = [
        d.field.join(msh).rstrip(d.field),
        d.field.join(["MSA", code, h.control_id]),
    ]
    if error is not None:
        number, text = error_code(error)
        err = [
            "ERR",
            "",
            _error_location(error.location, d),
            d.component.join([number, escape(text, d), "HL70357"]),
            "E",
            "",
            "",
            "",
            escape(error.message, d),
        ]
        segments.append(d.field.join(err))
    return "".join(f"{s}\r" for s in segments)


_EMPTY_HEADER = MessageHeader(DEFAULT_DELIMITERS, *([""] * 14))


def _error_location(location: str, d: Delimiters) -> str:
    """ERR-2 (ERL): segment ^ sequence ^ field ^ repetition ^ component ^ subcomponent."""
    path = _parse_path(location) if location else None
    if path is None:
        return ""
    parts = [path.segment, str(path.segment_index or 1)]
    if path.field is not None:
        parts.append(str(path.field))
        if path.repetition is not None or path.component is not None:
            parts.append(str(path.repetition or 1))
        if path.component is not None:
            parts.append(str(path.component))
        if path.subcomponent is not None:
            parts.append(str(path.subcomponent))
    return d.component.join(parts)


@dataclass(frozen=True, slots=True)
class AckResult:
    """What a receiver answered: MSA-1, MSA-2 and the first error's location, code and text."""

    code: str  # MSA-1: AA, AE, AR, CA, CE, CR
    control_id: str  # MSA-2: the MSH-10 of the message acknowledged
    error_location: str | None = None  # ERR-2 in ER7 form
    error_code: str | None = None  # ERR-3.1 (table 0357)
    text: str | None = None  # ERR-8, else ERR-3.2, else MSA-3: may hold patient data

    def __repr__(self) -> str:
        return f"AckResult(code={self.code!r}, error_code={self.error_code!r})"


_ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})


def parse_ack(raw: bytes) -> AckResult:
    """Read an ACK; raises ParseError when it is garbled or has no usable MSA."""
    header = read_header(raw, strict=False)
    delimiters = header.delimiters
    codec = _codec_for(raw, header.charset, "utf-8", strict=False)
    start = len(_UTF8_BOM) if raw.startswith(_UTF8_BOM) else 0
    document = Hl7Document.from_text(raw[start:].decode(codec, "replace"), delimiters, codec)
    code = (document.get("MSA-1") or "").strip()
    if "MSA" not in document.segment_ids:
        raise ParseError("the acknowledgment has no MSA segment", location="MSA")
    if code not in _ACK_CODES:
        raise UnknownTableValueError("not an acknowledgment code (table 0008)", location="MSA-1")
    text = document.get("ERR-8") or document.get("ERR-3.2") or document.get("MSA-3")
    location = document.get("ERR-2")
    return AckResult(
        code=code,
        control_id=(document.get("MSA-2") or "").strip(),
        error_location=location,
        error_code=document.get("ERR-3.1"),
        text=text,
    )
