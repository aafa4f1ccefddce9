"""Channel files: one YAML file per interface, validated into a typed, frozen `Channel`.

Validation happens before anything is deployed, and every problem names file, line and key,
e.g. `channels/his-adt.yaml:14 destinations[1].retry.max_attempts: must be ≥ 0`.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from engine.errors import ConfigError
from engine.mapping.yamlfile import load_yaml, load_yaml_text, validation_error_to_config_errors
from engine.plugins import Plugins

__all__ = [
    "Channel",
    "ChannelFile",
    "DestinationSpec",
    "PartitionSpec",
    "RetryPolicy",
    "TransformerSpec",
    "load_channel",
    "load_channel_dir",
    "load_channel_text",
]

NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class RetryPolicy(BaseModel):
    """How a destination retries transient failures: exponential backoff up to a maximum."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(
        0,
        ge=0,
        description="Attempts before the message goes to ERROR; 0 retries forever (the queue "
        "waits for the receiver, which keeps order).",
    )
    initial_backoff_s: float = Field(1.0, gt=0, description="Wait before the first retry.")
    max_backoff_s: float = Field(300.0, gt=0, description="Longest wait between retries.")
    multiplier: float = Field(2.0, ge=1, description="Growth of the wait after each failure.")
    jitter: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Fraction of each wait drawn at random (0.3: between 70 % and 100 % of "
        "it), so that many senders failing together do not all retry in the same second.",
    )

    def backoff_s(self, attempts: int) -> float:
        """The wait after `attempts` failed attempts."""
        wait = float(
            min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempts - 1))
        )
        if self.jitter:
            wait *= 1.0 - self.jitter * random.random()
        return wait


class TransformerSpec(BaseModel):
    """A mapping file applied to the parsed message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mapping: str = Field(description="Mapping file, relative to the mappings folder.")
    media_type: str = Field(
        "application/fhir+json", description="Media type of what the mapping produces."
    )
    check_output: bool = Field(
        True,
        description="Run the installed output checks (`greenchannel.output_checks`, e.g. the "
        "FHIR structure) on what the mapping produces, in the processing worker; a message "
        "whose output fails one goes to ERROR, naming the element, and can be reprocessed.",
    )


class PartitionSpec(BaseModel):
    """Parallel lanes that keep one key's messages (e.g. one patient's) in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(description='Expression giving the partition key, e.g. "${PID-3.1}".')
    lanes: int = Field(4, ge=1, le=64, description="Number of parallel lanes per destination.")


class DestinationSpecBase(BaseModel):
    """One destination: its own filter, transformer, queue and retry policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME, description="Unique within the channel; names its queue.")
    filter: str | None = Field(
        None, description="Condition expression; messages for which it is false are skipped."
    )
    transformer: TransformerSpec | None = Field(
        None, description="A mapping of its own; default: what the channel transformer made."
    )
    retry: RetryPolicy = Field(
        default_factory=lambda: RetryPolicy(),
        description="Backoff for transient failures (below); permanent ones go to ERROR at once.",
    )
    batch_max: int = Field(100, ge=1, le=1000, description="Messages handed over at once.")


class ChannelFileBase(BaseModel):
    """The top level of a channel file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME, description="The channel's name, unique in the engine.")
    description: str = Field("", description="What this interface is for.")
    enabled: bool = Field(True, description="Deployed when the engine starts.")
    charset: str | None = Field(None, description="Charset when a message declares none.")
    timezone: str | None = Field(None, description="Offset for times sent without one.")
    filter: str | None = Field(
        None, description="Condition expression; false marks the message FILTERED."
    )
    transformer: TransformerSpec | None = Field(
        None, description="The channel's mapping; without it the raw message is passed on."
    )
    partition: PartitionSpec | None = Field(
        None, description="Process in parallel lanes without reordering one key's messages."
    )
    gather_ms: int | None = Field(
        None,
        ge=0,
        le=5000,
        description="Least time between two processing rounds while messages keep coming "
        "(default: the engine's `processing_gather_ms`, 200); 0 for a channel whose every "
        "message must go at once, such as alerts.",
    )

    @model_validator(mode="after")
    def _unique_destinations(self) -> ChannelFileBase:
        names = [d.name for d in getattr(self, "destinations", [])]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"destination names must be unique: {', '.join(duplicates)}")
        return self


# What the rest of the engine sees: a channel file validated against the installed connectors.
ChannelFile = ChannelFileBase
DestinationSpec = DestinationSpecBase


@dataclass(frozen=True)
class Channel:
    """A validated channel file and where it came from."""

    spec: Any  # a ChannelFile built for the installed connectors (see `_model_for`)
    file: str
    fingerprint: str  # changes when the file's content changes
    text: str = ""  # the file as read, so another process can validate it again

    @property
    def name(self) -> str:
        return str(self.spec.name)


