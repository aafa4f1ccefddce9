"""The FHIR shapes the pathway engine writes (interfaces.md §5), and reading them back.

A case is an `EpisodeOfCare`; a time-node candidate a `preliminary` Observation, the
authoritative node a `final` (or, after a staff correction, `amended`) Observation, both of
category `time-node` and linked to the case by CASE_EXTENSION; each node write has a
`Provenance`. Ids are deterministic so that replayed events converge. Also the CodeSystems and
the SearchParameter the engine publishes into the store at start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.mapping.functions import make_id
from pathways.definitions import Pathways
from pathways.resolve import CORRECTION, Candidate, Resolution
from pathways.timeline import CaseTimeline, FactValue
from pathways.vocabulary import (
    ARRIVAL_MODE_EXTENSION,
    ARRIVAL_MODES,
    CAPTURE_RULE_EXTENSION,
    CASE_EXTENSION,
    CASE_FACT_EXTENSION,
    CASE_SEARCH_PARAMETER,
    CENTER_LABELS,
    CENTER_SYSTEM,
    CENTER_TYPE_CODES,
    CENTERS,
    CONFLICT_EXTENSION,
    OBSERVATION_CATEGORY_SYSTEM,
    PRIORITY_EXTENSION,
    PROVENANCE_ACTIVITY_SYSTEM,
    SOURCE_KIND_SYSTEM,
    TIME_NODE_CATEGORY,
    TIME_NODE_FLAG_SYSTEM,
    TIME_NODE_SYSTEM,
    ArrivalMode,
    Center,
)

__all__ = [
    "AUTHORITATIVE_STATUSES",
    "CANDIDATE_STATUSES",
    "Fact",
    "Note",
    "candidate_id",
    "candidate_observation",
    "arrival_mode_of",
    "case_center",
    "case_of",
    "case_episode",
    "case_facts",
    "case_id",
    "code_systems",
    "node_id",
    "node_key_of",
    "node_observation",
    "parse_instant",
    "provenance",
    "provenance_id",
    "read_candidate",
    "search_parameters",
    "set_arrival_mode",
    "set_fact",
    "timeline_of",
    "when",
]

CANDIDATE_STATUSES = ("preliminary",)  # a retracted candidate is `cancelled`
AUTHORITATIVE_STATUSES = ("final", "amended")
_CATEGORY = [{"coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": TIME_NODE_CATEGORY}]}]
_CENTER_OF_CODE = {code: center for center, code in CENTER_TYPE_CODES.items()}
_RESOLUTION_RULES = {
    "priority-first": "最高优先级来源中最早的时间",
    "priority-last": "最高优先级来源中最晚的时间",
}

Fact = FactValue


def when(instant: datetime) -> str:
    """An instant as stored: with its offset, to the second."""
    return instant.replace(microsecond=0).isoformat(timespec="seconds")


def case_id(center: Center, patient: str, activated_by: str) -> str:
    return f"case-{make_id('case', center, patient, activated_by)}"


def node_id(case: str, node: str) -> str:
    return f"tn-{make_id('time-node', case, node)}"


def candidate_id(case: str, node: str, rule: str, source: str) -> str:
    """A candidate per case, node, capture rule and source resource (or manual kind)."""
    return f"tnc-{make_id('time-node-candidate', case, node, rule, source)}"


# -- the case -----------------------------------------------------------------------------------


def case_episode(
    identifier: str,
    center: Center,
    patient: str,
    start: datetime,
    *,
    activation: str,
    arrival_mode: ArrivalMode | None = None,
) -> dict[str, Any]:
    """A new, active case."""
    episode: dict[str, Any] = {
        "resourceType": "EpisodeOfCare",
        "id": identifier,
        "status": "active",
        "type": [
            {
                "coding": [{"system": CENTER_SYSTEM, "code": CENTER_TYPE_CODES[center]}],
                "text": activation,
            }
        ],
        "patient": {"reference": patient},
        "period": {"start": when(start)},
    }
    if arrival_mode is not None:
        set_arrival_mode(episode, arrival_mode)
    return episode


def case_center(episode: Mapping[str, Any]) -> Center | None:
    for concept in episode.get("type") or []:
        for coding in concept.get("coding") or []:
            if coding.get("system") == CENTER_SYSTEM and coding.get("code") in _CENTER_OF_CODE:
                return _CENTER_OF_CODE[coding["code"]]
    return None


def arrival_mode_of(episode: Mapping[str, Any]) -> ArrivalMode | None:
    for extension in episode.get("extension") or []:
        if extension.get("url") == ARRIVAL_MODE_EXTENSION:
            code = extension.get("valueCode")
            for mode in ARRIVAL_MODES:
                if mode == code:
                    return mode
    return None


def set_arrival_mode(episode: dict[str, Any], mode: ArrivalMode) -> None:
    others = [e for e in episode.get("extension") or [] if e.get("url") != ARRIVAL_MODE_EXTENSION]
    episode["extension"] = [{"url": ARRIVAL_MODE_EXTENSION, "valueCode": mode}, *others]


def _fact_value(value: Fact) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, float):
        return {"valueDecimal": value}
    return {"valueCode": value} if value.replace("_", "").isalnum() else {"valueString": value}


def case_facts(episode: Mapping[str, Any]) -> dict[str, tuple[Fact, str]]:
    """The case's facts: name -> (value, source), source `manual` or the resource it came from."""
    facts: dict[str, tuple[Fact, str]] = {}
    for extension in episode.get("extension") or []:
        if extension.get("url") != CASE_FACT_EXTENSION:
            continue
        parts = {p.get("url"): p for p in extension.get("extension") or []}
        name = parts.get("name", {}).get("valueCode")
        value_part = parts.get("value", {})
        value = next((v for k, v in value_part.items() if k.startswith("value")), None)
        source = parts.get("source", {}).get("valueString", "")
        if isinstance(name, str) and isinstance(value, str | bool | int | float):
            facts[name] = (value, str(source))
    return facts


