"""HL7 v2 ER7 on the wire: errors with their ERR-3 codes, the MSH header read cheaply from raw
bytes, charsets by MSH-18, and escapes."""

from __future__ import annotations

import codecs
import contextlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache

from engine.errors import (
    ConfigError,
    DecodeError,
    FramingError,
    InputError,
    ParseError,
)

MEDIA_TYPE = "x-application/hl7-v2+er7"

_UTF8_BOM = b"\xef\xbb\xbf"
_SEGMENT_ID = re.compile(r"[A-Z0-9]{3}")
# MSH-7 (DTM) down to the second at least: YYYYMMDDHHMMSS[.S...][+/-ZZZZ], ASCII digits only.
_MESSAGE_TIME = re.compile(
    r"([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})(?:\.[0-9]{1,4})?"
    r"(?:([+-])([0-9]{2})([0-9]{2}))?"
)
_PATH = re.compile(r"([A-Z0-9]{3})(?:\[(\d+)\])?(?:-(\d+)(?:\[(\d+)\])?(?:\.(\d+)(?:\.(\d+))?)?)?")
# Segments whose field 1 is the field separator itself (the MSH oddity).
_HEADER_SEGMENTS = frozenset({"MSH", "BHS", "FHS"})

# HL7 table 0211 (alternate character sets) to Python codecs. Keys are normalized: upper case,
# without spaces, hyphens and underscores. GB 2312 and GBK decode as GB 18030, their superset:
# senders that declare GB 2312 routinely send GBK characters.
_CHARSETS: dict[str, str] = {
    "ASCII": "ascii",
    "ISOIR6": "ascii",
    "USASCII": "ascii",
    "8859/1": "latin-1",
    "ISOIR100": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE": "utf-8",
    "UNICODEUTF8": "utf-8",
    "UTF8": "utf-8",
    "UNICODEUTF16": "utf-16",
    "UTF16": "utf-16",
    "UNICODEUTF32": "utf-32",
    "UTF32": "utf-32",
    "GB180302000": "gb18030",
    "GB18030": "gb18030",
    "GB2312": "gb18030",
    "GBK": "gb18030",
    "CNS116431992": "big5",
    "BIG5": "big5",
    "KSX1001": "euc_kr",
    "JISX0202": "iso2022_jp",
    "ISOIR87": "iso2022_jp",
    "ISOIR159": "iso2022_jp_2",
}


# --- errors this module raises, each with its ERR-3 code (HL7 table 0357) ---------------------


class MissingFieldError(ParseError):
    """A required field is empty (ERR-3 101)."""


class DataTypeError(ParseError):
    """A value has the wrong form, e.g. MSH-2 is not four delimiter characters (ERR-3 102)."""


class UnknownTableValueError(ParseError):
    """A coded value is not in its table, e.g. an unknown MSH-18 charset (ERR-3 103)."""


class UnsupportedMessageTypeError(ParseError):
    """MSH-9 is not a message type we can accept (ERR-3 200)."""

    ack_code = "AR"


class UnsupportedVersionError(ParseError):
    """MSH-12 is not an HL7 version 2 (ERR-3 203)."""

    ack_code = "AR"


# Looked up along the error's MRO, so every InputError subclass has a code.
_ERROR_CODES: dict[type, tuple[str, str]] = {
    InputError: ("207", "Application internal error"),
    FramingError: ("100", "Segment sequence error"),
    DecodeError: ("102", "Data type error"),
    ParseError: ("100", "Segment sequence error"),
    MissingFieldError: ("101", "Required field missing"),
    DataTypeError: ("102", "Data type error"),
    UnknownTableValueError: ("103", "Table value not found"),
    UnsupportedMessageTypeError: ("200", "Unsupported message type"),
    UnsupportedVersionError: ("203", "Unsupported version id"),
}


def error_code(error: InputError) -> tuple[str, str]:
    """The HL7 table 0357 code and text for an input error (ERR-3)."""
    for cls in type(error).__mro__:
        if cls in _ERROR_CODES:
            return _ERROR_CODES[cls]
    return _ERROR_CODES[InputError]


# --- the header: what the wire layer needs, read cheaply from the raw bytes -------------------


@dataclass(frozen=True, slots=True)
class Delimiters:
    """MSH-1 and MSH-2: the field separator and the encoding characters, as sent."""

    field: str = "|"
    encoding_characters: str = "^~\\&"

    @property
    def component(self) -> str:
        return self.encoding_characters[0]

    @property
    def repetition(self) -> str:
        return self.encoding_characters[1]

    @property
    def escape(self) -> str:
        return self.encoding_characters[2]

    @property
    def subcomponent(self) -> str:
        return self.encoding_characters[3]


