"""The completeness report of a case's registry record, for registry staff: which fields are
missing or wrong, and which FHIR data (resource, code, time node) or entry would fill them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pathways.registry.record import RegistryProblem, RegistryRecord

__all__ = ["completeness_report", "problem_lines"]


def completeness_report(
    record: RegistryRecord, problems: Sequence[RegistryProblem]
) -> dict[str, Any]:
    """Per case: ready or not, the missing fields with what fills them, the wrong ones with
    the data they came from, and the fields staff set by hand."""
    errors = [p for p in problems if p.severity == "error"]
    sent = sum(
        1
        for block in record.payload.values()
        for value in block.values()
        if value not in (None, "", [])
    )
    return {
        "case_id": record.case_id,
        "registry": record.registry,
        "mapping_version": record.mapping_version,
        "spec_version": record.spec_version,
        "ready": not errors,
        "errors": len(errors),
        "warnings": len(problems) - len(errors),
        "fields_sent": sent,
        "missing": [
            {"field": p.key, "message": p.message, "fill": p.source}
            for p in problems
            if p.kind == "required"
        ],
        "wrong": [
            {"field": p.key, "message": p.message, "kind": p.kind, "from": p.source}
            for p in problems
            if p.kind != "required"
        ],
        "overridden": sorted(record.overrides),
    }


def problem_lines(problems: Sequence[RegistryProblem]) -> list[str]:
    """One line per problem for a terminal: the platform message, the field, what fills it."""
    return [
        f"{'ERROR' if p.severity == 'error' else 'WARN '} {p.key}: {p.message}  ← {p.source}"
        for p in problems
    ]
