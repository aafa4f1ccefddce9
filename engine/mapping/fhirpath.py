"""FHIRPath assertions on a mapping's output, for analysts' tests (fhirpathpy, R4 model).

An assertion holds when its result is not empty and holds no `false`: `[true]` for a comparison,
or the items found for a `where(...)`. Syntax errors are reported before anything is evaluated
(fhirpathpy alone would recover from them silently). When an assertion such as
`Bundle.entry.resource.ofType(Patient).gender = 'male'` fails, its left side is evaluated again
so the failure can say what was found.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from engine.errors import ConfigError

__all__ = ["FhirPathCheck", "compile_check", "compile_path", "rooted_at_bundle"]

_COMPARISON = re.compile(r"\s(=|!=|~|!~|<=|>=|<|>)\s")
_RESOURCE_ROOT = re.compile(r"([A-Z][A-Za-z]+)(?=[.\[]|$)")


class _RaisingListener:
    """An ANTLR error listener that turns the first syntax error into a ValueError."""

    def syntaxError(  # the ANTLR interface names it
        self, recognizer: Any, symbol: Any, line: int, column: int, message: str, error: Any
    ) -> None:
        raise ValueError(f"column {column + 1}: {message}")

    def reportAmbiguity(self, *args: Any) -> None:
        return None

    def reportAttemptingFullContext(self, *args: Any) -> None:
        return None

    def reportContextSensitivity(self, *args: Any) -> None:
        return None


def _check_syntax(expression: str) -> None:
    from antlr4 import CommonTokenStream, InputStream
    from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
    from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

    listener = _RaisingListener()
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(listener)
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    parser.expression()
    if parser.getCurrentToken().type != FHIRPathParser.EOF:
        raise ValueError(f"column {parser.getCurrentToken().column + 1}: unexpected text")


@lru_cache(maxsize=1)
def _model() -> Any:
    from fhirpathpy.models import models

    return models["r4"]


@dataclass(frozen=True)
class FhirPathCheck:
    """One compiled assertion; `failure(output)` is None when it holds, else what was found."""

    expression: str
    _evaluate: Any
    _left: Any | None

    def failure(self, output: Any) -> str | None:
        try:
            result = self._evaluate(_fresh(output))
        except Exception as exc:  # fhirpathpy raises plain Exceptions for bad functions
            return f"cannot be evaluated: {exc}"
        if result and all(item is not False for item in result):
            return None
        if self._left is None:
            return f"is {_show(result)}"
        try:
            found = self._left(_fresh(output))
        except Exception:  # only used to explain a failure
            return f"is {_show(result)}"
        return f"is {_show(result)}; found {_show(found)}"


def _fresh(output: Any) -> Any:
    """A copy to evaluate (fhirpathpy annotates what it reads) with decimals as Decimal, so
    `value = 52.3` compares like FHIRPath decimals do and not like binary floats.

    What a JSON round trip with `parse_float=Decimal` gives, at a third of its cost (~15 µs
    against ~45 for an Encounter): the pathway subscriber evaluates a path per change event.
    """
    kind = type(output)
    if kind is str:
        return output
    if kind is dict or isinstance(output, dict):
        return {str(key): _fresh(value) for key, value in output.items()}
    if kind is list or isinstance(output, tuple | list):
        return [_fresh(value) for value in output]
    if kind is float:
        return Decimal(repr(output))
    return output


def _show(values: list[Any]) -> str:
    if not values:
        return "nothing (empty)"
    text = ", ".join(str(v) if isinstance(v, Decimal) else repr(v) for v in values[:5])
    return f"[{text}{', ...' if len(values) > 5 else ''}]"


def rooted_at_bundle(expression: str) -> str:
    """IZ Gateway style `MessageHeader.count() = 1`, `OperationOutcome[1].issue` → the same over
    the Bundle's entries of that type; expressions starting at `Bundle` stay as they are."""
    match = _RESOURCE_ROOT.match(expression)
    if match is None or match.group(1) == "Bundle":
        return expression
    return f"Bundle.entry.resource.ofType({match.group(1)}){expression[match.end() :]}"


def compile_check(expression: str, *, where: str = "") -> FhirPathCheck:
    """Compile one assertion; ConfigError (naming `where`) when it is not valid FHIRPath."""
    from fhirpathpy import compile as compile_fhirpath

    text = expression.strip()
    evaluate = _compile(text, where)
    left = None
    comparison = _COMPARISON.search(text)
    if comparison is not None:  # the left side of a top-level comparison, when it parses alone
        try:
            left_text = text[: comparison.start()]
            _check_syntax(left_text)
            left = compile_fhirpath(left_text, model=_model())
        except Exception:  # no left side to show: fine
            left = None
    return FhirPathCheck(text, evaluate, left)


def compile_path(expression: str, *, where: str = "") -> Callable[..., list[Any]]:
    """Compile a FHIRPath expression to evaluate on a resource (a copy: fhirpathpy annotates
    what it reads); ConfigError (naming `where`) when it is not valid FHIRPath."""
    evaluate = _compile(expression.strip(), where)

    def run(resource: Any, variables: dict[str, Any] | None = None) -> list[Any]:
        """`variables` are the expression's `%name`s (merge mode's `%new`)."""
        if not variables:
            return list(evaluate(_fresh(resource)))
        return list(evaluate(_fresh(resource), {k: _fresh(v) for k, v in variables.items()}))

    return run


def _compile(text: str, where: str) -> Any:
    try:
        return _compiled(text)
    except Exception as exc:  # fhirpathpy raises plain Exceptions
        raise ConfigError(f"not a valid FHIRPath expression ({exc})", key=where or None) from None


@lru_cache(maxsize=4096)
def _compiled(text: str) -> Any:
    """One compilation per expression text and process: ANTLR parses at ~2 ms an expression,
    and the pathway definitions alone compile 287 expressions, 65 of them different (`code`
    58 times), at every start of the engine and of the commands that load them. The compiled
    function keeps no state between evaluations, so sharing it is safe."""
    from fhirpathpy import compile as compile_fhirpath

    _check_syntax(text)
    return compile_fhirpath(text, model=_model())
