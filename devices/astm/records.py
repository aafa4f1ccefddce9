"""ASTM E1394 (CLSI LIS2-A2) records: H, P, O, R, C, L (and Q, M, S, kept but not results).

The H record names the delimiters right after its type: `H|\\^&` gives the field (`|`), repeat
(`\\`), component (`^`) and escape (`&`) delimiters. Escapes: &F& &S& &R& &E& for the delimiters
themselves. Records end with CR. Positions are written as the standard does, `R-3.4` (record R,
field 3, component 4), counted from 1 with the record type as field 1.

`results_document` turns a message into the analyser-results shape the mappings read (see
docs/poct.md): one entry per R record with the patient (P), the specimen and its collection time
(O) and the result time (R-13, else O-23, else H-14).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from devices.analyser_results import pruned
from engine.errors import DecodeError, ParseError

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MEDIA_TYPE",
    "AstmMessage",
    "Delimiters",
    "Record",
    "parse_message",
    "results_document",
]

MEDIA_TYPE = "application/x-astm-e1394"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
_RECORD_TYPES = frozenset("HPOCRLQMS")


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The four delimiters the H record declares."""

    field: str = "|"
    repeat: str = "\\"
    component: str = "^"
    escape: str = "&"


@dataclass(frozen=True, slots=True)
class Record:
    """One record split into fields; `fields[0]` is the record type. Values unescaped."""

    type: str
    fields: tuple[tuple[tuple[str, ...], ...], ...]  # field → repeats → components
    line: int  # 1-based record number in the message, for error locations

    def __repr__(self) -> str:  # values hold patient data
        return f"Record(type={self.type!r}, fields={len(self.fields)}, line={self.line})"

    def get(self, number: int, component: int = 1, repeat: int = 1) -> str:
        """Field `number` (1-based, 1 is the type), component and repeat; "" when absent."""
        if number < 1 or number > len(self.fields):
            return ""
        repeats = self.fields[number - 1]
        if repeat > len(repeats):
            return ""
        components = repeats[repeat - 1]
        return components[component - 1] if component <= len(components) else ""


@dataclass(frozen=True, slots=True)
class AstmMessage:
    """A parsed message: its records in order and the delimiters of its H record."""

    records: tuple[Record, ...]
    delimiters: Delimiters = field(default_factory=Delimiters)

    def __repr__(self) -> str:
        return f"AstmMessage(records={len(self.records)})"


