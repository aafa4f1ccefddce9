"""`greenchannel send`: send the HL7 v2 messages in files over one MLLP connection and print
each ACK, for interface testing and for replaying a sender's messages by hand."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AnyStr

from adapters.hl7v2 import AckResult, channel_codec, charset_codec, parse_ack, read_header
from adapters.mllp import END_BLOCK, START_BLOCK, FrameReader, frame
from engine.errors import ConfigError, DecodeError, FramingError, InputError

__all__ = ["Address", "Message", "read_messages", "register", "split_messages"]

EXAMPLE = """\
examples:
  greenchannel send --mllp 127.0.0.1:2575 mappings/tests/samples/adt-a04.hl7
  greenchannel send --mllp his-test:2575 --timeout 10 --json batch-*.hl7

A file holds one or many messages: MLLP-framed (0x0B ... 0x1C 0x0D) or plain text with segments
ended by CR, LF or CRLF, a message starting at each MSH (FHS/BHS/BTS/FTS batch wrappers are
skipped). Exit codes: 0 every message got AA/CA; 1 some got AE/AR/CE/CR, no ACK or a garbled one;
2 usage; 3 the host cannot be reached."""

_ACCEPTED = frozenset({"AA", "CA"})
_BATCH_SEGMENTS = frozenset({b"FHS", b"BHS", b"BTS", b"FTS"})
_UTF8_BOM = b"\xef\xbb\xbf"
_MAX_ACK_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Address:
    """Where to send: `--mllp HOST:PORT`."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Message:
    """One message read from a file: where it came from and its bytes, segments ended by CR."""

    file: str
    number: int  # 1-based position in the file
    content: bytes

    def __repr__(self) -> str:
        return f"Message({self.file}#{self.number}, bytes={len(self.content)})"  # never content


def register(parser: argparse.ArgumentParser) -> None:
    """send HL7 v2 messages from files over MLLP and print the ACKs"""
    parser.description = (
        "Send every HL7 v2 message in FILE... over one MLLP connection and print one line\n"
        "per message: <file>#<n> MSH-10=<id> -> <MSA-1> <MSA-2> [ERR-3/ERR-2] <text>."
    )
    parser.epilog = EXAMPLE
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--mllp", required=True, type=_address, metavar="HOST:PORT", help="the MLLP receiver"
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=30.0,
        metavar="S",
        help="seconds to connect and to wait for each ACK (30)",
    )
    parser.add_argument(
        "--charset",
        type=_charset,
        default="utf-8",
        help="charset of plain-text files, to find line ends in (utf-8); the bytes are sent as "
        "read unless the charset is not ASCII-compatible (UTF-16/32)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per message")
    parser.add_argument(
        "files",
        nargs="+",
        type=_existing_file,
        metavar="FILE",
        help="HL7 v2 files, plain or framed",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Read every file first (a bad file sends nothing), then send; 0 when all were accepted."""
    messages = [m for path in args.files for m in read_messages(path, args.charset)]
    accepted = asyncio.run(_send_all(args.mllp, messages, args.timeout, args.charset, args.json))
    return 0 if accepted else 1


# --- reading files ------------------------------------------------------------------------------


def read_messages(path: Path, charset: str = "utf-8") -> list[Message]:
    """The messages in one file. An InputError names the file (and line or byte) when it holds
    no message or is cut short; ConfigError when it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the file: {exc.strerror or type(exc).__name__}",
            file=str(path),
            hint="check the file name and its permissions",
        ) from exc
    try:
        contents = split_messages(data, charset)
    except InputError as exc:  # say which file the byte or line offset is in
        where = f"{path} {exc.location}".strip()
        raise InputError(exc.reason, location=where, hint=exc.hint) from exc
    if not contents:
        raise FramingError(
            "no HL7 message found (no segment starts with MSH)",
            location=str(path),
            hint="give a file of HL7 v2 messages, plain or MLLP-framed",
        )
    return [Message(str(path), n, content) for n, content in enumerate(contents, 1)]


