"""Merge mode in the mapping language: `merge: {keep: [...]}` checked at load (file, line, key),
carried in the Bundle entry, and `merge_kept` deterministic and idempotent (property-based)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.hl7v2 import parse_for_mapping
from engine.errors import ConfigError
from engine.mapping import load_mapping
from engine.mapping.merge import MERGE_KEEP_EXTENSION, keep_rules_of, merge_kept, parse_keep

ROOT = Path(__file__).resolve().parents[2]
A04 = ROOT / "mappings" / "tests" / "samples" / "adt-a04-chest-pain-utf8.hl7"

MAPPING = """\
input: x-application/hl7-v2+er7
resources:
  encounter:
    resourceType: Encounter
    id: ${{PV1-19.1}}
    status: in-progress
    class: {{code: EMER}}
    merge:
{merge}
"""


def _load(tmp_path: Path, merge: str) -> Any:
    path = tmp_path / "m.yaml"
    path.write_text(MAPPING.format(merge=merge), encoding="utf-8")
    return load_mapping(path)


def test_the_keep_rules_ride_in_the_entry_request(tmp_path: Path) -> None:
    mapping = _load(tmp_path, "      keep: [episodeOfCare, \"location.where(status = 'active')\"]")
    bundle = mapping.apply(parse_for_mapping(A04.read_bytes(), "utf-8"))
    (entry,) = bundle["entry"]
    assert entry["request"]["method"] == "PUT"
    assert entry["request"]["extension"] == [
        {"url": MERGE_KEEP_EXTENSION, "valueString": "episodeOfCare"},
        {"url": MERGE_KEEP_EXTENSION, "valueString": "location.where(status = 'active')"},
    ]
    assert [r.element for r in keep_rules_of(entry["request"])] == ["episodeOfCare", "location"]


@pytest.mark.parametrize(
    ("merge", "key", "says"),
    [
        ('      keep: ["location.where(status = )"]', "merge.keep[0]", "not a valid FHIRPath"),
        ('      keep: ["Location x"]', "merge.keep[0]", "must be an element name"),
        ("      keep: []", "merge.keep", "one or more keep rules"),
        ("      own: [location]", "merge", "{keep: [element, ...]}"),
        ("      keep: [3]", "merge.keep[0]", "a keep rule is text"),
    ],
)
def test_a_bad_merge_says_file_line_and_key(
    tmp_path: Path, merge: str, key: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, merge)
    message = str(caught.value)
    assert "m.yaml:" in message and f"resources.encounter.{key}" in message, message
    assert says in message


def test_kept_items_follow_the_new_ones_and_single_elements_yield_to_the_mapping() -> None:
    rules = [parse_keep("episodeOfCare.where(reference.startsWith('EpisodeOfCare/case-'))"),
             parse_keep("serviceProvider")]  # fmt: skip
    current = {
        "episodeOfCare": [
            {"reference": "EpisodeOfCare/his-1"},
            {"reference": "EpisodeOfCare/case-9"},
        ],
        "serviceProvider": {"reference": "Organization/old"},
    }
    new = {"resourceType": "Encounter", "episodeOfCare": [{"reference": "EpisodeOfCare/his-2"}]}
    merged = merge_kept(current, new, rules)
    assert merged["episodeOfCare"] == [
        {"reference": "EpisodeOfCare/his-2"},
        {"reference": "EpisodeOfCare/case-9"},
    ]  # his-1 is the mapping's to drop; case-9 is kept
    assert merged["serviceProvider"] == {"reference": "Organization/old"}
    given_one = merge_kept(
        current, {**new, "serviceProvider": {"reference": "Organization/x"}}, rules
    )
    assert given_one["serviceProvider"] == {"reference": "Organization/x"}
    assert new == {
        "resourceType": "Encounter",
        "episodeOfCare": [{"reference": "EpisodeOfCare/his-2"}],
    }


_REFERENCES = st.lists(
    st.fixed_dictionaries({"reference": st.sampled_from(
        ["EpisodeOfCare/case-1", "EpisodeOfCare/case-2", "EpisodeOfCare/his-1", "Other/x"]
    )}),
    max_size=5,
)  # fmt: skip


@given(current=_REFERENCES, new=_REFERENCES)
def test_merging_is_idempotent_and_keeps_every_selected_item(
    current: list[dict[str, str]], new: list[dict[str, str]]
) -> None:
    rules = [parse_keep("episodeOfCare.where(reference.startsWith('EpisodeOfCare/case-'))")]
    stored = {"episodeOfCare": current} if current else {}
    mapped = {"episodeOfCare": new} if new else {}
    once = merge_kept(stored, mapped, rules)
    assert merge_kept(once, mapped, rules) == once  # a replay onto its own result
    kept = once.get("episodeOfCare", [])
    assert kept[: len(new)] == new
    for item in current:
        if item["reference"].startswith("EpisodeOfCare/case-"):
            assert item in kept
