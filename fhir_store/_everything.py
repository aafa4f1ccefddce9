"""`Patient/1/$everything` and `Patient/1/*`: a patient, every resource in its compartment and
(for $everything) the resources those refer to, one page at a time.

$everything follows patient-operation-everything.html (R4): the patient, the resources of its
compartment (CompartmentDefinition/patient), and any resource referenced from those (the
Practitioners, Organizations, Locations, Medications...), with `_since`, `_type` and `_count`.
Without a patient id (`Patient/$everything`) it covers every patient. Pages are ordered: the
patient(s) first, then by type and id; `next` links carry `_offset`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, case, func, select, union
from sqlalchemy.engine import Connection

from fhir_store._compartment import compartment_members
from fhir_store._indexing import date_range
from fhir_store._resources import R4_RESOURCE_TYPES
from fhir_store._search import DEFAULT_COUNT, MAX_COUNT, SearchPage, SearchQuery
from fhir_store.errors import Gone, InvalidRequest, NotFound, NotSupported
from fhir_store.models import ReferenceIndexRow, ResourceRow

__all__ = ["EVERYTHING", "EverythingQuery", "parse_everything", "run_everything"]

# The OperationDefinition the CapabilityStatement names for Patient.
EVERYTHING = "http://hl7.org/fhir/OperationDefinition/Patient-everything"

_RESOURCE = cast(Table, ResourceRow.__table__)
_REFERENCE = cast(Table, ReferenceIndexRow.__table__)
# Accepted without effect: the answer is always JSON.
_IGNORED = frozenset({"_format", "_pretty"})


@dataclass(slots=True)
class EverythingQuery:
    """A parsed $everything (or, with `referenced` off, `Patient/1/*`) request."""

    patient_id: str | None  # None: every patient
    referenced: bool = True  # also the resources the compartment's resources refer to
    types: tuple[str, ...] = ()  # `_type`: only these types, if any
    since: datetime | None = None  # `_since`: only resources changed at or after this
    count: int = DEFAULT_COUNT
    offset: int = 0
    ignored: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)

    def as_search(self) -> SearchQuery:
        """The query as `search_bundle` reads it, for the links and the ignored parameters."""
        return SearchQuery(
            "Patient",
            count=self.count,
            offset=self.offset,
            ignored=self.ignored,
            pairs=self.pairs,
        )


def parse_everything(
    patient_id: str | None,
    pairs: list[tuple[str, str]],
    *,
    strict: bool,
    referenced: bool = True,
) -> EverythingQuery:
    """Parse the query of $everything (`_since`, `_type`, `_count`, `_offset`); any other
    parameter is ignored and listed (with `strict`, NotSupported)."""
    query = EverythingQuery(patient_id, referenced=referenced, pairs=list(pairs))
    for name, value in pairs:
        if name in ("_count", "_offset"):
            if not value.isdigit():
                raise _bad(name, "must be a whole number ≥ 0")
            if name == "_count":
                query.count = min(int(value), MAX_COUNT)
            else:
                query.offset = int(value)
        elif name == "_type":
            types = tuple(text.strip() for text in value.split(",") if text.strip())
            unknown = [text for text in types if text not in R4_RESOURCE_TYPES]
            if unknown or not types:
                raise _bad(name, "must list R4 resource types, such as Observation,Condition")
            query.types += types
        elif name == "_since":
            found = date_range(value)
            if found is None:
                raise _bad(name, "must be an instant, such as 2024-03-01T08:00:00+08:00")
            query.since = found[0]
        elif name in _IGNORED:
            continue
        elif strict:
            raise NotSupported(
                f"parameter '{name}' is not supported here; drop it or send "
                "Prefer: handling=lenient",
                expression=[name],
            )
        else:
            query.ignored.append(name)
    return query


def run_everything(connection: Connection, query: EverythingQuery) -> SearchPage:
    """One page of the answer: NotFound or Gone if the patient does not exist."""
    if query.patient_id is not None and query.referenced:  # $everything, not Patient/1/*
        _check_patient(connection, query.patient_id)
    members = compartment_members("Patient", query.patient_id).cte("members")
    wanted: Any = select(members.c.resource_type, members.c.id).distinct()
    if query.referenced:
        # One step along the references of the patient and of its compartment's resources,
        # but never to other patients: an Observation may name another patient as its
        # subject, and that patient's record is not this one's.
        reference = _REFERENCE.alias()
        referred = (
            select(reference.c.target_type, reference.c.target_id)
            .select_from(
                reference.join(
                    members,
                    reference.c.resource_key == members.c.key,
                )
            )
            .where(reference.c.target_type != "Patient")
        )
        wanted = union(wanted, referred)  # UNION: each resource once
    found = wanted.subquery("found")
    rows = _RESOURCE.join(
        found,
        and_(
            _RESOURCE.c.resource_type == found.c.resource_type,
            _RESOURCE.c.id == found.c.id,
        ),
    )
    where: list[ColumnElement[bool]] = [_RESOURCE.c.deleted.is_(False)]
    if query.types:
        where.append(_RESOURCE.c.resource_type.in_(query.types))
    if query.since is not None:
        where.append(_RESOURCE.c.last_updated >= query.since)
    focal = _RESOURCE.c.resource_type == "Patient"
    if query.patient_id is not None:
        focal = focal & (_RESOURCE.c.id == query.patient_id)
    statement = (
        select(_RESOURCE.c.content)
        .select_from(rows)
        .where(*where)
        .order_by(case((focal, 0), else_=1), _RESOURCE.c.resource_type, _RESOURCE.c.id)
        .limit(query.count + 1)
        .offset(query.offset)
    )
    contents = [row.content for row in connection.execute(statement) if row.content]
    more = len(contents) > query.count
    contents = contents[: query.count]
    if more or query.offset:
        counted = select(func.count()).select_from(rows).where(*where)
        total = int(connection.execute(counted).scalar_one())
    else:
        total = len(contents)
    return SearchPage(contents, total, more)


def _check_patient(connection: Connection, patient_id: str) -> None:
    deleted = connection.execute(
        select(_RESOURCE.c.deleted).where(
            _RESOURCE.c.resource_type == "Patient", _RESOURCE.c.id == patient_id
        )
    ).scalar_one_or_none()
    if deleted is None:
        raise NotFound(f"there is no Patient/{patient_id}", expression=["Patient.id"])
    if deleted:
        raise Gone(f"Patient/{patient_id} was deleted", expression=["Patient.id"])


def _bad(name: str, reason: str) -> InvalidRequest:
    return InvalidRequest(f"parameter '{name}' {reason}", expression=[name])
