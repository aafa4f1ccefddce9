"""Tests for `greenchannel send` (adapters.send_command) against a real MLLP receiver on
127.0.0.1, driven through `engine.cli.main` as a user would run it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.hl7v2 import DataTypeError, build_ack, read_header
from adapters.mllp import FrameReader
from engine.cli import main

pytestmark = pytest.mark.anyio

SB, EB, CR = b"\x0b", b"\x1c", b"\r"
WAIT_S = 10  # an upper bound so a broken build fails instead of hanging, never a timing assert


def adt(control_id: str, name: str = "DOE^JOHN", charset: str = "") -> str:
    """One ADT^A04, segments ended by CR. MSH-10 "NAK…" gets AE, "SILENT…" gets no answer."""
    return (
        f"MSH|^~\\&|HIS|CPC|GC|GCF|20261125083000+0800||ADT^A04^ADT_A01|{control_id}|P|2.5.1"
        f"||||||{charset}\r"
        "EVN|A04|20261125083000+0800\r"
        f"PID|1||P123^^^HIS^MR||{name}||19800101|M\r"
    )


@dataclass
class Receiver:
    """A little MLLP receiver: answers AA, AE for MSH-10 "NAK…", nothing for "SILENT…"."""

    port: int = 0
    received: list[bytes] = field(default_factory=list)
    connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        frames = FrameReader(
            reader, max_bytes=1 << 20, idle_timeout_s=WAIT_S, read_timeout_s=WAIT_S
        )
        try:
            while (block := await frames.read_frame()) is not None:
                self.received.append(block.content)
                header = read_header(block.content)
                if header.control_id.startswith("SILENT"):
                    continue
                nak = header.control_id.startswith("NAK")
                ack = build_ack(
                    header,
                    "AE" if nak else "AA",
                    error=DataTypeError("not a valid date", location="PID-7") if nak else None,
                    control_id=f"ACK{len(self.received)}",
                    now=datetime.now(tz=UTC),
                )
                writer.write(SB + ack.encode() + EB + CR)
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    async with server:
        yield state
        server.close()


async def send(*args: str) -> int:
    """Run `greenchannel send ...` the way the console script does, off the test's loop."""
    async with asyncio.timeout(WAIT_S * 3):
        return await asyncio.to_thread(main, ["send", *args])


async def test_plain_file_with_lf_line_ends_sends_each_message_with_cr_segments(
    receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "three.hl7"
    text = "\n".join([adt("MSG1"), adt("MSG2"), adt("MSG3")]).replace("\r", "\n")
    path.write_bytes(text.encode())

    code = await send("--mllp", f"127.0.0.1:{receiver.port}", str(path))

    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{path}#1 MSH-10=MSG1 -> AA MSG1",
        f"{path}#2 MSH-10=MSG2 -> AA MSG2",
        f"{path}#3 MSH-10=MSG3 -> AA MSG3",
    ]
    assert receiver.received == [adt(f"MSG{n}").encode() for n in (1, 2, 3)]
    assert receiver.connections == 1


