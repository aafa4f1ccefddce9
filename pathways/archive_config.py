"""The archive's data file (`config/pathways/archive.yaml`): labels, reference and expected nodes.

Loaded into a frozen pydantic model; a mistake in the file is a ConfigError naming file:line key.
Time-node labels are not in it: they are those of the one node catalogue
(`config/pathways/catalogue.yaml`, which the pathway engine publishes as a CodeSystem).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.mapping import load_yaml, validation_error_to_config_error
from engine.settings import content_root
from pathways.definitions import load_catalogue, pathways_dir
from pathways.vocabulary import ArrivalMode, Center

__all__ = [
    "SECTIONS",
    "ArchiveConfig",
    "References",
    "Section",
    "NODE_CATALOGUE",
    "default_config",
    "fact_key",
    "load_archive_config",
    "node_labels",
]

Section = Literal["vitals", "ecgs", "labs", "imaging", "procedures", "medications", "scores"]
SECTIONS: tuple[Section, ...] = (
    "vitals", "ecgs", "labs", "imaging", "procedures", "medications", "scores",
)  # fmt: skip

CONFIG_FILE = Path("config") / "pathways" / "archive.yaml"
NODE_CATALOGUE = "config/pathways/catalogue.yaml"


class References(BaseModel):
    """Which node the timeline measures from: the first key of each list that the case has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    door: tuple[str, ...] = Field(description="Nodes that are the door, in order of preference.")
    fmc: tuple[str, ...] = Field(description="Nodes that are the first medical contact.")
    onset: tuple[str, ...] = Field(
        description="Nodes that stand for the onset (symptom onset, last known well, injury)."
    )


class ArchiveConfig(BaseModel):
    """What the patient archive needs to know that is not code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    centers: dict[Center, str] = Field(description="中文 name of each center.")
    arrival_modes: dict[ArrivalMode, str] = Field(description="中文 name of each arrival mode.")
    references: References
    prehospital_nodes: tuple[str, ...] = Field(
        description="Nodes shown in the prehospital part of the emergency section."
    )
    expected_nodes: dict[Center, tuple[str, ...]] = Field(
        description="Nodes a case of the center should have; absent ones are listed as missing."
    )
    expected_by_fact: dict[str, dict[str, tuple[str, ...]]] = Field(
        default_factory=dict,
        description='fact name -> fact value (a boolean written "true") -> further nodes '
        'expected (reperfusion: primary_pci: ...; ivt: "true": ...).',
    )
    expected_sections: dict[Center, tuple[Section, ...]] = Field(
        default_factory=dict,
        description="Sections a case of the center should not leave empty.",
    )
    ecg_codes: tuple[str, ...] = Field(description="Observation codes (system|code) of ECGs.")
    score_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Score code -> name, when the Observation has no text; its LOINC codes "
        "are also the LOINC-coded Observations taken for scores.",
    )


def load_archive_config(path: Path) -> ArchiveConfig:
    """Read and check one archive data file; ConfigError names file:line key on a mistake."""
    data, positions = load_yaml(path)
    try:
        return ArchiveConfig.model_validate(data)
    except ValidationError as exc:
        raise validation_error_to_config_error(exc, str(path), data, positions) from exc


@cache
def default_config() -> ArchiveConfig:
    """The archive data file installed with greenchannel (read once per process)."""
    return load_archive_config(content_root() / CONFIG_FILE)


@cache
def node_labels() -> Mapping[str, str]:
    """Time-node key -> 中文 label, from the node catalogue (read once per process)."""
    return load_catalogue(pathways_dir() / "catalogue.yaml").labels


def fact_key(value: object) -> str:
    """A case fact's value as `expected_by_fact` writes it: booleans as `true` / `false`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
