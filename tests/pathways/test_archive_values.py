"""Interval display, instant reading and the archive's data file, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import ConfigError
from pathways._archive_timeline import build_timeline
from pathways._archive_values import format_duration, parse_instant, show_when
from pathways.archive_config import default_config, load_archive_config, node_labels
from pathways.definitions import load_pathways
from pathways.vocabulary import SOURCE_KIND_SYSTEM, TIME_NODE_SYSTEM

CST = timezone(timedelta(hours=8))


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "00:00"),
        (59, "00:59"),
        (231, "03:51"),
        (3599, "59:59"),
        (3600, "1:00:00"),
        (4272, "1:11:12"),
        (90061, "25:01:01"),
        (-65, "-01:05"),
        (-4272, "-1:11:12"),
    ],
)
def test_intervals_show_as_mm_ss_under_an_hour_and_h_mm_ss_beyond(seconds: int, shown: str) -> None:
    assert format_duration(seconds) == shown


@given(st.integers(min_value=-(10**7), max_value=10**7))
def test_an_interval_display_reads_back_to_its_seconds(seconds: int) -> None:
    text = format_duration(seconds)
    sign = -1 if text.startswith("-") else 1
    parts = [int(part) for part in text.lstrip("-").split(":")]
    total = parts[-1] + 60 * parts[-2] + (3600 * parts[-3] if len(parts) == 3 else 0)
    assert sign * total == seconds


@given(st.text(max_size=40))
def test_any_text_as_an_instant_gives_an_aware_time_or_none(text: str) -> None:
    value = parse_instant(text, CST)
    assert value is None or value.tzinfo is not None


def test_instants_show_in_the_local_offset_and_dates_as_they_are() -> None:
    assert show_when("2024-03-05T00:51:12Z", CST) == "2024-03-05T08:51:12+08:00"
    assert show_when("2024-03-05T08:51:12", CST) == "2024-03-05T08:51:12+08:00"  # no offset
    assert show_when("1966-04-12", CST) == "1966-04-12"
    assert show_when(None, CST) is None
    assert parse_instant("2024-03-05T00:51:12+00:00", CST) == parse_instant(
        "2024-03-05T08:51:12+08:00", UTC
    )


def test_every_node_the_data_file_names_is_in_the_node_catalogue() -> None:
    config = default_config()
    keys = {
        *config.references.door,
        *config.references.fmc,
        *config.references.onset,
        *config.prehospital_nodes,
        *(k for nodes in config.expected_nodes.values() for k in nodes),
        *(k for by in config.expected_by_fact.values() for ns in by.values() for k in ns),
    }
    assert keys <= set(node_labels())
    assert node_labels()["wire_crossing"] == "导丝通过"
    centers = load_pathways().catalogue.centers
    for center, nodes in config.expected_nodes.items():
        assert all(center in centers[key] for key in nodes), center


def test_a_mistake_in_the_data_file_names_the_file_line_and_key(tmp_path: Path) -> None:
    installed = Path(__file__).resolve().parents[2] / "config" / "pathways" / "archive.yaml"
    text = installed.read_text(encoding="utf-8").replace("  trauma: 创伤中心", "  burns: 烧伤中心")
    broken = tmp_path / "archive.yaml"
    broken.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_archive_config(broken)
    line = text.splitlines().index("  burns: 烧伤中心") + 1
    assert f"{broken}:{line}" in str(caught.value)
    assert "centers" in str(caught.value)


STATUSES = ("final", "amended", "preliminary", "entered-in-error", "cancelled")
KEYS = ("door", "first_medical_contact", "symptom_onset", "wire_crossing", "lytic_start")


@st.composite
def time_nodes(draw: st.DrawFn) -> list[dict[str, object]]:
    """Time-node Observations as a store may hold them: any status, instants in any offset,
    bare dates, no value, no method, derivedFrom pointing anywhere."""
    nodes = []
    for number in range(draw(st.integers(min_value=0, max_value=12))):
        observation: dict[str, object] = {
            "resourceType": "Observation",
            "id": f"n{number}",
            "status": draw(st.sampled_from(STATUSES)),
            "code": {"coding": [{"system": TIME_NODE_SYSTEM, "code": draw(st.sampled_from(KEYS))}]},
        }
        # hypothesis takes naive bounds and adds the zone itself
        when = draw(
            st.datetimes(
                min_value=datetime(2020, 1, 1),  # noqa: DTZ001
                max_value=datetime(2030, 1, 1),  # noqa: DTZ001
                timezones=st.sampled_from([CST, UTC, timezone(timedelta(hours=-5))]),
            )
        )  # fmt: skip
        shape = draw(st.sampled_from(["instant", "date", "none"]))
        if shape == "instant":
            observation["valueDateTime"] = when.isoformat(timespec="seconds")
        elif shape == "date":
            observation["valueDateTime"] = when.date().isoformat()
        if draw(st.booleans()):
            observation["method"] = {"coding": [{"system": SOURCE_KIND_SYSTEM, "code": "uwb"}]}
        if draw(st.booleans()):
            observation["derivedFrom"] = [{"reference": f"Observation/n{draw(st.integers(0, 12))}"}]
        nodes.append(observation)
    return nodes


@given(time_nodes())
def test_any_set_of_time_nodes_gives_an_ordered_timeline_whose_intervals_add_up(
    nodes: list[dict[str, object]],
) -> None:
    timeline = build_timeline(nodes, dict(node_labels()), default_config().references, CST)
    shown = timeline["nodes"]
    instants = [datetime.fromisoformat(node["time"]) for node in shown]
    assert instants == sorted(instants)
    assert len({node["key"] for node in shown}) == len(shown)  # one authoritative per node
    for before, node, instant in zip([None, *instants], shown, instants, strict=False):
        expected = None if before is None else int((instant - before).total_seconds())
        assert (node["since_previous"] or {}).get("seconds") == expected
        assert all(other["time"] != node["time"] for other in node["other_sources"])