async def test_framed_file_is_sent_block_by_block_and_a_nak_exits_1(
    receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "framed.hl7"
    path.write_bytes(b"".join(SB + adt(i).encode() + EB + CR for i in ("OK1", "NAK2", "OK3")))

    code = await send("--mllp", f"127.0.0.1:{receiver.port}", str(path))

    assert code == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{path}#1 MSH-10=OK1 -> AA OK1"
    assert lines[1] == f"{path}#2 MSH-10=NAK2 -> AE NAK2 [102/PID^1^7] PID-7: not a valid date"
    assert lines[2] == f"{path}#3 MSH-10=OK3 -> AA OK3"
    assert receiver.received == [adt(i).encode() for i in ("OK1", "NAK2", "OK3")]


async def test_messages_from_several_files_share_one_connection(
    receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "a.hl7", tmp_path / "b.hl7"
    first.write_bytes(adt("A1").replace("\r", "\r\n").encode())
    second.write_bytes(SB + adt("B1").encode() + EB + CR)

    assert await send("--mllp", f"127.0.0.1:{receiver.port}", str(first), str(second)) == 0

    out = capsys.readouterr().out
    assert f"{first}#1 MSH-10=A1 -> AA A1" in out and f"{second}#1 MSH-10=B1 -> AA B1" in out
    assert receiver.connections == 1


async def test_batch_wrappers_are_skipped(
    receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "batch.hl7"
    batch = (
        "FHS|^~\\&|HIS|CPC|||20261125090000+0800\r\nBHS|^~\\&|HIS|CPC\r\n"
        + adt("B1").replace("\r", "\r\n")
        + adt("B2").replace("\r", "\r\n")
        + "BTS|2\r\nFTS|1\r\n"
    )
    path.write_bytes(batch.encode())

    assert await send("--mllp", f"127.0.0.1:{receiver.port}", str(path)) == 0

    assert receiver.received == [adt("B1").encode(), adt("B2").encode()]
    assert capsys.readouterr().out.count("-> AA") == 2


async def test_gb18030_bytes_are_sent_as_read(
    receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = adt("GB1", name="张^三", charset="GB18030").encode("gb18030")
    path = tmp_path / "gb.hl7"
    path.write_bytes(message.replace(b"\r", b"\n"))

    assert (
        await send("--mllp", f"127.0.0.1:{receiver.port}", "--charset", "gb18030", str(path)) == 0
    )

    assert receiver.received == [message]
    assert capsys.readouterr().out.splitlines() == [f"{path}#1 MSH-10=GB1 -> AA GB1"]


async def test_json_output_has_the_raw_ack(
    receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "two.hl7"
    path.write_bytes((adt("J1") + adt("NAK2")).encode())

    code = await send("--mllp", f"127.0.0.1:{receiver.port}", "--json", str(path))

    assert code == 1
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["control_id"] == "J1" and first["ack_code"] == "AA" and first["accepted"]
    assert "MSA|AA|J1" in first["ack"]
    assert second["ack_code"] == "AE" and not second["accepted"]
    assert second["error_code"] == "102" and second["error_location"] == "PID^1^7"
    assert "ERR|" in second["ack"]


async def test_no_ack_is_reported_exits_1_and_the_next_message_gets_a_new_connection(
    receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "silent.hl7"
    path.write_bytes((adt("SILENT1") + adt("AFTER2")).encode())

    code = await send("--mllp", f"127.0.0.1:{receiver.port}", "--timeout", "0.5", str(path))

    assert code == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}#1 MSH-10=SILENT1 -> no ACK within 0.5 s",
        f"{path}#2 MSH-10=AFTER2 -> AA AFTER2",
    ]
    assert receiver.connections == 2


async def test_a_refused_connection_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "one.hl7"
    path.write_bytes(adt("R1").encode())
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        port = bound_not_listening.getsockname()[1]
        code = await send("--mllp", f"127.0.0.1:{port}", str(path))

    assert code == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"cannot connect to 127.0.0.1:{port}" in captured.err


async def test_a_file_without_messages_exits_1_and_sends_nothing(
    receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good.hl7", tmp_path / "bad.hl7"
    good.write_bytes(adt("G1").encode())
    bad.write_bytes(b"PID|1||P123\nthis is not HL7\n")

    assert await send("--mllp", f"127.0.0.1:{receiver.port}", str(good), str(bad)) == 1

    assert receiver.received == []
    assert f"{bad} line 1: a segment comes before the first MSH" in capsys.readouterr().err


async def test_a_truncated_framed_file_names_the_byte(
    receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cut.hl7"
    data = SB + adt("T1").encode() + EB + CR + SB + adt("T2").encode()[:20]
    path.write_bytes(data)

    assert await send("--mllp", f"127.0.0.1:{receiver.port}", str(path)) == 1

    assert receiver.received == []
    assert f"{path} byte {data.rindex(SB)}: an MLLP block has no end block" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:http", ":2575", "host:70000"])
def test_a_bad_host_port_is_a_usage_error(
    address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "one.hl7"
    path.write_bytes(adt("U1").encode())
    with pytest.raises(SystemExit) as exit_info:
        main(["send", "--mllp", address, str(path)])
    assert exit_info.value.code == 2
    assert "is not HOST:PORT" in capsys.readouterr().err


def test_help_shows_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["send", "--help"])
    assert exit_info.value.code == 0
    assert "greenchannel send --mllp 127.0.0.1:2575" in capsys.readouterr().out
