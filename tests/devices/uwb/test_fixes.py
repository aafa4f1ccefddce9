"""Gateway messages into fixes (devices/uwb/fixes.py, taps.py): the vendors' documented shapes,
and every malformed message a clear UwbPayloadError naming where, never another exception."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from devices.uwb.errors import UwbPayloadError
from devices.uwb.fixes import Fix, parse_fixes
from devices.uwb.positions import read_message
from devices.uwb.taps import Tap

# The Pozyx enterprise MQTT stream (topic `tags`): one array per update, millimetres.
POZYX = [{"version": "2.0", "tagId": "30331", "timestamp": 1764030090.807, "success": True,
          "data": {"metrics": {"latency": 28, "rates": {"success": 0.76, "update": 1.04}},
                   "coordinates": {"x": 9932, "y": -19651, "z": 5000}}}]  # fmt: skip
# Sewio RTLS Studio WebSocket feed: metres as padded text, UTC times without offset.
SEWIO = {"resource": "/feeds/18", "body": {"id": "18", "datastreams": [
    {"id": "posX", "current_value": " 6.34", "at": "2025-11-25 00:21:30.365"},
    {"id": "posY", "current_value": " 2.27", "at": "2025-11-25 00:21:30.365"},
    {"id": "clr", "current_value": " 0.10", "at": "2025-11-25 00:21:30.365"}]}}  # fmt: skip


def raw(document: object) -> bytes:
    return json.dumps(document).encode()


def test_a_pozyx_update_is_a_fix_in_metres_at_its_epoch_time() -> None:
    (fix,) = parse_fixes(raw(POZYX))
    assert fix == Fix("30331", datetime.fromtimestamp(1764030090.807, UTC), 9.932, -19.651)


def test_a_failed_pozyx_update_is_an_unsure_fix() -> None:
    failed = [{"tagId": "30331", "timestamp": 1764030090, "success": False, "errorCode": "X"}]
    (fix,) = parse_fixes(raw(failed))
    assert not fix.ok and fix.x_m is None


def test_pozyx_zones_are_read_as_gateway_zone_ids() -> None:
    update = {**POZYX[0], "data": {**POZYX[0]["data"], "zones": [{"id": "zone-gate"}]}}
    (fix,) = parse_fixes(raw([update]))
    assert fix.gateway_zones == ("zone-gate",)


def test_a_sewio_position_carries_its_confidence_radius() -> None:
    (fix,) = parse_fixes(raw(SEWIO))
    assert (fix.tag_id, fix.x_m, fix.y_m, fix.error_m) == ("18", 6.34, 2.27, 0.10)
    assert fix.at == datetime(2025, 11, 25, 0, 21, 30, 365000, tzinfo=UTC)


def test_a_sewio_zone_change_is_a_fix_in_that_zone() -> None:
    change = {"resource": "/zones", "body": {"feed_id": "23", "zone_id": "103", "status": "in",
                                             "at": "2025-11-25 00:22:00.000"}}  # fmt: skip
    (fix,) = parse_fixes(raw(change))
    assert (fix.tag_id, fix.gateway_zones, fix.x_m) == ("23", ("103",), None)


def test_a_sewio_battery_message_has_no_fix() -> None:
    battery = {
        "resource": "/feeds/1",
        "body": {
            "id": "1",
            "datastreams": [
                {"id": "battery_level", "current_value": "77%", "at": "2025-11-25 00:22:00.000"}
            ],
        },
    }
    assert parse_fixes(raw(battery)) == []


def test_an_nfc_tap_and_a_sewio_button_press_are_taps() -> None:
    (tap,) = read_message(raw({"badgeId": "B-7", "readerId": "cathlab-door",
                               "timestamp": "2026-11-25T08:47:10+08:00"}))  # fmt: skip
    assert tap == Tap("B-7", datetime.fromisoformat("2026-11-25T08:47:10+08:00"), "cathlab-door")
    button = {
        "resource": "/feeds/9",
        "body": {
            "id": "9",
            "datastreams": [
                {"id": "user_button", "current_value": "1", "at": "2025-11-25 00:22:00.000"}
            ],
        },
    }
    assert read_message(raw(button)) == [Tap("9", datetime(2025, 11, 25, 0, 22, tzinfo=UTC))]


@pytest.mark.parametrize(
    ("payload", "where", "says"),
    [
        (b"x=1,y=2", "$", "not JSON"),
        (b"\xff\xfe{}", "$", "not UTF-8"),
        (b'{"hello": 1}', "$", "neither a Pozyx"),
        (raw([{"timestamp": 1764030090, "data": {}}]), "$[0].tagId", "missing"),
        (raw([{"tagId": "1", "timestamp": 1764030090123}]), "$[0].timestamp", "epoch seconds"),
        (raw([{"tagId": "1", "timestamp": 1764030090, "success": True, "data": {}}]), "$[0]",
         "coordinates"),
        (raw([{"tagId": "1", "timestamp": 1764030090, "data": {"coordinates": {"x": "a"}}}]),
         "$[0].data.coordinates.x", "not a number"),
        (raw({"body": {"id": "1", "datastreams": [{"id": "posX", "current_value": "1"},
                                                  {"id": "posY", "current_value": "2"}]}}),
         "$.body.datastreams[posX].at", "missing"),
        (raw({"body": {"feed_id": "2", "zone_id": "3", "status": "maybe",
                         "at": "2025-11-25 00:22:00.000"}}),
         "$.body.status", "in` or `out"),
        (raw({"badgeId": "B-7", "timestamp": "2026-11-25T08:47:10"}), "$.timestamp", "offset"),
    ],
)  # fmt: skip
def test_a_bad_message_says_where_and_what(payload: bytes, where: str, says: str) -> None:
    with pytest.raises(UwbPayloadError) as caught:
        read_message(payload)
    assert caught.value.location == where
    assert says in caught.value.reason


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "tagId",
                    "timestamp",
                    "data",
                    "coordinates",
                    "x",
                    "y",
                    "success",
                    "body",
                    "id",
                    "datastreams",
                    "current_value",
                    "at",
                    "zones",
                    "zone_id",
                    "feed_id",
                    "status",
                    "badgeId",
                ]
            ),  # fmt: skip
            inner,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(JSON)
@example({"timestamp": 253402300800.0, "badgeId": "0"})  # a tap in the year 10000
@example({"timestamp": 1e300, "badgeId": "0"})
def test_any_json_is_fixes_or_a_payload_error(document: object) -> None:
    try:
        items = read_message(raw(document))
    except UwbPayloadError as exc:
        assert exc.location.startswith("$")
    else:
        assert all(item.at.tzinfo is not None for item in items)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_fixes_or_a_payload_error(payload: bytes) -> None:
    try:
        read_message(payload)
    except UwbPayloadError:
        pass
