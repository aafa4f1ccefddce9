"""The `clocks:` section of config/greenchannel.yaml: NTP server, thresholds, trusted senders."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from devices.clock.estimator import EstimatorSettings
from engine.errors import ConfigError

__all__ = ["ClockSettings", "DeviceTimes", "clock_settings"]


class DeviceTimes(BaseModel):
    """Which elements of which resources hold times stamped by the sender's clock, on which
    channels: those are corrected when the sender's clock is off (docs/clocks.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: list[str] = Field(
        min_length=1,
        description="Channel names, or shell patterns of them (`ecg-*`).",
    )
    elements: dict[str, list[str]] = Field(
        min_length=1,
        description="Resource type -> element paths, dotted; a path through a list walks "
        "every item (`location.period.start`). Each must hold a dateTime or instant.",
    )

    def matches(self, channel: str) -> bool:
        return any(fnmatch.fnmatchcase(channel, pattern) for pattern in self.channels)


class ClockSettings(BaseModel):
    """Device clock monitoring: every sender's clock offset from its message timestamps, the
    host's own offset by NTP, alerts when a sender is off, and corrections of device times."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ntp_server: str | None = Field(
        None, description="NTP server the engine host checks its own clock against; none: off."
    )
    ntp_port: int = Field(123, ge=1, le=65535, description="UDP port of the NTP server.")
    ntp_interval_s: float = Field(300, ge=16, description="Seconds between two NTP checks.")
    ntp_timeout_s: float = Field(2.0, gt=0, description="Seconds to wait for an NTP answer.")
    alert_threshold_s: float = Field(
        30, gt=0, description="A sender whose clock is off by more than this raises an alert."
    )
    recover_below_s: float | None = Field(
        None,
        gt=0,
        description="The alert is resolved once the offset is back under this "
        "(default: 80% of the threshold, so a clock hovering at it does not flap).",
    )
    tolerance_s: float = Field(
        2.0, ge=0, description="Device times are corrected only when the offset is beyond this."
    )
    min_samples: int = Field(
        5, ge=1, description="Messages from a sender before its offset counts (status unknown)."
    )
    bucket_s: float = Field(
        60, gt=0, description="Seconds of receipt time whose least delayed message is kept."
    )
    window_hours: float = Field(168, gt=0, description="Hours of history the estimate uses.")
    poll_s: float = Field(1.0, gt=0, description="How often the journal is read for new samples.")
    trusted: list[str] = Field(
        default_factory=list,
        description="Sources never corrected (a channel name, or channel:sender): a GPS- or "
        "NTP-disciplined device whose timestamps are the reference.",
    )
    device_times: list[DeviceTimes] = Field(
        default_factory=list,
        description="Where the device times are, per channel: only these are corrected.",
    )
    alert_channel: str = Field(
        "device-clock-alerts", description="The outbound channel the clock alerts go into."
    )

    @field_validator("trusted", "device_times", mode="before")
    @classmethod
    def _from_json(cls, value: Any) -> Any:
        # From an environment variable (GREENCHANNEL_CLOCKS__TRUSTED='["uwb"]') the list
        # arrives as its JSON text.
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def device_elements(self, channel: str) -> dict[str, tuple[str, ...]]:
        """Resource type -> the element paths holding device times on `channel` (all the rules
        that name it, together); empty: nothing to correct there."""
        found: dict[str, tuple[str, ...]] = {}
        for rule in self.device_times:
            if rule.matches(channel):
                for resource_type, paths in rule.elements.items():
                    known = found.get(resource_type, ())
                    found[resource_type] = known + tuple(p for p in paths if p not in known)
        return found

    @property
    def recover_s(self) -> float:
        return self.recover_below_s or 0.8 * self.alert_threshold_s

    @property
    def estimator(self) -> EstimatorSettings:
        return EstimatorSettings(bucket_s=self.bucket_s, window_s=self.window_hours * 3600)

    def is_trusted(self, source_id: str) -> bool:
        channel = source_id.split(":", 1)[0]
        return source_id in self.trusted or channel in self.trusted


def clock_settings(section: dict[str, Any] | None) -> ClockSettings:
    """The validated `clocks:` section; a ConfigError names the key."""
    try:
        return ClockSettings.model_validate(section or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(["clocks", *(str(p) for p in first["loc"])])
        raise ConfigError(first["msg"], file="config/greenchannel.yaml", key=key) from exc
