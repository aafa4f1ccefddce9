"""`config/zones.yaml`: the hospital's UWB zones, which gateway zone ids or plan polygons make
each, and the timing of zone entry and exit. Validated at load; errors name file:line key.

A fix is placed in a zone by the gateway's own zone ids first (the vendor's geofences), then by
the polygons (metres on the site plan). The zone keys are the values of the Location identifier
`urn:greenchannel:uwb-zone` that the pathway files capture from (gate, ed, resus, ct, cath-lab,
icu, ward ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from devices.uwb.errors import ZonesConfigError
from devices.uwb.fixes import Fix
from engine.mapping import load_yaml
from engine.mapping.yamlfile import validation_error_to_config_error
from engine.settings import content_root

__all__ = ["ZONE_SYSTEM", "Timing", "Zone", "ZoneMap", "default_zones_file", "load_zones"]

ZONE_SYSTEM = "urn:greenchannel:uwb-zone"
Point = tuple[float, float]
_HINT = "fix config/zones.yaml (docs/uwb.md describes it) and restart"


class _ZoneModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    gateway_zones: tuple[str, ...] = ()
    polygons: tuple[Annotated[tuple[Point, ...], Field(min_length=3)], ...] = ()

    @model_validator(mode="after")
    def _made_of_something(self) -> _ZoneModel:
        if not self.gateway_zones and not self.polygons:
            raise ValueError("a zone needs gateway_zones or polygons (or both)")
        return self


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dwell_s: float = Field(10, gt=0)
    exit_after_s: float = Field(60, gt=0)
    silent_after_s: float = Field(120, gt=0)
    max_error_m: float = Field(1.0, gt=0)
    return_within_h: float = Field(24, gt=0)
    zones: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")], _ZoneModel]

    @model_validator(mode="after")
    def _hysteresis(self) -> _FileModel:
        if self.exit_after_s <= self.dwell_s:
            raise ValueError("exit_after_s must be longer than dwell_s (hysteresis)")
        return self


@dataclass(frozen=True, slots=True)
class Timing:
    """How long a tag must stay to enter, be away to leave, be quiet to be silent."""

    dwell_s: float = 10
    exit_after_s: float = 60
    silent_after_s: float = 120
    max_error_m: float = 1.0


@dataclass(frozen=True, slots=True)
class Zone:
    key: str
    name: str
    gateway_zones: tuple[str, ...]
    polygons: tuple[tuple[Point, ...], ...]

    def contains(self, x: float, y: float) -> bool:
        return any(_inside(polygon, x, y) for polygon in self.polygons)


@dataclass(frozen=True, slots=True)
class ZoneMap:
    """The zones in file order, and the timing rules."""

    zones: tuple[Zone, ...]
    timing: Timing
    return_within_h: float = 24

    def by_key(self, key: str) -> Zone:
        return next(zone for zone in self.zones if zone.key == key)

    def locate(self, fix: Fix) -> str | None:
        """The zone key of a fix: its gateway zone ids first, then the first polygon (in file
        order) that holds its position; None outside every zone."""
        for gateway_zone in fix.gateway_zones:
            for zone in self.zones:
                if gateway_zone in zone.gateway_zones:
                    return zone.key
        if fix.x_m is None or fix.y_m is None:
            return None
        for zone in self.zones:
            if zone.contains(fix.x_m, fix.y_m):
                return zone.key
        return None

    def confident(self, fix: Fix) -> bool:
        """False for a fix the gateway failed or is unsure of (radius above max_error_m)."""
        if not fix.ok:
            return False
        return fix.error_m is None or fix.error_m <= self.timing.max_error_m


def default_zones_file() -> Path:
    """`config/zones.yaml` of the installation (the wheel's content, or the source tree)."""
    return content_root() / "config" / "zones.yaml"


def load_zones(path: Path | None = None) -> ZoneMap:
    """Read and check a zones file (default `config/zones.yaml`)."""
    path = path or default_zones_file()
    data, positions = load_yaml(path)
    try:
        model = _FileModel.model_validate(data)
    except ValidationError as exc:
        error = validation_error_to_config_error(exc, str(path), data, positions)
        raise ZonesConfigError(
            error.message.split(": ", 1)[-1],
            file=str(path),
            line=error.line,
            key=error.key,
            hint=_HINT,
        ) from exc
    owners: dict[str, str] = {}
    for key, zone in model.zones.items():
        for gateway_zone in zone.gateway_zones:
            if gateway_zone in owners:
                raise ZonesConfigError(
                    f"gateway zone {gateway_zone!r} already makes zone {owners[gateway_zone]!r}",
                    file=str(path),
                    line=positions.get(("zones", key, "gateway_zones")),
                    key=f"zones.{key}.gateway_zones",
                    hint=_HINT,
                )
            owners[gateway_zone] = key
    zones = tuple(
        Zone(key, zone.name, zone.gateway_zones, zone.polygons) for key, zone in model.zones.items()
    )
    timing = Timing(model.dwell_s, model.exit_after_s, model.silent_after_s, model.max_error_m)
    return ZoneMap(zones, timing, model.return_within_h)


def _inside(polygon: Sequence[Point], x: float, y: float) -> bool:
    """Ray casting: whether (x, y) is inside the polygon (edges count as inside or not, either
    way: a tag on a wall line is at the boundary the dwell time is for)."""
    inside = False
    j = len(polygon) - 1
    for i, (xi, yi) in enumerate(polygon):
        xj, yj = polygon[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside
