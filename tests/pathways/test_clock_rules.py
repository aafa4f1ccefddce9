"""Clock rule files: the shipped ones load and name only real time nodes; mistakes an analyst
can make are refused with file, line and key."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError
from pathways.clock_rules import ACTIVATION, ClockRule, parse_clock_rules
from pathways.definitions import load_pathways
from pathways.vocabulary import CENTERS
from tests.conftest import SHARED
from tests.pathways.rules_text import rules_from_text

ROOT = Path(__file__).resolve().parents[2]
HINT = "fix the clock rules of the pathway file; the engine starts once they are valid"
NODES = ("door", "lytic_start", "first_medical_contact", "first_ecg", "wire_crossing")


def _parse(text: str, node_keys: tuple[str, ...] | None = NODES) -> list[ClockRule]:
    return rules_from_text(text, file="config/pathways/stroke.yaml", node_keys=node_keys)


def _error(text: str, node_keys: tuple[str, ...] | None = NODES) -> str:
    with pytest.raises(ConfigError) as caught:
        _parse(text, node_keys)
    return str(caught.value)


GOOD = """\
version: 1
clocks:
  - id: stroke.dnt
    title: {zh: 门-针时间, en: Door to needle}
    protects: stroke.dnt
    start: door
    end: [lytic_start]
    when:
      - arrival_mode: {not_in: [in_hospital]}
      - any:
          - {fact: ivt, in: [true]}
          - {fact: diagnosis, in: [AIS]}
    steps:
      - {name: warning, at_minutes: 45, severity: warning}
      - {name: limit, at_minutes: 60, severity: critical}
