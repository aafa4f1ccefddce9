"""The chest pain center data platform's contract that both sides of an upload share: the
request signature (registries.md A.1) and the credentials the platform issues (base URL, app id,
secret key, hospital id). The connector (`adapters.registry.cpc`) signs and sends with them;
the record needs the hospital id; `greenchannel registry sign` prints the signature.

Credentials come from `GREENCHANNEL_REGISTRY_CPC_*` variables, else from a secrets file in the
data dir (`secrets/registry-cpc.yaml`), never from the repository; they are read again at each
use, so a rotated key counts without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = [
    "CREDENTIALS_FILE",
    "CpcCredentials",
    "CredentialsMissing",
    "hospital_id",
    "load_credentials",
    "sign",
]

CREDENTIALS_FILE = "secrets/registry-cpc.yaml"  # relative to the data dir
PATH = "/Services/{version}/ChestPainCenter"


def sign(secret_key: str, time: str, request_id: str) -> str:
    """The platform's signature: lowercase hex HMAC-SHA256 with the secret key (as issued, never
    base64-decoded) over the upper-cased `time + requestId`, both UTF-8."""
    message = (time + request_id).upper().encode("utf-8")
    return hmac.new(secret_key.encode("utf-8"), message, hashlib.sha256).hexdigest()


class CpcCredentials(BaseSettings):
    """Where and as whom to upload: from `GREENCHANNEL_REGISTRY_CPC_*` variables, else from the
    connector's secrets file. Never in the repository."""

    model_config = SettingsConfigDict(
        env_prefix="GREENCHANNEL_REGISTRY_CPC_", extra="ignore", frozen=True
    )

    base_url: str = Field(description="The platform's address, e.g. https://host (test or prod).")
    version: str = Field("v1.1", description="The {Version} path segment: V1.0, v1.1 …")
    app_id: str = Field(description="The appId the platform issued.")
    secret_key: SecretStr = Field(description="The secretKey the platform issued, as issued.")
    hospital_id: str = Field(description="HOSPITAL_ID the platform issued (RegisterInfo).")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment beats the secrets file (passed in as init values).
        return (env_settings, init_settings)

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + PATH.format(version=self.version)


class CredentialsMissing(Exception):
    """The credentials cannot be read: says which key and where to put it."""


def _file_values(file: Path | None) -> dict[str, Any]:
    if file is None or not file.is_file():
        return {}
    loaded = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    if not isinstance(loaded, dict):
        raise CredentialsMissing(f"{file} must be a mapping of keys (base_url, app_id, …)")
    return loaded


def load_credentials(file: Path | None) -> CpcCredentials:
    """The credentials now (a rotated key is read at the next attempt)."""
    try:
        return CpcCredentials(**_file_values(file))
    except ValidationError as exc:
        missing = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        raise CredentialsMissing(
            f"registry-cpc credentials incomplete ({missing}): set GREENCHANNEL_REGISTRY_CPC_"
            f"<KEY> variables or put them in {file}"
        ) from None


class _Hospital(BaseSettings):
    """Only the hospital id, which the record needs even where nothing is uploaded."""

    model_config = SettingsConfigDict(
        env_prefix="GREENCHANNEL_REGISTRY_CPC_", extra="ignore", frozen=True
    )

    hospital_id: str | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)


def hospital_id(data_dir: Path) -> str | None:
    """The HOSPITAL_ID the record carries, if the credentials give one."""
    try:
        return _Hospital(**_file_values(data_dir / CREDENTIALS_FILE)).hospital_id
    except (CredentialsMissing, ValidationError):
        return None
