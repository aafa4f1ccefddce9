"""config/zones.yaml: the shipped file has the zones the pathway files capture from, a fix is
placed by gateway zone then polygon, and a wrong file fails with file:line key."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devices.uwb.errors import ZonesConfigError
from devices.uwb.fixes import Fix
from devices.uwb.zones import load_zones

ROOT = Path(__file__).resolve().parents[3]
AT = datetime(2026, 11, 25, tzinfo=UTC)


def test_the_shipped_zones_cover_every_zone_key_the_pathways_capture_from() -> None:
    wanted = set()
    for path in (ROOT / "config" / "pathways").glob("*.yaml"):
        wanted |= set(re.findall(r"uwb-zone' and location\.identifier\.value = '([a-z-]+)'",
                                 path.read_text(encoding="utf-8")))  # fmt: skip
    keys = {zone.key for zone in load_zones().zones}
    assert wanted and wanted <= keys
    assert {"ccu", "stroke-unit", "ct"} <= keys


def test_a_fix_is_placed_by_gateway_zone_first_then_by_polygon() -> None:
    zones = load_zones()
    assert zones.locate(Fix("t", AT, 5, 3)) == "gate"
    assert zones.locate(Fix("t", AT, 5, 3, ("zone-cathlab",))) == "cath-lab"
    assert zones.locate(Fix("t", AT, 100, 100)) is None
    assert zones.locate(Fix("t", AT, gateway_zones=("unknown-zone",))) is None


def test_unsure_fixes_are_not_confident() -> None:
    zones = load_zones()
    assert zones.confident(Fix("t", AT, 1, 1, error_m=0.3))
    assert not zones.confident(Fix("t", AT, 1, 1, error_m=2.5))
    assert not zones.confident(Fix("t", AT, ok=False))


@pytest.mark.parametrize(
    ("text", "line", "key", "says"),
    [
        ("dwell_s: 30\nexit_after_s: 20\nzones:\n  gate: {name: g, gateway_zones: [a]}\n",
         1, None, "longer than dwell_s"),
        ("zones:\n  gate:\n    name: g\n", 2, "zones.gate", "gateway_zones or polygons"),
        ("zones:\n  Gate!: {name: g, gateway_zones: [a]}\n", 2, "zones", "pattern"),
        ("zones:\n  gate: {name: g, polygons: [[[0, 0], [1, 1]]]}\n", 2, "zones.gate.polygons",
         "at least 3"),
        ("zones:\n  gate: {name: g, gateway_zones: [a]}\n  ed: {name: e, gateway_zones: [a]}\n",
         3, "zones.ed.gateway_zones", "already makes zone 'gate'"),
        ("zones:\n  gate: {name: g, gateway_zones: [a], colour: red}\n", 2, "zones.gate.colour",
         ""),
    ],
)  # fmt: skip
def test_a_wrong_zones_file_names_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str | None, says: str
) -> None:
    path = tmp_path / "zones.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ZonesConfigError) as caught:
        load_zones(path)
    error = caught.value
    assert (error.file, error.line) == (str(path), line)
    if key:
        assert error.key is not None and error.key.startswith(key)
    assert says in str(error)
