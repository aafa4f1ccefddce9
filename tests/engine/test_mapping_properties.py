"""Hypothesis properties of the expression parser: any text compiles or is a ConfigError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError
from engine.mapping import CompileContext, compile_expression
from engine.mapping.expression import MAX_EXPRESSION_DEPTH, MAX_EXPRESSION_LENGTH

_ATOMS = ["PID-3.1", "OBX[2]-5", "$.a.b", "@.c[0]", "'x'", "1", "x", "true", "null", "("]
_JOINS = [" and ", " or ", " == ", " ?? ", ", ", " in ", "not ", ")", "[", "]", "upper("]


@given(st.text(max_size=200))
def test_any_text_compiles_or_is_a_config_error(source: str) -> None:
    try:
        compile_expression(source, CompileContext(names=frozenset({"x"})))
    except ConfigError:
        pass


@given(st.lists(st.sampled_from(_ATOMS + _JOINS), max_size=40))
def test_token_soup_compiles_or_is_a_config_error(parts: list[str]) -> None:
    try:
        compile_expression("".join(parts), CompileContext(names=frozenset({"x"})))
    except ConfigError:
        pass


@settings(max_examples=30)
@given(st.integers(min_value=MAX_EXPRESSION_DEPTH + 1, max_value=MAX_EXPRESSION_LENGTH // 2 - 2))
def test_deep_nesting_is_refused_not_a_recursion_error(depth: int) -> None:
    for source in ("(" * depth + "1" + ")" * depth, "not " * depth + "1", "[" * depth):
        with pytest.raises(ConfigError):
            compile_expression(source[:MAX_EXPRESSION_LENGTH])


def test_long_expressions_are_refused() -> None:
    with pytest.raises(ConfigError, match="longer than"):
        compile_expression("1 or " * MAX_EXPRESSION_LENGTH)


def test_python_attribute_access_is_not_part_of_the_language() -> None:
    for source in ("x.__class__", "__import__('os')", "upper.__globals__", "eval('1')"):
        with pytest.raises(ConfigError):
            compile_expression(source, CompileContext(names=frozenset({"x"})))
