"""The read-only view of a parsed input that mappings and filters read by path.

Each input format (HL7 v2, JSON, XML) implements `Document` in its adapter; the mapping language
only ever calls these three methods, so it knows no protocol. Formats made of segments in order
(HL7 v2) also implement `SegmentedDocument`, which segment groups (`group(OBR, [OBX])`) need.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Document", "SegmentedDocument"]


class Document(Protocol):
    """A parsed message addressed by paths written the way the format's spec writes them.

    For HL7 v2 a path is `SEG-F[.C[.S]]` counted from 1, with an optional 1-based repetition or
    segment index in brackets: `PID-3.1`, `PID-3[2].1`, `OBX[2]-5`, `MSH-9.2`.
    """

    media_type: str

    def get(self, path: str) -> str | None:
        """The first non-empty value at `path`, or None when absent or empty."""
        ...

    def all(self, path: str) -> list[str]:
        """Every non-empty value at `path`, across repetitions and repeated segments, in order."""
        ...

    def each(self, path: str) -> list[Document]:
        """Sub-documents to iterate over: every segment named `path` ("OBX") or every repetition
        of a field ("PID-3"). Within one, paths into that segment or field resolve to it; all
        other paths still resolve against the whole message."""
        ...


@runtime_checkable
class SegmentedDocument(Document, Protocol):
    """A document made of named segments in order (HL7 v2): what segment groups need.

    `each(segment_id)` must return that id's segments in the order they appear in
    `segment_ids`."""

    @property
    def segment_ids(self) -> list[str]:
        """The id of every segment of the whole message, in order."""
        ...
