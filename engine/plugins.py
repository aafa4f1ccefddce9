"""Finds connectors, parsers, output checks, HTTP routers, change-event subscribers, CLI
commands and other kinds of mapping files through entry points.

This is how `engine/` uses protocols without importing them: adapters (and a hospital's own
packages) declare entry points in their `pyproject.toml`, and the engine looks them up by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from engine.connectors import DestinationFactory, OutputAdjusterFactory, Parser, SourceFactory
from engine.errors import ConfigError
from engine.subscribers import SubscriberFactory

__all__ = ["Plugins", "load_commands", "load_plugins"]

SOURCES = "greenchannel.sources"
DESTINATIONS = "greenchannel.destinations"
PARSERS = "greenchannel.parsers"
ROUTERS = "greenchannel.routers"
COMMANDS = "greenchannel.commands"
SUBSCRIBERS = "greenchannel.subscribers"
OUTPUT_CHECKS = "greenchannel.output_checks"
MAPPING_KINDS = "greenchannel.mapping_kinds"
OUTPUT_ADJUSTERS = "greenchannel.output_adjusters"


@dataclass(frozen=True)
class Plugins:
    """Everything found through entry points, loaded once per process."""

    sources: dict[str, SourceFactory] = field(default_factory=dict)
    destinations: dict[str, DestinationFactory] = field(default_factory=dict)
    parsers: dict[str, Parser] = field(default_factory=dict)
    routers: dict[str, Callable[..., Any]] = field(default_factory=dict)
    commands: dict[str, Callable[..., Any]] = field(default_factory=dict)
    subscribers: dict[str, SubscriberFactory] = field(default_factory=dict)
    # Take a mapping's output, return its problems as "element: reason" (empty: fine).
    output_checks: dict[str, Callable[[Any], list[str]]] = field(default_factory=dict)
    # A folder of the mappings folder holding another kind of mapping file (not message
    # mappings) -> the function that loads one such file, raising ConfigError (for `lint`).
    mapping_kinds: dict[str, Callable[[Path], Any]] = field(default_factory=dict)
    # Change a mapped output in the engine's process just before a destination writes it.
    output_adjusters: dict[str, OutputAdjusterFactory] = field(default_factory=dict)

    def source(self, kind: str, *, where: str = "source.kind") -> SourceFactory:
        try:
            return self.sources[kind]
        except KeyError:
            raise ConfigError(
                f"unknown source kind {kind!r}; installed: {', '.join(sorted(self.sources))}",
                key=where,
            ) from None

    def destination(self, kind: str, *, where: str = "kind") -> DestinationFactory:
        try:
            return self.destinations[kind]
        except KeyError:
            raise ConfigError(
                f"unknown destination kind {kind!r}; "
                f"installed: {', '.join(sorted(self.destinations))}",
                key=where,
            ) from None

    def parser(self, media_type: str) -> Parser | None:
        return self.parsers.get(media_type.split(";")[0].strip().lower())


@cache
def load_plugins() -> Plugins:
    def group(name: str, instantiate: bool = False) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for entry in entry_points(group=name):
            loaded = entry.load()
            found[entry.name.lower() if name == PARSERS else entry.name] = (
                loaded() if instantiate else loaded
            )
        return found

    return Plugins(
        sources=group(SOURCES, instantiate=True),
        destinations=group(DESTINATIONS, instantiate=True),
        parsers=group(PARSERS),
        routers=group(ROUTERS),
        commands=group(COMMANDS),
        subscribers=group(SUBSCRIBERS, instantiate=True),
        output_checks=group(OUTPUT_CHECKS),
        mapping_kinds=group(MAPPING_KINDS),
        output_adjusters=group(OUTPUT_ADJUSTERS, instantiate=True),
    )


def load_commands(name: str | None = None) -> dict[str, Callable[..., Any]]:
    """The plugins' CLI commands (name -> the function that registers its arguments): all of
    them, or only the one called `name` (none if no plugin has it). Each command's module
    imports what it runs, a second or more for some, so a command line loads its own alone."""
    if name is None:
        return load_plugins().commands
    return {entry.name: entry.load() for entry in entry_points(group=COMMANDS, name=name)}
