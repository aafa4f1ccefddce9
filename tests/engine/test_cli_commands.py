"""The `greenchannel` command line as a user meets it: the overall help lists every command,
the plugins' too; a plugin's command runs with only its own module loaded; a mistyped command is
refused with the list of every command."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from engine.plugins import COMMANDS

PLUGIN_COMMANDS = sorted(entry.name for entry in entry_points(group=COMMANDS))
BUILT_IN = ["serve", "channels", "messages", "stats", "prune", "mappings", "map"]


def greenchannel(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "greenchannel"), *argv],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_help_lists_the_built_in_and_the_plugin_commands() -> None:
    assert {"token", "case", "registry", "send"} <= set(PLUGIN_COMMANDS)
    result = greenchannel("--help")
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split("commands:", 1)[1]
    for name in [*BUILT_IN, *PLUGIN_COMMANDS]:
        assert f"\n    {name} " in listed or f"\n    {name}\n" in listed, name


@pytest.mark.parametrize(
    ("argv", "loaded"),
    [
        (["token", "--help"], {"engine.token_command"}),
        (["--debug", "--data-dir", "case", "token", "--help"], {"engine.token_command"}),
        (["messages", "--help"], set()),
    ],
)
def test_a_command_loads_its_own_module_only(argv: list[str], loaded: set[str]) -> None:
    """`--data-dir case`: the option's value is not the command."""
    modules = {
        "engine.token_command", "pathways.archive_command", "pathways.registry_command",
        "adapters.send_command", "devices.wristband_command",
    }  # fmt: skip
    probe = (
        "import sys\n"
        "from engine.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {sorted(modules)!r} if m in sys.modules), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.startswith("usage: greenchannel"), result.stderr
    assert result.stderr.strip().splitlines()[-1] == repr(sorted(loaded))


def test_a_mistyped_command_is_refused_with_every_command() -> None:
    result = greenchannel("tokne", "list")
    assert result.returncode == 2
    assert "invalid choice: 'tokne'" in result.stderr
    for name in ["serve", "token", "registry", "wristband"]:
        assert repr(name) in result.stderr, name
