"""The STEMI rules as data: `config/ecg/stemi-4udmi.yaml` loaded once into frozen models.

Thresholds live in the YAML (4th Universal Definition of MI, Sgarbossa, Armstrong), never here;
`load_criteria()` names file, line and key when the file is wrong.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.mapping.yamlfile import load_yaml, validation_error_to_config_error
from engine.settings import content_root

__all__ = ["CRITERIA_FILE", "Criteria", "load_criteria"]

CRITERIA_FILE = Path("config") / "ecg" / "stemi-4udmi.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class V2V3Threshold(_Model):
    """One row of the V2–V3 cut-points; the first row matching sex and age applies."""

    sex: Literal["male", "female"] | None = None
    min_age: int | None = None
    mv: float = Field(gt=0)

    def matches(self, sex: str | None, age: int | None) -> bool:
        if self.sex is not None and sex != self.sex:
            return False
        return self.min_age is None or (age is not None and age >= self.min_age)


class StElevation(_Model):
    default_mv: float = Field(gt=0)
    v2_v3_leads: tuple[str, ...]
    v2_v3: tuple[V2V3Threshold, ...] = Field(min_length=1)


class Territory(_Model):
    leads: tuple[str, ...]
    reciprocal: tuple[str, ...]


class LeadsThreshold(_Model):
    leads: tuple[str, ...]
    mv: float


class Lbbb(_Model):
    qrs_ms: float = Field(gt=0)
    negative_leads: tuple[str, ...]
    positive_leads: tuple[str, ...]


class Cornell(_Model):
    male: float
    female: float
    unknown: float


class Lvh(_Model):
    sokolow_lyon_mv: float
    cornell_mv: Cornell
    r_avl_mv: float
    strain_leads: tuple[str, ...]
    strain_st_mv: float
    strain_t_mv: float


class Sgarbossa(_Model):
    concordant_elevation_mv: float
    concordant_depression_mv: float
    concordant_depression_leads: tuple[str, ...]
    discordant_ratio: float = Field(lt=0)


class Confounders(_Model):
    lbbb: Lbbb
    lvh: Lvh
    armstrong_ratio: float = Field(gt=0)
    sgarbossa: Sgarbossa
    paced_spike_uv_per_ms: float = Field(gt=0)


class Criteria(_Model):
    """Everything the STEMI decision needs, as the YAML says it."""

    version: str
    st_elevation: StElevation
    st_depression_mv: float = Field(gt=0)
    depression_max_slope: float
    contiguous: tuple[tuple[str, str], ...] = Field(min_length=1)
    territories: dict[str, Territory]
    posterior_depression: LeadsThreshold
    confounders: Confounders

    def elevation_mv(self, lead: str, sex: str | None, age: int | None) -> float:
        """The ST elevation cut-point for one lead and patient."""
        if lead not in self.st_elevation.v2_v3_leads:
            return self.st_elevation.default_mv
        for row in self.st_elevation.v2_v3:
            if row.matches(sex, age):
                return row.mv
        return self.st_elevation.default_mv


@cache
def load_criteria(path: Path | None = None) -> Criteria:
    """The criteria file (default: the installed `config/ecg/stemi-4udmi.yaml`), read once."""
    file = path if path is not None else content_root() / CRITERIA_FILE
    data, positions = load_yaml(file)
    try:
        return Criteria.model_validate(data)
    except ValidationError as exc:
        raise validation_error_to_config_error(exc, str(file), data, positions) from None
