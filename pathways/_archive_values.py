"""Reading FHIR elements the archive shows: instants, intervals, concepts, values, references.

Pure functions over the JSON of stored resources; they never raise on a missing or odd element,
they answer None, so that a case with few or unusual data still gives an archive.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, tzinfo
from typing import Any

__all__ = [
    "codings",
    "concept_text",
    "extension_value",
    "format_duration",
    "has_coding",
    "interval",
    "parse_instant",
    "reference_key",
    "show_time",
    "show_when",
    "value_number",
    "value_text",
]

JsonObject = Mapping[str, Any]


def parse_instant(text: object, zone: tzinfo) -> datetime | None:
    """A FHIR dateTime/instant with a time of day as an aware datetime; None for a bare date,
    a missing value or text that is not a dateTime. A time without an offset takes `zone`."""
    if not isinstance(text, str) or len(text) < 16 or "T" not in text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def show_time(value: datetime, zone: tzinfo) -> str:
    """An instant as the archive prints it: ISO 8601 in the local offset, to the second."""
    return value.astimezone(zone).isoformat(timespec="seconds")


def show_when(text: object, zone: tzinfo) -> str | None:
    """A FHIR date or dateTime as shown: instants in the local offset, bare dates as they are."""
    instant = parse_instant(text, zone)
    if instant is not None:
        return show_time(instant, zone)
    return text if isinstance(text, str) and text else None


def format_duration(seconds: int) -> str:
    """`mm:ss` under an hour, `h:mm:ss` from an hour on; negative with a leading minus."""
    sign = "-" if seconds < 0 else ""
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}:{minutes:02d}:{secs:02d}"
    return f"{sign}{minutes:02d}:{secs:02d}"


def interval(start: datetime | None, end: datetime | None) -> dict[str, Any] | None:
    """Whole seconds from `start` to `end` and their display; None if either is unknown."""
    if start is None or end is None:
        return None
    seconds = int((end - start).total_seconds())
    return {"seconds": seconds, "display": format_duration(seconds)}


def codings(concept: object) -> Iterator[JsonObject]:
    """The codings of a CodeableConcept (or of a bare Coding)."""
    if not isinstance(concept, Mapping):
        return
    if "coding" not in concept and "code" in concept:
        yield concept
        return
    for coding in concept.get("coding") or []:
        if isinstance(coding, Mapping):
            yield coding


def has_coding(concept: object, system: str, code: str | None = None) -> bool:
    """Whether the concept has a coding of `system` (and `code`, if given)."""
    return any(
        c.get("system") == system and (code is None or c.get("code") == code)
        for c in codings(concept)
    )


def concept_text(concept: object) -> str | None:
    """What a person reads for a concept: its text, else the first display, else the first code."""
    if isinstance(concept, Mapping) and isinstance(concept.get("text"), str):
        return str(concept["text"])
    found = list(codings(concept))
    for key in ("display", "code"):
        for coding in found:
            if isinstance(coding.get(key), str) and coding[key]:
                return str(coding[key])
    return None


def reference_key(reference: object) -> str | None:
    """`Type/id` of a literal Reference (absolute URLs cut to their last two parts)."""
    if not isinstance(reference, Mapping):
        return None
    text = reference.get("reference")
    if not isinstance(text, str) or "/" not in text:
        return None
    parts = text.split("/_history/")[0].rstrip("/").split("/")
    return f"{parts[-2]}/{parts[-1]}" if len(parts) >= 2 else None


def extension_value(element: object, url: str) -> Any:
    """The value[x] of the first extension with `url`, or None."""
    if not isinstance(element, Mapping):
        return None
    for extension in element.get("extension") or []:
        if isinstance(extension, Mapping) and extension.get("url") == url:
            for key, value in extension.items():
                if key.startswith("value"):
                    return value
    return None


def value_number(element: JsonObject) -> float | None:
    """The number of a valueQuantity/valueInteger/valueDecimal, if the element has one."""
    quantity = element.get("valueQuantity")
    if isinstance(quantity, Mapping) and isinstance(quantity.get("value"), int | float):
        return float(quantity["value"])
    for key in ("valueInteger", "valueDecimal"):
        value = element.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def value_text(element: JsonObject, zone: tzinfo) -> str | None:
    """An element's value[x] as text: `0.56 ng/mL`, `<0.01 ng/mL`, a concept's text, a string;
    an Observation without a value of its own shows its components (`150/90 mmHg`)."""
    for key, value in element.items():
        if key.startswith("value") and key != "value":
            text = _one_value(key, value, zone)
            if text is not None:
                return text
    parts = [value_text(part, zone) for part in element.get("component") or []]
    shown = [part for part in parts if part]
    return " / ".join(shown) if shown else None


def _one_value(key: str, value: Any, zone: tzinfo) -> str | None:
    if key in ("valueQuantity", "valueAge", "valueDuration") and isinstance(value, Mapping):
        number = value.get("value")
        if number is None:
            return None
        unit = value.get("unit") or value.get("code") or ""
        return f"{value.get('comparator', '')}{_number(number)} {unit}".strip()
    if key == "valueCodeableConcept" or key == "valueCoding":
        return concept_text(value)
    if key == "valueBoolean" and isinstance(value, bool):
        return "yes" if value else "no"
    if key == "valueDateTime":
        return show_when(value, zone)
    if key == "valuePeriod" and isinstance(value, Mapping):
        start, end = show_when(value.get("start"), zone), show_when(value.get("end"), zone)
        return f"{start or '?'} – {end or '?'}"
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return _number(value) if not isinstance(value, str) else value
    return None


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
