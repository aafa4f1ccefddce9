"""Every indicator of a standard version for one case: its status, value and limit (R1-R5).

Pure functions over a `CaseTimeline` and the definitions of `pathways.indicator_definitions`.
The status of a case per indicator is one of (indicators.md §1, time-nodes.md R2-R5):

- `not_in_population` — the indicator does not concern this case (it is left out entirely);
- `excluded:<reason>` — a named exclusion holds (R5; R1 `in_hospital_onset` for door intervals);
- `not_computable` — a node the interval (or the population) needs is missing (R2); `missing`
  names them;
- `invalid` — negative, or outside the plausible range (R3): the data-quality queue;
- `ok` — counted: `seconds` (whole seconds, R4) and `met` (the per-case limit held); for a rate
  indicator `met` says whether the case is in the numerator.

`interval_observations` turns the interval results into the Observations of interfaces.md §5.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pathways.conditions import Chosen, Limit, fact_of, whole_seconds
from pathways.indicator_definitions import IndicatorDefinition, IndicatorKind, Standard
from pathways.timeline import CaseTimeline
from pathways.vocabulary import (
    CASE_EXTENSION,
    INDICATOR_STATUS_SYSTEM,
    INDICATOR_SYSTEM,
    INTERVAL_CATEGORY,
    OBSERVATION_CATEGORY_SYSTEM,
)

__all__ = [
    "IndicatorResult",
    "evaluate_case",
    "evaluate_indicator",
    "interval_observations",
    "order_problems",
]

UCUM = "http://unitsofmeasure.org"


@dataclass(frozen=True, slots=True)
class IndicatorResult:
    """One indicator for one case under one standard version."""

    indicator: str
    standard: str
    kind: IndicatorKind
    status: str
    seconds: int | None = None
    met: bool | None = None
    limit: Limit | None = None
    start: Chosen | None = None
    end: Chosen | None = None
    missing: tuple[str, ...] = ()
    problem: str = ""
    value: float | None = None  # distribution: the fact's value
    group: str | None = None  # the value of the per-case limit's `by_fact` (risk stratum)

    @property
    def counted(self) -> bool:
        return self.status == "ok"

    @property
    def in_population(self) -> bool:
        return self.status != "not_in_population"

    def as_dict(self) -> dict[str, Any]:
        """JSON for the API and the CLI; instants with their offset, minutes for reading."""
        data: dict[str, Any] = {
            "indicator": self.indicator,
            "standard": self.standard,
            "kind": self.kind,
            "status": self.status,
        }
        if self.seconds is not None:
            data["seconds"] = self.seconds
            data["minutes"] = round(self.seconds / 60, 2)
        if self.kind == "rate" and self.status == "ok":
            data["in_numerator"] = self.met
        elif self.met is not None:
            data["met"] = self.met
        if self.limit is not None:
            data["limit"] = self.limit.describe()
        for label, chosen in (("start", self.start), ("end", self.end)):
            if chosen is not None:
                data[label] = {"node": chosen.key, "at": chosen.instant.isoformat()}
        if self.missing:
            data["missing"] = list(self.missing)
        if self.problem:
            data["problem"] = self.problem
        if self.value is not None:
            data["value"] = self.value
        if self.group is not None:
            data["group"] = self.group
        return data


def evaluate_case(case: CaseTimeline, standard: Standard) -> list[IndicatorResult]:
    """Every indicator of `standard` for `case`, in the standard's order."""
    return [evaluate_indicator(case, definition) for definition in standard.indicators]


def evaluate_indicator(case: CaseTimeline, definition: IndicatorDefinition) -> IndicatorResult:
    """One indicator for one case: population, exclusions, nodes, plausibility, limit."""

    def result(status: str, **values: Any) -> IndicatorResult:
        return IndicatorResult(
            definition.id, definition.standard, definition.kind, status, **values
        )

    population = definition.population.evaluate(case)
    if population.value is False:
        return result("not_in_population")
    for exclusion in definition.exclusions:
        if exclusion.when.evaluate(case).value is True:
            return result(f"excluded:{exclusion.name}")
    if population.value is None:
        return result("not_computable", missing=population.missing)
    if definition.kind == "rate":
        assert definition.numerator is not None
        # A numerator that cannot be decided (its interval's node missing) is not met: the
        # node missing usually means the event (angiography, say) did not happen.
        return result("ok", met=definition.numerator.evaluate(case).value is True)
    if definition.kind == "distribution":
        assert definition.fact is not None
        value = fact_of(case, definition.fact)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return result("not_computable", missing=(definition.fact,))
        return result("ok", value=float(value))
    return _interval(case, definition, result)


