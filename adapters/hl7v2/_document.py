"""The lazily split HL7 v2 `Document` that mappings and filters read by path (`PID-3.1`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from adapters.hl7v2._wire import (
    _HEADER_SEGMENTS,
    _PATH,
    _SEGMENT_ID,
    MEDIA_TYPE,
    Delimiters,
    _codec_for,
    _decode_as,
    decode,
    read_header,
    unescape,
)
from engine.errors import (
    MappingError,
    ParseError,
)

# --- the document -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Path:
    segment: str
    segment_index: int | None  # 1-based
    field: int | None
    repetition: int | None  # 1-based
    component: int | None
    subcomponent: int | None


@lru_cache(maxsize=1024)
def _parse_path(path: str) -> _Path | None:
    match = _PATH.fullmatch(path.strip())
    if match is None:
        return None
    numbers = [int(g) if g is not None else None for g in match.groups()[1:]]
    if any(n is not None and n < 1 for n in numbers):
        return None
    return _Path(match.group(1), *numbers)


def _path(path: str) -> _Path:
    parsed = _parse_path(path)
    if parsed is None:
        raise MappingError(
            "not an HL7 v2 path; write SEG-F[.C[.S]] counted from 1, e.g. PID-3[2].1 or OBX[2]-5",
            location=path,
        )
    return parsed


class _Message:
    """The split message shared by a document and its sub-documents; fields split on demand."""

    __slots__ = (
        "by_id", "codec", "delimiters", "ids", "segments", "_fields",
        "component", "repetition", "subcomponent", "escape", "trailing",
    )  # fmt: skip

    def __init__(self, text: str, delimiters: Delimiters, codec: str) -> None:
        if "\n" in text:
            text = text.replace("\r\n", "\r").replace("\n", "\r")
        self.delimiters = delimiters
        self.codec = codec
        # The delimiters as plain attributes: every path read uses them, and the properties of
        # `Delimiters` cost a call each.
        self.component = delimiters.component
        self.repetition = delimiters.repetition
        self.subcomponent = delimiters.subcomponent
        self.escape = delimiters.escape
        self.trailing = self.component + self.subcomponent
        self.segments = [s for s in text.split("\r") if s and not s.isspace()]
        self.ids: list[str] = []
        self.by_id: dict[str, list[int]] = {}
        separator = delimiters.field
        for index, segment in enumerate(self.segments):
            segment_id = segment[:3]
            if not _SEGMENT_ID.fullmatch(segment_id) or segment[3:4] not in ("", separator):
                raise ParseError(
                    "segment id must be three upper-case letters or digits followed by the "
                    "field separator",
                    location=f"segment {index + 1}",
                )
            self.ids.append(segment_id)
            self.by_id.setdefault(segment_id, []).append(index)
        self._fields: list[list[str] | None] = [None] * len(self.segments)

    def fields(self, index: int) -> list[str]:
        """The fields of one segment, indexed like the spec: fields[n] is SEG-n."""
        fields = self._fields[index]
        if fields is None:
            parts = self.segments[index].split(self.delimiters.field)
            if self.ids[index] in _HEADER_SEGMENTS:
                # The MSH oddity, part 2: field 1 is the separator that split the segment.
                parts.insert(1, self.delimiters.field)
            fields = self._fields[index] = parts
        return fields


@dataclass(frozen=True, slots=True)
class _Scope:
    segment: int  # index into the message's segments
    field: int | None = None
    repetition: int | None = None  # 0-based


class Hl7Document:
    """A parsed HL7 v2 message read by path (`PID-3.1`, `PID-3[2].1`, `OBX[2]-5`, `MSH-9.2`).

    Leaf values come back with escape sequences resolved; a path that stops above a composite
    value (`PID-5` when it has components) returns it in ER7 form, as sent."""

    media_type = MEDIA_TYPE
    __slots__ = ("_message", "_scope", "_read")

    def __init__(self, message: _Message, scope: _Scope | None = None) -> None:
        self._message = message
        self._scope = scope
        # path -> first value: a mapping reads the same fields again and again (the
        # Organization's MSH-4 for its id and its reference, PV1-3 for each Location part),
        # and a document never changes.
        self._read: dict[str, str | None] = {}

    @classmethod
    def from_text(cls, text: str, delimiters: Delimiters, codec: str = "utf-8") -> Hl7Document:
        """Split decoded ER7 text into segments and check every segment id."""
        return cls(_Message(text, delimiters, codec))

    @property
    def delimiters(self) -> Delimiters:
        return self._message.delimiters

    @property
    def codec(self) -> str:
        """The Python codec the message was decoded with."""
        return self._message.codec

    @property
    def segment_ids(self) -> list[str]:
        """The segment ids in order (within a sub-document: still the whole message's)."""
        return list(self._message.ids)

    @property
    def text(self) -> str:
        """The whole message as ER7 text, segments ended by CR."""
        return "".join(f"{s}\r" for s in self._message.segments)

    def __repr__(self) -> str:
        return f"Hl7Document(segments={len(self._message.segments)})"  # never the content

    def get(self, path: str) -> str | None:
        """The first non-empty value at `path`, or None when absent or empty."""
        read = self._read
        if path in read:
            return read[path]
        value = read[path] = self._first(_path(path))
        return value

    def _first(self, path: _Path) -> str | None:
        """`next(self._values(path), None)` without its generators: the same walk (segments
        in scope, repetitions, the first non-empty leaf), written out for the hot path."""
        field = path.field
        if field is None or path.repetition is not None:
            return next(self._values(path), None)
        message = self._message
        scope = self._scope
        for index in self._segments(path):
            fields = message.fields(index)
            if field >= len(fields):
                continue
            value = fields[field]
            if not value:
                continue
            if field <= 2 and message.ids[index] in _HEADER_SEGMENTS:
                return value  # MSH-1 and MSH-2 hold delimiters: never split them
            if message.repetition not in value:
                repetitions = [value]
            elif scope is not None and scope.segment == index and scope.field == field:
                assert scope.repetition is not None
                repetitions = [value.split(message.repetition)[scope.repetition]]
            else:
                repetitions = value.split(message.repetition)
            for repetition in repetitions:
                leaf = self._leaf(repetition, path)
                if leaf:
                    return leaf
        return None

    def all(self, path: str) -> list[str]:
        """Every non-empty value at `path`, across repetitions and repeated segments, in order."""
        return list(self._values(_path(path)))

    def each(self, path: str) -> list[Hl7Document]:
        """One sub-document per segment (`OBX`) or per non-empty repetition (`PID-3`)."""
        parsed = _path(path)
        if parsed.component is not None:
            raise MappingError(
                "each() iterates segments or field repetitions, not components", location=path
            )
        result: list[Hl7Document] = []
        for index in self._segments(parsed):
            if parsed.field is None:
                result.append(Hl7Document(self._message, _Scope(index)))
                continue
            for repetition, value in self._repetitions(index, parsed):
                if value:
                    scope = _Scope(index, parsed.field, repetition)
                    result.append(Hl7Document(self._message, scope))
        return result

    def _segments(self, path: _Path) -> list[int]:
        indexes = self._message.by_id.get(path.segment, [])
        if path.segment_index is not None:
            position = path.segment_index - 1
            return indexes[position : position + 1]
        scope = self._scope
        if scope is not None and self._message.ids[scope.segment] == path.segment:
            return [scope.segment]
        return indexes

    def _repetitions(self, index: int, path: _Path) -> Iterator[tuple[int, str]]:
        assert path.field is not None
        fields = self._message.fields(index)
        if path.field >= len(fields):
            return
        value = fields[path.field]
        if self._message.ids[index] in _HEADER_SEGMENTS and path.field <= 2:
            yield 0, value  # MSH-1 and MSH-2 hold delimiters: never split them
            return
        repetitions = value.split(self._message.delimiters.repetition)
        scope = self._scope
        if path.repetition is not None:
            position = path.repetition - 1
            if position < len(repetitions):
                yield position, repetitions[position]
        elif scope is not None and scope.segment == index and scope.field == path.field:
            assert scope.repetition is not None
            yield scope.repetition, repetitions[scope.repetition]
        else:
            yield from enumerate(repetitions)

    def _values(self, path: _Path) -> Iterator[str]:
        message = self._message
        for index in self._segments(path):
            if path.field is None:
                yield message.segments[index]
                continue
            header_field = message.ids[index] in _HEADER_SEGMENTS and path.field <= 2
            for _, repetition in self._repetitions(index, path):
                value = repetition if header_field else self._leaf(repetition, path)
                if value:
                    yield value

    def _leaf(self, repetition: str, path: _Path) -> str:
        m = self._message
        value = repetition
        if path.component is not None:
            components = value.split(m.component)
            if path.component > len(components):
                return ""
            value = components[path.component - 1]
            if path.subcomponent is not None:
                subcomponents = value.split(m.subcomponent)
                if path.subcomponent > len(subcomponents):
                    return ""
                value = subcomponents[path.subcomponent - 1]
        value = value.rstrip(m.trailing)
        if m.component in value or m.subcomponent in value:
            return value  # composite: ER7 form, as sent
        if m.escape not in value:
            return value
        return unescape(value, m.delimiters, m.codec)


def parse(raw: bytes, default_charset: str = "utf-8") -> Hl7Document:
    """Read, decode and split a message; fields are split only when a path asks for them.

    Only the structure is checked (MSH-1, MSH-2, segment ids): the required MSH fields are the
    wire's concern (`read_header`), and a journalled message must stay readable without them."""
    header = read_header(raw, default_charset, strict=False)
    text, codec = decode(raw, header, default_charset)
    return Hl7Document.from_text(text, header.delimiters, codec)


def parse_for_mapping(raw: bytes, charset: str) -> Hl7Document:
    """The `greenchannel.parsers` entry point for x-application/hl7-v2+er7.

    `charset` is what the source decided (or the channel default); MSH-18 still wins when it
    names a known charset, and `charset` covers an unknown one the source already reported."""
    header = read_header(raw, charset, strict=False)
    codec = _codec_for(raw, header.charset, charset, strict=False)
    text = _decode_as(raw, codec, header.delimiters, "the charset the source decided")
    return Hl7Document.from_text(text, header.delimiters, codec)
