"""The channel file reference in docs/ is exactly what the installed models accept."""

from __future__ import annotations

import re
from pathlib import Path

from engine.plugins import load_plugins
from engine.reference import render_reference

ROOT = Path(__file__).resolve().parents[1]


def test_channel_reference_matches_the_models() -> None:
    written = (ROOT / "docs" / "channel-reference.md").read_text(encoding="utf-8")
    assert written == render_reference(load_plugins()), (
        "docs/channel-reference.md is out of date: "
        "run `greenchannel channels reference > docs/channel-reference.md`"
    )


def test_every_connector_field_is_described() -> None:
    plugins = load_plugins()
    for factory in [*plugins.sources.values(), *plugins.destinations.values()]:
        for name, field in factory.config_model.model_fields.items():
            assert name == "kind" or field.description, f"{factory.config_model.__name__}.{name}"


def _yaml_examples(text: str) -> list[str]:
    return [block for block in text.split("```yaml\n")[1:] if "```" in block]


def test_the_mapping_language_examples_are_valid_yaml_and_expressions() -> None:
    from engine.mapping.expression import CompileContext, parse_expression
    from engine.mapping.yamlfile import load_yaml_text

    text = (ROOT / "docs" / "mapping-language.md").read_text(encoding="utf-8")
    examples = _yaml_examples(text)
    assert len(examples) >= 5
    for number, block in enumerate(examples, start=1):
        source = block.split("```")[0]
        load_yaml_text(source, file=f"docs/mapping-language.md example {number}")
        for expression in re.findall(r"\$\{((?:[^}'\"]|'[^']*'|\"[^\"]*\")*)\}", source):
            # Template parameters (cx, ts) stand for paths inside template bodies.
            params = {"cx": "PID-3", "ts": "OBX-14"}
            parse_expression(expression, CompileContext(path_params=params))


def test_every_function_of_the_mapping_language_is_documented() -> None:
    from engine.mapping.expression import _SPECIAL
    from engine.mapping.functions import VALUE_FUNCTIONS

    text = (ROOT / "docs" / "mapping-language.md").read_text(encoding="utf-8")
    for name in [*VALUE_FUNCTIONS, *_SPECIAL, "group"]:
        assert f"`{name}(" in text, name
