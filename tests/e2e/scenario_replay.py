"""Replays a scenario folder of tests/e2e/scenarios/ against a running `greenchannel serve`.

A scenario is a folder of numbered files, replayed in name order; the word after the number says
where each goes:

- `NN-<channel>-what.hl7`: one HL7 v2 message sent over MLLP to the shipped channel `<channel>`
  (his-adt, ecg-oru, lis-oru, ris-oru, his-orders, emar-ras), which must acknowledge it (AA);
- `NN-fhir-what.json`: one FHIR resource POSTed to `/fhir/<resourceType>`;
- `NN-api-what.json`: a list of `{method, path, body}` calls to the engine's API (case facts,
  manual nodes, scores);
- `NN-wait-what.json`: `{"until": "T+30:03"}`: wait until that scenario instant has passed, then
  keep the case's alerts as they are at that moment under the file's name. A replay given
  `meanwhile` runs it first (other scenarios, say), and sleeps only what is left of the wait.

Header lines starting with `#` (HL7) or `//` (JSON) describe the file for a reader and are not
sent. Placeholders: `{{patient}}` (the Patient the HIS wrote for the scenario's MRN),
`{{case}}` (the patient's case of the scenario's center) and `{{T+MM:SS}}` / `{{T-MM:SS}}`,
an instant relative to the replay's base time (HL7 `YYYYMMDDHHMMSS+0800` in `.hl7`, ISO 8601
with offset in `.json`), so a scenario can be "now-relative" and see a deadline pass in seconds.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from tests.net import mllp_exchange

CST = timezone(timedelta(hours=8))
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
HL7_CHANNELS = ("his-adt", "ecg-oru", "lis-oru", "ris-oru", "his-orders", "emar-ras")
_OFFSET = re.compile(r"\{\{T([+-])(\d+):(\d{2})\}\}")
_FILE = re.compile(
    r"^\d+-(?P<target>his-adt|ecg-oru|lis-oru|ris-oru|his-orders|emar-ras|fhir|api|wait)-"
)


def offset_of(text: str) -> timedelta:
    """`T+29:40` → 29 min 40 s after the base time."""
    match = _OFFSET.fullmatch("{{" + text + "}}")
    assert match, f"not a scenario offset: {text!r}"
    sign, minutes, seconds = match.groups()
    delta = timedelta(minutes=int(minutes), seconds=int(seconds))
    return -delta if sign == "-" else delta


def body_of(path: Path) -> str:
    """The file without its header comment."""
    marker = "#" if path.suffix == ".hl7" else "//"
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if not line.startswith(marker)).strip()


@dataclass
class Replay:
    """What one replay did: the case it produced and when each file went out."""

    center: str
    patient: str = ""
    case_id: str = ""
    cases: list[str] = field(default_factory=list)
    base: datetime | None = None
    sent_at: dict[str, datetime] = field(default_factory=dict)
    alerts_at: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def at(self, offset: str) -> datetime:
        """The instant `T+MM:SS` of a now-relative replay."""
        assert self.base is not None
        return self.base + offset_of(offset)


class Replayer:
    """Sends scenario folders through the channels of one running server."""

    def __init__(
        self, client: httpx.Client, ports: dict[str, int], caught_up: Callable[[], bool]
    ) -> None:
        self.client = client
        self.ports = ports
        # Messages of a real case come minutes apart: each is sent once the engine's
        # change-event subscribers have processed the previous one, so a replay takes one path.
        self.caught_up = caught_up

    def run(
        self,
        folder: str,
        *,
        center: str,
        mrn: str,
        base: datetime | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> Replay:
        replay = Replay(center=center, base=base)
        for path in sorted((SCENARIOS / folder).iterdir()):
            match = _FILE.match(path.name)
            assert match, f"{path.name}: not NN-<target>-what.(hl7|json)"
            text = self._fill(body_of(path), path.suffix, replay, mrn)
            target = match["target"]
            if target == "wait":
                if meanwhile is not None:
                    meanwhile()
                    meanwhile = None
                self._wait(json.loads(text)["until"], replay, path.stem)
                continue
            replay.sent_at[path.stem] = datetime.now(CST)
            if target in HL7_CHANNELS:
                message = text.replace("\n", "\r").encode("utf-8")
                ack = mllp_exchange(self.ports[target], message)
                assert b"MSA|AA" in ack, f"{path.name}: {ack!r}"
            elif target == "fhir":
                resource = json.loads(text)
                answer = self.client.post(f"/fhir/{resource['resourceType']}", json=resource)
                assert answer.status_code == 201, f"{path.name}: {answer.text}"
            else:
                for call in json.loads(text):
                    answer = self.client.request(call["method"], call["path"], json=call["body"])
                    assert answer.is_success, f"{path.name}: {answer.status_code} {answer.text}"
            eventually(self.settled, f"{path.name} processed by the subscribers")
        if not replay.case_id:
            replay.case_id = self.case_of(replay, mrn)
        return replay

    def settled(self) -> bool:
        """The subscribers' cursors are at the last change and none holds work beyond them
        (the alert scheduler has looked at every updated case): a clock that a message
        starts is seen running before the next message can stop it."""
        return self.caught_up() and not self.subscribers_pending() and self.caught_up()

    def subscribers_pending(self) -> dict[str, int]:
        """`greenchannel_subscriber_pending` from `/metrics`, where it is not 0."""
        answer = self.client.get("/metrics")
        assert answer.status_code == 200, answer.text
        pending = {}
        for line in answer.text.splitlines():
            if line.startswith("greenchannel_subscriber_pending{"):
                series, value = line.rsplit(" ", 1)
                if float(value):
                    pending[series] = int(float(value))
        return pending

    def _fill(self, text: str, suffix: str, replay: Replay, mrn: str) -> str:
        if "{{patient}}" in text:
            replay.patient = replay.patient or self.patient_of(mrn)
            text = text.replace("{{patient}}", replay.patient)
        if "{{case}}" in text:
            replay.case_id = replay.case_id or self.case_of(replay, mrn)
            text = text.replace("{{case}}", replay.case_id)

        def instant(match: re.Match[str]) -> str:
            value = replay.at(match.group(0)[2:-2])
            return value.strftime("%Y%m%d%H%M%S+0800") if suffix == ".hl7" else value.isoformat()

        return _OFFSET.sub(instant, text)

    def _wait(self, until: str, replay: Replay, name: str) -> None:
        time.sleep(max(0.0, (replay.at(until) - datetime.now(CST)).total_seconds()))
        replay.case_id = replay.case_id or self.case_of(replay, "")
        replay.alerts_at[name] = self.alerts(replay.case_id)

    def patient_of(self, mrn: str) -> str:
        found = eventually(lambda: self._search("Patient", {"identifier": mrn}), f"Patient {mrn}")
        (patient,) = found
        return f"Patient/{patient['id']}"

    def case_of(self, replay: Replay, mrn: str) -> str:
        replay.patient = replay.patient or self.patient_of(mrn)

        def cases() -> list[dict[str, Any]]:
            listed = self.client.get("/api/cases", params={"center": replay.center}).json()
            rows = listed if isinstance(listed, list) else listed.get("cases", [])
            return [c for c in rows if c["patient"] == replay.patient]

        # Until the engine adopts the HIS's EpisodeOfCare (ADT ZGC) there are two; the case is
        # the one carrying the time nodes (tests assert that there is one).
        found = eventually(
            lambda: [c for c in cases() if self._node_count(c["id"])],
            f"a {replay.center} case of {replay.patient} with time nodes",
        )
        replay.cases = [str(c["id"]) for c in cases()]
        return str(max(found, key=lambda c: self._node_count(c["id"]))["id"])

    def _node_count(self, case_id: str) -> int:
        timeline = self.client.get(f"/api/cases/{case_id}/timeline").json()
        return sum(1 for node in timeline.get("nodes", []) if node.get("time"))

    def alerts(self, case_id: str) -> list[dict[str, Any]]:
        answer = self.client.get("/api/alerts", params={"status": "all", "case": case_id})
        assert answer.status_code == 200, answer.text
        return list(answer.json()["alerts"])

    def _search(self, kind: str, params: dict[str, str]) -> list[dict[str, Any]]:
        bundle = self.client.get(f"/fhir/{kind}", params={**params, "_count": "200"}).json()
        return [entry["resource"] for entry in bundle.get("entry", [])]


def subscribers_caught_up(database_url: str) -> Callable[[], bool]:
    """True when every change-event subscriber's cursor is at the last change of the FHIR
    store at `database_url` (SQLite or PostgreSQL), twice in a row: the subscribers' own
    writes are changes too."""
    queries = (
        "SELECT coalesce(max(seq), 0) FROM fhir_change",
        "SELECT coalesce(min(seq), 0) FROM fhir_change_cursor",
    )

    def positions() -> tuple[int, ...]:
        if database_url.startswith("sqlite"):
            path = database_url.split("///", 1)[1]
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
                return tuple(db.execute(query).fetchone()[0] for query in queries)
        import psycopg

        with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as db:
            return tuple(db.execute(query).fetchone()[0] for query in queries)

    def caught_up() -> bool:
        first = positions()
        if first[1] < first[0]:
            return False
        time.sleep(0.1)
        return positions() == first

    return caught_up


def eventually(
    probe: Callable[[], Any], what: str, timeout: float = 30.0, pause: float = 0.05
) -> Any:
    """The probe's first truthy answer, polled for up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: nothing after {timeout:.0f} s")
        time.sleep(pause)
