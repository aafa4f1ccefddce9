"""`/api/scores`: compute a score and store it as an Observation in the FHIR store.

`POST /api/scores/{name}` takes `{"input": {...}, "patient": "Patient/1"}` or `"case":
"EpisodeOfCare/9"` (then the subject is the case's patient), optionally `effective` (with an
offset; default now), `phase` and `performer`. It answers 201 with the stored Observation and
the computed result; 422 with an OperationOutcome naming the item for bad input; 404 for an
unknown score, patient or case. `GET /api/scores` lists the scores and their input items.
Authentication is added by the app that includes the router.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store import FhirStore, FhirStoreError, NotFound, PayloadTooLarge
from pathways.access import may_enter, may_read
from pathways.scores import (
    ScoreInputError,
    UnknownScoreError,
    allowed,
    evaluate,
    score_table,
    score_tables,
)
from pathways.scores.contract import MAX_INPUT_BYTES, parse_json
from pathways.scores.observation import score_observation
from pathways.vocabulary import LOINC, SCORE_SYSTEM

__all__ = ["CHINA_STANDARD_TIME", "build_score_router"]

CHINA_STANDARD_TIME = timezone(timedelta(hours=8))
_BODY_KEYS = ("input", "patient", "case", "effective", "phase", "performer")
_PHASE = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")
_ID = r"[A-Za-z0-9\-.]{1,64}"
_PATIENT = re.compile(rf"^Patient/{_ID}$")
_CASE = re.compile(rf"^EpisodeOfCare/{_ID}$")
_PERFORMER = re.compile(
    rf"^(?:Practitioner|PractitionerRole|Organization|CareTeam|Patient|RelatedPerson|Device)/{_ID}$"
)


class _Invalid(FhirStoreError):
    """A request the score API cannot take: 422, naming the body element (`input.verbal`)."""

    status = 422
    code = "value"


def build_score_router(
    database: AsyncEngine,
    *,
    store: FhirStore | None = None,
    timezone: tzinfo = CHINA_STANDARD_TIME,
) -> APIRouter:
    """The score API over a FHIR store on `database` (migrated). A store passed in is the
    caller's to close; one the router builds is closed by its lifespan. `timezone` is the
    offset of a default `effective` (now)."""
    fhir = store if store is not None else FhirStore(database)
    lifespan = None if store is not None else fhir.closing
    router = APIRouter(prefix="/api/scores", tags=["scores"], lifespan=lifespan)

    @router.get("", dependencies=[may_read])
    async def list_scores() -> JSONResponse:
        return JSONResponse([_description(name) for name in score_tables()])

    @router.post("/{name}", dependencies=[may_enter])
    async def store_score(name: str, request: Request) -> JSONResponse:
        try:
            table = score_table(name)
            body = await _read_body(request)
            try:
                evaluation = evaluate(table.name, body["input"])
            except ScoreInputError as exc:
                raise _Invalid(str(exc), expression=[f"input.{exc.item}"]) from None
            subject, case = await _subject(fhir, body)
            performer = body.get("performer")
            if performer is not None:
                await _must_exist(fhir, performer, "performer", _PERFORMER)
            observation = score_observation(
                evaluation,
                subject=subject,
                case=case,
                effective=_effective(body.get("effective"), timezone),
                phase=_phase(body.get("phase")),
                performer=performer,
            )
            stored = await fhir.create(observation)
        except UnknownScoreError as exc:
            outcome = NotFound(str(exc), expression=["name"]).to_operation_outcome()
            return JSONResponse(outcome, status_code=404)
        except FhirStoreError as exc:
            return JSONResponse(exc.to_operation_outcome(), status_code=exc.status)
        return JSONResponse(
            {"observation": stored, "result": evaluation.result},
            status_code=201,
            headers={"Location": f"/fhir/Observation/{stored['id']}"},
        )

    return router


def _description(name: str) -> dict[str, Any]:
    table = score_table(name)
    code = {"system": LOINC, "code": table.loinc} if table.loinc else None
    return {
        "name": table.name,
        "version": table.version,
        "title": table.title,
        "code": code or {"system": SCORE_SYSTEM, "code": table.code},
        "items": {key: allowed(spec) for key, spec in table.items.items()},
    }


async def _read_body(request: Request) -> dict[str, Any]:
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > MAX_INPUT_BYTES:
            raise PayloadTooLarge(f"the body is larger than {MAX_INPUT_BYTES} bytes")
    try:
        body = parse_json(bytes(raw))
    except ScoreInputError as exc:
        raise _Invalid(f"the body {exc.reason}", expression=["body"]) from None
    if not isinstance(body, dict):
        raise _Invalid("the body must be a JSON object with input and patient or case")
    for key in body:
        if key not in _BODY_KEYS:
            raise _Invalid(
                f"{key}: unknown key; allowed: {', '.join(_BODY_KEYS)}", expression=[key]
            )
    if "input" not in body:
        raise _Invalid("input: missing (the score's input object)", expression=["input"])
    if "patient" not in body and "case" not in body:
        raise _Invalid(
            "give patient (Patient/<id>) or case (EpisodeOfCare/<id>)", expression=["patient"]
        )
    return body


async def _subject(fhir: FhirStore, body: dict[str, Any]) -> tuple[str, str | None]:
    """The patient reference, and the case reference when a case is given."""
    patient, case = body.get("patient"), body.get("case")
    if patient is not None:
        await _must_exist(fhir, patient, "patient", _PATIENT)
    if case is None:
        return str(patient), None
    episode = await _must_exist(fhir, case, "case", _CASE)
    case_patient = (episode.get("patient") or {}).get("reference")
    if not isinstance(case_patient, str):
        raise _Invalid("case: the EpisodeOfCare has no patient reference", expression=["case"])
    if patient is not None and patient != case_patient:
        raise _Invalid(
            "patient: not the patient of the case; leave it out or give the case's patient",
            expression=["patient"],
        )
    return case_patient, case


async def _must_exist(
    fhir: FhirStore, reference: object, key: str, pattern: re.Pattern[str]
) -> dict[str, Any]:
    if not isinstance(reference, str) or not pattern.match(reference):
        raise _Invalid(f"{key}: not a reference like {_EXAMPLES[key]}", expression=[key])
    resource_type, resource_id = reference.split("/")
    try:
        return await fhir.read(resource_type, resource_id)
    except FhirStoreError as exc:
        status = 422 if key == "performer" else 404
        raise NotFound(f"{key}: {exc.message}", expression=[key], status=status) from None


_EXAMPLES = {
    "patient": "Patient/123",
    "case": "EpisodeOfCare/9",
    "performer": "Practitioner/7 (or PractitionerRole, Device, ...)",
}


def _effective(value: object, zone: tzinfo) -> datetime:
    if value is None:
        return datetime.now(zone).replace(microsecond=0)
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise _Invalid(
            "effective: not a date-time with offset, e.g. 2026-11-25T08:30:00+08:00",
            expression=["effective"],
        )
    return moment.astimezone(zone).replace(microsecond=0)


def _phase(value: object) -> str | None:
    if value is None or (isinstance(value, str) and len(value) <= 40 and _PHASE.match(value)):
        return value
    raise _Invalid(
        "phase: not a phase code such as admission, pre-needle, 24h, discharge",
        expression=["phase"],
    )
