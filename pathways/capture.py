"""What one FHIR resource says for a pathway: case activations, case facts and time-node
instants, by the compiled rules of `pathways.definitions`.

Pure apart from `read`, which follows a rule's `follow` reference (a lab Observation's Specimen).
Instants must carry an offset and a time (R8: converted at ingestion); a date alone or a naive
time is not an instant and captures nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from pathways.definitions import Activation, Capture, FactLiteral, Pathway

__all__ = [
    "Captured",
    "Reader",
    "activations_in",
    "captures_in",
    "facts_in",
    "instant_of",
    "patient_of",
]

Reader = Callable[[str], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class Captured:
    """One node instant read from a resource by one capture rule."""

    capture: Capture
    instant: datetime
    performer: Mapping[str, Any] | None  # a Reference to the device or practitioner


def instant_of(values: list[Any], timezone: tzinfo) -> datetime | None:
    """The first value that is an instant with an offset, in `timezone`, to the second."""
    for value in values:
        text = str(value)
        if "T" not in text:
            continue
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            continue
        if parsed.tzinfo is None:
            continue
        return parsed.astimezone(timezone).replace(microsecond=0)
    return None


def patient_of(resource: Mapping[str, Any]) -> str | None:
    """`Patient/<id>` the resource is about (itself for a Patient), or None."""
    if resource.get("resourceType") == "Patient":
        return f"Patient/{resource.get('id')}"
    for element in ("subject", "patient", "for"):
        reference = resource.get(element)
        if isinstance(reference, Mapping):
            text = reference.get("reference")
            if isinstance(text, str) and text.startswith("Patient/"):
                return text
    return None


def activations_in(
    resource: Mapping[str, Any], pathway: Pathway, timezone: tzinfo
) -> list[tuple[Activation, datetime]]:
    """The activation rules the resource meets, each with its activation instant."""
    found = []
    for activation in pathway.activations:
        if activation.match.matches(resource):
            instant = instant_of(activation.time(resource), timezone)
            if instant is not None:
                found.append((activation, instant))
    return found


def facts_in(resource: Mapping[str, Any], pathway: Pathway) -> dict[str, FactLiteral]:
    """The case facts the resource gives (a later rule of the same name wins)."""
    facts: dict[str, FactLiteral] = {}
    for rule in pathway.facts:
        if rule.match.matches(resource):
            value = rule.value_of(resource)
            if value is not None:
                facts[rule.name] = value
    return facts


async def captures_in(
    resource: Mapping[str, Any], pathway: Pathway, timezone: tzinfo, read: Reader
) -> list[Captured]:
    """Every node instant the resource gives by the pathway's capture rules."""
    found: list[Captured] = []
    for node in pathway.nodes.values():
        for capture in node.captures:
            if not capture.match.matches(resource):
                continue
            source: Mapping[str, Any] | None = resource
            if capture.follow is not None:
                source = await _followed(capture.follow(resource), read)
            if source is None:
                continue
            instant = instant_of(capture.time(source), timezone)
            if instant is None:
                continue
            performer = None
            if capture.performer is not None:
                performer = next(
                    (p for p in capture.performer(resource) if isinstance(p, Mapping)), None
                )
            found.append(Captured(capture, instant, performer))
    return found


async def _followed(references: list[Any], read: Reader) -> Mapping[str, Any] | None:
    for reference in references:
        text = reference.get("reference") if isinstance(reference, Mapping) else None
        if isinstance(text, str) and "/" in text:
            return await read(text)
    return None
