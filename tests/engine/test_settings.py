"""Settings: file, environment and flags in rising priority; defaults installed with the package."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.settings import load_settings


def test_outside_the_source_tree_the_installed_defaults_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert (settings.resolved_channels_dir / "his-adt.yaml").is_file()
    assert (settings.resolved_mappings_dir / "hl7v2" / "adt.yaml").is_file()
    assert settings.http_port == 8080 and settings.timezone == "+08:00"


def test_environment_beats_the_file_and_flags_beat_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "greenchannel.yaml"
    config.write_text("http_port: 9001\nretention:\n  content_days: 10\n")
    monkeypatch.setenv("GREENCHANNEL_RETENTION__CONTENT_DAYS", "3")
    assert load_settings(config).retention.content_days == 3
    assert load_settings(config).http_port == 9001
    assert load_settings(config, http_port=9002).http_port == 9002


def test_a_bad_value_names_the_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "greenchannel.yaml"
    config.write_text("timezone: CST\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "greenchannel.yaml" in str(caught.value) and "timezone" in str(caught.value)


def test_a_missing_settings_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="settings file not found"):
        load_settings(tmp_path / "nope.yaml")


def test_processing_gather_comes_from_the_shipped_file_and_refuses_a_negative_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings().processing_gather_ms == 200
    monkeypatch.setenv("GREENCHANNEL_PROCESSING_GATHER_MS", "50")
    assert load_settings().processing_gather_ms == 50
    monkeypatch.delenv("GREENCHANNEL_PROCESSING_GATHER_MS")
    config = tmp_path / "greenchannel.yaml"
    config.write_text("processing_gather_ms: -5\n")
    with pytest.raises(ConfigError, match="processing_gather_ms"):
        load_settings(config)
