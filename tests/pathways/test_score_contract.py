"""The input contract of scores.md §0 for every score: exact keys, strict JSON types, ranges.

Parametrised over every item of every score (from the worked examples and the tables), plus
Hypothesis properties: any JSON value gives a result or ScoreInputError, never another
exception; any input the contract allows gives a result.
"""

from __future__ import annotations

import contextlib
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pathways.scores import ItemSpec, ScoreInputError, compute, score_tables
from pathways.scores.contract import MAX_INPUT_BYTES, parse_json
from tests.pathways.score_examples import WORKED_EXAMPLES

TABLES = score_tables()
ITEMS = [(name, key) for name, table in TABLES.items() for key in table.items]


def spec_of(name: str, key: str) -> ItemSpec:
    return TABLES[name].items[key]


def rejects(name: str, data: object, item: str) -> ScoreInputError:
    with pytest.raises(ScoreInputError) as caught:
        compute(name, data)
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.item == item
    assert str(error).startswith(f"{item}: ")
    return error


def with_item(name: str, key: str, value: object) -> dict[str, Any]:
    data = dict(WORKED_EXAMPLES[name][0])
    data[key] = value
    return data


@pytest.mark.parametrize(("name", "key"), ITEMS)
def test_missing_item_is_named(name: str, key: str) -> None:
    data = dict(WORKED_EXAMPLES[name][0])
    del data[key]
    assert "missing" in str(rejects(name, data, key))


@pytest.mark.parametrize("name", list(TABLES))
def test_unknown_item_is_named_with_the_items_there_are(name: str) -> None:
    error = rejects(name, with_item(name, "comment", "seen by Dr Li"), "comment")
    assert ", ".join(TABLES[name].items) in str(error)


@pytest.mark.parametrize("name", list(TABLES))
def test_item_names_are_case_sensitive(name: str) -> None:
    data = dict(WORKED_EXAMPLES[name][0])
    first = next(iter(data))
    data[first.upper() if first.upper() != first else first.lower()] = data.pop(first)
    with pytest.raises(ScoreInputError):
        compute(name, data)


@pytest.mark.parametrize("name", list(TABLES))
@pytest.mark.parametrize("data", [None, [], "GCS 8", 8, True, 1.5])
def test_input_must_be_an_object(name: str, data: object) -> None:
    assert "JSON object" in str(rejects(name, data, "input"))


def _integer_items() -> list[tuple[str, str]]:
    return [(n, k) for n, k in ITEMS if spec_of(n, k).type == "integer"]


@pytest.mark.parametrize(("name", "key"), _integer_items())
def test_integer_items_refuse_booleans_floats_and_strings(name: str, key: str) -> None:
    valid = int(spec_of(name, key).min or 0)
    for value in (True, False, float(valid), str(valid), None, [valid]):
        error = rejects(name, with_item(name, key, value), key)
        assert "allowed: " in str(error)


@pytest.mark.parametrize(("name", "key"), _integer_items())
def test_integer_items_refuse_values_out_of_range(name: str, key: str) -> None:
    spec = spec_of(name, key)
    assert spec.min is not None
    rejects(name, with_item(name, key, int(spec.min) - 1), key)
    if spec.max is not None:
        error = rejects(name, with_item(name, key, int(spec.max) + 1), key)
        assert f"{spec.min}..{spec.max}" in str(error)


@pytest.mark.parametrize(("name", "key"), _integer_items())
def test_integer_items_accept_both_ends_of_their_range(name: str, key: str) -> None:
    spec = spec_of(name, key)
    ends = [spec.min, spec.max if spec.max is not None else Decimal(10_000)]
    for end in ends:
        assert end is not None
        compute(name, with_item(name, key, int(end)))


def _number_items() -> list[tuple[str, str]]:
    return [(n, k) for n, k in ITEMS if spec_of(n, k).type == "number"]


@pytest.mark.parametrize(("name", "key"), _number_items())
def test_number_items_take_integers_and_floats_but_not_strings_or_booleans(
    name: str, key: str
) -> None:
    compute(name, with_item(name, key, 5))
    compute(name, with_item(name, key, 5.5))
    for value in ("5", True, None, math.nan, math.inf, -math.inf):
        rejects(name, with_item(name, key, value), key)


@pytest.mark.parametrize(("name", "key"), _number_items())
def test_number_items_refuse_values_below_their_bound(name: str, key: str) -> None:
    spec = spec_of(name, key)
    bound = spec.above if spec.above is not None else spec.min
    assert bound is not None
    rejects(name, with_item(name, key, float(bound) - 0.001), key)
    if spec.above is not None:
        rejects(name, with_item(name, key, float(spec.above)), key)
    else:
        compute(name, with_item(name, key, float(bound)))


def _boolean_items() -> list[tuple[str, str]]:
    return [(n, k) for n, k in ITEMS if spec_of(n, k).type == "boolean"]


@pytest.mark.parametrize(("name", "key"), _boolean_items())
def test_boolean_items_take_only_true_and_false(name: str, key: str) -> None:
    for value in (1, 0, "true", "false", None):
        assert "true or false" in str(rejects(name, with_item(name, key, value), key))


def _enum_items() -> list[tuple[str, str]]:
    return [(n, k) for n, k in ITEMS if spec_of(n, k).type == "enum"]


@pytest.mark.parametrize(("name", "key"), _enum_items())
def test_enum_items_are_exact_and_case_sensitive(name: str, key: str) -> None:
    values = spec_of(name, key).allowed_values()
    for value in values:
        compute(name, with_item(name, key, value))
    for value in (values[0].upper(), f" {values[0]}", "other", 1, None, [values[0]]):
        error = rejects(name, with_item(name, key, value), key)
        assert all(f'"{allowed}"' in str(error) for allowed in values)


