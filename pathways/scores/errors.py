"""The one error a score raises: input that does not meet the score's contract (scores.md §0)."""

from __future__ import annotations

__all__ = ["ScoreInputError", "UnknownScoreError"]


class ScoreInputError(ValueError):
    """An input item is missing, unknown, of the wrong JSON type or out of range.

    `item` names it as the input does (`verbal`, `ais[2].severity`, or `input` for the object
    itself); the message says what was given and what is allowed, e.g.
    `verbal: 7 is not allowed; allowed: 1..5 or "T"`.
    """

    def __init__(self, item: str, message: str) -> None:
        super().__init__(f"{item}: {message}")
        self.item = item
        self.reason = message


class UnknownScoreError(LookupError):
    """No score has this name; the message lists the names there are."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown score {name!r}; scores: {', '.join(known)}")
        self.name = name
