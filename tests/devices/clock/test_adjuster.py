"""The device-clock output adjuster on real SQLite and PostgreSQL: the clocks the monitor saved
decide which device times of a mapped Bundle are corrected, where the correction is recorded,
and which are left alone (trusted source, within tolerance, not known yet, a time long before
the estimate, an element or a channel no rule names)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from devices.clock import CORRECTION_EXTENSION, ClockRegistry, ClockSettings
from devices.clock import migrate as migrate_clocks
from devices.clock.adjuster import ClockAdjusterFactory, device_time_slots
from devices.clock.monitor import own_writes
from devices.clock.store import save_sources
from engine.connectors import ConnectorContext, Outbound
from engine.database import create_database_engine, create_sync_engine, migrate

pytestmark = pytest.mark.anyio
CST = timezone(timedelta(hours=8))
NOW = datetime.now(CST).replace(microsecond=0)
RULES = [
    {"channels": ["monitor-*"],
     "elements": {"Observation": ["effectiveDateTime", "effectivePeriod.start"],
                  "Encounter": ["location.period.start", "location.period.end"]}},
    {"channels": ["ecg-oru"], "elements": {"DiagnosticReport": ["issued"]}},
]  # fmt: skip


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_database_engine(database_url)
    await migrate(engine)
    await migrate_clocks(engine)
    yield engine
    await engine.dispose()


async def _save_clocks(database: AsyncEngine, offsets: dict[str, float], samples: int = 6) -> None:
    """What the monitor saves after `samples` messages a minute apart from each source, its
    clock `offset` seconds ahead of true time."""
    registry = ClockRegistry(ClockSettings(min_samples=5))
    for source_id, offset in offsets.items():
        for n in range(samples):
            received = NOW - timedelta(minutes=samples - n, seconds=-0.4)
            sent = (received + timedelta(seconds=offset)).replace(microsecond=0)
            registry.observe(source_id, sent, received)
    engine = create_sync_engine(database.url)
    try:
        await own_writes(engine)(lambda c: save_sources(c, registry.sources))
    finally:
        engine.dispose()


def _context(database: AsyncEngine, channel: str, **clocks: Any) -> ConnectorContext:
    settings = SimpleNamespace(clocks={"device_times": RULES, "poll_s": 0.05, **clocks})
    return ConnectorContext(
        channel=channel, data_dir=Path("."), database=database, extra={"settings": settings}
    )


def _outbound(channel: str, sender: str | None) -> Outbound:
    return Outbound(
        message_id=1, channel=channel, destination="fhir-store", payload=b"",
        media_type="application/fhir+json", attempt=1, received_at=NOW, sender=sender,
    )  # fmt: skip


def _bundle(device_time: datetime) -> dict[str, Any]:
    stamp = device_time.isoformat(timespec="seconds")
    later = (device_time + timedelta(minutes=7)).isoformat(timespec="seconds")
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Observation", "id": "hr",
                          "effectiveDateTime": stamp, "issued": stamp}},
            {"resource": {"resourceType": "Encounter", "id": "e",
                          "location": [{"period": {"start": stamp, "end": later}},
                                       {"period": {"start": later}}]}},
            {"resource": {"resourceType": "DiagnosticReport", "id": "r", "issued": stamp}},
        ],
    }  # fmt: skip


def _parts(element: dict[str, Any]) -> dict[str, Any]:
    (extension,) = element["extension"]
    assert extension["url"] == CORRECTION_EXTENSION
    return {
        p["url"]: next(v for k, v in p.items() if k.startswith("value"))
        for p in extension["extension"]
    }


async def test_device_times_of_a_source_5_minutes_fast_are_corrected_and_recorded(
    database: AsyncEngine,
) -> None:
    await _save_clocks(database, {"monitor-oru:BSM-6501/ED": 300.0})
    adjuster = ClockAdjusterFactory().build(_context(database, "monitor-oru"))
    assert adjuster is not None
    device_time = NOW + timedelta(minutes=3)  # by the monitor's clock: 2 min ago really
    bundle = _bundle(device_time)
    await adjuster.adjust(bundle, _outbound("monitor-oru", "BSM-6501/ED"))

    observation, encounter, report = (e["resource"] for e in bundle["entry"])
    taken = _parts(observation["_effectiveDateTime"])["offset"]["value"]
    # MSH-7 has whole seconds and the message takes a moment: 300 s less a fraction
    assert taken in (299.0, 300.0)
    true_time = device_time - timedelta(seconds=taken)
    assert observation["effectiveDateTime"] == true_time.isoformat(timespec="seconds")
    parts = _parts(observation["_effectiveDateTime"])
    assert parts["deviceTime"] == device_time.isoformat(timespec="seconds")
    assert parts["source"] == "monitor-oru:BSM-6501/ED"
    assert parts["offset"]["code"] == "s"
    # a path through a list walks every item; the element keeps its own record
    first, second = encounter["location"]
    assert first["period"]["start"] == true_time.isoformat(timespec="seconds")
    assert datetime.fromisoformat(first["period"]["end"]) == true_time + timedelta(minutes=7)
    later = (device_time + timedelta(minutes=7)).isoformat(timespec="seconds")
    assert _parts(first["period"]["_end"])["deviceTime"] == later
    assert datetime.fromisoformat(second["period"]["start"]) == true_time + timedelta(minutes=7)
    # no rule names Observation.issued on this channel, nor DiagnosticReport
    assert observation["issued"] == device_time.isoformat(timespec="seconds")
    assert "_issued" not in observation and "_issued" not in report


@pytest.mark.parametrize(
    ("sender", "offset", "clocks"),
    [
        ("GPS-CART/ED", 300.0, {"trusted": ["monitor-oru:GPS-CART/ED"]}),
        ("GPS-CART/ED", 300.0, {"trusted": '["monitor-oru"]'}),  # as from the environment
        ("BSM-6501/ED", 1.0, {}),  # within the 2-s tolerance
    ],
)
async def test_a_trusted_source_or_one_within_tolerance_is_left_alone(
    database: AsyncEngine, sender: str, offset: float, clocks: dict[str, Any]
) -> None:
    await _save_clocks(database, {f"monitor-oru:{sender}": offset})
    adjuster = ClockAdjusterFactory().build(_context(database, "monitor-oru", **clocks))
    assert adjuster is not None
    bundle = _bundle(NOW)
    before = copy.deepcopy(bundle)
    await adjuster.adjust(bundle, _outbound("monitor-oru", sender))
    assert bundle == before


async def test_not_known_yet_or_long_before_the_estimate_is_left_alone(
    database: AsyncEngine,
) -> None:
    await _save_clocks(database, {"monitor-oru:NEW/ED": 300.0}, samples=2)  # < min_samples
    await _save_clocks(database, {"monitor-oru:BSM-6501/ED": 300.0})
    adjuster = ClockAdjusterFactory().build(_context(database, "monitor-oru"))
    assert adjuster is not None
    for sender, device_time in (("NEW/ED", NOW), ("BSM-6501/ED", NOW - timedelta(days=400))):
        bundle = _bundle(device_time)
        before = copy.deepcopy(bundle)
        await adjuster.adjust(bundle, _outbound("monitor-oru", sender))
        assert bundle == before, sender


async def test_the_estimate_is_read_again_once_the_monitor_saved_it(database: AsyncEngine) -> None:
    adjuster = ClockAdjusterFactory().build(_context(database, "ecg-oru"))
    assert adjuster is not None
    outbound = _outbound("ecg-oru", "ECG/COUNTY-HOSP")
    bundle = _bundle(NOW)
    await adjuster.adjust(bundle, outbound)
    assert "_issued" not in bundle["entry"][2]["resource"]  # nothing known of that clock yet
    await _save_clocks(database, {"ecg-oru:ECG/COUNTY-HOSP": -120.0})
    await asyncio.sleep(0.1)  # poll_s
    await adjuster.adjust(bundle, outbound)
    report = bundle["entry"][2]["resource"]
    assert _parts(report["_issued"])["offset"]["value"] in (-121.0, -120.0)
    assert datetime.fromisoformat(report["issued"]) > NOW + timedelta(seconds=119)


async def test_a_channel_no_rule_names_gets_no_adjuster(database: AsyncEngine) -> None:
    assert ClockAdjusterFactory().build(_context(database, "his-adt")) is None


def test_paths_walk_lists_and_skip_what_is_not_there() -> None:
    encounter = {"location": [{"period": {"start": "a"}}, {"location": {}}, "junk"]}
    found = [
        (node.get("start"), key)
        for node, key in device_time_slots(encounter, "location.period.start")
    ]
    assert found == [("a", "start")]
    assert list(device_time_slots({"effectiveDateTime": "x"}, "effectiveDateTime")) == [
        ({"effectiveDateTime": "x"}, "effectiveDateTime")
    ]
