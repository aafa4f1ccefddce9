"""Tests for adapters.mllp on real sockets, with python-hl7's clients and server as the peers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import hl7
import pytest
from hl7.mllp import open_hl7_connection, start_hl7_server
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.mllp import (
    MllpDestinationConfig,
    MllpDestinationFactory,
    MllpSource,
    MllpSourceConfig,
    MllpSourceFactory,
)
from engine.connectors import ConnectorContext, Inbound, Outbound, Receipt
from engine.errors import (
    ConfigError,
    DecodeError,
    FramingError,
    RejectedDeliveryError,
    RetryableDeliveryError,
)

pytestmark = pytest.mark.anyio

SB, EB, CR = b"\x0b", b"\x1c", b"\r"
WAIT_S = 10  # an upper bound so a broken build fails instead of hanging, never a timing assert


def adt(control_id: str, *, accept_ack: str = "", charset: str = "", name: str = "DOE^JOHN") -> str:
    return (
        f"MSH|^~\\&|HIS|CPC|GC|GCF|20240501083000+0800||ADT^A01^ADT_A01|{control_id}|P|"
        f"2.5.1|||{accept_ack}|||{charset}\r"
        f"PID|1||P123^^^HIS^MR||{name}||19800101|M\r"
    )


class Journal:
    """Stands in for the engine's accept(): records inbounds and numbers them like journal rows."""

    def __init__(self) -> None:
        self.inbounds: list[Inbound] = []
        self.arrived = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.crash_on: str | None = None

    async def __call__(self, inbound: Inbound) -> Receipt:
        self.inbounds.append(inbound)
        self.arrived.set()
        if self.crash_on is not None and inbound.correlation_id == self.crash_on:
            # Lower layers quote payloads in their errors (SQLAlchemy shows parameters).
            raise RuntimeError(f"cannot store {inbound.raw.decode()}")
        if self.gate is not None:
            await self.gate.wait()
        return Receipt(message_id=len(self.inbounds), duplicate=False)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(WAIT_S):
            while len(self.inbounds) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def context(tmp_path: Path) -> AsyncIterator[ConnectorContext]:
    database = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}")
    yield ConnectorContext(channel="his-adt", data_dir=tmp_path, database=database)
    await database.dispose()


@contextlib.asynccontextmanager
async def serving(
    context: ConnectorContext, accept: Journal, **options: Any
) -> AsyncIterator[MllpSource]:
    config = MllpSourceConfig(kind="mllp", host="127.0.0.1", port=0, **options)
    source = MllpSourceFactory().build(config, context)
    await source.start()
    async with asyncio.TaskGroup() as group:
        task = group.create_task(source.serve(accept))
        try:
            yield source
        finally:
            task.cancel()
            await source.aclose()


async def exchange(port: int, *messages: bytes) -> list[hl7.Message]:
    """Send framed messages with python-hl7's asyncio client; return the parsed ACKs."""
    reader, writer = await open_hl7_connection("127.0.0.1", port)
    try:
        acks = []
        async with asyncio.timeout(WAIT_S):
            for message in messages:
                writer.writeblock(message)
                await writer.drain()
                acks.append(hl7.parse(await reader.readblock()))
        return acks
    finally:
        writer.close()
        await writer.wait_closed()


