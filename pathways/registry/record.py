"""The registry record of one case and the problems found in it: what the builder returns and
what validation says, as plain typed values with a JSON form for the CLI and the API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["FieldTrace", "RegistryProblem", "RegistryRecord", "Severity", "UnknownRegistryField"]

Severity = Literal["error", "warning"]


class UnknownRegistryField(KeyError):
    """An override names a field the registry mapping does not have."""

    def __init__(self, key: str, registry: str) -> None:
        super().__init__(key)
        self.key = key
        self.message = (
            f"'{key}' is not a field of the {registry} mapping; write it as Block.FIELD "
            "exactly as the spec spells it (FirstAIDInfo.ATTACK_TIME)"
        )

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class FieldTrace:
    """Where one field's value came from: the resources (`Observation/ecg-1`), or `override`."""

    key: str  # Block.FIELD
    origin: str  # fhirpath, node, fact, score, indicator, param, value, derive, override, none
    sources: tuple[str, ...] = ()
    fill: str = ""  # what would fill it (for staff when it is missing)

    def as_dict(self) -> dict[str, Any]:
        return {"origin": self.origin, "sources": list(self.sources), "fill": self.fill}


@dataclass(frozen=True, slots=True)
class RegistryProblem:
    """One finding of local validation, in the platform's `块:消息;` style.

    `source` says which FHIR data (or entry) would fill or fix the field."""

    block: str  # RegisterInfo, FirstAIDInfo, ...
    field: str  # FIELD, or LIST[2].FIELD for a list item, or "" for the block
    message: str  # 急救信息:来院方式必填;
    source: str
    severity: Severity = "error"
    kind: str = "required"  # required, type, length, decimals, values, range, list, order, ...

    @property
    def key(self) -> str:
        return f"{self.block}.{self.field}" if self.field else self.block

    def as_dict(self) -> dict[str, Any]:
        return {
            "block": self.block,
            "field": self.field,
            "message": self.message,
            "source": self.source,
            "severity": self.severity,
            "kind": self.kind,
        }


@dataclass(frozen=True, slots=True)
class RegistryRecord:
    """One case's record for one registry: the payload to send and how it was made."""

    registry: str
    case_id: str
    mapping_version: str
    spec_version: str
    mapping_file: str
    payload: dict[str, dict[str, Any]]  # block -> field -> value, as the platform wants it
    traces: Mapping[str, FieldTrace] = field(default_factory=dict)  # Block.FIELD -> trace
    overrides: Mapping[str, Any] = field(default_factory=dict)  # what staff set, as given

    def value(self, key: str) -> Any:
        """The value of `Block.FIELD`, None when the record does not send it."""
        block, _, name = key.partition(".")
        return self.payload.get(block, {}).get(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "case_id": self.case_id,
            "mapping_version": self.mapping_version,
            "spec_version": self.spec_version,
            "mapping_file": self.mapping_file,
            "payload": self.payload,
            "sources": {key: trace.as_dict() for key, trace in self.traces.items()},
            "overrides": dict(self.overrides),
        }

    def __repr__(self) -> str:  # the payload holds patient data: never in logs
        return (
            f"RegistryRecord(registry={self.registry!r}, case_id={self.case_id!r}, "
            f"mapping_version={self.mapping_version!r})"
        )