"""


def _time_node_keys() -> set[str]:
    """Every node key of the domain reference (time-nodes.md): the first column of its tables."""
    text = (SHARED / "domain" / "time-nodes.md").read_text(encoding="utf-8")
    keys: set[str] = set()
    for cell in re.findall(r"^\| (`[a-z0-9_`/ ]+`) \|", text, flags=re.M):
        keys.update(re.findall(r"`([a-z0-9_]+)`", cell))
    return keys


def test_a_rule_reads_with_its_conditions_and_steps() -> None:
    (rule,) = _parse(GOOD)

    assert rule.id == "stroke.dnt"
    assert rule.title.zh == "门-针时间"
    assert (rule.start, rule.end) == ("door", ("lytic_start",))
    assert [(s.name, s.at_seconds, s.severity) for s in rule.steps] == [
        ("warning", 2700, "warning"),
        ("limit", 3600, "critical"),
    ]
    assert rule.confirmed is False


@pytest.mark.parametrize("center", CENTERS)
def test_the_shipped_clock_rules_load_with_their_pathway_and_name_only_time_nodes_of_the_reference(
    center: str,
) -> None:
    rules = load_pathways(ROOT / "config" / "pathways", cached=False).by_center[center].clocks
    known = _time_node_keys()
    assert {"door", "lytic_start", "wire_crossing", "team_reception"} <= known

    assert rules
    for rule in rules:
        assert rule.start in known | {ACTIVATION}
        assert set(rule.end) <= known
        assert rule.steps[-1].at_minutes >= rule.steps[0].at_minutes
        assert rule.protects and rule.protects.split(".")[0] in ("cpc", "stroke", "trauma")


def test_a_bad_clock_rule_stops_the_pathway_load_naming_file_line_and_key(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "pathways"
    shutil.copytree(ROOT / "config" / "pathways", folder)
    path = folder / "stroke.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("end: [lytic_start]", "end: [lytic_begin]"), encoding="utf-8")
    line = next(
        number
        for number, row in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if "lytic_begin" in row
    )

    with pytest.raises(ConfigError) as caught:
        load_pathways(folder, cached=False)

    assert str(caught.value).startswith(f"{path}:{line} clocks[")
    assert ".end[0]: 'lytic_begin' is not a time node of this pathway" in str(caught.value)


def test_a_clock_may_not_use_a_node_of_another_center(tmp_path: Path) -> None:
    folder = tmp_path / "pathways"
    shutil.copytree(ROOT / "config" / "pathways", folder)
    path = folder / "trauma.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("end: [team_reception]", "end: [wire_crossing]"), "utf-8")

    with pytest.raises(ConfigError, match="'wire_crossing' is not a time node of this pathway"):
        load_pathways(folder, cached=False)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("at_minutes: 60", "at_minutes: 0"),
            "config/pathways/stroke.yaml:15 clocks[0].steps[1].at_minutes: must be > 0",
        ),
        (
            ("at_minutes: 60", "at_minutes: 40"),
            "config/pathways/stroke.yaml:3 clocks[0]: ",  # increasing steps
        ),
        (
            ("severity: critical", "severity: urgent"),
            "config/pathways/stroke.yaml:15 clocks[0].steps[1].severity: input should be 'info'",
        ),
        (
            ("not_in: [in_hospital]", "not_in: [helicopter]"),
            "config/pathways/stroke.yaml:9 clocks[0].when[0].arrival_mode.not_in[0]:",
        ),
        (
            ("    protects: stroke.dnt\n", "    protects: stroke.dnt\n    colour: red\n"),
            "config/pathways/stroke.yaml:6 clocks[0].colour: is not a known key",
        ),
        (
            ("{fact: ivt, in: [true]}", "{fact: ivt}"),
            "clocks[0].when[1].any[0]: ",
        ),
        (
            ("    end: [lytic_start]\n", ""),
            "config/pathways/stroke.yaml:3 clocks[0].end: is required",
        ),
    ],
)
def test_mistakes_are_refused_naming_file_line_and_key(
    change: tuple[str, str], expected: str
) -> None:
    message = _error(GOOD.replace(*change))

    assert message.startswith(expected) or expected in message, message
    assert message.endswith(HINT)


def test_a_start_node_that_is_no_time_node_is_refused_with_its_line() -> None:
    message = _error(GOOD.replace("start: door", "start: dore"))

    assert message.startswith("config/pathways/stroke.yaml:6 clocks[0].start: 'dore' is not a")


def test_an_end_node_that_is_no_time_node_is_refused_with_its_position() -> None:
    message = _error(GOOD.replace("[lytic_start]", "[lytic_start, lytic_strat]"))

    assert "stroke.yaml:7 clocks[0].end[1]: 'lytic_strat' is not a time node" in message


def test_activation_is_a_start_but_not_a_time_node() -> None:
    (rule,) = _parse(GOOD.replace("start: door", f"start: {ACTIVATION}"))

    assert rule.start == ACTIVATION


def test_two_rules_with_one_id_are_refused() -> None:
    text = GOOD + GOOD.split("clocks:\n", 1)[1]

    assert "clocks[1].id: id 'stroke.dnt' is also used by clocks[0]" in _error(text)


def test_a_condition_with_two_kinds_is_refused() -> None:
    text = GOOD.replace(
        "- arrival_mode: {not_in: [in_hospital]}",
        "- arrival_mode: {not_in: [in_hospital]}\n        fact: diagnosis\n        in: [AIS]",
    )

    assert "exactly one of `fact`, `arrival_mode` or `any`" in _error(text)


def test_minutes_must_be_whole_seconds() -> None:
    assert "whole number of seconds" in _error(GOOD.replace("at_minutes: 45", "at_minutes: 44.99"))
    (rule,) = _parse(GOOD.replace("at_minutes: 45", "at_minutes: 7.5"))
    assert rule.steps[0].at_seconds == 450


def test_the_list_must_be_a_list() -> None:
    assert "clocks: must be a list of clock rules" in _error("clocks: {id: x}\n")


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    ["id", "title", "start", "end", "steps", "when", "fact", "in", "x"]
                ),
                inner,
                max_size=5,
            )
        ),
        max_leaves=20,
    )
)
def test_any_data_gives_rules_or_a_config_error(raw: object) -> None:
    try:
        parse_clock_rules(raw, source="fuzz.yaml")
    except ConfigError as error:
        assert str(error).startswith("fuzz.yaml")


def test_the_rule_example_of_the_docs_is_valid() -> None:
    text = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")
    example = text.split("```yaml\n")[1].split("```")[0]

    (rule,) = rules_from_text(example, file="docs/alerts.md")

    assert rule.id == "stroke.dnt"
