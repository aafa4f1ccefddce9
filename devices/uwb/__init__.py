"""UWB time capture: gateway tag positions (Pozyx MQTT, Sewio WebSocket/HTTP) into zone entries
and exits with hysteresis (`tracker`), the zones of `config/zones.yaml` (`zones`), wristbands
bound to a patient's encounter (`wristbands`), zone stays as Encounter location history
(`encounter`), staff badge taps (`taps`). See docs/uwb.md."""

from __future__ import annotations

from devices.uwb.errors import UnknownTag, UwbPayloadError, WristbandError, ZonesConfigError
from devices.uwb.fixes import Fix, parse_fixes
from devices.uwb.tracker import Entered, Left, TagState, presence, step
from devices.uwb.zones import ZONE_SYSTEM, Timing, Zone, ZoneMap, load_zones

__all__ = [
    "ZONE_SYSTEM",
    "Entered",
    "Fix",
    "Left",
    "TagState",
    "Timing",
    "UnknownTag",
    "UwbPayloadError",
    "WristbandError",
    "Zone",
    "ZoneMap",
    "ZonesConfigError",
    "load_zones",
    "parse_fixes",
    "presence",
    "step",
]
