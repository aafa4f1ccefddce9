"""What `greenchannel qc` and `/api/qc` share: reports for a center and months, one case's results.

Both read cases from the FHIR store (`pathways.case_store`) and compute with the definitions of
`config/pathways/` (loaded per call, so an edited file counts at the next report).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.errors import ConfigError
from fhir_store import FhirStore
from pathways.case_store import load_case, load_timelines
from pathways.indicator_definitions import Catalogue, Standard
from pathways.indicators import evaluate_case, order_problems
from pathways.months import month_bucket, months_between
from pathways.qc import QcReport, qc_report
from pathways.vocabulary import CENTERS, Center

__all__ = ["build_reports", "case_results", "check_center", "reports_as_dict"]


def check_center(center: str) -> Center:
    """The center key, or ConfigError listing the centers."""
    for known in CENTERS:
        if center == known:
            return known
    raise ConfigError(f"unknown center {center!r}; use one of: {', '.join(CENTERS)}", hint="")


def _standards(catalogue: Catalogue, center: Center, standard: str | None) -> list[Standard]:
    if standard:
        return [catalogue.standard(center, standard)]
    return catalogue.standards_for(center)


async def build_reports(
    store: FhirStore,
    catalogue: Catalogue,
    center: Center,
    first_month: str,
    last_month: str,
    standard: str | None = None,
    indicators: Sequence[str] = (),
) -> list[QcReport]:
    """One report per standard version of the center (or the one named), months included.

    With `indicators`, each report keeps those of them its standard defines; a name no
    standard defines is a ConfigError.
    """
    months = months_between(first_month, last_month)
    standards = _standards(catalogue, center, standard)
    if indicators:
        defined = {d.id for s in standards for d in s.indicators}
        unknown = [i for i in indicators if i not in defined]
        if unknown:
            raise ConfigError(
                f"no standard of {center} in use here defines {', '.join(unknown)}; "
                f"defined: {', '.join(sorted(defined))}",
                hint="",
            )
    cases = await load_timelines(store, center, months[0], months[-1])
    reports = []
    for item in standards:
        chosen = [d.id for d in item.indicators if d.id in indicators] if indicators else []
        if indicators and not chosen:
            continue
        reports.append(qc_report(cases, item, months, chosen, catalogue.node_order[center]))
    return reports


def reports_as_dict(
    reports: Sequence[QcReport], center: Center, months: list[str]
) -> dict[str, Any]:
    """The JSON of `greenchannel qc --format json` and `/api/qc/{center}`."""
    return {
        "center": center,
        "from": months[0],
        "to": months[-1],
        "reports": [report.as_dict() for report in reports],
    }


async def case_results(
    store: FhirStore, catalogue: Catalogue, case_id: str, standard: str | None = None
) -> dict[str, Any]:
    """Every indicator of every standard of the case's center (or the one named) for one case.

    Raises `pathways.case_store.NotACase` when there is no such case.
    """
    stored = await load_case(store, case_id)
    case = stored.timeline
    return {
        "case_id": case.case_id,
        "center": case.center,
        "status": case.status,
        "arrival_mode": case.arrival_mode,
        "month": month_bucket(case),
        "nodes": {key: value.isoformat() for key, value in sorted(case.nodes.items())},
        "node_references": stored.node_references,
        "facts": dict(case.facts),
        "order_problems": [
            {
                "expected_first": a.key,
                "at": a.instant.isoformat(),
                "but": b.key,
                "was_at": b.instant.isoformat(),
            }
            for a, b in order_problems(case, catalogue.node_order.get(case.center, ()))
        ],
        "standards": [
            {
                "standard": item.id,
                "results": [
                    {"name": d.name, **result.as_dict()}
                    for d, result in zip(item.indicators, evaluate_case(case, item), strict=True)
                ],
            }
            for item in _standards(catalogue, case.center, standard)
        ],
    }
