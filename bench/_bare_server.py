"""python-hl7's bare asyncio MLLP server: parse every message and answer its ACK, store nothing.

The yardstick for bench/mllp_throughput.py: what MLLP + parse + ACK cost in Python without a
journal. Usage: python bench/_bare_server.py PORT
"""

from __future__ import annotations

import asyncio
import sys

import hl7.mllp


async def handle(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
    try:
        while not writer.is_closing():
            message = await reader.readmessage()
            writer.writemessage(message.create_ack())
            await writer.drain()
    except asyncio.IncompleteReadError:
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    async with await hl7.mllp.start_hl7_server(
        handle, host="127.0.0.1", port=port, encoding="utf-8"
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
