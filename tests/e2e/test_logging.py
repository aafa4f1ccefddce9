"""No patient data in logs (STYLE.md 2.7): sentinel names and identifiers pushed through the
whole running engine — accepted, failed in mapping, unframed garbage, NAK'd — reach the journal
but never the log file, the journal's error texts or the ACKs."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

SB, EB, CR = b"\x0b", b"\x1c", b"\r"
FAMILY_ZH, GIVEN_ZH = "哨兵", "测试"
FAMILY, GIVEN = "SENTINELNAME", "SENTINELGIVEN"
ID_CARD = "11010519491231875X"  # 18 characters: a resident ID card's form, made up
MOBILE = "13912345678"
MRN = "SENTINELMRN42"
SENTINELS = (FAMILY_ZH, GIVEN_ZH, f"{FAMILY_ZH}^{GIVEN_ZH}", FAMILY, GIVEN, ID_CARD, MOBILE, MRN)
# Parts that a log line could still leak if it cut or reformatted a value.
FRAGMENTS = (ID_CARD[:12], ID_CARD[6:17], MOBILE[:7], MOBILE[3:])
TERMINAL = {"sent", "error", "filtered"}


def adt_a04(
    control_id: str, *, birth_date: str = "19491231", charset: str = "UNICODE UTF-8"
) -> bytes:
    """An ADT^A04 whose PID carries every sentinel: names, MRN, ID card, mobile number."""
    segments = [
        f"MSH|^~\\&|HIS|COUNTY-HOSP|GREENCHANNEL|ED|20261125083000+0800||ADT^A04^ADT_A01|"
        f"{control_id}|P|2.5.1|||||CHN|{charset}",
        "EVN|A04|20261125083000+0800",
        f"PID|1||{MRN}^^^COUNTY-HOSP^MR~{ID_CARD}^^^CHN^NNCHN||"
        f"{FAMILY_ZH}^{GIVEN_ZH}~{FAMILY}^{GIVEN}||{birth_date}|M|||"
        f"人民路12号^^县城^省^100000^CHN||^PRN^PH^^^^^^^^^{MOBILE}~^PRN^CP^^^^^^^^^{MOBILE}",
        f"PV1|1|E|EMR^^^COUNTY-HOSP||||||||||||||||V{control_id}|||||||||||||||||||||||||"
        "20261125082800+0800",
    ]
    return "".join(f"{s}\r" for s in segments).encode("utf-8")


def exchange(port: int, blocks: list[bytes]) -> list[str]:
    """Send MLLP blocks over one connection and read one ACK after each."""
    acks = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for block in blocks:
            sock.sendall(SB + block + EB + CR)
            reply = b""
            while not reply.endswith(EB + CR):
                chunk = sock.recv(65536)
                assert chunk, "the engine closed the connection instead of answering"
                reply += chunk
            acks.append(reply.strip(SB + EB + CR).decode("utf-8", "replace"))
    return acks


def wait_until_processed(client: httpx.Client, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        messages: list[dict[str, Any]] = client.get("/api/messages").json()["messages"]
        if len(messages) >= count and all(m["status"] in TERMINAL for m in messages):
            return messages
        time.sleep(0.2)
    raise AssertionError(f"not processed after 60 s: {messages}")


def leaks(text: str) -> list[str]:
    return [s for s in (*SENTINELS, *FRAGMENTS) if s in text]


def test_sentinel_patient_data_reaches_the_journal_but_never_the_log(
    server_factory: Any, tmp_path: Path
) -> None:
    server = server_factory(tmp_path, None)
    server.start()
    garbage = f"not HL7 at all {FAMILY} {FAMILY_ZH}{GIVEN_ZH} {ID_CARD} {MOBILE}\r".encode()
    valid = adt_a04("SENT0001")
    bad_date = adt_a04("SENT0002", birth_date="19491341")  # month 13: the mapping fails
    unknown_charset = adt_a04("SENT0003", charset="KLINGON-8")  # MSH-18: answered AE

    acks = exchange(server.mllp_port, [valid, bad_date, garbage, unknown_charset])

    assert "MSA|AA|SENT0001" in acks[0]
    assert "MSA|AA|SENT0002" in acks[1]  # journalled first: the mapping fails afterwards
    assert "MSA|AR" in acks[2] and "ERR|" in acks[2]
    assert "MSA|AE|SENT0003" in acks[3] and "ERR|" in acks[3]
    assert not [leaks(ack) for ack in acks if leaks(ack)], "an ACK quotes patient data"

    with server.http() as client:
        messages = wait_until_processed(client, 4)
        by_control_id = {m["correlation_id"]: m for m in messages}
        assert by_control_id["SENT0001"]["status"] == "sent"
        assert by_control_id["SENT0002"]["status"] == "error"
        assert by_control_id["SENT0003"]["status"] == "error"
        assert sorted(m["status"] for m in messages) == ["error", "error", "error", "sent"]
        details = [client.get(f"/api/messages/{m['id']}").json() for m in messages]
        patients = client.get("/fhir/Patient", params={"identifier": MRN}).json()

    # They went through: the journal keeps the raw content, and the store has the patient.
    for detail in details:
        raw = detail["raw"]["text"]
        assert FAMILY in raw and FAMILY_ZH in raw and ID_CARD in raw and MOBILE in raw, detail["id"]
    assert patients["entry"][0]["resource"]["name"][1]["family"] == FAMILY

    # The journal's error texts name positions and reasons, never values.
    errors = [
        text
        for d in details
        for text in [
            d["error"],
            *(delivery["last_error"] for delivery in d["deliveries"]),
            *(a["detail"] for delivery in d["deliveries"] for a in delivery["attempt_log"]),
        ]
        if text
    ]
    assert len(errors) >= 3
    assert not [(e, leaks(e)) for e in errors if leaks(e)], "a journal error quotes patient data"

    assert server.stop() == 0
    log = server.log.read_text(encoding="utf-8", errors="replace")
    # The failures were logged (the garbage and the NAK'd message, by journal id)...
    assert log.count('"mllp.message.rejected"') == 2, log[-3000:]
    assert not leaks(log), f"the log holds patient data: {leaks(log)}"  # ...without the data
