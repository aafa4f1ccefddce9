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
        ("      own: [location]", "merge", "{keep: [...], hold: [...], history: [...]}"),
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


HISTORY = parse_keep("history location by location.reference")


def stay(place: str, status: str, start: str | None = None, end: str | None = None) -> Any:
    period = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    item: dict[str, Any] = {"location": {"reference": f"Location/{place}"}, "status": status}
    return item | ({"period": period} if period else {})


def test_history_folds_a_message_into_the_stays_without_losing_any() -> None:
    stored = {"location": [stay("ccu", "completed", "T0", "T1"), stay("card", "active", "T1")]}
    back = {"location": [stay("card", "completed", end="T2"), stay("ccu", "active", "T2")]}
    bed_fix = {"location": [stay("card-2", "active")]}  # an A08 correcting the bed, no time
    cancel = {"location": [stay("ccu", "active")]}  # A12: back where they were, no time
    reopen = {"location": [stay("card", "active")]}  # A13 after an A03 closed the last stay

    returned = merge_kept(stored, back, [HISTORY])["location"]
    corrected = merge_kept(stored, bed_fix, [HISTORY])["location"]
    cancelled = merge_kept(stored, cancel, [HISTORY])["location"]
    discharged = {"location": [stay("ccu", "completed", "T0", "T1"),
                               stay("card", "completed", "T1", "T3")]}  # fmt: skip
    reopened = merge_kept(discharged, reopen, [HISTORY])["location"]

    assert returned == [  # the CCU twice: the patient came back, a stay of its own
        stay("ccu", "completed", "T0", "T1"),
        stay("card", "completed", "T1", "T2"),
        stay("ccu", "active", "T2"),
    ]
    assert merge_kept({"location": returned}, back, [HISTORY])["location"] == returned
    assert corrected == [stay("ccu", "completed", "T0", "T1"), stay("card-2", "active")]
    assert cancelled == [stay("ccu", "active", "T0")]
    assert reopened == [stay("ccu", "completed", "T0", "T1"), stay("card", "active", "T1")]


def test_a_history_without_a_key_and_a_hold_on_the_new_resource_are_checked() -> None:
    with pytest.raises(ConfigError, match="what identifies a stay"):
        parse_keep("history location")
    hold = parse_keep("hold status.where($this = 'finished' and %new.status = 'active')")
    finished = {"status": "finished"}
    assert merge_kept(finished, {"status": "active"}, [hold]) == finished
    assert merge_kept(finished, {"status": "cancelled"}, [hold]) == {"status": "cancelled"}
    assert merge_kept({"status": "active"}, {"status": "finished"}, [hold]) == finished
