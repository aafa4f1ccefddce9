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
from pathways.registry.report import completeness_report, problem_lines
from pathways.registry.validate import validate_record
from pathways.vocabulary import Center

__all__ = ["check_case", "check_cases"]


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
    problems = validate_record(record, mapping)
    report = completeness_report(record, problems)
    return {
        **report,
        "problems": [p.as_dict() for p in problems],
        "lines": problem_lines(problems),
    }


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
    if case_id is not None:
        return [await check_case(store, mapping, case_id, params=params)]
    assert month is not None, "give a case or a month"
    cases = await load_cases(store, center, month, month)
    ids = sorted(case.timeline.case_id for case in cases)
    return [await check_case(store, mapping, identifier, params=params) for identifier in ids]