def _list_items() -> list[tuple[str, str]]:
    return [(n, k) for n, k in ITEMS if spec_of(n, k).type == "list"]


@pytest.mark.parametrize(("name", "key"), _list_items())
def test_list_items_refuse_duplicates_unknown_values_and_non_lists(name: str, key: str) -> None:
    values = spec_of(name, key).allowed_values()
    compute(name, with_item(name, key, []))
    compute(name, with_item(name, key, values))
    rejects(name, with_item(name, key, [values[0], values[0]]), f"{key}[1]")
    rejects(name, with_item(name, key, [values[0], "unknown"]), f"{key}[1]")
    rejects(name, with_item(name, key, values[0]), key)
    rejects(name, with_item(name, key, {values[0]: True}), key)


def test_a_score_that_does_not_exist_is_not_a_value_error() -> None:
    from pathways.scores import UnknownScoreError

    with pytest.raises(UnknownScoreError, match="GCS, NIHSS"):
        compute("Glasgow", {"eye": 2})


# -- properties ----------------------------------------------------------------------------------

JSON_SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
)  # fmt: skip
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _near(spec: ItemSpec) -> st.SearchStrategy[Any]:
    """Values around an item's allowed ones: valid, just outside, and of other JSON types."""
    choices: list[Any] = [True, False, None, "T", "UN", 0, -1, 1.0, "1"]
    if spec.min is not None:
        choices += [int(spec.min), int(spec.min) - 1, float(spec.min)]
    if spec.max is not None:
        choices += [int(spec.max), int(spec.max) + 1]
    choices += spec.allowed_values()
    if spec.fields:
        record = st.fixed_dictionaries({k: _near(f) for k, f in spec.fields.items()})
        return st.lists(record | JSON, max_size=4) | JSON
    if spec.type == "list":
        return st.lists(st.sampled_from(spec.allowed_values() + ["x"]), max_size=6) | JSON
    return st.sampled_from(choices) | JSON


@st.composite
def near_inputs(draw: st.DrawFn) -> tuple[str, object]:
    name = draw(st.sampled_from(list(TABLES)))
    items = TABLES[name].items
    data = {key: draw(_near(spec)) for key, spec in items.items()}
    if draw(st.booleans()):
        data.pop(draw(st.sampled_from(list(items))), None)
    if draw(st.integers(0, 5)) == 0:
        data[draw(st.text(max_size=4))] = draw(JSON)
    return name, data


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(TABLES)), JSON)
def test_any_json_gives_a_result_or_a_score_input_error(name: str, data: object) -> None:
    try:
        result = compute(name, data)
    except ScoreInputError as error:
        assert error.item and str(error).startswith(f"{error.item}: ")
    else:
        assert result["score"] == name


@settings(max_examples=300, deadline=None)
@given(near_inputs())
def test_inputs_near_the_contract_give_a_result_or_a_score_input_error(
    case: tuple[str, object],
) -> None:
    name, data = case
    try:
        result = compute(name, data)
    except ScoreInputError as error:
        assert error.item and str(error).startswith(f"{error.item}: ")
    else:
        assert result["version"] == TABLES[name].version


def _valid(spec: ItemSpec) -> st.SearchStrategy[Any]:
    """Any value the item allows."""
    if spec.type == "integer":
        high = int(spec.max) if spec.max is not None else 1000
        numbers = st.integers(int(spec.min or 0), high)
        return numbers | st.just(spec.not_testable) if spec.not_testable else numbers
    if spec.type == "number":
        low = float(spec.above if spec.above is not None else spec.min or 0)
        return st.floats(low, 1000, exclude_min=spec.above is not None) | st.integers(
            int(low) + 1, 1000
        )
    if spec.type == "boolean":
        return st.booleans()
    if spec.type == "enum":
        return st.sampled_from(spec.allowed_values())
    if spec.type == "list":
        return st.lists(st.sampled_from(spec.allowed_values()), unique=True)
    fields = spec.fields or {}
    return st.lists(st.fixed_dictionaries({k: _valid(f) for k, f in fields.items()}), max_size=8)


@st.composite
def valid_inputs(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(list(TABLES)))
    data = {key: draw(_valid(spec)) for key, spec in TABLES[name].items.items()}
    if name == "mRS" and data["timepoint"] == "pre_stroke":
        data["mrs"] = min(data["mrs"], 5)
    return name, data


SUMMED = {"NIHSS", "FAST-ED", "ASPECTS", "GRACE", "TIMI-UA", "TIMI-STEMI", "HEART", "ISS",
          "T-RTS", "TS", "CRAMS", "PHI", "TI"}  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(valid_inputs())
def test_every_input_the_contract_allows_is_scored(case: tuple[str, dict[str, Any]]) -> None:
    """No gap in any table: every allowed answer lands in a row."""
    name, data = case
    result = compute(name, data)
    points = [p for p in result["items"].values() if p is not None]
    if name in SUMMED and not (name == "ISS" and result["ais6"]):
        assert result["total"] == sum(points)
    if result["total"] is not None and TABLES[name].bands:
        assert result["band"] is not None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda text: text.encode("utf-8")))
def test_any_bytes_parse_to_json_or_a_score_input_error(raw: bytes) -> None:
    try:
        data = parse_json(raw)
    except ScoreInputError as error:
        assert error.item
    else:
        with contextlib.suppress(ScoreInputError):
            compute("GCS", data)


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000 + b"]" * 100_000, b'{"a": 1, "a": 2}', b"NaN", b"-Infinity", b"\xff\xfe",
     b" " * (MAX_INPUT_BYTES + 1)],
)  # fmt: skip
def test_hostile_json_is_a_score_input_error(raw: bytes) -> None:
    with pytest.raises(ScoreInputError):
        parse_json(raw)
