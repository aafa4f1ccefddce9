"""Tests for the JSON Document: strict decoding, error locations, and path reading."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.jsoninput import MAX_JSON_DEPTH, parse_for_mapping
from engine.errors import DecodeError, InputError, ParseError

SAMPLE = b'{"p": {"ids": [{"v": "a"}, {"v": ""}, {"v": "c"}], "n": 7.10, "ok": false}}'


def test_paths_read_scalars_as_text_and_flatten_arrays() -> None:
    doc = parse_for_mapping(SAMPLE, "utf-8")
    assert doc.get("$.p.n") == "7.10"
    assert doc.get("$.p.ok") == "false"
    assert doc.get("$.p.ids.v") == "a"
    assert doc.all("$.p.ids.v") == ["a", "c"]
    assert doc.get("$.p.ids[-1].v") == "c"
    assert doc.get("$.p") is None
    assert doc.get("PID-3") is None
    items = doc.each("$.p.ids")
    assert [item.get("@.v") for item in items] == ["a", None, "c"]
    assert items[0].get("$.p.n") == "7.10"


def test_syntax_errors_name_a_json_pointer_line_and_column() -> None:
    with pytest.raises(ParseError) as caught:
        parse_for_mapping(b'{"a": {"b": [1,\n 2,, 3]}}', "utf-8")
    assert caught.value.location == "/a/b/2"
    assert "line 2, column 4" in caught.value.reason


def test_duplicate_keys_are_refused_with_their_pointer() -> None:
    with pytest.raises(ParseError) as caught:
        parse_for_mapping(b'{"a": [{"k": 1, "k": 2}]}', "utf-8")
    assert caught.value.location == "/a/0/k"


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_refused(constant: bytes) -> None:
    with pytest.raises(ParseError):
        parse_for_mapping(b'{"x": ' + constant + b"}", "utf-8")


def test_undecodable_bytes_give_their_offset() -> None:
    with pytest.raises(DecodeError) as caught:
        parse_for_mapping(b'{"x": "\xff"}', "utf-8")
    assert caught.value.offset == 7
    assert "\\xff" not in str(caught.value)


def test_deep_nesting_is_refused() -> None:
    for depth in (MAX_JSON_DEPTH + 1, 100_000):
        with pytest.raises(ParseError, match="nested"):
            parse_for_mapping(b"[" * depth + b"]" * depth, "utf-8")


def test_gb18030_payloads_decode_with_their_charset() -> None:
    doc = parse_for_mapping(json.dumps({"n": "张三"}, ensure_ascii=False).encode("gb18030"),
                            "gb18030")  # fmt: skip
    assert doc.get("$.n") == "张三"


@given(st.binary(max_size=300))
def test_any_bytes_give_a_document_or_an_input_error(raw: bytes) -> None:
    try:
        parse_for_mapping(raw, "utf-8")
    except InputError:
        pass


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=20,
)


@given(_json)
def test_valid_json_parses_and_every_each_item_is_a_document(value: object) -> None:
    doc = parse_for_mapping(json.dumps(value).encode(), "utf-8")
    assert isinstance(doc.each("$"), list)
    assert isinstance(doc.all("$"), list)