def _model_for(plugins: Plugins) -> type[BaseModel]:
    """The channel file model for the connectors installed in this process."""

    def union(models: list[type[BaseModel]]) -> Any:
        if len(models) == 1:
            return models[0]
        return Annotated[Union[tuple(models)], Field(discriminator="kind")]  # noqa: UP007

    source_models = [f.config_model for f in plugins.sources.values()]
    destination_models = [f.config_model for f in plugins.destinations.values()]
    if not source_models or not destination_models:
        raise ConfigError(
            "no connectors are installed", hint="reinstall greenchannel: `pip install .`"
        )
    destination = create_model(
        "DestinationSpec",
        __base__=DestinationSpecBase,
        connector=(union(destination_models), Field(description="Where to deliver.")),
    )
    return create_model(
        "ChannelFile",
        __base__=ChannelFileBase,
        source=(union(source_models), Field(description="Where messages come from.")),
        destinations=(
            list[destination],
            Field(default_factory=list, description="Where messages go, each with its queue."),
        ),
    )


_TIMEZONE = re.compile(r"^[+-]\d{2}:\d{2}$")


def _validate(data: Any, positions: Any, file: str, plugins: Plugins, raw: str) -> Channel:
    if not isinstance(data, dict):
        raise ConfigError("a channel file must be a mapping of keys", file=file)
    _check_kinds(data, positions, file, plugins)
    try:
        spec: Any = _model_for(plugins).model_validate(data)
    except ValidationError as exc:
        errors = validation_error_to_config_errors(exc, file, data, positions)
        raise ChannelFileErrors(errors) from exc
    if spec.timezone is not None and not _TIMEZONE.match(spec.timezone):
        raise ConfigError(
            "must be an offset like +08:00",
            file=file,
            line=positions.get(("timezone",)),
            key="timezone",
        )
    return Channel(
        spec=spec, file=file, fingerprint=hashlib.sha256(raw.encode()).hexdigest(), text=raw
    )


def _check_kinds(data: dict[str, Any], positions: Any, file: str, plugins: Plugins) -> None:
    """Unknown connector kinds get a message listing the installed ones."""
    source = data.get("source")
    if isinstance(source, dict) and source.get("kind") not in plugins.sources:
        raise ConfigError(
            f"unknown source kind {source.get('kind')!r}; "
            f"installed: {', '.join(sorted(plugins.sources))}",
            file=file,
            line=positions.get(("source", "kind"), positions.get(("source",))),
            key="source.kind",
        )
    for index, destination in enumerate(data.get("destinations") or []):
        connector = destination.get("connector") if isinstance(destination, dict) else None
        if isinstance(connector, dict) and connector.get("kind") not in plugins.destinations:
            key = ("destinations", index, "connector", "kind")
            raise ConfigError(
                f"unknown destination kind {connector.get('kind')!r}; "
                f"installed: {', '.join(sorted(plugins.destinations))}",
                file=file,
                line=positions.get(key),
                key=f"destinations[{index}].connector.kind",
            )


class ChannelFileErrors(ConfigError):
    """Several problems in one channel file; the message lists them all, one per line."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__("\n".join(e.message for e in errors), file=None, line=first.line, key=None)
        self.file = first.file


def load_channel(path: Path, plugins: Plugins, *, display_name: str | None = None) -> Channel:
    """Read and validate one channel file."""
    name = display_name or str(path)
    data, positions = load_yaml(path, display_name=name)
    return _validate(data, positions, name, plugins, path.read_text(encoding="utf-8-sig"))


def load_channel_text(text: str, plugins: Plugins, *, file: str = "<channel>") -> Channel:
    """Validate a channel given as text (tests, the HTTP API)."""
    data, positions = load_yaml_text(text, file=file)
    return _validate(data, positions, file, plugins, text)


def load_channel_dir(
    folder: Path, plugins: Plugins
) -> tuple[dict[str, Channel], list[ConfigError]]:
    """Every `*.yaml` channel in `folder`: the valid ones by name, and the problems of the rest."""
    channels: dict[str, Channel] = {}
    problems: list[ConfigError] = []
    if not folder.is_dir():
        return channels, [ConfigError("channels folder not found", file=str(folder))]
    for path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
        try:
            channel = load_channel(path, plugins)
        except ChannelFileErrors as exc:
            problems.extend(exc.errors)
            continue
        except ConfigError as exc:
            problems.append(exc)
            continue
        if channel.name in channels:
            problems.append(
                ConfigError(
                    f"channel name {channel.name!r} is also used by {channels[channel.name].file}",
                    file=str(path),
                    key="name",
                )
            )
            continue
        channels[channel.name] = channel
    return channels, problems
