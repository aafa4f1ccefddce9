"""The case's ordered timeline: one authoritative instant per node, with the interval to the
node before it and from the door, the first medical contact and the onset, and the other
sources' instants where they disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

from pathways._archive_values import codings, interval, parse_instant, reference_key, show_time
from pathways.archive_config import References
from pathways.vocabulary import SOURCE_KIND_SYSTEM, TIME_NODE_SYSTEM

__all__ = ["ResolvedNode", "build_timeline", "resolved_nodes"]

AUTHORITATIVE = ("final", "amended")
CANDIDATE = "preliminary"

Resource = Mapping[str, Any]
ResolvedNode = tuple[str, datetime, Resource]  # key, instant, the authoritative Observation


def resolved_nodes(observations: Sequence[Resource], zone: tzinfo) -> list[ResolvedNode]:
    """The authoritative node of each key, in time order. Two authoritative Observations of one
    key should not happen; if they do, an amended one wins over a final one, then the newest."""
    best: dict[str, tuple[tuple[bool, str], datetime, Resource]] = {}
    for observation in observations:
        key = node_key(observation)
        instant = parse_instant(observation.get("valueDateTime"), zone)
        if key is None or instant is None or observation.get("status") not in AUTHORITATIVE:
            continue
        rank = (observation.get("status") == "amended", _last_updated(observation))
        if key not in best or rank > best[key][0]:
            best[key] = (rank, instant, observation)
    ordered = [(key, instant, obs) for key, (_, instant, obs) in best.items()]
    return sorted(ordered, key=lambda node: (node[1], node[0]))


def build_timeline(
    observations: Sequence[Resource],
    labels: Mapping[str, str],
    references: References,
    zone: tzinfo,
) -> dict[str, Any]:
    """The `timeline` section of the archive (docs/patient-archive.md)."""
    nodes = resolved_nodes(observations, zone)
    instants = {key: instant for key, instant, _ in nodes}
    chosen = {id(obs) for _, _, obs in nodes}
    by_id = {f"Observation/{o.get('id')}": o for o in observations}
    reference_nodes = {
        name: next((key for key in keys if key in instants), None)
        for name, keys in (
            ("door", references.door),
            ("fmc", references.fmc),
            ("onset", references.onset),
        )
    }
    entries = []
    previous: datetime | None = None
    for key, instant, observation in nodes:
        others = [
            o
            for o in observations
            if node_key(o) == key and id(o) not in chosen and o.get("status") != "entered-in-error"
        ]
        entries.append(
            {
                "key": key,
                "label": labels.get(key),
                "time": show_time(instant, zone),
                "status": observation.get("status"),
                "method": _method(observation),
                "sources": _sources(observation, by_id),
                "resource": f"Observation/{observation.get('id')}",
                "since_previous": interval(previous, instant),
                **{
                    f"from_{name}": interval(instants.get(ref) if ref else None, instant)
                    for name, ref in reference_nodes.items()
                },
                "other_sources": _disagreeing(others, instant, zone),
            }
        )
        previous = instant
    return {
        "references": {
            name: {"key": ref, "label": labels.get(ref), "time": show_time(instants[ref], zone)}
            if ref is not None
            else None
            for name, ref in reference_nodes.items()
        },
        "nodes": entries,
        "unresolved": _unresolved(observations, instants, labels, zone),
    }


def node_key(observation: Resource) -> str | None:
    """The node key: the Observation's code in the time-node CodeSystem."""
    for coding in codings(observation.get("code")):
        if coding.get("system") == TIME_NODE_SYSTEM and isinstance(coding.get("code"), str):
            return str(coding["code"])
    return None


def _method(observation: Resource) -> str | None:
    found = list(codings(observation.get("method")))
    preferred = [c for c in found if c.get("system") == SOURCE_KIND_SYSTEM] or found
    code = preferred[0].get("code") if preferred else None
    return str(code) if isinstance(code, str) else None


def _sources(observation: Resource, by_id: Mapping[str, Resource]) -> list[str]:
    """Source kinds of the candidates the node was resolved from (derivedFrom), else its own."""
    kinds = []
    for link in observation.get("derivedFrom") or []:
        candidate = by_id.get(reference_key(link) or "")
        kind = _method(candidate) if candidate is not None else None
        if kind is not None and kind not in kinds:
            kinds.append(kind)
    if not kinds and observation.get("status") in AUTHORITATIVE:
        own = _method(observation)
        return [own] if own else []
    return kinds


def _disagreeing(
    others: Sequence[Resource], instant: datetime, zone: tzinfo
) -> list[dict[str, Any]]:
    """The other sources' instants for the node that are not the authoritative one."""
    found = []
    for other in others:
        when = parse_instant(other.get("valueDateTime"), zone)
        if when is None or when == instant:
            continue
        found.append(
            {
                "time": show_time(when, zone),
                "source": _method(other),
                "status": other.get("status"),
                "resource": f"Observation/{other.get('id')}",
                "difference": interval(instant, when),
            }
        )
    return sorted(found, key=lambda entry: str(entry["time"]))


def _unresolved(
    observations: Sequence[Resource],
    instants: Mapping[str, datetime],
    labels: Mapping[str, str],
    zone: tzinfo,
) -> list[dict[str, Any]]:
    """Nodes that have candidates but no authoritative instant (not resolved yet)."""
    pending: dict[str, list[dict[str, Any]]] = {}
    for observation in observations:
        key = node_key(observation)
        if key is None or key in instants or observation.get("status") != CANDIDATE:
            continue
        when = parse_instant(observation.get("valueDateTime"), zone)
        pending.setdefault(key, []).append(
            {
                "time": show_time(when, zone) if when else None,
                "source": _method(observation),
                "resource": f"Observation/{observation.get('id')}",
            }
        )
    return [
        {"key": key, "label": labels.get(key), "candidates": candidates}
        for key, candidates in sorted(pending.items())
    ]


def _last_updated(observation: Resource) -> str:
    meta = observation.get("meta")
    value = meta.get("lastUpdated") if isinstance(meta, Mapping) else None
    return value if isinstance(value, str) else ""
