"""What the analyser protocols cost: ASTM frames checked and messages read per second, POCT1-A2
messages split and read per second, and whole ASTM / POCT1-A2 conversations per second over a
local socket into a journal stand-in (framing, ACK/NAK and parsing; no database).

Usage: .venv/bin/python bench/analysers.py [--seconds 3]
Prints figures only; a troponin analyser sends a few messages an hour, so these say how much
headroom a busy ED's analysers leave, not a target.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.astm import AstmSourceConfig, AstmSourceFactory
from adapters.poct1a import Poct1aSourceConfig, Poct1aSourceFactory
from devices.astm import build_frames, parse_frame, parse_message, results_document
from devices.poct import MessageSplitter
from devices.poct import results_document as poct_results
from engine.connectors import ConnectorContext, Inbound, Receipt
from tests.devices.analysers import (
    AstmAnalyser,
    PoctDevice,
    astm_results,
    poct_hello,
    poct_observations,
)


def rate(work: Callable[[], object], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        work()
        count += 1
    return count / (time.perf_counter() - start)


class Accept:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, inbound: Inbound) -> Receipt:
        self.count += 1
        return Receipt(message_id=self.count, duplicate=False)


async def conversations(seconds: float) -> tuple[float, float]:
    import tempfile

    from sqlalchemy.ext.asyncio import create_async_engine

    with tempfile.TemporaryDirectory() as folder:
        database = create_async_engine(f"sqlite+aiosqlite:///{folder}/unused.db")
        context = ConnectorContext(channel="bench", data_dir=Path(folder), database=database)
        astm = AstmSourceFactory().build(AstmSourceConfig(kind="astm", port=0), context)
        poct = Poct1aSourceFactory().build(Poct1aSourceConfig(kind="poct1a", port=0), context)
        message, observations = astm_results(), poct_observations()
        figures = []
        for source in (astm, poct):
            accept = Accept()
            await source.start()
            task = asyncio.create_task(source.serve(accept))
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                if source is astm:
                    async with AstmAnalyser(source.port) as analyser:
                        await analyser.send_message(message)
                else:
                    async with PoctDevice(source.port) as device:
                        await device.conversation(observations)
                done += 1
            figures.append(done / (time.perf_counter() - start))
            task.cancel()
            await source.aclose()
        await database.dispose()
    return figures[0], figures[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    seconds = parser.parse_args().seconds
    message = astm_results()
    frames = build_frames(message)
    journalled = poct_hello() + poct_observations()
    print(
        f"ASTM frames checked:           {rate(lambda: parse_frame(frames[0]), seconds):>10.0f} /s"
    )
    print(
        "ASTM messages read (H..L):     "
        f"{rate(lambda: results_document(parse_message(message), message), seconds):>10.0f} /s"
    )
    print(
        "POCT1-A2 streams split:        "
        f"{rate(lambda: MessageSplitter().feed(journalled), seconds):>10.0f} /s"
    )
    read = rate(lambda: poct_results(journalled), seconds)
    print(f"POCT1-A2 HEL+OBS read:         {read:>10.0f} /s")
    astm_rate, poct_rate = asyncio.run(conversations(seconds))
    print(f"ASTM transfers over TCP:       {astm_rate:>10.1f} /s  (ENQ, 6 frames, EOT)")
    print(f"POCT1-A2 conversations on TCP: {poct_rate:>10.1f} /s  (HEL..END, one OBS)")


if __name__ == "__main__":
    main()