def _interval(
    case: CaseTimeline,
    definition: IndicatorDefinition,
    result: Callable[..., IndicatorResult],
) -> IndicatorResult:
    assert definition.start is not None and definition.end is not None
    start = definition.start.resolve(case.nodes)
    end = definition.end.resolve(case.nodes)
    if not isinstance(start, Chosen) or not isinstance(end, Chosen):
        missing = (start if isinstance(start, tuple) else ()) + (
            end if isinstance(end, tuple) else ()
        )
        return result("not_computable", missing=missing)
    seconds = whole_seconds(start.instant, end.instant)
    problem = ""
    if seconds < 0:
        problem = f"{end.key} is {-seconds} s before {start.key}"
    elif definition.plausible_seconds is not None:
        low, high = definition.plausible_seconds
        if seconds < low:
            problem = f"{seconds} s is shorter than the plausible minimum of {low} s"
        elif seconds > high:
            problem = f"{seconds} s is longer than the plausible maximum of {high} s"
    if problem:
        return result("invalid", seconds=seconds, start=start, end=end, problem=problem)
    per_case = definition.per_case
    limit = per_case.for_facts(case.facts) if per_case else None
    group = None
    if per_case is not None and per_case.by_fact is not None:
        group = str(case.facts.get(per_case.by_fact))
    return result(
        "ok",
        seconds=seconds,
        start=start,
        end=end,
        limit=limit,
        met=limit.holds(seconds) if limit is not None else None,
        group=group,
    )


def order_problems(
    case: CaseTimeline, chains: Sequence[Sequence[str]]
) -> list[tuple[Chosen, Chosen]]:
    """R11: pairs (expected earlier, found later) of present nodes out of their chain's order.

    They go to the data-quality queue; they do not make any interval invalid by themselves.
    """
    found: dict[tuple[str, str], tuple[Chosen, Chosen]] = {}
    for chain in chains:
        present = [Chosen(key, case.nodes[key]) for key in chain if key in case.nodes]
        for index, earlier in enumerate(present):
            for later in present[index + 1 :]:
                if later.instant < earlier.instant:
                    found.setdefault((earlier.key, later.key), (earlier, later))
    return list(found.values())


def interval_observations(
    case: CaseTimeline,
    results: Sequence[IndicatorResult],
    node_references: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The interval Observations (interfaces.md §5) of a case's interval results.

    One per interval indicator concerning the case: code = indicator id, `valueQuantity` in
    whole seconds (UCUM `s`) when there is a value, interpretation = the case status,
    `effectivePeriod` = the two instants, `derivedFrom` = the two time-node Observations when
    `node_references` (node key -> "Observation/<id>") knows them. No `id`: the writer picks it.
    """
    observations = []
    for item in results:
        if item.kind != "interval" or not item.in_population:
            continue
        observation: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "final",
            "category": [
                {"coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": INTERVAL_CATEGORY}]}
            ],
            "code": {"coding": [{"system": INDICATOR_SYSTEM, "code": item.indicator}]},
            "subject": {"reference": f"Patient/{case.patient_id}"},
            "extension": [
                {
                    "url": CASE_EXTENSION,
                    "valueReference": {"reference": f"EpisodeOfCare/{case.case_id}"},
                }
            ],
            "method": {"text": f"standard {item.standard}"},
            "interpretation": [
                {"coding": [{"system": INDICATOR_STATUS_SYSTEM, "code": item.status}]}
            ],
        }
        if item.seconds is not None:
            observation["valueQuantity"] = {
                "value": item.seconds,
                "unit": "s",
                "system": UCUM,
                "code": "s",
            }
        else:
            observation["dataAbsentReason"] = {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                        "code": "not-applicable"
                        if item.status.startswith("excluded")
                        else "unknown",
                    }
                ]
            }
        if (
            item.start is not None
            and item.end is not None
            and item.start.instant <= item.end.instant
        ):
            observation["effectivePeriod"] = {
                "start": item.start.instant.isoformat(),
                "end": item.end.instant.isoformat(),
            }
        if item.start is not None and item.end is not None:
            sources = [
                node_references[chosen.key]
                for chosen in (item.start, item.end)
                if node_references and chosen.key in node_references
            ]
            if sources:
                observation["derivedFrom"] = [{"reference": ref} for ref in sources]
        observations.append(observation)
    return observations
