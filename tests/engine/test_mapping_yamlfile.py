"""Tests for the position-keeping YAML loader and the pydantic error translation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import ConfigError
from engine.mapping import load_yaml, validation_error_to_config_error
from engine.mapping.yamlfile import validation_error_to_config_errors


class Retry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_attempts: int = Field(ge=0)


class Mllp(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["mllp"]
    port: int
    retry: Retry = Retry(max_attempts=3)


class Fhir(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["fhir"]
    retry: Retry = Retry(max_attempts=3)


class Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    destinations: list[Annotated[Mllp | Fhir, Field(discriminator="kind")]]


CHANNEL = """\
name: his-adt
destinations:
  - kind: fhir
  - kind: mllp
    port: 2575
    retry:
      max_attempts: -1
"""


def test_pydantic_errors_become_file_line_key(tmp_path: Path) -> None:
    path = tmp_path / "his-adt.yaml"
    path.write_text(CHANNEL, encoding="utf-8")
    data, positions = load_yaml(path)
    with pytest.raises(ValidationError) as caught:
        Channel.model_validate(data)
    err = validation_error_to_config_error(caught.value, "channels/his-adt.yaml", data, positions)
    assert str(err).startswith(
        "channels/his-adt.yaml:7 destinations[1].retry.max_attempts: must be ≥ 0"
    )


def test_missing_and_unknown_keys_point_at_their_parent_or_themselves(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ndestinations:\n  - kind: mllp\n    prot: 1\n", encoding="utf-8")
    data, positions = load_yaml(path)
    with pytest.raises(ValidationError) as caught:
        Channel.model_validate(data)
    errors = validation_error_to_config_errors(caught.value, "c.yaml", data, positions)
    assert sorted(str(e).split(";")[0] for e in errors) == [
        "c.yaml:3 destinations[0].port: is required",
        "c.yaml:4 destinations[0].prot: is not a known key (check the spelling)",
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a: 1\na: 2\n", 2, "duplicate key"),
        ("a: 1\n1: 2\n", 2, "keys must be text"),
        ("a: [1\n", 2, "YAML syntax error"),
    ],
)
def test_bad_yaml_is_a_config_error_with_a_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_yaml(path)
    assert caught.value.line == line
    assert message in str(caught.value)


def test_alias_bombs_are_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="aliases"):
        load_yaml(path)


def test_yaml_11_surprises_stay_text(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("no: NO\non: yes\nt: 12:30\ncode: 012\nok: true\nn: 5\n", encoding="utf-8")
    data, positions = load_yaml(path)
    assert data == {"no": "NO", "on": "yes", "t": "12:30", "code": "012", "ok": True, "n": 5}
    assert positions[("code",)] == 4