def set_fact(episode: dict[str, Any], name: str, value: Fact | None, source: str) -> None:
    """Set (or with None remove) one fact, keeping the others in order."""
    kept = []
    for extension in episode.get("extension") or []:
        parts = {p.get("url"): p for p in extension.get("extension") or []}
        same = parts.get("name", {}).get("valueCode") == name
        if extension.get("url") == CASE_FACT_EXTENSION and same:
            continue
        kept.append(extension)
    if value is not None:
        kept.append(
            {
                "url": CASE_FACT_EXTENSION,
                "extension": [
                    {"url": "name", "valueCode": name},
                    {"url": "value", **_fact_value(value)},
                    {"url": "source", "valueString": source},
                ],
            }
        )
    episode["extension"] = kept


# -- time nodes ---------------------------------------------------------------------------------


def _node_base(
    identifier: str, status: str, case: Mapping[str, Any], node: str, label: str, instant: datetime
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": identifier,
        "extension": [
            {"url": CASE_EXTENSION, "valueReference": {"reference": f"EpisodeOfCare/{case['id']}"}}
        ],
        "status": status,
        "category": _CATEGORY,
        "code": {"coding": [{"system": TIME_NODE_SYSTEM, "code": node, "display": label}]},
        "subject": case["patient"],
        "effectiveDateTime": when(instant),
        "valueDateTime": when(instant),
    }


def candidate_observation(
    identifier: str,
    case: Mapping[str, Any],
    node: str,
    label: str,
    instant: datetime,
    *,
    source_kind: str,
    priority: int,
    rule: str | None,
    derived_from: str | None,
    encounter: str | None = None,
    performer: Mapping[str, Any] | None = None,
    proxy: bool = False,
    note: str | None = None,
) -> dict[str, Any]:
    """A candidate time for one node, from one source."""
    observation = _node_base(identifier, "preliminary", case, node, label, instant)
    if rule is not None:
        observation["extension"].append({"url": CAPTURE_RULE_EXTENSION, "valueString": rule})
    observation["extension"].append({"url": PRIORITY_EXTENSION, "valueInteger": priority})
    if encounter is not None:
        observation["encounter"] = {"reference": encounter}
    if derived_from is not None:
        observation["derivedFrom"] = [{"reference": derived_from}]
    observation["method"] = {"coding": [{"system": SOURCE_KIND_SYSTEM, "code": source_kind}]}
    if performer is not None:
        observation["performer"] = [dict(performer)]
    if proxy:
        observation["interpretation"] = [_flag("proxy")]
    if note:
        observation["note"] = [{"text": note}]
    return observation


