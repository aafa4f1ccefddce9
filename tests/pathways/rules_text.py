"""Clock rules written inline in a test, read the way a pathway file is."""

from __future__ import annotations

from collections.abc import Collection

from engine.mapping.yamlfile import load_yaml_text
from pathways.clock_rules import ClockRule, parse_clock_rules


def rules_from_text(
    text: str, *, file: str = "rules.yaml", node_keys: Collection[str] | None = None
) -> list[ClockRule]:
    """The `clocks:` list of a YAML text, with errors naming `file` and its lines."""
    data, positions = load_yaml_text(text, file=file)
    clocks = data.get("clocks") if isinstance(data, dict) else None
    return parse_clock_rules(clocks, source=file, positions=positions, node_keys=node_keys)
