"""Reporting months: which month a case counts in (R10), and month ranges like 2026-01..2026-10.

R10 (time-nodes.md, marked U until the QC office confirms it): a case counts in the month, in
Asia/Shanghai, of its `door`, or of its `first_medical_contact` when it has no door.
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from pathways.timeline import CaseTimeline

__all__ = [
    "MONTH_NODES",
    "REPORTING_ZONE",
    "month_bucket",
    "month_of",
    "month_start",
    "months_between",
    "parse_month",
    "shift_month",
]

REPORTING_ZONE = ZoneInfo("Asia/Shanghai")
MONTH_NODES = ("door", "first_medical_contact")  # the first present decides the month
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def month_of(instant: datetime) -> str:
    """`2026-02` for any aware instant in February 2026, Shanghai time."""
    return instant.astimezone(REPORTING_ZONE).strftime("%Y-%m")


def month_bucket(case: CaseTimeline) -> str | None:
    """The month a case is counted in (R10), or None without door and first medical contact."""
    for key in MONTH_NODES:
        instant = case.nodes.get(key)
        if instant is not None:
            return month_of(instant)
    return None


def parse_month(text: str) -> str:
    """Check `YYYY-MM`; ValueError saying what to write otherwise."""
    if not _MONTH.match(text):
        raise ValueError(f"{text!r} is not a month; write YYYY-MM, e.g. 2026-01")
    return text


def months_between(first: str, last: str) -> list[str]:
    """Every month from `first` to `last`, both included; ValueError if `last` is earlier."""
    year, month = (int(part) for part in parse_month(first).split("-"))
    end = parse_month(last)
    if end < first:
        raise ValueError(f"the range ends ({last}) before it starts ({first})")
    found = []
    while f"{year:04d}-{month:02d}" <= end:
        found.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return found


def month_start(month: str) -> datetime:
    """The first instant of a month, Shanghai time."""
    year, number = (int(part) for part in parse_month(month).split("-"))
    return datetime(year, number, 1, tzinfo=REPORTING_ZONE)


def shift_month(month: str, count: int) -> str:
    """The month `count` months after (or before, when negative) `month`."""
    year, number = (int(part) for part in parse_month(month).split("-"))
    index = year * 12 + number - 1 + count
    return f"{index // 12:04d}-{index % 12 + 1:02d}"