def _flag(code: str) -> dict[str, Any]:
    return {"coding": [{"system": TIME_NODE_FLAG_SYSTEM, "code": code}]}


def node_observation(
    case: Mapping[str, Any],
    node: str,
    label: str,
    resolution: Resolution,
    *,
    encounter: str | None,
    performer: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """The authoritative node: `final`, or `amended` when a staff correction decided it."""
    status = "amended" if resolution.corrected else "final"
    observation = _node_base(
        node_id(case["id"], node), status, case, node, label, resolution.instant
    )
    for conflict in resolution.conflicts:
        observation["extension"].append(
            {
                "url": CONFLICT_EXTENSION,
                "valueReference": {"reference": f"Observation/{conflict.id}"},
            }
        )
    if encounter is not None:
        observation["encounter"] = {"reference": encounter}
    observation["derivedFrom"] = [{"reference": f"Observation/{w.id}"} for w in resolution.winners]
    observation["method"] = {"coding": [{"system": SOURCE_KIND_SYSTEM, "code": resolution.rule}]}
    if performer:
        observation["performer"] = performer
    flags = [_flag("conflict")] if resolution.conflicts else []
    if resolution.proxy:
        flags.append(_flag("proxy"))
    if flags:
        observation["interpretation"] = flags
    return observation


def read_candidate(observation: Mapping[str, Any]) -> Candidate | None:
    """A stored candidate as the resolver sees it; None if it is not a live candidate."""
    if observation.get("status") not in CANDIDATE_STATUSES:
        return None
    node = node_key_of(observation)
    instant_text = observation.get("valueDateTime")
    if node is None or not isinstance(instant_text, str):
        return None
    rule = priority = None
    for extension in observation.get("extension") or []:
        if extension.get("url") == CAPTURE_RULE_EXTENSION:
            rule = extension.get("valueString")
        elif extension.get("url") == PRIORITY_EXTENSION:
            priority = extension.get("valueInteger")
    method = (observation.get("method") or {}).get("coding") or [{}]
    flags = [c.get("code") for i in observation.get("interpretation") or [] for c in i["coding"]]
    return Candidate(
        id=str(observation["id"]),
        node=node,
        instant=datetime.fromisoformat(instant_text),
        source=str(method[0].get("code")),
        priority=int(priority or 0),
        rule=rule,
        proxy="proxy" in flags,
        written=datetime.fromisoformat(observation["meta"]["lastUpdated"]),
    )


def node_key_of(observation: Mapping[str, Any]) -> str | None:
    """The node key of a time-node Observation."""
    for coding in (observation.get("code") or {}).get("coding") or []:
        if coding.get("system") == TIME_NODE_SYSTEM:
            return str(coding.get("code"))
    return None


def case_of(observation: Mapping[str, Any]) -> str | None:
    """`EpisodeOfCare/<id>` an Observation belongs to."""
    for extension in observation.get("extension") or []:
        if extension.get("url") == CASE_EXTENSION:
            return str((extension.get("valueReference") or {}).get("reference"))
    return None


@dataclass(frozen=True, slots=True)
class Note:
    """What the Provenance of a write says: the activity (derive, manual-entry, correction),
    who, from what source, why, and the priority used."""

    activity: str
    who: str
    entity: str | None = None
    reason: str | None = None
    priority: int | None = None


def provenance_id(reference: str, version: int | str) -> str:
    """The id of the Provenance of version `version` of `Type/id`: a version the pathway
    engine (or staff through it) wrote has one; a version another system wrote has none."""
    return f"prov-{make_id('provenance', reference, int(version))}"


def provenance(
    target: Mapping[str, Any], version: int, recorded: datetime, note: Note
) -> dict[str, Any]:
    """The Provenance of one write: which version, when, by whom, from what, and why."""
    activity, who, entity, reason, priority = (
        note.activity,
        note.who,
        note.entity,
        note.reason,
        note.priority,
    )
    reference = f"{target['resourceType']}/{target['id']}"
    record: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": provenance_id(reference, version),
        "target": [{"reference": f"{reference}/_history/{version}"}],
        "recorded": recorded.isoformat(timespec="seconds"),
        "activity": {"coding": [{"system": PROVENANCE_ACTIVITY_SYSTEM, "code": activity}]},
        "agent": [{"who": {"display": who}}],
    }
    if priority is not None:
        record["extension"] = [{"url": PRIORITY_EXTENSION, "valueInteger": priority}]
    if entity is not None:
        record["entity"] = [{"role": "source", "what": {"reference": entity}}]
    if reason:
        record["reason"] = [{"text": reason}]
    return record


