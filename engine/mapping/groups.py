"""Segment groups: `each: group(OBR, [OBX, NTE])` walks an order with its results as one unit.

A group starts at each head segment and takes the segments that follow it while they are listed
members; it ends at the next head or at the first segment that is not a member, and no group is
looked for after a segment of the optional third list (`group(OBX, [NTE], [SPM])`). Inside a group,
paths that name a segment of the group (`OBR-7`, `OBX-5`, `count(OBX)`, `each: OBX`) read only
that group's segments; every other path (`PID-3`, `MSH-10`) still reads the whole message.

The engine knows no protocol: it needs only a `SegmentedDocument`, a document that can list its
segment ids in order and iterate the segments of one id (`each("OBX")`), which HL7 v2 (and any
other flat, segment-based format) provides. Paths name their segment with their first three
characters, as the mapping language's segment paths do (docs/mapping-language.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from engine.errors import MappingError
from engine.mapping.document import Document, SegmentedDocument

__all__ = ["GroupSpec", "SegmentView", "find_groups"]

_SEGMENT_PATH = re.compile(r"([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?(.*)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """`group(OBR, [OBX, NTE])`: the head segment id and the ids that may follow it; with a
    third list, `group(OBX, [NTE], [SPM])`, the ids after which no more groups are looked for."""

    head: str
    members: tuple[str, ...]
    stop: tuple[str, ...] = ()

    def __str__(self) -> str:
        stop = f", [{', '.join(self.stop)}]" if self.stop else ""
        return f"group({self.head}, [{', '.join(self.members)}]{stop})"


class SegmentView:
    """A document restricted to some segments: one group, or one segment seen inside a group.

    `segments` are (id, sub-document) pairs in message order; paths naming one of `ids` (the
    segments the group declares, present or not) resolve among them, all others go to `outer`
    (the enclosing group or the whole message)."""

    media_type: str
    __slots__ = ("_by_id", "_values", "ids", "media_type", "outer", "segments")

    def __init__(
        self, segments: Sequence[tuple[str, Document]], outer: Document, ids: frozenset[str]
    ) -> None:
        self.segments = tuple(segments)
        self.outer = outer
        self.media_type = outer.media_type
        by_id: dict[str, list[Document]] = {}
        for segment_id, document in self.segments:
            by_id.setdefault(segment_id, []).append(document)
        self._by_id = by_id
        self.ids = ids
        # A message never changes while it is mapped, and a mapping reads the same fields of a
        # result many times (OBX-5 for the value, its type and its text): read each once.
        self._values: dict[str, str | None] = {}

    def __repr__(self) -> str:
        return f"SegmentView({[s for s, _ in self.segments]})"  # ids only, never the content

    def _local(self, path: str) -> tuple[list[Document], str] | None:
        """The segments of this view a path reads and the path to ask them; None: not ours."""
        parts = _split(path)
        if parts is None or parts[0] not in self.ids:
            return None
        segment_id, position, inner = parts
        documents = self._by_id.get(segment_id, [])
        if position is not None:
            documents = documents[position : position + 1] if position >= 0 else []
        return documents, inner

    def get(self, path: str) -> str | None:
        try:
            return self._values[path]
        except KeyError:
            pass
        local = self._local(path)
        value = None
        if local is None:
            value = self.outer.get(path)
        else:
            for document in local[0]:
                value = document.get(local[1])
                if value is not None:
                    break
        self._values[path] = value
        return value

    def all(self, path: str) -> list[str]:
        local = self._local(path)
        if local is None:
            return self.outer.all(path)
        documents, inner = local
        return [value for document in documents for value in document.all(inner)]

    def each(self, path: str) -> list[Document]:
        local = self._local(path)
        if local is None:
            return self.outer.each(path)
        documents, inner = local
        segment_id = inner[:3]
        # Each item stays inside this view, so `OBR-7` read from an OBX of the group is its OBR.
        return [
            SegmentView([(segment_id, item)], self, frozenset((segment_id,)))
            for document in documents
            for item in document.each(inner)
        ]


@lru_cache(maxsize=4096)
def _split(path: str) -> tuple[str, int | None, str] | None:
    """`OBX[2]-5.1` → ("OBX", 1, "OBX-5.1"): segment id, 0-based index in the view, the path."""
    match = _SEGMENT_PATH.match(path.strip())
    if match is None:
        return None
    segment_id, index, rest = match.groups()
    return segment_id, None if index is None else int(index) - 1, segment_id + rest


def _segments_of(document: Document, spec: GroupSpec, location: str) -> list[tuple[str, Document]]:
    """The (id, sub-document) pairs of `document` in order, for the ids a group can contain."""
    if isinstance(document, SegmentView):
        return list(document.segments)
    if not isinstance(document, SegmentedDocument):
        raise MappingError(
            f"{spec} needs an input made of segments (such as HL7 v2)", location=location
        )
    ids = document.segment_ids
    wanted = {spec.head, *spec.members} - set(spec.stop)
    iterators = {segment_id: iter(document.each(segment_id)) for segment_id in wanted}
    pairs: list[tuple[str, Document]] = []
    for segment_id in ids:
        if segment_id in wanted:
            item = next(iterators[segment_id], None)
            if item is None:
                # A sub-document (inside `each: OBX`) lists the whole message's ids but iterates
                # only itself: groups are taken from the message or from an enclosing group.
                raise MappingError(
                    f"{spec} must be used at the top of a resource or inside another group",
                    location=location,
                )
            pairs.append((segment_id, item))
        else:
            pairs.append((segment_id, document))  # a stop marker; never read
    return pairs


def find_groups(document: Document, spec: GroupSpec, location: str = "") -> list[SegmentView]:
    """Every group of `spec` in `document` (the message or an enclosing group), in order."""
    groups: list[SegmentView] = []
    current: list[tuple[str, Document]] | None = None
    members = frozenset(spec.members)
    ids = members | {spec.head}
    for segment_id, item in _segments_of(document, spec, location):
        if segment_id in spec.stop:
            break  # e.g. the OBXs after an SPM describe the specimen, not results
        if segment_id == spec.head:
            if current is not None:
                groups.append(SegmentView(current, document, ids))
            current = [(segment_id, item)]
        elif current is not None and segment_id in members:
            current.append((segment_id, item))
        elif current is not None:
            groups.append(SegmentView(current, document, ids))
            current = None
    if current is not None:
        groups.append(SegmentView(current, document, ids))
    return groups