def split_messages(data: bytes, charset: str = "utf-8") -> list[bytes]:
    """Split a file's bytes into messages: MLLP blocks if there is a start block, else plain
    text split at each MSH. Plain segments are re-joined with CR; nothing is decoded unless
    `charset` is not ASCII-compatible."""
    if data.lstrip(b"\r\n \t").startswith(START_BLOCK):
        return [m for block in _blocks(data) for m in _unbatch_block(block, charset)]
    return _split_plain(data, charset)


def _blocks(data: bytes) -> Iterator[bytes]:
    position = 0
    while True:
        start = data.find(START_BLOCK, position)
        if start < 0:
            if data[position:].strip(b"\r\n \t"):
                raise FramingError(
                    "bytes after the last MLLP block", location=f"byte {position}", hint=_FIX
                )
            return
        if data[position:start].strip(b"\r\n \t"):
            raise FramingError(
                "bytes outside an MLLP block", location=f"byte {position}", hint=_FIX
            )
        end = data.find(END_BLOCK, start + 1)
        if end < 0:
            raise FramingError(
                "an MLLP block has no end block (0x1C): the file is truncated",
                location=f"byte {start}",
                hint=_FIX,
            )
        yield data[start + 1 : end]
        position = end + 1


_FIX = "fix the file: every message must be framed as 0x0B ... 0x1C 0x0D"


def _unbatch_block(block: bytes, charset: str) -> list[bytes]:
    """A block is sent as it is, unless it holds a batch (FHS/BHS): then its messages are."""
    if block.lstrip(_UTF8_BOM)[:3] in (b"FHS", b"BHS"):
        return _split_plain(block, charset)
    return [block]


def _split_plain(data: bytes, charset: str) -> list[bytes]:
    codec = channel_codec(charset) or charset
    if "\r\nMSH|".encode(codec) != b"\r\nMSH|":
        # UTF-16/32: line ends are not single bytes, so split the text and encode it again.
        try:
            text = data.decode(codec)
        except UnicodeDecodeError as exc:
            raise DecodeError(
                f"not valid {codec}", charset=codec, offset=exc.start, location=f"byte {exc.start}"
            ) from None
        return [m.encode(codec) for m in _split_segments(text, "\r", "\n", "MSH", _TEXT_BATCH)]
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    return _split_segments(data, b"\r", b"\n", b"MSH", _BATCH_SEGMENTS)


_TEXT_BATCH = frozenset(s.decode() for s in _BATCH_SEGMENTS)


def _split_segments(
    data: AnyStr, cr: AnyStr, lf: AnyStr, msh: AnyStr, batch: frozenset[AnyStr]
) -> list[AnyStr]:
    """Group lines (ended by CR, LF or CRLF) into messages at each MSH; works on str or bytes."""
    messages: list[AnyStr] = []
    current: list[AnyStr] = []
    for number, line in enumerate(data.replace(cr + lf, lf).replace(cr, lf).split(lf), 1):
        if not line.strip():
            continue
        segment_id = line[:3]
        if segment_id in batch:
            continue
        if segment_id == msh:
            if current:
                messages.append(cr.join(current) + cr)
            current = [line]
        elif current:
            current.append(line)
        else:
            raise FramingError(
                "a segment comes before the first MSH",
                location=f"line {number}",
                hint="every message must start with an MSH segment",
            )
    if current:
        messages.append(cr.join(current) + cr)
    return messages


# --- sending ------------------------------------------------------------------------------------


