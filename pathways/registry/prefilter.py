"""A cheap, sound pre-check before a FHIRPath is evaluated on a resource: fhirpathpy costs about
a millisecond per resource, and a case may hold thousands of Observations (a monitor charts
every minute), while most mapping expressions only match a few codes.

For an expression `Type.where(CLAUSE)REST` whose clause only tests for presence (`=`,
`contains`, `startsWith`, `exists`, joined by `and`/`or`), a resource can match only if the
quoted texts the clause compares with appear in its JSON; a resource without them gives an
empty result, so it is skipped. Anything the analysis cannot vouch for (negations, orderings,
`exists()`/`count()` after the `where`, unions) gets no pre-check: it is always evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Requirement", "requirement_of"]

_ROOTED_WHERE = re.compile(r"^\s*[A-Z][A-Za-z]+\.where\(")
# In the clause: what makes "the literal must appear" unsound (negation, ordering, ...).
_UNSAFE_CLAUSE = re.compile(
    r"!=|!~|~|<|>|\bnot\(|\bempty\(|\bimplies\b|\bxor\b|\biif\(|\ball\(|\bcount\(|\||%|\$"
)
# After the where: what turns an empty selection into a value (false, 0 ...).
_UNSAFE_REST = re.compile(
    r"\b(exists|empty|count|not|iif|all|allTrue|anyTrue|allFalse|anyFalse|hasValue|"
    r"subsetOf|supersetOf|isDistinct|trace|aggregate)\(|\||\bimplies\b|\bor\b|\band\b|\bxor\b"
)
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a resource's JSON must contain: every text of `all_of`, and for each group of
    `any_of`, one of its requirements."""

    all_of: tuple[str, ...] = ()
    any_of: tuple[tuple[Requirement, ...], ...] = ()

    def holds(self, text: str) -> bool:
        return all(t in text for t in self.all_of) and all(
            any(option.holds(text) for option in group) for group in self.any_of
        )


def requirement_of(expression: str) -> Callable[[str], bool] | None:
    """The pre-check of `expression` on a resource's JSON text, None when there is none."""
    if not _ROOTED_WHERE.match(expression):
        return None
    start = expression.index(".where(") + len(".where(")
    end = _closing(expression, start - 1)
    if end is None:
        return None
    clause, rest = expression[start:end], expression[end + 1 :]
    if _UNSAFE_CLAUSE.search(_unquoted(clause)) or _UNSAFE_REST.search(_unquoted(rest)):
        return None
    found = _requirement(clause)
    if found is None or (not found.all_of and not found.any_of):
        return None
    return found.holds


def _requirement(text: str) -> Requirement | None:
    text = text.strip()
    for word in (" or ", " and "):
        parts = _split(text, word)
        if len(parts) > 1:
            found = [_requirement(p) for p in parts]
            if any(f is None for f in found):
                return None
            known = [f for f in found if f is not None]
            if word == " or ":
                return Requirement(any_of=(tuple(known),))
            return Requirement(
                all_of=tuple(t for f in known for t in f.all_of),
                any_of=tuple(g for f in known for g in f.any_of),
            )
    if text.startswith("(") and _closing(text, 0) == len(text) - 1:
        return _requirement(text[1:-1])
    return _atom(text)


def _atom(text: str) -> Requirement | None:
    """Each `where(...)` inside must hold, and each quoted text outside them must appear."""
    inner: list[Requirement] = []
    outside = []
    position = 0
    while True:
        found = text.find("where(", position)
        if found < 0:
            outside.append(text[position:])
            break
        outside.append(text[position:found])
        end = _closing(text, found + len("where"))
        if end is None:
            return None
        requirement = _requirement(text[found + len("where(") : end])
        if requirement is None:
            return None
        inner.append(requirement)
        position = end + 1
    literals = tuple(
        m.group(1).replace("\\'", "'") for part in outside for m in _QUOTED.finditer(part)
    )
    return Requirement(
        all_of=literals + tuple(t for r in inner for t in r.all_of),
        any_of=tuple(g for r in inner for g in r.any_of),
    )


def _split(text: str, word: str) -> list[str]:
    """`text` split at `word` where it stands outside parentheses and quotes."""
    parts, depth, quoted, last, index = [], 0, False, 0, 0
    while index < len(text):
        char = text[index]
        if quoted:
            if char == "\\":
                index += 1
            elif char == "'":
                quoted = False
        elif char == "'":
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0 and text.startswith(word, index):
            parts.append(text[last:index])
            last = index + len(word)
            index = last
            continue
        index += 1
    parts.append(text[last:])
    return parts


def _closing(text: str, opening: int) -> int | None:
    """The index of the parenthesis closing the one at `opening`."""
    depth, quoted, index = 0, False, opening
    while index < len(text):
        char = text[index]
        if quoted:
            if char == "\\":
                index += 1
            elif char == "'":
                quoted = False
        elif char == "'":
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return None


def _unquoted(text: str) -> str:
    return _QUOTED.sub("''", text)