def parse_message(raw: bytes, charset: str = "latin-1") -> AstmMessage:
    """Split a message (records ended by CR, the frames already removed) into records.

    ParseError names the record and field; DecodeError the byte offset. The first record must be
    an H record declaring four distinct delimiters."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ParseError(f"the message is larger than {MAX_MESSAGE_BYTES} bytes", ack_code="AR")
    try:
        text = raw.decode(charset or "latin-1")
    except (LookupError, UnicodeDecodeError) as exc:
        offset = getattr(exc, "start", 0)
        raise DecodeError(
            f"byte {offset} is not valid {charset}",
            charset=charset,
            offset=offset,
            location=f"byte {offset}",
            hint="set the channel's charset to the analyser's (often latin-1 or gb18030)",
        ) from None
    lines = [line for line in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if line]
    if not lines:
        raise ParseError("the message is empty", location="record 1", ack_code="AR")
    header = lines[0]
    if not header.startswith("H") or len(header) < 5:
        raise ParseError(
            "the first record must be the H (header) record with its delimiters, like H|\\^&",
            location="record 1",
            ack_code="AR",
        )
    delimiters = Delimiters(header[1], header[2], header[3], header[4])
    if len(set(header[1:5])) != 4 or any(c.isalnum() or c.isspace() for c in header[1:5]):
        raise ParseError(
            "H-1/H-2 must declare four distinct delimiter characters (field, repeat, "
            "component, escape)",
            location="H-2",
            ack_code="AR",
        )
    records = []
    for number, line in enumerate(lines, start=1):
        records.append(_record(line, number, delimiters))
    return AstmMessage(tuple(records), delimiters)


def _record(line: str, number: int, delimiters: Delimiters) -> Record:
    record_type = line[:1].upper()
    if record_type not in _RECORD_TYPES or (len(line) > 1 and line[1] != delimiters.field):
        raise ParseError(
            "not an E1394 record: it must start with H, P, O, R, C, Q, L, M or S and the field "
            "delimiter",
            location=f"record {number}",
        )
    if record_type == "H":
        # H-2 is the delimiter definition itself, not data to split.
        rest = line[5:].split(delimiters.field)[1:] if len(line) > 5 else []
        fields: list[tuple[tuple[str, ...], ...]] = [((record_type,),), ((line[1:5],),)]
        fields += [_split_field(value, delimiters) for value in rest]
        return Record(record_type, tuple(fields), number)
    parts = line.split(delimiters.field)
    split = [((record_type,),)] + [_split_field(value, delimiters) for value in parts[1:]]
    return Record(record_type, tuple(split), number)


def _split_field(value: str, delimiters: Delimiters) -> tuple[tuple[str, ...], ...]:
    return tuple(
        tuple(_unescape(component, delimiters) for component in repeat.split(delimiters.component))
        for repeat in value.split(delimiters.repeat)
    )


def _unescape(value: str, d: Delimiters) -> str:
    if d.escape not in value:
        return value
    escapes = {"F": d.field, "S": d.component, "R": d.repeat, "E": d.escape}
    out: list[str] = []
    pos = 0
    while pos < len(value):
        char = value[pos]
        end = value.find(d.escape, pos + 1) if char == d.escape else -1
        if end > pos and value[pos + 1 : end] in escapes:
            out.append(escapes[value[pos + 1 : end]])
            pos = end + 1
        elif end > pos and value[pos + 1 : pos + 2] == "X" and _is_hex(value[pos + 2 : end]):
            out.append(bytes.fromhex(value[pos + 2 : end]).decode("latin-1"))
            pos = end + 1
        else:
            out.append(char)
            pos += 1
    return "".join(out)


def _is_hex(text: str) -> bool:
    return bool(text) and len(text) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in text)


# --- the analyser-results document ---------------------------------------------------------


def results_document(message: AstmMessage, raw: bytes) -> dict[str, Any]:
    """The analyser-results shape (docs/poct.md) of one message; ParseError for an R record
    outside an O record, or a message without results' context."""
    header = message.records[0]
    device = {
        "id": header.get(5, 3) or header.get(5, 1),
        "name": header.get(5, 1),
        "model": header.get(5, 1),
        "version": header.get(5, 2),
        "serial": header.get(5, 3),
    }
    if not device["id"]:
        device["id"] = header.get(10) or "ASTM"  # H-10 receiver... some analysers leave H-5 empty
    sent = header.get(14)
    results: list[dict[str, Any]] = []
    patient: dict[str, str] = {}
    order: dict[str, str] = {}
    last: dict[str, Any] | None = None
    terminated = False
    for record in message.records[1:]:
        kind = record.type
        if kind == "P":
            patient = {
                "id": record.get(3) or record.get(4) or record.get(5),
                "sequence": record.get(2),
            }
            order, last = {}, None
        elif kind == "O":
            order = {
                "specimen_id": record.get(3) or record.get(4),
                "collected": record.get(8),
                "reported": record.get(23),
                "specimen_type": record.get(16),
                "action": record.get(12),  # O-12 "Q": a QC specimen
            }
            last = None
        elif kind == "R":
            if not order and not patient:
                raise ParseError(
                    "an R (result) record before any P or O record",
                    location=f"R record {record.line}",
                )
            code = record.get(3, 4) or record.get(3, 1)
            if not code:
                raise ParseError(
                    "R-3 (universal test id) has no test code in component 4 or 1",
                    location=f"R-3 (record {record.line})",
                )
            last = {
                "sequence": record.get(2),
                "patient_id": patient.get("id", ""),
                "specimen_id": order.get("specimen_id", ""),
                "specimen_type": order.get("specimen_type", ""),
                "test_code": code,
                "test_name": record.get(3, 5) or record.get(3, 2) or code,
                "value": record.get(4, 1),
                "unit": record.get(5),
                "reference_range": record.get(6),
                "flag": record.get(7),
                "status": record.get(9) or "F",
                "operator": record.get(11),
                "collected": order.get("collected", "") or record.get(12),
                "resulted": record.get(13) or order.get("reported", "") or sent,
                "device_id": record.get(14) or device["id"],
                "qc": order.get("action", "").upper() == "Q",
                "comments": [],
            }
            results.append(last)
        elif kind == "C":
            text = record.get(4, 2) or record.get(4, 1)
            if last is not None and text:
                last["comments"].append(text)
        elif kind == "L":
            terminated = True
    return pruned(
        {
            "protocol": "ASTM E1394",
            "message_type": "results",
            "control_id": header.get(3),
            "sent": sent,
            "terminated": terminated,
            "device": device,
            "digest": hashlib.sha256(raw).hexdigest()[:32],
            "results": [r for r in results if r["value"] != ""],
        }
    )
