"""Merge mode's history rule: a repeating element of stays (`Encounter.location`: each item a
place with `status` and `period`) that a message extends instead of replacing.

A message names only the stays it knows (an A02: the ward left, closed at the transfer, and the
ward entered); the stored resource holds the whole history. `merge_history(stored, new, key)`
folds the message's stays into the stored ones, an item matched to the latest stored stay of the
same place (`key`, e.g. its `location.reference`):

- a matched stay takes the message's status and its period's bounds where the message gives
  them (the start the earlier message gave stays); a message that restates an open stay without
  an end (A13 cancelling the discharge, A12 back to the ward before) opens it again;
- a stay the message starts anew (a start other than the stored one's, the patient back in a
  ward they left) is appended, as is a place never seen;
- when the message's current stay starts at a time (a transfer), the stored stays still open
  that it does not name are closed then (`completed`, `period.end`); when it gives no time (an
  A08 correcting the bed, an A12), they are dropped: they were the message's own earlier word;
- a stored stay that already ended after the message's time is left as it is, so the same
  message once more, or an older one replayed, changes nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["merge_history"]

OPEN = ("planned", "active", "reserved")


def merge_history(
    stored: Sequence[Any], new: Sequence[Any], key: Callable[[Any], Any]
) -> list[Any]:
    """The stored stays with the message's folded in (neither argument is changed)."""
    result = [copy.deepcopy(item) for item in stored]
    touched: list[int] = []
    since = None  # when the message's current stay began, by the message's own word
    for item in new:
        if _status(item) in OPEN and since is None:
            since = _period(item).get("start")
        index = _latest(result, key(item), key)
        if index is None or _starts_anew(result[index], item):
            result.append(copy.deepcopy(item))
            touched.append(len(result) - 1)
        else:
            result[index] = _fold(result[index], item)
            touched.append(index)
    current = [result[i] for i in touched if _status(result[i]) in OPEN]
    kept = []
    for index, item in enumerate(result):
        if index in touched or _status(item) not in OPEN or not current:
            kept.append(item)
        elif since is not None:  # left when the message's stay began
            kept.append({**item, "status": "completed", "period": {**_period(item), "end": since}})
        # else: an open stay the message no longer names and gives no time for: withdrawn
    return kept


def _latest(items: list[Any], identity: Any, key: Callable[[Any], Any]) -> int | None:
    if identity is None:
        return None
    found = [i for i, item in enumerate(items) if key(item) == identity]
    return found[-1] if found else None


def _starts_anew(stored: Any, item: Any) -> bool:
    """A closed stay and a message's stay of the same place with a start of its own (another
    one): the patient came back."""
    start = _period(item).get("start")
    return (
        start is not None and _status(stored) not in OPEN and _period(stored).get("start") != start
    )


def _fold(stored: Any, item: Any) -> Any:
    folded = {**stored, **{k: v for k, v in item.items() if k != "period"}}
    before, period = _period(stored), dict(_period(item))
    if "start" not in period and "start" in before:
        period = {"start": before["start"], **period}
    if "end" not in period and "end" in before and _status(stored) not in OPEN:
        if _period(item).get("start") is not None and _period(item)["start"] == before.get("start"):
            # the same stay, already known to have ended later: an older message replayed
            folded["status"] = stored.get("status")
            period["end"] = before["end"]
    if period:
        folded["period"] = period
    else:
        folded.pop("period", None)
    return folded


def _period(item: Any) -> dict[str, Any]:
    period = item.get("period") if isinstance(item, dict) else None
    return period if isinstance(period, dict) else {}


def _status(item: Any) -> Any:
    return item.get("status") if isinstance(item, dict) else None