DEFAULT_DELIMITERS = Delimiters()


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """The MSH fields the wire layer needs, in ER7 form (escape sequences unresolved)."""

    delimiters: Delimiters
    sending_application: str  # MSH-3
    sending_facility: str  # MSH-4
    receiving_application: str  # MSH-5
    receiving_facility: str  # MSH-6
    message_type: str  # MSH-9.1
    trigger_event: str  # MSH-9.2
    message_structure: str  # MSH-9.3
    control_id: str  # MSH-10
    message_time: str  # MSH-7, first component (DTM)
    processing_id: str  # MSH-11
    version: str  # MSH-12
    accept_ack_type: str  # MSH-15
    application_ack_type: str  # MSH-16
    charset: str  # MSH-18, first repetition


def read_header(
    raw: bytes, default_charset: str = "utf-8", *, strict: bool = True
) -> MessageHeader:
    """Read the MSH fields from the first segment only; the rest of the message is not touched.

    Raises ParseError (AR when this is not an HL7 message at all, AE for fixable content).
    With `strict=False` only MSH-1 and MSH-2 are checked: enough to address a NAK or to read a
    journalled message whose required fields are missing."""
    delimiters, fields = _scan_msh(raw, default_charset)
    header = _header_from(delimiters, fields)
    if not strict:
        return header
    if not fields[9]:
        raise MissingFieldError("message type is required", location="MSH-9")
    if not _SEGMENT_ID.fullmatch(header.message_type):
        raise UnsupportedMessageTypeError(
            "message type must be three upper-case letters or digits", location="MSH-9.1"
        )
    if not header.control_id:
        raise MissingFieldError("message control id is required", location="MSH-10")
    if header.version and not header.version.split(delimiters.component)[0].startswith("2"):
        raise UnsupportedVersionError("only HL7 version 2.x is supported", location="MSH-12")
    return header


def dedup_key(header: MessageHeader | None) -> str | None:
    """MSH-4 (or MSH-3 when MSH-4 is empty) + "|" + MSH-10; None without a control id."""
    if header is None or not header.control_id:
        return None
    sender = header.sending_facility or header.sending_application
    return f"{sender}|{header.control_id}"


def message_time(header: MessageHeader | None, zone: tzinfo) -> datetime | None:
    """MSH-7 as an aware instant (`zone` when it carries no offset), for the clock monitor;
    None when it is missing, coarser than a second or not a valid time. Never an error: the
    sender's clock is looked at, not the message judged by it. Fractions are dropped, since
    most senders stamp whole seconds and the offset is estimated to the second."""
    if header is None:
        return None
    return stamp_time(header.message_time, zone)


def stamp_time(text: str, zone: tzinfo) -> datetime | None:
    """An HL7 DTM-shaped stamp (YYYYMMDDHHMMSS[.S][+/-ZZZZ]; also ASTM's H-14) as an aware
    instant to the second, `zone` when it has no offset; None when it is not one."""
    match = _MESSAGE_TIME.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, sign, off_h, off_m = match.groups()
    tz = zone
    if sign is not None:
        if int(off_h) > 14 or int(off_m) > 59:
            return None
        delta = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(delta if sign == "+" else -delta)
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz
        )
    except ValueError:  # month 13, 30 February, hour 24
        return None


def sender_of(header: MessageHeader | None) -> str | None:
    """Who stamped the message: `MSH-3.1/MSH-4.1` (sending application and facility), the
    name the clock monitor keeps each sender's clock offset under; None when both are empty."""
    if header is None:
        return None
    component = header.delimiters.component
    application = header.sending_application.split(component)[0].strip()
    facility = header.sending_facility.split(component)[0].strip()
    if not application and not facility:
        return None
    return f"{application}/{facility}"


def ack_wanted(header: MessageHeader | None, accepted: bool) -> bool:
    """Whether the sender asked for an (accept) acknowledgment, per MSH-15 (table 0155)."""
    mode = header.accept_ack_type.strip().upper() if header is not None else ""
    if mode == "NE":
        return False
    if mode == "ER":
        return not accepted
    if mode == "SU":
        return accepted
    return True  # AL, or empty: original mode always acknowledges


# --- charsets -----------------------------------------------------------------------------------


def charset_codec(name: str) -> str | None:
    """The Python codec for an HL7 table 0211 value (as sent in MSH-18); None if unknown."""
    return _CHARSETS.get(name.strip().upper().replace(" ", "").replace("-", "").replace("_", ""))


