"""Strict mode: a message checked against the structure and datatypes of its declared HL7
version (MSH-12) and message structure (MSH-9.3, else type and event) with hl7apy.

Off the hot path and optional (the MLLP source's `strict: true`). A problem becomes an
InputError naming the segment and field (`PID-7`, `OBX[2]-11`, `PV1` for a missing segment) and
never the value, so the sender gets an AE NAK with ERR-2 pointing at what to fix.
"""

from __future__ import annotations

import re

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException, UnsupportedVersion
from hl7apy.parser import parse_field, parse_message

from adapters.hl7v2._wire import (
    _UTF8_BOM,
    DataTypeError,
    MessageHeader,
    MissingFieldError,
    UnsupportedVersionError,
    decode,
    read_header,
)
from engine.errors import InputError, ParseError

__all__ = ["StructureError", "check_structure", "check_message"]

_MISSING_FIELD = re.compile(r"Missing required child ([A-Z0-9]{3})\.[A-Z0-9]{3}_(\d+)$")
_MISSING_SEGMENT = re.compile(r"Missing required child ([A-Z0-9_]+)\.([A-Z0-9]{3})$")
_DATATYPE = re.compile(r"is not an HL7 valid (.+?) value$")


class StructureError(ParseError):
    """The message does not follow its declared structure (ERR-3 100, segment sequence)."""


def check_structure(raw: bytes, header: MessageHeader, codec: str) -> InputError | None:
    """The first problem strict validation finds in the message, or None when it is valid."""
    version = header.version.split(header.delimiters.component)[0] or "2.5"
    start = len(_UTF8_BOM) if raw.startswith(_UTF8_BOM) else 0
    text = raw[start:].decode(codec, "replace").replace("\r\n", "\r").replace("\n", "\r")
    segments = [segment for segment in text.split("\r") if segment.strip()]
    try:
        message = parse_message(
            "\r".join(segments), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True
        )
        message.validate()
    except UnsupportedVersion:
        return UnsupportedVersionError(
            f"strict mode knows no HL7 version {version}", location="MSH-12"
        )
    except (HL7apyException, ValueError) as exc:
        return _locate(exc, segments, header, version)
    return None


def check_message(raw: bytes, default_charset: str) -> InputError | None:
    """Strict mode for a whole message as a source read it (a file, not an MLLP block whose
    header the source has read already): its MSH, its charset, then its structure."""
    try:
        header = read_header(raw, default_charset)
        _, codec = decode(raw, header, default_charset)
    except InputError as exc:
        return exc
    return check_structure(raw, header, codec)


def _locate(exc: Exception, segments: list[str], header: MessageHeader, version: str) -> InputError:
    """Turn hl7apy's error (whose text may quote values) into one that names a position."""
    said = str(exc)
    if match := _MISSING_FIELD.search(said):
        return MissingFieldError(
            f"required in HL7 v{version}", location=f"{match[1]}-{int(match[2])}"
        )
    if match := _MISSING_SEGMENT.search(said):
        return StructureError(
            f"segment required by the {match[1]} structure of HL7 v{version}",
            location=match[2],
        )
    field = _first_bad_field(segments, header, version)
    if field is not None:
        return field
    return StructureError(
        f"does not follow the declared message structure of HL7 v{version}", location="MSH-9"
    )


def _first_bad_field(segments: list[str], header: MessageHeader, version: str) -> InputError | None:
    """Parse field by field to find the one hl7apy refused: its datatype, or not defined."""
    d = header.delimiters
    seen: dict[str, int] = {}
    for segment in segments:
        name = segment[:3]
        seen[name] = seen.get(name, 0) + 1
        if name.startswith("Z"):  # local segments have no definition to check against
            continue
        where = name if seen[name] == 1 else f"{name}[{seen[name]}]"
        fields = segment.split(d.field)
        first = 3 if name == "MSH" else 1  # MSH-1 and MSH-2 are the delimiters themselves
        offset = 1 if name == "MSH" else 0  # MSH's field 1 is the separator, not split out
        for index in range(first - offset, len(fields)):
            number = index + offset
            for value in fields[index].split(d.repetition):
                if not value:
                    continue
                try:
                    parse_field(
                        value,
                        name=f"{name}_{number}",
                        version=version,
                        encoding_chars=_encoding_chars(header),
                        validation_level=VALIDATION_LEVEL.STRICT,
                    )
                except ValueError as exc:
                    kind = _DATATYPE.search(str(exc))
                    reason = f"not a valid {kind[1]}" if kind else "not valid for its datatype"
                    location = f"{where}-{number}"
                    return DataTypeError(f"{reason} in HL7 v{version}", location=location)
                except HL7apyException:
                    return StructureError(
                        f"has a field or component not defined in HL7 v{version}",
                        location=f"{where}-{number}",
                    )
    return None


def _encoding_chars(header: MessageHeader) -> dict[str, str]:
    d = header.delimiters
    return {
        "FIELD": d.field,
        "COMPONENT": d.component,
        "REPETITION": d.repetition,
        "ESCAPE": d.escape,
        "SUBCOMPONENT": d.subcomponent,
        "GROUP": "\r",
        "SEGMENT": "\r",
    }
