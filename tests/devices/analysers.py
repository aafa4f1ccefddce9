"""Simulated analysers for the device-source tests: the device side of ASTM E1381 and of the
POCT1-A2 conversation, over real TCP sockets, speaking the protocols as the standards describe
(the sender's timers, retransmission after NAK, ACK per message)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self, TypeVar

from sqlalchemy.ext.asyncio import create_async_engine

from adapters._tcp_listener import TcpListener
from devices.astm import ACK, ENQ, EOT, NAK, build_frames
from engine.connectors import ConnectorContext, Inbound, Receipt

__all__ = [
    "AstmAnalyser",
    "Journal",
    "PoctDevice",
    "astm_results",
    "connector_context",
    "poct_dst",
    "poct_eot",
    "poct_hello",
    "poct_observations",
    "serving",
]

WAIT_S = 15  # E1381's sender timer for an answer; an upper bound, never a timing assert


class Journal:
    """Stands in for the engine's accept(): records inbounds and numbers them like journal rows
    (the engine's own journal is exercised in test_device_channels.py)."""

    def __init__(self) -> None:
        self.inbounds: list[Inbound] = []
        self.arrived = asyncio.Event()
        self.gate: asyncio.Event | None = None

    async def __call__(self, inbound: Inbound) -> Receipt:
        self.inbounds.append(inbound)
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        return Receipt(message_id=len(self.inbounds), duplicate=False)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(WAIT_S):
            while len(self.inbounds) < count:
                self.arrived.clear()
                await self.arrived.wait()


SourceT = TypeVar("SourceT", bound=TcpListener)


@contextlib.asynccontextmanager
async def serving(source: SourceT, accept: Journal) -> AsyncIterator[SourceT]:
    """Run a socket source on 127.0.0.1 until the block ends."""
    await source.start()
    async with asyncio.TaskGroup() as group:
        task = group.create_task(source.serve(accept))
        try:
            yield source
        finally:
            task.cancel()
            await source.aclose()


@contextlib.asynccontextmanager
async def connector_context(folder: Path, channel: str) -> AsyncIterator[ConnectorContext]:
    """What the engine hands a source factory (UTF-8, +08:00), with an unused database."""
    database = create_async_engine(f"sqlite+aiosqlite:///{folder / 'unused.db'}")
    try:
        yield ConnectorContext(channel=channel, data_dir=folder, database=database)
    finally:
        await database.dispose()


def astm_results(
    *,
    patient_id: str = "10086",
    specimen: str = "S20261126001",
    results: tuple[tuple[str, str, str, str], ...] = (("hs-cTnI", "52.3", "ng/L", "H"),),
    collected: str = "20261126081000",
    completed: str = "20261126082300",
) -> bytes:
    """An E1394 message as a troponin/blood-gas analyser sends it: H P O R.. C L."""
    records = [
        "H|\\^&|||PATHFAST^2.1.0^PF-0042|||||LIS||P|LIS2-A2|20261126082400",
        f"P|1||{patient_id}||张^三||19580312|M",
        f"O|1|{specimen}||^^^{results[0][0]}|S||{collected}||||||||WB^Whole blood",
    ]
    for index, (code, value, unit, flag) in enumerate(results, start=1):
        records.append(
            f"R|{index}|^^^{code}|{value}|{unit}|0-26|{flag}||F||OP1||{completed}|PF-0042"
        )
    records.append("C|1|I|复查 &F& 已确认|G")
    records.append("L|1|N")
    return ("\r".join(records) + "\r").encode("utf-8")


@dataclass
class _Connection:
    """A device's TCP connection to a source on 127.0.0.1."""

    port: int
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Self:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.writer is not None
        self.writer.close()
        await self.writer.wait_closed()

    async def raw(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()


@dataclass
class AstmAnalyser(_Connection):
    """The sender side of E1381 on one TCP connection."""

    answers: list[bytes] = field(default_factory=list)  # ACK/NAK per frame, in order

    async def answer(self) -> bytes:
        assert self.reader is not None
        return await asyncio.wait_for(self.reader.readexactly(1), WAIT_S)

    async def establish(self) -> None:
        await self.raw(ENQ)
        assert await self.answer() == ACK

    async def send_frame(self, frame: bytes, *, corrupt_first: bool = False) -> bytes:
        """Send a frame; on NAK retransmit it (up to six tries, E1381 §6.3.4)."""
        attempt = frame
        if corrupt_first:
            attempt = frame[:-4] + (b"00" if frame[-4:-2] != b"00" else b"01") + frame[-2:]
        for _ in range(6):
            await self.raw(attempt)
            reply = await self.answer()
            self.answers.append(reply)
            if reply == ACK:
                return reply
            attempt = frame
        return NAK

    async def send_message(self, message: bytes, *, corrupt_frame: int | None = None) -> None:
        await self.establish()
        for index, frame in enumerate(build_frames(message)):
            assert await self.send_frame(frame, corrupt_first=index == corrupt_frame) == ACK
        await self.raw(EOT)


# --- POCT1-A2 ----------------------------------------------------------------------------------


def _header(message_type: str, control_id: int) -> str:
    return (
        f'<HDR><HDR.message_type V="{message_type}"/><HDR.control_id V="{control_id}"/>'
        f'<HDR.version_id V="POCT1"/><HDR.creation_dttm V="2026-11-26T08:24:00+08:00"/></HDR>'
    )


def poct_hello(control_id: int = 1, device_id: str = "ISTAT-0815") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><HEL.R01>{_header("HEL.R01", control_id)}'
        f'<DEV><DEV.device_id V="{device_id}"/><DEV.vendor_id V="ABBOTT"/>'
        f'<DEV.model_id V="i-STAT 1"/><DEV.serial_id V="SN-0815"/>'
        f'<DCP><DCP.application_timeout V="30"/></DCP>'
        f'<DSC><DSC.connection_profile_cd V="SA"/><DSC.topics_supported_cd V="OBS"/></DSC>'
        f"</DEV></HEL.R01>"
    ).encode()


def poct_dst(control_id: int = 2, waiting: int = 1) -> bytes:
    return (
        f"<DST.R01>{_header('DST.R01', control_id)}<DST>"
        f'<DST.status_dttm V="2026-11-26T08:24:00+08:00"/>'
        f'<DST.new_observations_qty V="{waiting}"/><DST.condition_cd V="R"/></DST></DST.R01>'
    ).encode()


def poct_observations(
    control_id: int = 3,
    *,
    patient_id: str = "10086",
    observed: str = "2026-11-26T08:21:00+08:00",
    results: tuple[tuple[str, str, str], ...] = (("cTnI", "0.12", "ng/mL"),),
    message_type: str = "OBS.R01",
) -> bytes:
    obs = "".join(
        f'<OBS><OBS.observation_id V="{code}" SN="ABBOTT"/><OBS.value V="{value}" U="{unit}"/>'
        f'<OBS.normal_lo-hi_limit V="0.00-0.08"/><OBS.interpretation_cd V="H"/></OBS>'
        for code, value, unit in results
    )
    patient = f'<PT><PT.patient_id V="{patient_id}"/>{obs}</PT>' if patient_id else obs
    return (
        f"<{message_type}>{_header(message_type, control_id)}<SVC>"
        f'<SVC.role_cd V="OBS"/><SVC.observation_dttm V="{observed}"/>'
        f'{patient}<OPR><OPR.operator_id V="N042"/></OPR></SVC></{message_type}>'
    ).encode()


def poct_eot(control_id: int = 4) -> bytes:
    body = '<EOT><EOT.topic_cd V="OBS"/></EOT>'
    return f"<EOT.R01>{_header('EOT.R01', control_id)}{body}</EOT.R01>".encode()


_ROOT_END = re.compile(rb"</(ACK|REQ|END|ESC)\.R01>")


@dataclass
class PoctDevice(_Connection):
    """The device side of a POCT1-A2 conversation on one TCP connection."""

    received: list[bytes] = field(default_factory=list)
    _buffer: bytes = b""

    async def receive(self) -> bytes:
        """The data manager's next message (ACK.R01, REQ.R01, END.R01)."""
        assert self.reader is not None
        while (match := _ROOT_END.search(self._buffer)) is None:
            chunk = await asyncio.wait_for(self.reader.read(65536), WAIT_S)
            if not chunk:
                raise ConnectionError("the data manager closed the connection")
            self._buffer += chunk
        message, self._buffer = self._buffer[: match.end()], self._buffer[match.end() :]
        self.received.append(message)
        return message

    async def exchange(self, message: bytes) -> bytes:
        await self.raw(message)
        return await self.receive()

    async def conversation(self, *observations: bytes) -> list[bytes]:
        """HEL, DST, (REQ from the manager) OBS..., EOT, (END): every answer, in order."""
        answers = [
            await self.exchange(poct_hello()),
            await self.exchange(poct_dst(waiting=len(observations))),
        ]
        if observations:
            answers.append(await self.receive())  # REQ.R01 ROBS
        for message in observations:
            answers.append(await self.exchange(message))
        answers.append(await self.exchange(poct_eot(control_id=90)))
        answers.append(await self.receive())  # END.R01
        return answers