async def raw_exchange(port: int, data: bytes, *, replies: int = 1) -> list[hl7.Message]:
    """Send raw bytes (framing is the test's business) and read `replies` MLLP blocks back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        acks = []
        async with asyncio.timeout(WAIT_S):
            for _ in range(replies):
                block = await reader.readuntil(EB + CR)
                acks.append(hl7.parse(block.strip(SB + EB + CR).decode()))
        return acks
    finally:
        writer.close()
        await writer.wait_closed()


def msa(ack: hl7.Message) -> tuple[str, str]:
    return str(ack.segment("MSA")[1]), str(ack.segment("MSA")[2])


def err(ack: hl7.Message) -> tuple[str, str, str]:
    """ERR-2, ERR-3.1 and ERR-8 (unescaped)."""
    segment = ack.segment("ERR")
    return str(segment[2]), str(segment[3][0][0]), ack.unescape(str(segment[8]))


# --- source: the happy path ---------------------------------------------------------------------


async def test_ack_is_sent_only_after_accept_returns(context: ConnectorContext) -> None:
    journal = Journal()
    journal.gate = asyncio.Event()
    async with serving(context, journal) as source:
        reader, writer = await open_hl7_connection("127.0.0.1", source.port)
        writer.writeblock(adt("MSG1").encode())
        await writer.drain()
        await journal.wait_for(1)
        ack = asyncio.ensure_future(reader.readblock())
        await asyncio.sleep(0.05)
        assert not ack.done()  # the journal has not committed: no ACK yet
        journal.gate.set()
        async with asyncio.timeout(WAIT_S):
            assert msa(hl7.parse(await ack)) == ("AA", "MSG1")
        writer.close()
        await writer.wait_closed()


async def test_inbound_carries_raw_bytes_and_wire_facts(context: ConnectorContext) -> None:
    journal = Journal()
    async with serving(context, journal) as source:
        [ack] = await exchange(source.port, adt("MSG1").encode())
    [inbound] = journal.inbounds
    assert inbound.raw == adt("MSG1").encode()
    assert inbound.media_type == "x-application/hl7-v2+er7"
    assert inbound.origin.startswith("mllp://127.0.0.1:")
    assert inbound.received_at.utcoffset() is not None
    assert (inbound.dedup_key, inbound.correlation_id, inbound.charset) == (
        "CPC|MSG1",
        "MSG1",
        "utf-8",
    )
    assert inbound.problem is None
    assert str(ack.segment("MSH")[10]) == "1"  # the ACK's MSH-10 is the journal row


async def test_mllp_send_gets_an_aa_per_message(context: ConnectorContext, tmp_path: Path) -> None:
    journal = Journal()
    messages = [adt(f"CLI{n}") for n in range(3)]
    file = tmp_path / "batch.hl7"
    file.write_bytes(b"".join(SB + m.encode() + EB + CR for m in messages))
    mllp_send = Path(sys.executable).parent / "mllp_send"
    async with serving(context, journal) as source:
        process = await asyncio.create_subprocess_exec(
            str(mllp_send),
            "--port",
            str(source.port),
            "--file",
            str(file),
            "127.0.0.1",
            stdout=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(WAIT_S):
            output, _ = await process.communicate()
    assert process.returncode == 0
    for n in range(3):
        assert f"MSA|AA|CLI{n}".encode() in output
    # mllp_send strips the final CR of each message; the journal keeps what arrived.
    assert [i.raw for i in journal.inbounds] == [m.encode().rstrip(CR) for m in messages]


async def test_gb18030_message_is_acked_in_its_charset(context: ConnectorContext) -> None:
    journal = Journal()
    raw = adt("GB1", charset="GB 18030-2000", name="张三").encode("gb18030")
    async with serving(context, journal) as source:
        reader, writer = await open_hl7_connection("127.0.0.1", source.port)
        writer.writeblock(raw)
        async with asyncio.timeout(WAIT_S):
            ack = (await reader.readblock()).decode("gb18030")
        writer.close()
        await writer.wait_closed()
    assert "MSA|AA|GB1" in ack
    assert "|GB 18030-2000" in ack.split("\r")[0]
    assert journal.inbounds[0].charset == "gb18030"
    assert journal.inbounds[0].raw == raw


async def test_channel_default_charset_decodes_messages_without_msh_18(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    gb_context = dataclasses.replace(context, default_charset="GB 18030-2000")
    raw = adt("GB2", name="李四").encode("gb18030")
    async with serving(gb_context, journal) as source:
        [ack] = await exchange(source.port, raw)
    assert msa(ack) == ("AA", "GB2")
    assert (journal.inbounds[0].charset, journal.inbounds[0].problem) == ("gb18030", None)


async def test_a_nak_for_a_missing_control_id_is_still_addressed(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    async with serving(context, journal) as source:
        [ack] = await exchange(source.port, adt("").encode())
    msh = ack.segment("MSH")
    assert [str(msh[n]) for n in (3, 4, 5, 6)] == ["GC", "GCF", "HIS", "CPC"]
    assert msa(ack) == ("AE", "")


async def test_messages_on_one_connection_are_handled_in_order(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    async with serving(context, journal) as source:
        acks = await exchange(source.port, *(adt(f"M{n}").encode() for n in range(20)))
    assert [msa(a) for a in acks] == [("AA", f"M{n}") for n in range(20)]
    assert [i.correlation_id for i in journal.inbounds] == [f"M{n}" for n in range(20)]


async def test_many_concurrent_connections_each_get_their_acks(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    async with serving(context, journal) as source:
        results = await asyncio.gather(
            *(
                exchange(source.port, *(adt(f"C{c}-{n}").encode() for n in range(5)))
                for c in range(40)
            )
        )
    for c, acks in enumerate(results):
        assert [msa(a) for a in acks] == [("AA", f"C{c}-{n}") for n in range(5)]
    assert len(journal.inbounds) == 200
    for c in range(40):
        ids = [i.correlation_id or "" for i in journal.inbounds]
        mine = [i for i in ids if i.startswith(f"C{c}-")]
        assert mine == [f"C{c}-{n}" for n in range(5)]


async def test_msh_15_ne_gets_no_ack(context: ConnectorContext) -> None:
    journal = Journal()
    async with serving(context, journal) as source:
        reader, writer = await open_hl7_connection("127.0.0.1", source.port)
        writer.writeblock(adt("QUIET", accept_ack="NE").encode())
        writer.writeblock(adt("LOUD", accept_ack="AL").encode())
        async with asyncio.timeout(WAIT_S):
            first = hl7.parse(await reader.readblock())
        writer.close()
        await writer.wait_closed()
    assert msa(first) == ("CA", "LOUD")  # enhanced mode; nothing came back for QUIET
    assert [i.correlation_id for i in journal.inbounds] == ["QUIET", "LOUD"]


async def test_ack_mode_never_sends_nothing_but_journals(context: ConnectorContext) -> None:
    journal = Journal()
    async with serving(context, journal, ack_mode="never") as source:
        reader, writer = await asyncio.open_connection("127.0.0.1", source.port)
        writer.write(SB + adt("A").encode() + EB + CR)
        await journal.wait_for(1)
        writer.close()  # our side ends; the source sees EOF and closes quietly
        await writer.wait_closed()
    assert journal.inbounds[0].problem is None


# --- source: bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "code", "erl", "err3", "reason"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "AR", "MSH^1", "100", "does not start with an MSH"),
        (b"MSH|^~|HIS|CPC\r", "AR", "MSH^1^2", "102", "encoding characters"),
        (adt("").encode(), "AE", "MSH^1^10", "101", "control id is required"),
        (adt("X").replace("ADT^A01^ADT_A01", "").encode(), "AE", "MSH^1^9", "101", "type"),
        (adt("X", charset="KLINGON").encode(), "AE", "MSH^1^18", "103", "character set"),
        (
            adt("X", charset="UNICODE UTF-8", name="XX").encode().replace(b"XX", b"\xe5\xbc"),
            "AE",
            "PID^1^5",
            "102",
            "are not valid utf-8 (MSH-18)",
        ),
    ],
)
async def test_bad_messages_get_a_nak_with_err_and_are_journalled(
    context: ConnectorContext, content: bytes, code: str, erl: str, err3: str, reason: str
) -> None:
    journal = Journal()
    async with serving(context, journal) as source:
        acks = await exchange(source.port, content, adt("NEXT").encode())
    ack = acks[0]
    assert msa(ack)[0] == code
    location, number, text = err(ack)
    assert (location, number) == (erl, err3)
    assert reason in text
    assert msa(acks[1]) == ("AA", "NEXT")  # the connection survives a bad message
    bad = journal.inbounds[0]
    assert bad.raw == content
    assert bad.problem is not None
    assert bad.dedup_key is None


async def test_undecodable_bytes_are_reported_with_offset(context: ConnectorContext) -> None:
    journal = Journal()
    raw = adt("GBX", charset="GB 18030-2000").encode().replace(b"DOE", b"D\x81\x20")
    async with serving(context, journal) as source:
        [ack] = await exchange(source.port, raw)
    problem = journal.inbounds[0].problem
    assert isinstance(problem, DecodeError)
    assert (problem.charset, problem.offset) == ("gb18030", raw.index(b"\x81"))
    assert msa(ack) == ("AE", "GBX")
    assert "not valid gb18030" in err(ack)[2]


async def test_junk_without_a_start_block_gets_ar(context: ConnectorContext) -> None:
    journal = Journal()
    async with serving(context, journal) as source:
        acks = await raw_exchange(
            source.port, b"hello" + EB + CR + SB + adt("OK").encode() + EB + CR, replies=2
        )
    assert msa(acks[0]) == ("AR", "")
    assert "no MLLP start block" in err(acks[0])[2]
    assert msa(acks[1]) == ("AA", "OK")
    assert journal.inbounds[0].raw == b"hello"
    assert isinstance(journal.inbounds[0].problem, FramingError)


async def test_junk_before_a_start_block_is_skipped(context: ConnectorContext) -> None:
    journal = Journal()
    async with serving(context, journal) as source:
        [ack] = await raw_exchange(source.port, b"\x00noise" + SB + adt("OK").encode() + EB + CR)
    assert msa(ack) == ("AA", "OK")
    assert [i.raw for i in journal.inbounds] == [adt("OK").encode()]


async def test_an_oversized_block_is_refused_and_its_head_journalled(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    big = adt("BIG").encode() + b"NTE|1||" + b"x" * 5000 + CR
    async with serving(context, journal, max_message_bytes=1000) as source:
        acks = await exchange(source.port, big, adt("SMALL").encode())
    assert msa(acks[0]) == ("AR", "BIG")
    assert "max_message_bytes (1000 bytes)" in err(acks[0])[2]
    assert msa(acks[1]) == ("AA", "SMALL")
    oversized = journal.inbounds[0]
    assert oversized.raw == big[:1000]
    assert isinstance(oversized.problem, FramingError)
    assert "truncated" in oversized.problem.reason


async def test_half_a_frame_then_eof_is_journalled_as_a_problem(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    async with serving(context, journal) as source:
        reader, writer = await asyncio.open_connection("127.0.0.1", source.port)
        writer.write(SB + adt("HALF").encode()[:40])
        await writer.drain()
        writer.write_eof()
        async with asyncio.timeout(WAIT_S):
            assert await reader.read() == b""  # closed, nothing to answer
        writer.close()
        await writer.wait_closed()
        await journal.wait_for(1)
    [inbound] = journal.inbounds
    assert inbound.raw == adt("HALF").encode()[:40]
    assert isinstance(inbound.problem, FramingError)


async def test_a_silent_client_is_closed_when_idle(context: ConnectorContext) -> None:
    journal = Journal()
    async with serving(context, journal, idle_timeout_s=0.2) as source:
        reader, writer = await asyncio.open_connection("127.0.0.1", source.port)
        async with asyncio.timeout(WAIT_S):
            assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
    assert journal.inbounds == []


async def test_a_crashing_accept_closes_only_its_connection(
    context: ConnectorContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="adapters.mllp")
    journal = Journal()
    journal.crash_on = "CRASH"
    async with serving(context, journal) as source:
        reader, writer = await open_hl7_connection("127.0.0.1", source.port)
        healthy = await open_hl7_connection("127.0.0.1", source.port)
        writer.writeblock(adt("CRASH", name="张三^^^^^^L").encode())
        async with asyncio.timeout(WAIT_S):
            assert await reader.read() == b""  # closed without an ACK
        writer.close()
        await writer.wait_closed()
        # the other connection and new ones are still served
        healthy[1].writeblock(adt("STILL").encode())
        async with asyncio.timeout(WAIT_S):
            assert msa(hl7.parse(await healthy[0].readblock())) == ("AA", "STILL")
        healthy[1].close()
        await healthy[1].wait_closed()
        [ack] = await exchange(source.port, adt("NEW").encode())
        assert msa(ack) == ("AA", "NEW")
    failures = [r for r in caplog.records if r.getMessage() == "mllp.connection.failed"]
    assert len(failures) == 1
    for record in caplog.records:
        assert "张三" not in str(record.__dict__)


async def test_more_connections_than_allowed_are_closed(context: ConnectorContext) -> None:
    journal = Journal()
    async with serving(context, journal, max_connections=1) as source:
        first = await open_hl7_connection("127.0.0.1", source.port)
        first[1].writeblock(adt("ONE").encode())
        async with asyncio.timeout(WAIT_S):
            await first[0].readblock()  # the first connection is being served
        reader, writer = await asyncio.open_connection("127.0.0.1", source.port)
        async with asyncio.timeout(WAIT_S):
            assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        first[1].close()
        await first[1].wait_closed()


async def test_aclose_closes_open_connections(context: ConnectorContext) -> None:
    journal = Journal()
    async with serving(context, journal) as source:
        reader, writer = await asyncio.open_connection("127.0.0.1", source.port)
        writer.write(SB + adt("A").encode() + EB + CR)
        await journal.wait_for(1)
        await source.aclose()
        async with asyncio.timeout(WAIT_S):
            while await reader.read(4096):
                pass  # the ACK, then EOF
        writer.close()
        await writer.wait_closed()


async def test_a_port_in_use_is_a_config_error(context: ConnectorContext) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = MllpSourceConfig(kind="mllp", host="127.0.0.1", port=port)
        source = MllpSourceFactory().build(config, context)
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
            await source.start()
        await source.aclose()


# --- destination --------------------------------------------------------------------------------

Answer = Callable[[hl7.Message], Awaitable[str | None]]


@contextlib.asynccontextmanager
async def receiver(answer: Answer) -> AsyncIterator[tuple[int, list[int]]]:
    """A small MLLP server built on python-hl7; yields its port and a connection counter."""
    connections: list[int] = []

    async def handle(reader: Any, writer: Any) -> None:
        connections.append(1)
        with contextlib.suppress(Exception):
            while True:
                message = hl7.parse((await reader.readblock()).decode())
                reply = await answer(message)
                if reply == "close":
                    break
                if reply is not None:
                    writer.writeblock(reply.encode())
                    await writer.drain()
        writer.close()

    server = await start_hl7_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], connections
    finally:
        server.close()
        await server.wait_closed()


def ack_for(message: hl7.Message, code: str, *, control_id: str | None = None) -> str:
    echoed = control_id if control_id is not None else str(message.segment("MSH")[10])
    text = (
        "MSH|^~\\&|GC|GCF|HIS|CPC|20240501083000+0800||ACK^A01^ACK|R1|P|2.5.1\r"
        f"MSA|{code}|{echoed}\r"
    )
    if code != "AA":
        text += "ERR||PID^1^5|101^Required field missing^HL70357|E||||name missing\r"
    return text


def outbound(control_id: str) -> Outbound:
    return Outbound(
        message_id=7,
        channel="his-adt",
        destination="lis",
        payload=adt(control_id).encode(),
        media_type="x-application/hl7-v2+er7",
        attempt=1,
    )


def destination(context: ConnectorContext, port: int, **options: Any) -> Any:
    config = MllpDestinationConfig(kind="mllp", host="127.0.0.1", port=port, **options)
    return MllpDestinationFactory().build(config, context)


async def test_aa_is_delivered_and_the_connection_is_reused(context: ConnectorContext) -> None:
    async def answer(message: hl7.Message) -> str:
        return ack_for(message, "AA")

    async with receiver(answer) as (port, connections):
        sender = destination(context, port)
        try:
            replies = [await sender.send(outbound(f"D{n}")) for n in range(3)]
        finally:
            await sender.aclose()
    assert [b"MSA|AA|D%d" % n in r.reply for n, r in enumerate(replies)] == [True] * 3
    assert len(connections) == 1


async def test_ae_is_rejected_unless_configured_retryable(context: ConnectorContext) -> None:
    async def answer(message: hl7.Message) -> str:
        return ack_for(message, "AE")

    async with receiver(answer) as (port, _):
        sender = destination(context, port)
        with pytest.raises(RejectedDeliveryError, match="answered AE") as caught:
            await sender.send(outbound("E1"))
        assert "PID^1^5" in str(caught.value)
        assert "name missing" not in str(caught.value)  # the peer's text may hold patient data
        await sender.aclose()
        retrying = destination(context, port, retry_on=["AE"])
        with pytest.raises(RetryableDeliveryError):
            await retrying.send(outbound("E2"))
        await retrying.aclose()


async def test_a_silent_receiver_is_retried(context: ConnectorContext) -> None:
    async def answer(message: hl7.Message) -> None:
        return None

    async with receiver(answer) as (port, _):
        sender = destination(context, port, timeout_s=0.3)
        with pytest.raises(RetryableDeliveryError, match="no ACK"):
            await sender.send(outbound("S1"))
        await sender.aclose()


async def test_a_refused_connection_is_retried(context: ConnectorContext) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    sender = destination(context, port)
    with pytest.raises(RetryableDeliveryError):
        await sender.send(outbound("R1"))
    await sender.aclose()


async def test_wrong_msa_2_or_garbled_ack_is_retried(context: ConnectorContext) -> None:
    replies = iter(["wrong", "garbled", "ok"])

    async def answer(message: hl7.Message) -> str:
        kind = next(replies)
        if kind == "wrong":
            return ack_for(message, "AA", control_id="SOMETHING-ELSE")
        if kind == "garbled":
            return "this is not an ACK"
        return ack_for(message, "AA")

    async with receiver(answer) as (port, connections):
        sender = destination(context, port)
        with pytest.raises(RetryableDeliveryError, match="MSA-2"):
            await sender.send(outbound("W1"))
        with pytest.raises(RetryableDeliveryError, match="garbled"):
            await sender.send(outbound("W1"))
        delivered = await sender.send(outbound("W1"))
        await sender.aclose()
    assert b"MSA|AA|W1" in (delivered.reply or b"")
    assert len(connections) == 3  # each failure dropped the connection


async def test_a_receiver_that_hangs_up_is_reconnected(context: ConnectorContext) -> None:
    async def answer(message: hl7.Message) -> str:
        return "close" if str(message.segment("MSH")[10]) == "H1" else ack_for(message, "AA")

    async with receiver(answer) as (port, connections):
        sender = destination(context, port)
        with pytest.raises(RetryableDeliveryError):
            await sender.send(outbound("H1"))
        delivered = await sender.send(outbound("H2"))
        await sender.aclose()
    assert b"MSA|AA|H2" in (delivered.reply or b"")
    assert len(connections) == 2


async def test_a_payload_that_is_not_hl7_is_rejected_before_sending(
    context: ConnectorContext,
) -> None:
    sender = destination(context, 9)
    bad = Outbound(
        message_id=1,
        channel="c",
        destination="d",
        payload=b"{}",
        media_type="application/json",
        attempt=1,
    )
    with pytest.raises(RejectedDeliveryError):
        await sender.send(bad)
    await sender.aclose()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_destination_delivers_to_the_source_over_tls(
    context: ConnectorContext, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    journal = Journal()
    tls = {"cert_file": cert, "key_file": key}
    async with serving(context, journal, tls=tls) as source:
        sender = destination(context, source.port, tls={"ca_file": cert})
        try:
            delivered = await sender.send(outbound("TLS1"))
        finally:
            await sender.aclose()
        untrusting = destination(context, source.port, tls={})
        with pytest.raises(RetryableDeliveryError):
            await untrusting.send(outbound("TLS2"))  # the system store does not know our CA
        await untrusting.aclose()
    assert b"MSA|AA|TLS1" in (delivered.reply or b"")
    assert [i.correlation_id for i in journal.inbounds] == ["TLS1"]


def test_config_models_forbid_unknown_keys() -> None:
    with pytest.raises(ValueError):
        MllpSourceConfig.model_validate({"kind": "mllp", "port": 2575, "prot": 1})
    with pytest.raises(ValueError):
        MllpDestinationConfig.model_validate(
            {"kind": "mllp", "host": "lis", "port": 2575, "retry_on": ["XX"]}
        )
    schema = MllpSourceConfig.model_json_schema()
    assert all("description" in p for p in schema["properties"].values())


# --- batches: FHS/BHS ... BTS/FTS in one block ---------------------------------------------------


def batch(*messages: str, file_header: bool = True) -> bytes:
    header = "FHS|^~\\&|HIS|CPC|GC|GCF|20240501083000+0800||||F-77\r" if file_header else ""
    trailer = "FTS|1\r" if file_header else ""
    return (
        header
        + "BHS|^~\\&|HIS|CPC|GC|GCF|20240501083000+0800||||B-42\r"
        + "".join(messages)
        + f"BTS|{len(messages)}\r"
        + trailer
    ).encode()


async def raw_reply(port: int, data: bytes) -> list[list[str]]:
    """One framed block out, one back; the reply's segments split into fields (no hl7 parser)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(SB + data + EB + CR)
        await writer.drain()
        async with asyncio.timeout(WAIT_S):
            block = await reader.readuntil(EB + CR)
        text = block.strip(SB + EB + CR).decode()
        return [segment.split("|") for segment in text.split("\r") if segment]
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_batch_block_is_journalled_per_message_and_answered_with_a_batch_ack(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    ids = ["B1", "B2", "B3"]
    async with serving(context, journal) as source:
        reply = await raw_reply(source.port, batch(*(adt(i) for i in ids)))
    # each message is its own journal row, with its own dedup key, in order
    assert [inbound.correlation_id for inbound in journal.inbounds] == ids
    assert all(inbound.raw.startswith(b"MSH|") for inbound in journal.inbounds)
    assert all(b"BHS" not in i.raw and b"BTS" not in i.raw for i in journal.inbounds)
    assert len({inbound.dedup_key for inbound in journal.inbounds}) == len(ids)
    # the answer: FHS, BHS naming the batch it answers, one ACK per message, BTS/FTS with counts
    names = [fields[0] for fields in reply]
    assert names == ["FHS", "BHS"] + ["MSH", "MSA"] * len(ids) + ["BTS", "FTS"]
    fhs, bhs = reply[0], reply[1]
    assert fhs[11] == "F-77" and bhs[11] == "B-42"  # FHS-12 / BHS-12 = the original's -11
    assert bhs[2:6] == ["GC", "GCF", "HIS", "CPC"]  # sender and receiver swapped
    assert [fields[1:3] for fields in reply if fields[0] == "MSA"] == [["AA", i] for i in ids]
    assert reply[-2] == ["BTS", str(len(ids))] and reply[-1] == ["FTS", "1"]


async def test_a_bad_message_in_a_batch_gets_its_own_nak_and_the_others_aa(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    bad = adt("B2").replace("ADT^A01^ADT_A01|B2", "|B2")  # no message type
    async with serving(context, journal) as source:
        reply = await raw_reply(source.port, batch(adt("B1"), bad, adt("B3"), file_header=False))
    assert len(journal.inbounds) == 3 and journal.inbounds[1].problem is not None
    assert [fields[0] for fields in reply][:1] == ["BHS"] and reply[-1][0] == "BTS"
    codes = [fields[1] for fields in reply if fields[0] == "MSA"]
    assert codes[0] == "AA" and codes[1] in ("AE", "AR") and codes[2] == "AA"
    assert any(fields[0] == "ERR" and fields[2].startswith("MSH^1^9") for fields in reply)


async def test_a_batch_without_messages_is_journalled_whole_as_before(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    empty = b"BHS|^~\\&|HIS|CPC|GC|GCF|20240501083000+0800||||B-0\rBTS|0\r"
    async with serving(context, journal) as source:
        reply = await raw_reply(source.port, empty)
    assert len(journal.inbounds) == 1 and journal.inbounds[0].raw == empty
    assert [fields[0] for fields in reply][:1] == ["MSH"]  # a plain ACK/NAK as for any block


# --- strict mode ---------------------------------------------------------------------------


async def test_strict_mode_naks_a_message_off_its_structure_naming_segment_and_field(
    context: ConnectorContext,
) -> None:
    journal = Journal()
    # a valid ADT_A01 needs EVN and PV1 besides MSH and PID
    good = adt("S1").replace("PID|", "EVN|A01|20240501083000+0800\rPID|", 1) + "PV1|1|I\r"
    bad = good.replace("|S1|", "|S2|").replace("19800101", "1980-01-01")  # not an HL7 DT
    async with serving(context, journal, strict=True) as source:
        acks = await exchange(source.port, good.encode(), bad.encode())
    assert msa(acks[0]) == ("AA", "S1")
    assert msa(acks[1]) == ("AE", "S2")
    location, code, _ = err(acks[1])
    assert location == "PID^1^7" and code == "102"  # ERR-2 = PID-7, data type error
    assert journal.inbounds[1].problem is not None  # journalled as an error, kept for a fix


async def test_without_strict_mode_the_same_message_is_accepted(context: ConnectorContext) -> None:
    journal = Journal()
    sloppy = adt("S3").replace("19800101", "1980-01-01")
    async with serving(context, journal) as source:
        (ack,) = await exchange(source.port, sloppy.encode())
    assert msa(ack) == ("AA", "S3")
