"""The channel file reference in docs/ is exactly what the installed models accept."""

from __future__ import annotations

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