def channel_codec(name: str) -> str | None:
    """A channel's default charset: a table 0211 value or a Python codec name (trusted config)."""
    codec = charset_codec(name)
    if codec is None and name.strip():
        with contextlib.suppress(LookupError, ValueError):
            codec = codecs.lookup(name.strip()).name
    return codec


def decode(raw: bytes, header: MessageHeader | None, default_charset: str) -> tuple[str, str]:
    """Decode a whole message by MSH-18, or the channel default when MSH-18 is empty.

    Returns (text, codec). Raises UnknownTableValueError for an unknown MSH-18 and DecodeError
    naming the first bad byte's offset and field. A UTF-8 byte order mark is dropped."""
    declared = header.charset if header is not None else ""
    codec = _codec_for(raw, declared, default_charset, strict=True)
    delimiters = header.delimiters if header is not None else DEFAULT_DELIMITERS
    where = "MSH-18" if declared else "the channel's default charset"
    return _decode_as(raw, codec, delimiters, where), codec


def _decode_as(raw: bytes, codec: str, delimiters: Delimiters, where: str) -> str:
    start = len(_UTF8_BOM) if raw.startswith(_UTF8_BOM) else 0
    try:
        return raw[start:].decode(codec)
    except UnicodeDecodeError as exc:
        first, last = start + exc.start, start + exc.end - 1
        span = f"byte {first} is" if first == last else f"bytes {first}–{last} are"
        location = _position_of(raw[start:first].decode(codec, "replace"), delimiters.field)
        raise DecodeError(
            f"{span} not valid {codec} ({where})", charset=codec, offset=first, location=location
        ) from None


def _codec_for(raw: bytes, declared: str, default_charset: str, *, strict: bool) -> str:
    utf16 = _utf16_codec(raw)
    if utf16 is not None:
        return utf16  # the bytes cannot be anything else, whatever MSH-18 says
    if declared.strip():
        codec = charset_codec(declared)
        if codec is not None:
            return codec
        if strict:
            raise UnknownTableValueError(
                "unknown character set (HL7 table 0211)", location="MSH-18"
            )
    codec = channel_codec(default_charset)
    if codec is None:
        raise ConfigError("unknown default charset", key="charset")
    return codec


def _utf16_codec(raw: bytes) -> str | None:
    head = raw[:2]
    if head in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    if head == b"M\x00":
        return "utf-16-le"
    if head == b"\x00M":
        return "utf-16-be"
    return None


def _position_of(prefix: str, field_separator: str) -> str:
    """The `SEG[n]-F` position at the end of `prefix`, or "" when it is not inside a segment."""
    segments = prefix.replace("\n", "\r").split("\r")
    current = segments[-1]
    segment_id = current[:3]
    if not _SEGMENT_ID.fullmatch(segment_id):
        return ""
    occurrence = sum(1 for s in segments if s[:3] == segment_id)
    field = current.count(field_separator) + (1 if segment_id in _HEADER_SEGMENTS else 0)
    where = segment_id if occurrence == 1 else f"{segment_id}[{occurrence}]"
    return f"{where}-{field}" if field else where


# --- the MSH scan -------------------------------------------------------------------------------


def _scan_msh(raw: bytes, default_charset: str) -> tuple[Delimiters, list[str]]:
    """MSH-1/MSH-2 and the MSH fields indexed like the spec: fields[n] is MSH-n (0 unused)."""
    text = _msh_text(raw, default_charset)
    if not text.startswith("MSH"):
        raise ParseError(
            "the message does not start with an MSH segment", location="MSH", ack_code="AR"
        )
    if len(text) < 4:
        raise DataTypeError("the field separator is missing", location="MSH-1", ack_code="AR")
    separator = text[3]
    parts = text.split(separator)
    delimiters = _delimiters(separator, parts[1])
    # The MSH oddity, part 1: MSH-1 is the separator itself, so MSH-n is parts[n - 1].
    fields = ["", separator, *parts[1:]]
    if len(fields) < 19:
        fields.extend([""] * (19 - len(fields)))
    return delimiters, fields


@lru_cache(maxsize=64)
def _delimiters(separator: str, encoding_characters: str) -> Delimiters:
    """Check MSH-1 and MSH-2 once per distinct pair (errors are not cached)."""
    if separator.isalnum() or separator.isspace() or not separator.isprintable():
        raise DataTypeError(
            "the field separator must be a printable delimiter character",
            location="MSH-1",
            ack_code="AR",
        )
    if (
        len(encoding_characters) not in (4, 5)
        or len(set(encoding_characters)) != len(encoding_characters)
        or any(c.isalnum() or c.isspace() or not c.isprintable() for c in encoding_characters)
    ):
        raise DataTypeError(
            "encoding characters must be four distinct delimiter characters",
            location="MSH-2",
            ack_code="AR",
        )
    return Delimiters(separator, encoding_characters)


