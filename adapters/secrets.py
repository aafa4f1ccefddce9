"""Secrets of a connector (a broker password, an API key) from the environment: channel files
name the variable, never the secret."""

from __future__ import annotations

import os

from engine.errors import ConfigError

__all__ = ["from_environment"]


def from_environment(name: str | None, *, key: str, what: str) -> str | None:
    """The value of the environment variable `name` (None when no variable is named); a named
    variable that is not set is a ConfigError on `key`, so the deploy says so at once."""
    if name is None:
        return None
    value = os.environ.get(name)
    if value is None:
        raise ConfigError(
            f"environment variable {name} is not set",
            key=key,
            hint=f"set it to the {what} in the service's environment",
        )
    return value
