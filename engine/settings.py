"""The one settings object: `config/greenchannel.yaml`, then `GREENCHANNEL_*` variables, then flags.

Built once in the CLI and passed down; no other module reads the environment.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from datetime import timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from engine.errors import ConfigError

__all__ = ["JournalSettings", "RetentionSettings", "Settings", "content_root", "load_settings"]

_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def content_root() -> Path:
    """Where the default channels, mappings and config were installed with the package: the
    `greenchannel_content` folder of a wheel, or the source tree for an editable install."""
    spec = importlib.util.find_spec("greenchannel_content")
    # A namespace package; editable installs add a path-hook entry that is no directory.
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location)
        if (candidate / "config").is_dir() or (candidate / "channels").is_dir():
            return candidate
    raise ConfigError(
        "the default channels, mappings and settings are not installed",
        hint="reinstall greenchannel (`pip install .`) or pass --config and set channels_dir",
    )


class RetentionSettings(BaseModel):
    """How long finished messages keep their content and their metadata."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    content_days: float = Field(
        30, ge=0, description="Days until a sent or filtered message's raw content is dropped."
    )
    metadata_days: float = Field(
        180, ge=0, description="Days until a sent or filtered message's row is deleted."
    )
    interval_minutes: float = Field(60, gt=0, description="How often pruning runs.")
    batch_size: int = Field(1000, gt=0, description="Rows pruned per transaction.")


class JournalSettings(BaseModel):
    """The journal writer's group commit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_max: int = Field(500, gt=0, description="Most messages committed in one transaction.")
    queue_max: int = Field(
        10_000, gt=0, description="Messages waiting for a commit before sources stop reading."
    )


class Settings(BaseSettings):
    """Everything the engine needs to start, from the settings file and the environment."""

    model_config = SettingsConfigDict(
        env_prefix="GREENCHANNEL_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Field(Path("var"), description="Where the engine keeps everything it writes.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy async URL; default SQLite in DATA_DIR "
        "(PostgreSQL: postgresql+psycopg://user@host/db).",
    )
    http_host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    http_port: int = Field(8080, ge=0, le=65535, description="Port of the HTTP API.")
    channels_dir: Path | None = Field(None, description="Folder of channel files.")
    mappings_dir: Path | None = Field(None, description="Folder of mapping files.")
    timezone: str = Field("+08:00", description="Local offset for times sent without one.")
    default_charset: str = Field("utf-8", description="Charset when a message declares none.")
    admin_token: SecretStr | None = Field(
        None, description="An admin token to accept in addition to the stored ones."
    )
    journal: JournalSettings = Field(default_factory=lambda: JournalSettings())
    retention: RetentionSettings = Field(default_factory=lambda: RetentionSettings())
    worker_batch: int = Field(200, gt=0, description="Messages a channel worker takes at once.")
    processing_gather_ms: int = Field(
        200,
        ge=0,
        le=5000,
        description="Least time between two processing rounds of a busy channel; each round "
        "takes all that arrived meanwhile (an idle channel's first message goes at once).",
    )
    processing_workers: int = Field(
        1,
        ge=0,
        description="Worker processes that parse and map messages (another CPU core); "
        "0 parses and maps in the engine process.",
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    clocks: dict[str, Any] = Field(
        default_factory=dict,
        description="Device clock monitoring (NTP server, offset thresholds, trusted senders); "
        "checked by the clock monitor plugin, see docs/clocks.md.",
    )

    @field_validator("timezone")
    @classmethod
    def _offset(cls, value: str) -> str:
        if not _OFFSET.match(value):
            raise ValueError("must be an offset like +08:00")
        return value

    @property
    def tz(self) -> dt_timezone:
        return _offset_timezone(self.timezone)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'greenchannel.db').resolve()}"

    @property
    def resolved_channels_dir(self) -> Path:
        return self.channels_dir or _local_or_installed("channels")

    @property
    def resolved_mappings_dir(self) -> Path:
        return self.mappings_dir or _local_or_installed("mappings")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file is named per load (see load_settings); flags beat variables beat file.
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))


def _local_or_installed(folder: str) -> Path:
    local = Path(folder)
    if local.is_dir():
        return local
    return content_root() / folder


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from `config_file` (default: ./config/greenchannel.yaml, else the installed one),
    the environment and `overrides` (command-line flags), in rising priority."""
    if config_file is None:
        config_file = _local_or_installed("config") / "greenchannel.yaml"
    elif not config_file.is_file():
        raise ConfigError("settings file not found", file=str(config_file))
    given = {k: v for k, v in overrides.items() if v is not None}

    yaml_file = config_file if config_file.is_file() else None

    class FromFile(Settings):
        model_config = SettingsConfigDict(yaml_file=yaml_file)

    try:
        return FromFile(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(first["msg"], file=str(config_file), key=key) from exc


@functools.lru_cache(maxsize=64)
def _offset_timezone(offset: str) -> dt_timezone:
    """The fixed offset `+08:00` stands for; parsed once, since the engine asks for the time
    (and so for this) several times per batch of messages."""
    match = _OFFSET.match(offset)
    assert match is not None
    sign = 1 if match.group(1) == "+" else -1
    return dt_timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))
