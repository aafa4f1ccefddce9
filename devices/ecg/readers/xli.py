"""Philips XLI waveform decompression (Sierra ECG XML `compressmethod="XLI"`), written from the
format as documented by sierra-ecg-tools (C. Watford, MIT): per lead an 8-byte header (int32
little-endian chunk size, 2 unused bytes, int16 first value), then the chunk: LZW with fixed
10-bit codes read most significant bit first, no clear code; the output bytes are the high bytes
of int16 values followed by their low bytes; the values are second differences (offset by 64)
of the samples."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["XliError", "decode_xli", "lzw_decode"]

_CODE_BITS = 10
_MAX_CODE = (1 << _CODE_BITS) - 2  # 1023 never occurs; it ends a chunk in some files
_HEADER = 8
MAX_OUTPUT = 16 * 1024 * 1024  # bytes of one lead: far beyond any real recording


class XliError(ValueError):
    """The XLI stream is truncated or corrupt; the message says where."""


def lzw_decode(chunk: bytes, *, max_output: int = MAX_OUTPUT) -> bytes:
    """Decompress one lead's chunk; stops at the first code that cannot follow (end of data)."""
    table: list[bytes] = [bytes([n]) for n in range(256)]
    output = bytearray()
    previous = b""
    buffer = count = position = 0
    while True:
        # Codes are taken while more than 24 bits are buffered, as the Philips decoders do: the
        # last bits of a chunk are padding, and decoding them would shift the high/low split.
        while count <= 24:
            if position >= len(chunk):
                return bytes(output)
            buffer = (buffer << 8) | chunk[position]
            position += 1
            count += 8
        count -= _CODE_BITS
        code = buffer >> count
        buffer &= (1 << count) - 1
        if code > _MAX_CODE:
            return bytes(output)
        if code < len(table):
            entry = table[code]
        elif code == len(table) and previous:
            entry = previous + previous[:1]  # the KwKwK case
        else:
            raise XliError(f"LZW code {code} refers to no entry (byte {position} of the chunk)")
        if previous and len(table) <= _MAX_CODE:
            table.append(previous + entry[:1])
        output += entry
        if len(output) > max_output:
            raise XliError(f"a lead decompresses to more than {max_output} bytes")
        previous = entry


def _samples(decoded: bytes, first: int) -> npt.NDArray[np.int16]:
    if len(decoded) % 2:
        decoded += b"\x00"
    half = len(decoded) // 2
    raw = np.frombuffer(decoded, dtype=np.uint8).astype(np.int64)
    values = ((raw[:half] << 8) | raw[half:]).astype(np.uint16).astype(np.int16).astype(np.int64)
    if half < 3:
        return values.astype(np.int16)
    # samples[i] = 2*samples[i-1] - samples[i-2] - e[i], e[2] = first, e[i] = values[i-1] - 64
    e = np.empty(half, dtype=np.int64)
    e[2] = first
    e[3:] = values[2:-1] - 64
    samples = np.empty(half, dtype=np.int64)
    samples[:2] = values[:2]
    slope = values[1] - values[0] - np.cumsum(e[2:])
    samples[2:] = values[1] + np.cumsum(slope)
    # The device works in int16: wrap as it does.
    return samples.astype(np.uint64).astype(np.uint16).astype(np.int16)


def decode_xli(data: bytes, leads: int) -> list[npt.NDArray[np.int16]]:
    """The `leads` int16 sample arrays in an XLI stream, in stored order (the Sierra reader turns
    III, aVR, aVL and aVF from residuals into leads)."""
    decoded: list[npt.NDArray[np.int16]] = []
    offset = 0
    while offset < len(data) and len(decoded) < leads:
        if offset + _HEADER > len(data):
            raise XliError(f"lead {len(decoded) + 1}: the chunk header is cut short")
        size = int.from_bytes(data[offset : offset + 4], "little", signed=True)
        first = int.from_bytes(data[offset + 6 : offset + 8], "little", signed=True)
        offset += _HEADER
        if size < 0 or offset + size > len(data):
            raise XliError(
                f"lead {len(decoded) + 1}: the chunk claims {size} bytes, "
                f"{len(data) - offset} are left: the data is truncated"
            )
        decoded.append(_samples(lzw_decode(data[offset : offset + size]), first))
        offset += size
    if len(decoded) < leads:
        raise XliError(f"the data holds {len(decoded)} leads, the header says {leads}")
    return decoded
