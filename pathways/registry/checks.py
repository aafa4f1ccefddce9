"""Checking the cases of a center (one case, or a month's) against a registry mapping: each
case's record built, validated and reported, for `greenchannel registry check` and
`GET /api/registry/check`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fhir_store import FhirStore
from pathways.case_store import load_cases
from pathways.registry.builder import build_record
from pathways.registry.mapping import RegistryMapping
from pathways.registry.record import RegistryProblem, RegistryRecord
from pathways.registry.report import completeness_report, problem_lines
from pathways.registry.validate import validate_record
from pathways.vocabulary import Center

__all__ = ["check_case", "check_cases", "checked_records", "report_of"]


async def check_case(
    store: FhirStore,
    mapping: RegistryMapping,
    case_id: str,
    *,
    params: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """One case's report: ready, counts, problems (as dicts and as terminal lines), the
    completeness report. CaseNotFound when there is no such case."""
    record = await build_record(
        store, case_id, mapping.registry, params=params, overrides=overrides, mapping=mapping
    )
    return report_of(record, validate_record(record, mapping))


def report_of(record: RegistryRecord, problems: list[RegistryProblem]) -> dict[str, Any]:
    """A validated record's report: the completeness report, its problems as dicts and lines."""
    return {
        **completeness_report(record, problems),
        "problems": [p.as_dict() for p in problems],
        "lines": problem_lines(problems),
    }


async def checked_records(
    store: FhirStore,
    mapping: RegistryMapping,
    center: Center,
    *,
    case_id: str | None = None,
    month: str | None = None,
    params: Mapping[str, str] | None = None,
) -> list[tuple[RegistryRecord, list[RegistryProblem]]]:
    """Each record built and validated: of `case_id`, or of every case of `center` counted in
    `month` (by the door, as the QC statistics count them), in case id order."""
    if case_id is not None:
        ids = [case_id]
    else:
        assert month is not None, "give a case or a month"
        cases = await load_cases(store, center, month, month)
        ids = sorted(case.timeline.case_id for case in cases)
    checked = []
    for identifier in ids:
        record = await build_record(
            store, identifier, mapping.registry, params=params, mapping=mapping
        )
        checked.append((record, validate_record(record, mapping)))
    return checked


async def check_cases(
    store: FhirStore,
    mapping: RegistryMapping,
    center: Center,
    *,
    case_id: str | None = None,
    month: str | None = None,
    params: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The report of `case_id`, or of every case of `center` counted in `month` (YYYY-MM, by
    the door, as the QC statistics count them), in case id order."""
    checked = await checked_records(
        store, mapping, center, case_id=case_id, month=month, params=params
    )
    return [report_of(record, problems) for record, problems in checked]
