"""STEMI alerts from stored ECG reports: a change-event subscriber that, when a DiagnosticReport
whose conclusion codes say STEMI is committed (the machine reading of an ECG channel, or an ECG
network's signed report), puts one alert message into the outbound channel `ecg-alerts`.

The alert says who (the patient reference and identifier), when (the acquisition time), where
(territory) and which leads, with the report's conclusion. Its dedup key is
`ecg-stemi/<report id>`, so a resent recording, a corrected report or a replay after a restart
alerts once. Which codes alert and the channel are data: `config/ecg/alerts.yaml`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.connectors import Inbound, Receipt
from engine.mapping.yamlfile import load_yaml, validation_error_to_config_error
from engine.settings import content_root
from engine.subscribers import SubscriberContext
from fhir_store import ChangeEvent, ChangeFeed, FhirStore, Gone, NotFound

__all__ = [
    "ALERTS_FILE",
    "MESSAGE_KIND",
    "EcgAlertRules",
    "EcgAlertSubscriber",
    "EcgAlertSubscriberFactory",
    "alert_message",
    "load_alert_rules",
]

log = logging.getLogger(__name__)

ALERTS_FILE = Path("config") / "ecg" / "alerts.yaml"
MESSAGE_KIND = "ecg-alert"
MEDIA_TYPE = "application/json"
READING_SYSTEM = "https://greenchannel.example.org/fhir/CodeSystem/ecg-reading"
TERRITORY_SYSTEM = "https://greenchannel.example.org/fhir/CodeSystem/ecg-territory"

AcceptInto = Callable[[str, Inbound], Awaitable[Receipt]]


class EcgAlertRules(BaseModel):
    """`config/ecg/alerts.yaml`: which report conclusion codes alert, into which channel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str = Field(description="The outbound channel the alert messages go into.")
    codes: tuple[str, ...] = Field(
        min_length=1,
        description="`system|code` of DiagnosticReport.conclusionCode codings that alert.",
    )


@cache
def load_alert_rules(path: Path | None = None) -> EcgAlertRules:
    """The alert rules (default: the installed `config/ecg/alerts.yaml`), read once."""
    file = path if path is not None else content_root() / ALERTS_FILE
    data, positions = load_yaml(file)
    try:
        return EcgAlertRules.model_validate(data)
    except ValidationError as exc:
        raise validation_error_to_config_error(exc, str(file), data, positions) from None


def _codes(concept: dict[str, Any]) -> set[str]:
    return {f"{c.get('system', '')}|{c.get('code', '')}" for c in concept.get("coding", [])}


def alerting(report: dict[str, Any], rules: EcgAlertRules) -> bool:
    """Whether the report's conclusion codes are among the alerting ones."""
    wanted = set(rules.codes)
    return any(_codes(concept) & wanted for concept in report.get("conclusionCode", []))


def alert_message(
    report: dict[str, Any], reading: dict[str, Any] | None, *, now: datetime
) -> dict[str, Any]:
    """The alert for one STEMI report; `reading` is its machine-reading Observation, if any
    (territory and leads come from there)."""
    territory: list[str] = []
    leads: list[str] = []
    mi_probability = None
    for component in (reading or {}).get("component", []):
        codes = _codes(component.get("code", {}))
        if f"{READING_SYSTEM}|territory" in codes:
            territory += [
                c["code"]
                for c in component.get("valueCodeableConcept", {}).get("coding", [])
                if c.get("system") == TERRITORY_SYSTEM and "code" in c
            ]
        elif f"{READING_SYSTEM}|leads-elevated" in codes:
            leads = [x.strip() for x in str(component.get("valueString", "")).split(",") if x]
        elif f"{READING_SYSTEM}|mi-probability" in codes:
            mi_probability = component.get("valueQuantity", {}).get("value")
    subject = report.get("subject", {})
    return {
        "kind": MESSAGE_KIND,
        "event": "stemi",
        "alert": f"ecg-stemi/{report['id']}",
        "at": now.isoformat(timespec="seconds"),
        "report": f"DiagnosticReport/{report['id']}",
        "patient": {
            "reference": subject.get("reference"),
            "identifier": subject.get("identifier"),
        },
        "encounter": report.get("encounter", {}).get("reference"),
        "acquired_at": report.get("effectiveDateTime"),
        "territory": territory,
        "leads": leads,
        "mi_probability": mi_probability,
        "status": report.get("status"),
        "conclusion": report.get("conclusion"),
    }


class EcgAlertSubscriber:
    """Follows the change events; each new or changed STEMI DiagnosticReport alerts once."""

    def __init__(
        self,
        database: AsyncEngine,
        *,
        name: str,
        accept: AcceptInto,
        timezone: tzinfo,
        rules: EcgAlertRules,
        run_write: Callable[[Callable[[Any], Any]], Awaitable[Any]] | None = None,
        poll_interval_s: float = 1.0,
    ) -> None:
        self._name = name
        self._accept = accept
        self._tz = timezone
        self._rules = rules
        self._store = FhirStore(
            database, timezone=timezone, run_write=run_write, check_references=False
        )
        self._feed = ChangeFeed(database, poll_interval_s=poll_interval_s, run_write=run_write)

    async def run(self) -> None:
        """Process events until cancelled. A new subscriber starts at the newest event: an
        engine upgraded onto an old database does not alert on last year's reports."""
        async for events in self._feed.follow(self._name, new="future"):
            for event in events:
                await self.handle(event)
            await self._feed.commit(self._name, events[-1].sequence)

    async def aclose(self) -> None:
        """Nothing held between events."""

    async def handle(self, event: ChangeEvent) -> None:
        if event.resource_type != "DiagnosticReport" or event.action == "delete":
            return
        report = await self._read("DiagnosticReport", event.resource_id)
        if report is None or not alerting(report, self._rules):
            return
        reading = None
        for result in report.get("result", []):
            kind, _, rid = str(result.get("reference", "")).partition("/")
            if kind != "Observation" or not rid:
                continue
            found = await self._read("Observation", rid)
            if found is not None and f"{READING_SYSTEM}|machine-reading" in _codes(
                found.get("code", {})
            ):
                reading = found
                break
        message = alert_message(report, reading, now=datetime.now(self._tz))
        receipt = await self._accept(
            self._rules.channel,
            Inbound(
                raw=json.dumps(message, ensure_ascii=False).encode(),
                media_type=MEDIA_TYPE,
                received_at=datetime.now(self._tz),
                origin="ecg-alert://stemi",
                dedup_key=message["alert"],
                correlation_id=message["alert"],
            ),
        )
        log.info(
            "ecg_alert.raised",
            extra={"message_id": receipt.message_id, "duplicate": receipt.duplicate},
        )

    async def _read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        try:
            return await self._store.read(resource_type, resource_id)
        except (NotFound, Gone):
            return None  # deleted meanwhile: nothing to alert on


class EcgAlertSubscriberFactory:
    """Registered under `greenchannel.subscribers` as `ecg-alerts`."""

    def __init__(self, rules_file: Path | None = None) -> None:
        self._rules_file = rules_file

    def build(self, context: SubscriberContext) -> EcgAlertSubscriber:
        return EcgAlertSubscriber(
            context.database,
            name=context.name,
            accept=context.accept,
            timezone=context.timezone,
            rules=load_alert_rules(self._rules_file),
            run_write=context.run_write,
        )
