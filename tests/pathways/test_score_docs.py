"""docs/scores.md says what the tables and the contract really do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pathways.scores import ScoreInputError, compute, score_tables

DOC = (Path(__file__).resolve().parents[2] / "docs" / "scores.md").read_text(encoding="utf-8")


def test_the_score_list_matches_the_tables() -> None:
    rows = []
    for name, table in score_tables().items():
        code = f"LOINC `{table.loinc}`" if table.loinc else f"score `{table.code}`"
        bands = ", ".join(str(row.band) for row in table.bands) or "—"
        rows.append(f"| `{name}` | `{table.version}` | {code} | {bands} |")
    assert "\n".join(rows) in DOC


INPUTS = {
    "verbal": ("GCS", {"eye": 2, "verbal": 7, "motor": 4}),
    "eye": ("GCS", {"eye": True, "verbal": 2, "motor": 4}),
    "creatinine_umol_l": ("GRACE", {"age": 65, "heart_rate": 95, "sbp": 125,
                                    "creatinine_umol_l": "115", "killip": 2,
                                    "cardiac_arrest": False, "st_deviation": True,
                                    "elevated_enzymes": True}),
    "mrs": ("mRS", {"timepoint": "pre_stroke", "mrs": 6}),
    "ais[2].severity": ("ISS", {"ais": [{"region": "face", "severity": 1},
                                       {"region": "chest", "severity": 2},
                                       {"region": "abdomen", "severity": 9}]}),
    "motor": ("GCS", {"eye": 2, "verbal": 2}),
    "comment": ("GCS", {"eye": 2, "verbal": 2, "motor": 4, "comment": "x"}),
    "input": ("GCS", []),
}  # fmt: skip


@pytest.mark.parametrize("item", list(INPUTS))
def test_the_error_examples_are_the_messages_given(item: str) -> None:
    name, data = INPUTS[item]
    with pytest.raises(ScoreInputError) as caught:
        compute(name, data)
    assert caught.value.item == item
    assert str(caught.value) in DOC.split("## Errors")[1]


def test_every_error_example_is_tested() -> None:
    block = DOC.split("## Errors")[1].split("```")[1]
    examples = [line.split(":")[0] for line in block.strip().splitlines()]
    assert sorted(set(examples) - {"risk_factors[1]"}) == sorted(INPUTS)
    assert re.search(r"risk_factors\[1\]: \"diabetes\" is listed twice", block)