def timeline_of(episode: Mapping[str, Any], nodes: Mapping[str, datetime]) -> CaseTimeline:
    """The case as indicators and clocks see it."""
    center = case_center(episode)
    assert center is not None
    return CaseTimeline(
        case_id=str(episode["id"]),
        center=center,
        patient_id=str((episode.get("patient") or {}).get("reference", "")).removeprefix(
            "Patient/"
        ),
        arrival_mode=arrival_mode_of(episode),
        nodes=dict(nodes),
        # arrival_mode has its own field; as a fact it only marks who set the mode
        facts={k: v for k, (v, _) in case_facts(episode).items() if k != "arrival_mode"},
        status=str(episode.get("status", "active")),
        activation=parse_instant((episode.get("period") or {}).get("start")),
    )


def parse_instant(value: object) -> datetime | None:
    """A FHIR dateTime with a time and an offset; a partial date or a naive time is no instant
    (never compare naive times; the store keeps offsets)."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return instant if instant.tzinfo is not None else None


# -- what the engine publishes --------------------------------------------------------------------


def _code_system(
    identifier: str, url: str, title: str, concepts: list[dict[str, Any]], version: str
) -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "id": identifier,
        "url": url,
        "version": version,
        "name": identifier.title().replace("-", ""),
        "title": title,
        "status": "active",
        "content": "complete",
        "caseSensitive": True,
        "count": len(concepts),
        "concept": concepts,
    }


def code_systems(pathways: Pathways) -> list[dict[str, Any]]:
    """The time-node, center, time-node-source and time-node-flag CodeSystems."""
    catalogue = pathways.catalogue
    nodes = [
        {"code": key, "display": label, "designation": [{"language": "zh", "value": label}]}
        for key, label in catalogue.labels.items()
    ]
    sources = [{"code": k, "display": label} for k, (label, _) in catalogue.source_kinds.items()]
    if CORRECTION not in catalogue.source_kinds:
        sources.append({"code": CORRECTION, "display": "人工更正"})
    sources += [{"code": k, "display": v} for k, v in _RESOLUTION_RULES.items()]
    centers = [{"code": CENTER_TYPE_CODES[c], "display": CENTER_LABELS[c]} for c in CENTERS]
    flags = [
        {"code": "conflict", "display": "来源时间不一致，需复核"},
        {"code": "proxy", "display": "代理时间(如挂号时间代替到院时间)"},
    ]
    version = catalogue.version
    return [
        _code_system("time-node", TIME_NODE_SYSTEM, "时间节点", nodes, version),
        _code_system("center", CENTER_SYSTEM, "中心", centers, version),
        _code_system("time-node-source", SOURCE_KIND_SYSTEM, "时间节点来源", sources, version),
        _code_system("time-node-flag", TIME_NODE_FLAG_SYSTEM, "时间节点标记", flags, version),
    ]


def search_parameters() -> list[dict[str, Any]]:
    """`Observation?case=EpisodeOfCare/<id>`: a case's time nodes (and scores, intervals)."""
    return [
        {
            "resourceType": "SearchParameter",
            "id": "observation-case",
            "url": CASE_SEARCH_PARAMETER,
            "name": "ObservationCase",
            "status": "active",
            "description": "The center case (EpisodeOfCare) an Observation belongs to",
            "code": "case",
            "base": ["Observation"],
            "type": "reference",
            "target": ["EpisodeOfCare"],
            "expression": f"Observation.extension.where(url = '{CASE_EXTENSION}').value",
        }
    ]
