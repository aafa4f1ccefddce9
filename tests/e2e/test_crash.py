"""Crash test: `kill -9` under load loses no acknowledged message, and replays converge.

Thousands of ADT messages over several connections from python-hl7's asyncio client; the
server is killed at a random instant and restarted. Every message that was ACKed must be in the
journal and become exactly one Patient; resending everything creates no duplicates.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path

import hl7
import hl7.mllp
import pytest
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.slow

MESSAGES = 3000
CONNECTIONS = 4
# Only the channel under load counts: internal channels the test does not deploy (the device
# clock alerts the old MSH-7 stamps raise, say) keep their messages journalled for later.
CHANNEL = "his-adt"


def adt(n: int, run: str) -> str:
    stamp = f"202611250{(n // 3600) % 10}{(n // 60) % 60:02d}{n % 60:02d}+0800"
    return "\r".join(
        [
            f"MSH|^~\\&|HIS|COUNTY-HOSP|GC|ED|{stamp}||ADT^A04^ADT_A01|{run}-{n:06d}|P|2.5.1"
            "|||||CHN|UNICODE UTF-8",
            f"EVN|A04|{stamp}",
            f"PID|1||{run}{n:06d}^^^COUNTY-HOSP^MR||测试^{n}||19700101|{'MF'[n % 2]}",
            f"PV1|1|E|EMR^^^COUNTY-HOSP||||||||||||||||V{run}{n:06d}",
        ]
    )


async def send_all(port: int, messages: list[str], acked: set[str]) -> None:
    async def one_connection(share: list[str]) -> None:
        reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port, encoding="utf-8")
        try:
            for raw in share:
                writer.writemessage(raw)
                await writer.drain()
                ack = await asyncio.wait_for(reader.readmessage(), 30)
                if str(ack.segment("MSA")[1]) == "AA":
                    acked.add(str(ack.segment("MSA")[2]))
        finally:
            writer.close()

    shares = [messages[i::CONNECTIONS] for i in range(CONNECTIONS)]
    await asyncio.gather(*(one_connection(s) for s in shares), return_exceptions=True)


def sync_url(database_url: str | None, data_dir: Path) -> str:
    if database_url is None or database_url.startswith("sqlite"):
        path = (
            data_dir / "greenchannel.db" if database_url is None else database_url.split("///")[1]
        )
        return f"sqlite:///{path}"
    return database_url


def wait_until_processed(database: str, expected: int, timeout_s: float = 180) -> None:
    engine = create_engine(database)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                total, open_ = conn.execute(
                    text(
                        "SELECT count(*), coalesce(sum(CASE WHEN status IN "
                        "('received', 'transformed', 'queued') THEN 1 ELSE 0 END), 0) "
                        "FROM journal_message WHERE channel = :channel"
                    ),
                    {"channel": CHANNEL},
                ).one()
            if total >= expected and open_ == 0:
                return
            time.sleep(0.2)
    finally:
        engine.dispose()
    raise AssertionError(f"journal not processed after {timeout_s} s: {total} rows, {open_} open")


def journal_control_ids(database: str) -> list[str]:
    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            return [
                row[0]
                for row in conn.execute(
                    text(
                        "SELECT correlation_id FROM journal_message "
                        "WHERE reprocess_of IS NULL AND channel = :channel"
                    ),
                    {"channel": CHANNEL},
                )
            ]
    finally:
        engine.dispose()


def patient_counts(database: str) -> dict[str, int]:
    """Patients per MR identifier value, from the store's identifier index."""
    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT i.value, count(DISTINCT i.resource_id) FROM fhir_token_index i "
                    "JOIN fhir_resource r ON r.resource_type = i.resource_type "
                    "AND r.id = i.resource_id "
                    "WHERE i.resource_type = 'Patient' AND i.param = 'identifier' "
                    "AND NOT r.deleted AND i.system LIKE 'urn:greenchannel:id:%' "
                    "GROUP BY i.value"
                )
            )
            return {value: count for value, count in rows}
    finally:
        engine.dispose()


def test_kill_9_under_load_loses_no_acked_message(
    server_factory, tmp_path: Path, database_url: str
) -> None:
    server = server_factory(tmp_path, database_url)
    server.start()
    run = f"K{random.randint(1000, 9999)}"
    messages = [adt(n, run) for n in range(MESSAGES)]
    acked: set[str] = set()

    async def load_then_kill() -> None:
        sending = asyncio.create_task(send_all(server.mllp_port, messages, acked))
        await asyncio.sleep(random.uniform(0.5, 2.0))
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGKILL)
        await sending

    asyncio.run(load_then_kill())
    server.process.wait(30)
    assert 0 < len(acked) < MESSAGES, "the kill should land mid-load"

    server.start()
    database = sync_url(database_url, server.data_dir)
    journalled = journal_control_ids(database)
    missing = acked - set(journalled)
    assert not missing, f"{len(missing)} ACKed messages are not in the journal"
    wait_until_processed(database, len(journalled))
    counts = patient_counts(database)
    for control_id in acked:
        identifier = control_id.replace("-", "")
        assert counts.get(identifier) == 1, control_id

    # The senders resend everything (they never saw some ACKs): no duplicates anywhere.
    resent: set[str] = set()
    asyncio.run(send_all(server.mllp_port, messages, resent))
    assert len(resent) == MESSAGES
    wait_until_processed(database, MESSAGES)
    assert sorted(journal_control_ids(database)) == sorted(
        f"{run}-{n:06d}" for n in range(MESSAGES)
    )
    counts = patient_counts(database)
    assert len(counts) == MESSAGES and set(counts.values()) == {1}
    with server.http() as client:
        sample = random.sample(sorted(acked), min(20, len(acked)))
        for control_id in sample:
            bundle = client.get(
                "/fhir/Patient", params={"identifier": control_id.replace("-", "")}
            ).json()
            assert len(bundle["entry"]) == 1