class _Connection:
    """One persistent MLLP client connection, reopened after a failed exchange."""

    def __init__(self, address: Address, timeout_s: float) -> None:
        self._address = address
        self._timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._frames: FrameReader | None = None

    async def exchange(self, content: bytes) -> bytes | str:
        """Send one message and return the ACK's bytes, or why there is none."""
        writer, frames = await self._open()
        try:
            async with asyncio.timeout(self._timeout_s):
                writer.write(frame(content))
                await writer.drain()
                reply = await frames.read_frame()
        except TimeoutError:
            await self.aclose()
            return f"no ACK within {self._timeout_s:g} s"
        except OSError as exc:
            await self.aclose()
            return f"no ACK (connection failed: {exc.strerror or type(exc).__name__})"
        if reply is None:
            await self.aclose()
            return "no ACK (the receiver closed the connection)"
        if reply.problem is not None:
            await self.aclose()
            return f"garbled ACK ({reply.problem.reason})"
        return reply.content

    async def _open(self) -> tuple[asyncio.StreamWriter, FrameReader]:
        reader, writer, frames = self._reader, self._writer, self._frames
        if reader is not None and writer is not None and frames is not None:
            if not reader.at_eof() and not writer.is_closing():
                return writer, frames
            await self.aclose()  # the receiver closed it after the last ACK
        address = self._address
        try:
            async with asyncio.timeout(self._timeout_s):
                reader, writer = await asyncio.open_connection(address.host, address.port)
        except (OSError, TimeoutError) as exc:
            why = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
            raise ConfigError(
                f"cannot connect to {address}: {why}",
                key="--mllp",
                hint="check the address and that the receiver is listening",
            ) from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader, self._writer = reader, writer
        self._frames = FrameReader(
            reader,
            max_bytes=_MAX_ACK_BYTES,
            idle_timeout_s=self._timeout_s,
            read_timeout_s=self._timeout_s,
        )
        return writer, self._frames

    async def aclose(self) -> None:
        writer = self._writer
        self._reader = self._writer = self._frames = None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(5):
                    await writer.wait_closed()


async def _send_all(
    address: Address, messages: Sequence[Message], timeout_s: float, charset: str, as_json: bool
) -> bool:
    connection = _Connection(address, timeout_s)
    accepted = True
    try:
        for message in messages:
            reply = await connection.exchange(message.content)
            result = _result(message, reply, charset)
            accepted &= bool(result["accepted"])
            print(json.dumps(result, ensure_ascii=False) if as_json else _line(result), flush=True)
    finally:
        await connection.aclose()
    return accepted


def _result(message: Message, reply: bytes | str, charset: str) -> dict[str, Any]:
    """What one exchange gave, as the JSON object printed for it."""
    result: dict[str, Any] = {
        "file": message.file,
        "message": message.number,
        "control_id": _control_id(message.content, charset),
        "accepted": False,
        "ack_code": None,
        "ack_control_id": None,
        "error_code": None,
        "error_location": None,
        "text": None,
        "problem": None,
        "ack": None,
    }
    if isinstance(reply, str):
        result["problem"] = reply
        return result
    result["ack"] = _ack_text(reply, charset)
    try:
        ack: AckResult = parse_ack(reply)
    except InputError as exc:
        result["problem"] = f"garbled ACK ({exc.message})"
        return result
    result.update(
        accepted=ack.code in _ACCEPTED,
        ack_code=ack.code,
        ack_control_id=ack.control_id,
        error_code=ack.error_code,
        error_location=ack.error_location,
        text=ack.text,
    )
    return result


def _line(result: dict[str, Any]) -> str:
    line = f"{result['file']}#{result['message']} MSH-10={result['control_id'] or '?'} -> "
    if result["problem"] is not None:
        return line + str(result["problem"])
    line += f"{result['ack_code']} {result['ack_control_id'] or '-'}"
    if result["error_code"] or result["error_location"]:
        line += f" [{result['error_code'] or '-'}/{result['error_location'] or '-'}]"
    if result["text"] and not result["accepted"]:
        line += " " + " ".join(str(result["text"]).split())
    return line


def _control_id(content: bytes, charset: str) -> str | None:
    with contextlib.suppress(InputError):
        return read_header(content, charset, strict=False).control_id
    return None


def _ack_text(reply: bytes, charset: str) -> str:
    """The ACK decoded by its MSH-18, else by --charset; undecodable bytes are replaced."""
    codec = charset
    with contextlib.suppress(InputError):
        codec = charset_codec(read_header(reply, codec, strict=False).charset) or codec
    return reply.decode(codec, "replace")


# --- argument types -----------------------------------------------------------------------------


def _address(text: str) -> Address:
    host, _, port = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT, e.g. 127.0.0.1:2575")
    return Address(host, int(port))


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _charset(text: str) -> str:
    """An HL7 table 0211 name or a Python codec name, as the Python codec name."""
    codec = channel_codec(text)
    if codec is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a known charset, e.g. utf-8, gb18030")
    return codec


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a file")
    return path
