"""Tag positions as the gateways send them, read into one `Fix` per tag and instant.

Two vendor shapes are read (both are what the vendors document; see docs/uwb.md):

- **Pozyx** (MQTT topic `tags`): a JSON array of position updates,
  `[{"version": "2.0", "tagId": "30331", "timestamp": 1615984968.807, "success": true,
  "data": {"coordinates": {"x": 9932, "y": -19651, "z": 5000}, "zones": [{"id": ..}]}}]`;
  coordinates in millimetres, `timestamp` in epoch seconds, `success: false` when the
  position could not be computed (no coordinates then).
- **Sewio** (RTLS Studio WebSocket feed, also POSTed as HTTP JSON): `{"resource": "/feeds/18",
  "body": {"id": "18", "datastreams": [{"id": "posX", "current_value": " 6.34",
  "at": "2016-10-18 14:16:56.365"}, {"id": "posY", ...}, {"id": "clr", ...}],
  "zones": [{"id": "100", ...}]}}`; metres, `at` in UTC, `clr` the confidence level radius in
  metres (smaller is surer). Zone change messages (`{"body": {"feed_id": "23", "zone_id": "2",
  "status": "in", "at": ...}}`) carry no position and are read as a fix in that zone.

A message that is not JSON or lacks what a position needs raises UwbPayloadError naming the
JSON path, so the raw bytes go to the journal as ERROR and the gateway's other messages go on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from devices.uwb.errors import UwbPayloadError

__all__ = [
    "Fix",
    "epoch_time",
    "newest_fix_time",
    "parse_fixes",
    "parse_pozyx",
    "parse_sewio",
    "sewio_time",
]

_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Fix:
    """One tag position (or zone report) at one instant."""

    tag_id: str
    at: datetime  # aware
    x_m: float | None = None  # metres on the site plan; None for a bare zone report
    y_m: float | None = None
    gateway_zones: tuple[str, ...] = ()  # zone ids (or names) the gateway says the tag is in
    error_m: float | None = None  # the gateway's uncertainty radius, when it says one
    ok: bool = True  # False: the gateway itself says the position failed


def parse_fixes(raw: bytes) -> list[Fix]:
    """Read a Pozyx or Sewio message (told apart by its shape) into fixes."""
    document = _json(raw)
    if isinstance(document, list) or (isinstance(document, dict) and "tagId" in document):
        return parse_pozyx(document)
    if isinstance(document, dict) and "body" in document:
        return parse_sewio(document)
    raise UwbPayloadError(
        "neither a Pozyx position array nor a Sewio feed message (no `tagId`, no `body`)",
        location="$",
    )


def newest_fix_time(raw: bytes) -> datetime | None:
    """The newest fix time of a gateway message, by the gateway's clock: the message's send
    time as near as the message tells it, the sample of the gateway's clock (devices.clock)
    the UWB sources journal as `Inbound.sent_at`. None for a message that is no position
    message (its error is the mapping's to report, not this look's)."""
    try:
        fixes = parse_fixes(raw)
    except UwbPayloadError:
        return None
    return max((fix.at for fix in fixes), default=None)


def parse_pozyx(document: Any) -> list[Fix]:
    """A Pozyx MQTT message: one update object or an array of them (cloud batches)."""
    updates = document if isinstance(document, list) else [document]
    return [_pozyx_update(update, f"$[{n}]") for n, update in enumerate(updates)]


def _pozyx_update(update: Any, where: str) -> Fix:
    if not isinstance(update, dict):
        raise UwbPayloadError("a position update must be a JSON object", location=where)
    tag_id = _text(update.get("tagId"), f"{where}.tagId")
    at = epoch_time(update.get("timestamp"), f"{where}.timestamp")
    data = update.get("data") or {}
    if not isinstance(data, dict):
        raise UwbPayloadError("must be a JSON object", location=f"{where}.data")
    zones = _zone_ids(data.get("zones"), f"{where}.data.zones")
    if update.get("success") is False:
        return Fix(tag_id, at, gateway_zones=zones, ok=False)
    coordinates = data.get("coordinates")
    if coordinates is None:
        if zones:
            return Fix(tag_id, at, gateway_zones=zones)
        raise UwbPayloadError("missing: a successful update needs coordinates", location=where)
    if not isinstance(coordinates, dict):
        raise UwbPayloadError("must be an object {x, y, z}", location=f"{where}.data.coordinates")
    x = _number(coordinates.get("x"), f"{where}.data.coordinates.x") / 1000
    y = _number(coordinates.get("y"), f"{where}.data.coordinates.y") / 1000
    return Fix(tag_id, at, x, y, zones)


def parse_sewio(document: Any) -> list[Fix]:
    """A Sewio feed message: a position (posX/posY/clr datastreams) or a zone change."""
    if not isinstance(document, dict) or not isinstance(document.get("body"), dict):
        raise UwbPayloadError("expected an object with a `body` object", location="$.body")
    body: dict[str, Any] = document["body"]
    if "zone_id" in body:  # zone change: {"feed_id", "zone_id", "status": "in"|"out", "at"}
        tag_id = _text(body.get("feed_id"), "$.body.feed_id")
        at = sewio_time(body.get("at"), "$.body.at")
        zone = _text(body.get("zone_id"), "$.body.zone_id")
        status = body.get("status")
        if status not in ("in", "out"):
            raise UwbPayloadError("must be `in` or `out`", location="$.body.status")
        return [Fix(tag_id, at, gateway_zones=(zone,) if status == "in" else ())]
    tag_id = _text(body.get("id"), "$.body.id")
    streams = body.get("datastreams")
    if not isinstance(streams, list):
        raise UwbPayloadError("missing: a feed message needs datastreams", location="$.body")
    values: dict[str, tuple[Any, Any]] = {}
    for stream in streams:
        if isinstance(stream, dict) and isinstance(stream.get("id"), str):
            values[stream["id"]] = (stream.get("current_value"), stream.get("at"))
    zones = _zone_ids(body.get("zones"), "$.body.zones")
    if "posX" not in values or "posY" not in values:
        if zones:
            at_text = next((z.get("at") for z in body["zones"] if isinstance(z, dict)), None)
            return [Fix(tag_id, sewio_time(at_text, "$.body.zones[0].at"), gateway_zones=zones)]
        return []  # battery, firmware or sensor data: no position in it
    x = _number(_stripped(values["posX"][0]), "$.body.datastreams[posX].current_value")
    y = _number(_stripped(values["posY"][0]), "$.body.datastreams[posY].current_value")
    at = sewio_time(values["posX"][1], "$.body.datastreams[posX].at")
    error: float | None = None
    if "clr" in values:
        error = _number(_stripped(values["clr"][0]), "$.body.datastreams[clr].current_value")
    return [Fix(tag_id, at, x, y, zones, error_m=error)]


def _json(raw: bytes) -> Any:
    if len(raw) > _MAX_BYTES:
        raise UwbPayloadError(f"larger than {_MAX_BYTES} bytes", location="$", ack_code="AR")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UwbPayloadError(
            f"not UTF-8 (byte {exc.start}): a gateway sends JSON", location="$", ack_code="AR"
        ) from exc
    except json.JSONDecodeError as exc:
        raise UwbPayloadError(
            f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            location="$",
            ack_code="AR",
        ) from exc


def _text(value: Any, where: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise UwbPayloadError("missing or not a text id", location=where)
    return value.strip()


def _number(value: Any, where: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise UwbPayloadError("not a number", location=where) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UwbPayloadError("missing or not a finite number", location=where)
    return float(value)


def _stripped(value: Any) -> Any:
    # Sewio pads values ("  6.34") and appends units to some ("77%")
    return value.strip().removesuffix("%") if isinstance(value, str) else value


def epoch_time(value: Any, where: str) -> datetime:
    """Epoch seconds (2000 to 2100) as an aware UTC instant; UwbPayloadError naming `where`."""
    seconds = _number(value, where)
    if not 946_684_800 <= seconds <= 4_102_444_800:  # 2000 .. 2100: ms or garbage otherwise
        raise UwbPayloadError("not epoch seconds between 2000 and 2100", location=where)
    return datetime.fromtimestamp(seconds, tz=UTC)


def sewio_time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise UwbPayloadError("missing: a UTC time like 2016-10-18 14:16:56.365", location=where)
    try:
        parsed = datetime.fromisoformat(value.strip().replace(" ", "T"))
    except ValueError:
        raise UwbPayloadError("not a time like 2016-10-18 14:16:56.365", location=where) from None
    # Sewio sends UTC without an offset
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _zone_ids(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise UwbPayloadError("must be an array of zones", location=where)
    ids: list[str] = []
    for n, zone in enumerate(value):
        if not isinstance(zone, dict):
            raise UwbPayloadError("a zone must be an object", location=f"{where}[{n}]")
        key = zone.get("id", zone.get("name"))
        ids.append(_text(key, f"{where}[{n}].id"))
    return tuple(ids)