def _msh_text(raw: bytes, default_charset: str) -> str:
    """The first segment as text. Pure ASCII is the fast path; otherwise decode it by MSH-18."""
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM) :]
    utf16 = _utf16_codec(raw)
    if utf16 is not None:
        text = raw.decode(utf16, "replace").lstrip("\ufeff")
        return _first_line(text)
    end = raw.find(b"\r")
    newline = raw.find(b"\n", 0, end if end >= 0 else len(raw))
    if newline >= 0:
        end = newline
    segment = raw if end < 0 else raw[:end]
    if segment.isascii():
        return segment.decode("ascii")
    # Multi-byte charsets (GB 18030) may hide delimiter bytes inside characters, so MSH-18 can
    # only be found after decoding: take the first candidate that decodes cleanly and whose
    # MSH-18 names the codec it was decoded with.
    default = channel_codec(default_charset) or "latin-1"
    guess = charset_codec(_msh18(segment.decode("latin-1"))) or default
    for codec in dict.fromkeys((guess, default, "utf-8", "gb18030")):
        try:
            text = segment.decode(codec)
        except UnicodeDecodeError:
            continue
        if (charset_codec(_msh18(text)) or default) == codec:
            return text
    return segment.decode(default, "replace")


def _first_line(text: str) -> str:
    end = len(text)
    for separator in ("\r", "\n"):
        position = text.find(separator, 0, end)
        if position >= 0:
            end = position
    return text[:end]


def _msh18(text: str) -> str:
    if len(text) < 8:
        return ""
    parts = text.split(text[3])
    return parts[17].split(parts[1][1:2] or "~")[0] if len(parts) > 17 else ""


def _header_from(delimiters: Delimiters, fields: list[str]) -> MessageHeader:
    message_type = fields[9].split(delimiters.component)
    message_type.extend(["", ""])
    return MessageHeader(
        delimiters=delimiters,
        sending_application=fields[3],
        sending_facility=fields[4],
        receiving_application=fields[5],
        receiving_facility=fields[6],
        message_type=message_type[0],
        trigger_event=message_type[1],
        message_structure=message_type[2],
        control_id=fields[10],
        message_time=fields[7].split(delimiters.component)[0].strip(),
        processing_id=fields[11],
        version=fields[12],
        accept_ack_type=fields[15],
        application_ack_type=fields[16],
        charset=fields[18].split(delimiters.repetition)[0].strip(),
    )


# --- escapes ------------------------------------------------------------------------------------


def escape(value: str, delimiters: Delimiters = DEFAULT_DELIMITERS) -> str:
    """Escape delimiters (and CR/LF) so `value` can be written as one HL7 leaf value."""
    return value.translate(_escape_table(delimiters))


@lru_cache(maxsize=32)
def _escape_table(delimiters: Delimiters) -> dict[int, str]:
    e = delimiters.escape
    return {
        ord(e): f"{e}E{e}",
        ord(delimiters.field): f"{e}F{e}",
        ord(delimiters.component): f"{e}S{e}",
        ord(delimiters.subcomponent): f"{e}T{e}",
        ord(delimiters.repetition): f"{e}R{e}",
        ord("\r"): f"{e}X0D{e}",
        ord("\n"): f"{e}X0A{e}",
    }


def unescape(value: str, delimiters: Delimiters = DEFAULT_DELIMITERS, codec: str = "utf-8") -> str:
    """Resolve HL7 escape sequences in a leaf value: F S T R E (delimiters), Xhh, .br."""
    e = delimiters.escape
    if e not in value:
        return value
    out: list[str] = []
    position = 0
    while True:
        start = value.find(e, position)
        end = value.find(e, start + 1) if start >= 0 else -1
        if end < 0:
            out.append(value[position:])
            return "".join(out)
        out.append(value[position:start])
        out.append(_expand(value[start + 1 : end], delimiters, codec))
        position = end + 1


def _expand(sequence: str, delimiters: Delimiters, codec: str) -> str:
    e = delimiters.escape
    simple = {
        "F": delimiters.field,
        "S": delimiters.component,
        "T": delimiters.subcomponent,
        "R": delimiters.repetition,
        "E": e,
        ".br": "\n",
        "H": "",
        "N": "",
    }.get(sequence)
    if simple is not None:
        return simple
    if sequence[:1] == "X" and len(sequence) % 2 == 1:
        try:
            return bytes.fromhex(sequence[1:]).decode(codec, "replace")
        except (ValueError, LookupError):
            pass
    return f"{e}{sequence}{e}"  # unknown: keep it as sent
