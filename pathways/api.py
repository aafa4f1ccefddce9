"""`/api/cases`: manual activation, manual entry and correction of time nodes, case facts, and
each case's timeline with every candidate, its source and the conflicts (entry point
`greenchannel.routers: pathways`).

Who, when and why of each staff action is kept in the Provenance of the write. A plain entry
never overwrites an automatic capture (it is a low-priority candidate); a correction wins and
makes the node `amended`. Errors are 4xx with a message naming what is wrong.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store import FhirStore, NotFound
from pathways.access import may_enter, may_read
from pathways.case_store import load_timeline
from pathways.cases import Cases
from pathways.clocks import ClockState, elapsed, evaluate
from pathways.definitions import Pathways, load_pathways
from pathways.indicator_loader import indicator_definitions
from pathways.nodes import Nodes, NodeView
from pathways.records import Records
from pathways.shapes import arrival_mode_of, case_center, case_facts
from pathways.subscriber import installed_hooks, publish
from pathways.vocabulary import (
    CONFLICT_EXTENSION,
    SOURCE_KIND_SYSTEM,
    TIME_NODE_FLAG_SYSTEM,
    ArrivalMode,
    Center,
)

__all__ = ["build_router"]

_MAX_TEXT = 500


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("the time needs an offset, e.g. 2026-11-25T08:30:00+08:00")
    return value.replace(microsecond=0)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Activation(_Request):
    patient: StrictStr = Field(pattern=r"^Patient/[A-Za-z0-9\-.]{1,64}$")
    center: Center
    arrival_mode: ArrivalMode | None = None
    time: datetime | None = None  # the activation instant; now when absent
    who: StrictStr = Field(min_length=1, max_length=_MAX_TEXT)
    why: StrictStr | None = Field(default=None, max_length=_MAX_TEXT)

    _time = field_validator("time")(lambda v: None if v is None else _aware(v))


class NodeEntry(_Request):
    time: datetime
    who: StrictStr = Field(min_length=1, max_length=_MAX_TEXT)
    why: StrictStr = Field(min_length=1, max_length=_MAX_TEXT)
    kind: Literal["entry", "correction"] = "entry"

    _time = field_validator("time")(lambda v: _aware(v))


class FactEntry(_Request):
    value: StrictBool | StrictInt | StrictStr
    who: StrictStr = Field(min_length=1, max_length=_MAX_TEXT)
    why: StrictStr | None = Field(default=None, max_length=_MAX_TEXT)


def build_router(database: AsyncEngine, *, pathways: Pathways | None = None) -> APIRouter:
    """The `/api/cases` router over the FHIR store on `database`."""
    definitions = pathways or load_pathways()
    indicators = indicator_definitions()  # facts.yaml: the one fact vocabulary, as edited
    indicators.current()  # a folder that does not load stops the start, as before
    store = FhirStore(database, timezone=definitions.catalogue.tz, check_references=False)
    cases = Cases(Nodes(Records(store, definitions.catalogue.tz), definitions, installed_hooks()))

    published = False

    async def ensure_published() -> None:
        # The timeline is read with the `case` search parameter: publish it (and the
        # CodeSystems) if the subscriber has not yet, e.g. when it runs in another process.
        nonlocal published
        if not published:
            await publish(store, definitions)
            published = True

    router = APIRouter(
        prefix="/api/cases",
        tags=["pathways"],
        lifespan=store.closing,
        dependencies=[may_read, Depends(ensure_published)],
    )

    async def case_or_404(case_id: str) -> dict[str, Any]:
        case = await cases.records.read(f"EpisodeOfCare/{case_id}")
        if case is None or case_center(case) is None:
            raise HTTPException(404, f"no center case EpisodeOfCare/{case_id}")
        return case

    @router.post("", status_code=201, dependencies=[may_enter])
    async def activate(body: Activation, response: Response) -> dict[str, Any]:
        if await cases.records.read(body.patient) is None:
            raise HTTPException(422, f"patient: {body.patient} is not in the FHIR store")
        start = body.time or cases.records.store.now().astimezone(cases.timezone)
        case, opened = await cases.activate_manually(
            body.center,
            body.patient,
            start,
            arrival_mode=body.arrival_mode,
            who=body.who,
            why=body.why,
        )
        if not opened:
            response.status_code = 200  # the patient's open case of that center
        return {**_summary(case), "opened": opened}

    @router.get("")
    async def list_cases(
        center: Annotated[Center | None, Query()] = None,
        status: Annotated[Literal["active", "finished", "cancelled"] | None, Query()] = None,
    ) -> list[dict[str, Any]]:
        return [_summary(c) for c in await cases.list_cases(center, status)]

    @router.get("/{case_id}")
    async def show(case_id: str) -> dict[str, Any]:
        return _summary(await case_or_404(case_id))

    @router.get("/{case_id}/timeline")
    async def timeline(case_id: str) -> dict[str, Any]:
        case = await case_or_404(case_id)
        views = await cases.nodes.view(case)
        return {"case": _summary(case), "nodes": [_node(v) for v in views]}

    @router.get("/{case_id}/clocks")
    async def clocks(case_id: str) -> dict[str, Any]:
        """The case's running clocks now: time since onset and door, and each clock rule's
        state (running with its next deadline, alerting, met, resolved, not applicable)."""
        case = await case_or_404(case_id)
        center = case_center(case)
        assert center is not None
        now = cases.records.store.now().astimezone(cases.timezone).replace(microsecond=0)
        timeline = await load_timeline(cases.records.store, case_id)
        since = elapsed(timeline, now)
        rules = definitions.by_center[center].clocks
        return {
            "case": _summary(case),
            "now": now.isoformat(),
            "onset_node": since.onset_node,
            "since_onset_s": since.since_onset_s,
            "onset_approximate": since.onset_approximate,
            "since_door_s": since.since_door_s,
            "clocks": [_clock(state) for state in evaluate(rules, timeline, now)],
        }

    @router.post("/{case_id}/nodes/{key}", dependencies=[may_enter])
    async def enter(case_id: str, key: str, body: NodeEntry) -> dict[str, Any]:
        case = await case_or_404(case_id)
        center = case_center(case)
        assert center is not None
        allowed = definitions.node_keys(center)
        if key not in allowed:
            raise HTTPException(
                422,
                f"node {key!r} is not a {center} node; see /fhir/CodeSystem/time-node "
                f"(for example {', '.join(allowed[:5])} ...)",
            )
        await cases.enter_node(
            case,
            key,
            body.time.astimezone(cases.timezone),
            who=body.who,
            why=body.why,
            correction=body.kind == "correction",
        )
        views = {v.key: v for v in await cases.nodes.view(case)}
        return _node(views[key])

    @router.put("/{case_id}/facts/{name}", dependencies=[may_enter])
    async def set_fact(case_id: str, name: str, body: FactEntry) -> dict[str, Any]:
        case = await case_or_404(case_id)
        facts = (await asyncio.to_thread(indicators.current)).facts
        spec = facts.get(name)
        if spec is None:
            raise HTTPException(
                422, f"fact name {name[:64]!r} is not in facts.yaml; known: {', '.join(facts)}"
            )
        if (problem := spec.problem(body.value)) is not None:
            raise HTTPException(422, f"value: {problem}")
        try:
            stored = await cases.set_manual_fact(case, name, body.value, who=body.who, why=body.why)
        except ValueError as error:
            raise HTTPException(422, f"value: {error}") from None
        except NotFound as error:  # deleted since it was read above
            raise HTTPException(404, str(error)) from None
        return _summary(stored)

    return router


def _clock(state: ClockState) -> dict[str, Any]:
    def instant(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "rule": state.rule.id,
        "title": {"zh": state.rule.title.zh, "en": state.rule.title.en},
        "protects": state.rule.protects,
        "status": state.status,
        "reason": state.reason or None,
        "start": state.rule.start,
        "started_at": instant(state.started_at),
        "elapsed_s": state.elapsed_s,
        "next_deadline": instant(state.next_deadline),
        "end_node": state.end_node,
        "ended_at": instant(state.ended_at),
        "steps": [
            {
                "name": step.step.name,
                "severity": step.step.severity,
                "deadline": step.deadline.isoformat(),
                "reached": step.reached,
            }
            for step in state.steps
        ],
    }


def _summary(case: Mapping[str, Any]) -> dict[str, Any]:
    period = case.get("period") or {}
    return {
        "id": case["id"],
        "center": case_center(case),
        "status": case.get("status"),
        "patient": case["patient"]["reference"],
        "arrival_mode": arrival_mode_of(case),
        "start": period.get("start"),
        "end": period.get("end"),
        "facts": {k: {"value": v, "source": s} for k, (v, s) in case_facts(case).items()},
    }


def _node(view: NodeView) -> dict[str, Any]:
    node = view.authoritative
    return {
        "key": view.key,
        "label": view.label,
        "time": node.get("valueDateTime") if node else None,
        "status": node.get("status") if node else None,
        "rule": _code(node, "method", SOURCE_KIND_SYSTEM) if node else None,
        "flags": _flags(node) if node else [],
        "from": [r["reference"] for r in node.get("derivedFrom") or []] if node else [],
        "conflicts": [
            e["valueReference"]["reference"]
            for e in (node.get("extension") or [] if node else [])
            if e.get("url") == CONFLICT_EXTENSION
        ],
        "candidates": [_candidate(c) for c in view.candidates],
    }


def _candidate(observation: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": observation["id"],
        "time": observation.get("valueDateTime"),
        "status": observation.get("status"),
        "source": _code(observation, "method", SOURCE_KIND_SYSTEM),
        "from": [r["reference"] for r in observation.get("derivedFrom") or []],
        "performer": [
            p.get("display") or p.get("reference") for p in observation.get("performer") or []
        ],
        "note": " ".join(n.get("text", "") for n in observation.get("note") or []) or None,
        "flags": _flags(observation),
        "written": (observation.get("meta") or {}).get("lastUpdated"),
    }


def _code(resource: Mapping[str, Any], element: str, system: str) -> str | None:
    for coding in (resource.get(element) or {}).get("coding") or []:
        if coding.get("system") == system:
            return str(coding.get("code"))
    return None


def _flags(resource: Mapping[str, Any]) -> list[str]:
    return [
        str(c.get("code"))
        for concept in resource.get("interpretation") or []
        for c in concept.get("coding") or []
        if c.get("system") == TIME_NODE_FLAG_SYSTEM
    ]
