"""The errors of the UWB device layer: a payload that cannot be read, a zones file that is wrong,
a tag nobody registered, a wristband action that does not fit the tag's state."""

from __future__ import annotations

from engine.errors import ConfigError, GreenchannelError, ParseError

__all__ = ["UnknownTag", "UwbPayloadError", "WristbandError", "ZonesConfigError"]


class UwbPayloadError(ParseError):
    """A gateway message that is not JSON, or lacks a field a position needs (says which)."""


class ZonesConfigError(ConfigError):
    """`config/zones.yaml` is wrong; the message names file, line and key."""


class WristbandError(GreenchannelError):
    """A bind, unbind or return that the tag's state does not allow (says why)."""


class UnknownTag(WristbandError):
    """A tag id that is not registered as a wristband or a staff badge."""
