"""The score tables in `config/scores/*.yaml`: input contracts, points, bands and constants.

A table is the clinical part of a score (scores.md): which items it takes and their allowed
values, how many points each answer gives, the bands of the total. The code in this package
only combines them. Tables are read and checked once per process; a broken file is a
ConfigError naming the file, line and key.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engine.errors import ConfigError
from engine.mapping.yamlfile import load_yaml, validation_error_to_config_error
from engine.settings import content_root

__all__ = ["ItemSpec", "Row", "ScoreTable", "load_tables", "tables_folder"]

ItemType = Literal["integer", "number", "boolean", "enum", "list", "records"]


class Row(BaseModel):
    """One row of a banded table: the bounds a value must meet, and what the row gives.

    `from` is ≥, `above` is >, `below` is <, `to` is ≤; a missing bound is open. Bounds are
    compared as Decimal, so 0.40 in the file is exactly 0.40.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: Decimal | None = Field(None, alias="from")
    above: Decimal | None = None
    below: Decimal | None = None
    to: Decimal | None = None
    points: int | None = None
    band: str | None = None
    percent: float | None = None

    @model_validator(mode="after")
    def _one_result(self) -> Row:
        given = [name for name in ("points", "band", "percent") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("a row gives exactly one of points, band or percent")
        return self

    def holds(self, value: Decimal) -> bool:
        """Whether `value` lies within this row's bounds."""
        return (
            (self.from_ is None or value >= self.from_)
            and (self.above is None or value > self.above)
            and (self.below is None or value < self.below)
            and (self.to is None or value <= self.to)
        )


class ItemSpec(BaseModel):
    """One input item: its JSON type, allowed values and how its answer scores."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ItemType
    min: Decimal | None = Field(None, description="integer/number: lowest allowed (inclusive)")
    max: Decimal | None = Field(None, description="integer/number: highest allowed (inclusive)")
    above: Decimal | None = Field(None, description="number: must be greater than this")
    # {other item: {its value: a lower max}}, e.g. mRS: pre_stroke allows 0..5 only.
    max_when: dict[str, dict[str, int]] = Field(default_factory=dict)
    not_testable: str | None = Field(None, description='the "not testable" value ("T", "UN")')
    # enum/list: the allowed values; a mapping gives each value's points.
    values: list[str] | dict[str, int] | None = None
    points: list[Row] | None = Field(None, description="banded points (on a list: its length)")
    if_true: int | None = Field(None, description="boolean: points when true (0 when false)")
    fields: dict[str, ItemSpec] | None = Field(None, description="records: each object's items")
    unit: str | None = Field(None, description="UCUM unit of a measured value (FHIR Quantity)")
    loinc: str | None = Field(None, description="LOINC code of the item (FHIR component)")
    un_answer: str | None = Field(None, description="LOINC answer code stored for not testable")

    @model_validator(mode="after")
    def _consistent(self) -> ItemSpec:
        if self.type in ("enum", "list") and not self.values:
            raise ValueError(f"an {self.type} item needs its values")
        if self.type == "records" and not self.fields:
            raise ValueError("a records item needs its fields")
        return self

    def value_points(self) -> Mapping[str, int]:
        """Points per enum value (empty when the values carry none)."""
        return self.values if isinstance(self.values, dict) else {}

    def allowed_values(self) -> list[str]:
        return list(self.values or [])


class ScoreTable(BaseModel):
    """One score: name, version, codes, items in input order, bands and named constants."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    title: str
    code: str = Field(description="code in the project score CodeSystem (the version's family)")
    loinc: str | None = Field(None, description="LOINC code of the total, where verified")
    items: dict[str, ItemSpec]
    bands: list[Row] = Field(default_factory=list)
    tables: dict[str, list[Row]] = Field(default_factory=dict)
    constants: dict[str, Decimal] = Field(default_factory=dict)

    def constant(self, name: str) -> Decimal:
        try:
            return self.constants[name]
        except KeyError:
            raise ConfigError(f"missing constant {name!r}", key=f"{self.name}.constants") from None

    def band(self, total: Decimal | int | None) -> str | None:
        """The band of a total (None when the score has no bands or no total)."""
        if total is None or not self.bands:
            return None
        return pick(self.bands, Decimal(total), f"{self.name}.bands").band


def pick(rows: list[Row], value: Decimal, where: str) -> Row:
    """The first row whose bounds hold for `value`; a gap in a table is a ConfigError."""
    for row in rows:
        if row.holds(value):
            return row
    raise ConfigError(f"no row holds the value {value}", key=where, hint="close the gap")


def tables_folder() -> Path:
    """`config/scores/` of the source tree or of the installed package."""
    return content_root() / "config" / "scores"


@cache
def load_tables(folder: Path | None = None) -> dict[str, ScoreTable]:
    """Every score table in `folder` (default `config/scores/`), by score name."""
    folder = folder or tables_folder()
    tables: dict[str, ScoreTable] = {}
    for path in sorted(folder.glob("*.yaml")):
        data, positions = load_yaml(path)
        try:
            table = ScoreTable.model_validate(data)
        except ValidationError as exc:
            raise validation_error_to_config_error(exc, str(path), data, positions) from exc
        if table.name in tables:
            raise ConfigError(f"score {table.name!r} is defined twice", file=str(path), key="name")
        tables[table.name] = table
    return tables
