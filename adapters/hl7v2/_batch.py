"""HL7 v2 batches (spec chapter 2.10.3): a file or MLLP block wrapping messages in FHS/BHS
headers and BTS/FTS trailers. Splitting them into messages, and the batch acknowledgment that
answers one: the same envelope around one ACK per message, in order.
"""

from __future__ import annotations

from datetime import datetime

from adapters.hl7v2._wire import _UTF8_BOM, Delimiters

__all__ = ["batch_ack", "is_batch", "split_batch"]

# Segments that end a message inside a batch (FHS/BHS header, BTS/FTS trailer) or start one.
_BATCH_SEGMENTS = (b"MSH", b"BTS", b"FTS", b"BHS", b"FHS")
_BLANK = b"\r\n \t"


def is_batch(data: bytes) -> bool:
    """Whether the bytes start (after a BOM and blank lines) with an FHS or BHS segment."""
    start = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    head = data[start : start + 64].lstrip(_BLANK)
    return head[:3] in (b"FHS", b"BHS") and len(head) > 3


def split_batch(data: bytes) -> list[bytes]:
    """The messages of a batch, each from its MSH segment up to the next MSH or batch segment
    (BHS, BTS, FHS, FTS); bytes are kept as they are. Empty if there is no MSH."""
    starts: list[tuple[int, bytes]] = []
    position = 0
    while position < len(data):
        if data[position : position + 3] in _BATCH_SEGMENTS:
            starts.append((position, data[position : position + 3]))
        breaks = [i for i in (data.find(b"\r", position), data.find(b"\n", position)) if i >= 0]
        if not breaks:
            break
        position = min(breaks) + 1
    if not starts:
        return []
    ends = [start for start, _ in starts[1:]] + [len(data)]
    return [
        data[start:end]
        for (start, segment), end in zip(starts, ends, strict=True)
        if segment == b"MSH"
    ]


def batch_ack(data: bytes, acks: list[str], *, control_id: str, now: datetime) -> str:
    """The batch acknowledgment for the batch `data`: its FHS (when it had one) and BHS with
    sender and receiver swapped, FHS-12/BHS-12 naming its FHS-11/BHS-11, the ACKs in order, then
    BTS-1 = the number of ACKs and FTS-1 = 1. Segments end with CR; `now` must be aware."""
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    headers = _headers(data)
    d = next(iter(headers.values()))[0] if headers else Delimiters()
    stamp = now.strftime("%Y%m%d%H%M%S%z")
    segments: list[str] = []
    for name in ("FHS", "BHS"):
        if name in headers or name == "BHS":
            fields = headers[name][1] if name in headers else []
            segments.append(_envelope(name, d, fields, stamp, control_id))
    body = "".join(acks)
    trailer = [f"BTS{d.field}{len(acks)}"]
    if "FHS" in headers:
        trailer.append(f"FTS{d.field}1")
    return "".join(f"{s}\r" for s in segments) + body + "".join(f"{s}\r" for s in trailer)


def _envelope(name: str, d: Delimiters, fields: list[str], stamp: str, control_id: str) -> str:
    def field(number: int) -> str:  # FHS-n / BHS-n as the spec counts them (1 = separator)
        return fields[number - 1] if 0 < number - 1 < len(fields) else ""

    out = [name, d.encoding_characters, field(5), field(6), field(3), field(4), stamp]
    out += ["", "", "", control_id, field(11)]
    return d.field.join(out).rstrip(d.field)


def _headers(data: bytes) -> dict[str, tuple[Delimiters, list[str]]]:
    """The FHS and BHS segments before the first MSH: delimiters and fields (index 0 = name,
    index 1 = encoding characters, so index n-1 is FHS-n). Read as latin-1: only ASCII is used."""
    found: dict[str, tuple[Delimiters, list[str]]] = {}
    text = data.decode("latin-1").lstrip("\ufeff\xef\xbb\xbf")
    for line in text.replace("\r\n", "\r").replace("\n", "\r").split("\r"):
        line = line.strip(" \t")
        name = line[:3]
        if name == "MSH":
            break
        if name in ("FHS", "BHS") and len(line) > 4 and name not in found:
            separator = line[3]
            fields = line.split(separator)
            delimiters = Delimiters(separator, fields[1] if len(fields) > 1 else "^~\\&")
            found[name] = (delimiters, [name, *fields[1:]])
    return found
