"""Channel files are validated before deploy, with errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.channels import ChannelFileErrors, load_channel, load_channel_dir, load_channel_text
from engine.errors import ConfigError
from engine.pipeline import compile_channel
from engine.settings import Settings
from engine.testing import plugins_for_tests

PLUGINS = plugins_for_tests()

VALID = """\
name: lab
source: {kind: push}
destinations:
  - name: out
    connector: {kind: function, handler: out}
    retry:
      max_attempts: 3
"""


def test_valid_channel_loads_with_defaults() -> None:
    channel = load_channel_text(VALID, PLUGINS, file="channels/lab.yaml")
    assert channel.name == "lab"
    assert channel.spec.destinations[0].retry.max_attempts == 3
    assert channel.spec.destinations[0].retry.initial_backoff_s == 1.0


def test_bad_value_names_file_line_and_key() -> None:
    text = VALID.replace("max_attempts: 3", "max_attempts: -1")
    with pytest.raises(ConfigError) as caught:
        load_channel_text(text, PLUGINS, file="channels/lab.yaml")
    assert "channels/lab.yaml:7 destinations[0].retry.max_attempts" in str(caught.value)


def test_unknown_key_is_refused_with_its_line() -> None:
    text = VALID + "retyr: 3\n"
    with pytest.raises(ConfigError) as caught:
        load_channel_text(text, PLUGINS, file="lab.yaml")
    assert "lab.yaml:8 retyr" in str(caught.value)


def test_unknown_connector_kind_lists_the_installed_ones() -> None:
    text = VALID.replace("kind: push", "kind: mlp")
    with pytest.raises(ConfigError) as caught:
        load_channel_text(text, PLUGINS, file="lab.yaml")
    assert "unknown source kind 'mlp'" in str(caught.value)
    assert "push" in str(caught.value) and "lab.yaml:2" in str(caught.value)


def test_duplicate_destination_names_are_refused() -> None:
    text = VALID + "  - name: out\n    connector: {kind: function, handler: x}\n"
    with pytest.raises(ConfigError, match="destination names must be unique: out"):
        load_channel_text(text, PLUGINS, file="lab.yaml")


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load_channel_text("name: lab\nsource: {kind: push\n", PLUGINS, file="lab.yaml")
    assert "lab.yaml:" in str(caught.value) and "YAML" in str(caught.value)


def test_broken_expression_refuses_the_deploy(tmp_path: Path) -> None:
    channel = load_channel_text(VALID + 'filter: "${$.kind == }"\n', PLUGINS, file="lab.yaml")
    with pytest.raises(ConfigError) as caught:
        compile_channel(
            channel,
            mappings_dir=tmp_path,
            plugins=PLUGINS,
            default_charset="utf-8",
            default_tz=Settings().tz,
        )
    assert "lab.yaml" in str(caught.value) and "filter" in str(caught.value)


def test_missing_mapping_file_refuses_the_deploy(tmp_path: Path) -> None:
    text = VALID + "transformer: {mapping: hl7v2/nope.yaml}\n"
    channel = load_channel_text(text, PLUGINS, file="lab.yaml")
    with pytest.raises(ConfigError, match="mapping file 'hl7v2/nope.yaml' not found"):
        compile_channel(
            channel,
            mappings_dir=tmp_path,
            plugins=PLUGINS,
            default_charset="utf-8",
            default_tz=Settings().tz,
        )


def test_a_folder_reports_every_bad_file_and_keeps_the_good(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(VALID)
    (tmp_path / "b.yaml").write_text(VALID.replace("name: lab", "name: Bad Name"))
    (tmp_path / "c.yaml").write_text(VALID)  # same channel name as a.yaml
    channels, problems = load_channel_dir(tmp_path, PLUGINS)
    assert list(channels) == ["lab"]
    messages = [str(p) for p in problems]
    assert any("b.yaml:1 name" in m for m in messages)
    assert any("c.yaml" in m and "also used by" in m for m in messages)


def test_every_error_of_a_file_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(VALID.replace("max_attempts: 3", "max_attempts: -1") + "charset: 7\n")
    with pytest.raises(ChannelFileErrors) as caught:
        load_channel(path, PLUGINS)
    assert len(caught.value.errors) == 2


def test_no_two_shipped_channels_listen_on_the_same_port() -> None:
    # Two listeners on one port: `serve` deploys one and the other channel fails at start, so
    # a site loses a whole interface (ECG upload and POCT once shared 2590).
    import yaml

    listeners: dict[tuple[str, int], str] = {}
    for path in sorted((Path(__file__).parents[2] / "channels").glob("*.yaml")):
        source = yaml.safe_load(path.read_text(encoding="utf-8"))["source"]
        if source.get("kind") == "mqtt" or "port" not in source:
            continue  # an MQTT source connects out to the broker's port; it listens on none
        key = (str(source.get("host", "0.0.0.0")), int(source["port"]))
        assert key not in listeners, f"{path.name} and {listeners[key]} both listen on {key}"
        listeners[key] = path.name
    assert len(listeners) >= 10
