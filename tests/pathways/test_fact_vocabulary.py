"""One fact vocabulary: every fact name and value the shipped configuration writes or tests — the
pathway files' fact rules, the clock rules' conditions, the indicator definitions and the
archive's expectations — is a fact of config/pathways/facts.yaml with one of its values, so a
case the pathway engine writes is a case the clocks, the indicators and the archive recognise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pathways.archive_config import fact_key, load_archive_config
from pathways.clock_rules import Condition
from pathways.definitions import load_pathways
from pathways.indicator_definitions import FactSpec, load_catalogue
from pathways.vocabulary import ARRIVAL_MODES, CENTERS

CONFIG = Path(__file__).resolve().parents[2] / "config" / "pathways"


@pytest.fixture(scope="module")
def facts() -> dict[str, FactSpec]:
    return dict(load_catalogue(CONFIG).facts)


def _problem(facts: dict[str, FactSpec], name: str, value: object, where: str) -> str | None:
    spec = facts.get(name)
    if spec is None:
        return f"{where}: fact {name!r} is not in facts.yaml"
    problem = spec.problem(value)
    return f"{where}: {problem}" if problem else None


def _conditions(conditions: tuple[Condition, ...]) -> Iterator[Condition]:
    for condition in conditions:
        yield condition
        yield from _conditions(condition.any or ())


def test_the_arrival_modes_are_those_of_facts_yaml(facts: dict[str, FactSpec]) -> None:
    assert set(facts["arrival_mode"].values) == set(ARRIVAL_MODES)


def test_every_fact_a_pathway_file_derives_is_in_the_vocabulary(
    facts: dict[str, FactSpec],
) -> None:
    problems = []
    for center, pathway in load_pathways(CONFIG, cached=False).by_center.items():
        for index, rule in enumerate(pathway.facts):
            where = f"{center}.yaml facts[{index}]"
            values = (
                [rule.value] if rule.value is not None else list((rule.value_map or {}).values())
            )
            if rule.name not in facts:
                problems.append(f"{where}: fact {rule.name!r} is not in facts.yaml")
                continue
            if not values:  # read from the resource as it is: the type must take it
                assert facts[rule.name].type in ("integer", "number", "text"), where
            problems += [p for v in values if (p := _problem(facts, rule.name, v, where))]
    assert problems == []


def test_every_fact_a_clock_rule_tests_is_in_the_vocabulary(facts: dict[str, FactSpec]) -> None:
    problems = []
    checked = 0
    for center, pathway in load_pathways(CONFIG, cached=False).by_center.items():
        for rule in pathway.clocks:
            for condition in _conditions(rule.when):
                where = f"{center}.yaml clock {rule.id}"
                if condition.arrival_mode is not None:
                    modes = (condition.arrival_mode.in_ or ()) + (
                        condition.arrival_mode.not_in or ()
                    )
                    problems += [
                        p for m in modes if (p := _problem(facts, "arrival_mode", m, where))
                    ]
                if condition.fact is None:
                    continue
                checked += 1
                values = (condition.in_ or ()) + (condition.not_in or ())
                if condition.fact not in facts:
                    problems.append(f"{where}: fact {condition.fact!r} is not in facts.yaml")
                problems += [p for v in values if (p := _problem(facts, condition.fact, v, where))]
    assert checked >= 5  # the reperfusion, diagnosis, ivt, evt and give-up conditions
    assert problems == []


def test_the_indicator_definitions_load_against_the_vocabulary() -> None:
    # populations, numerators, exclusions and per-case limits are checked by the loader
    catalogue = load_catalogue(CONFIG)
    assert {s.center for s in catalogue.standards} == set(CENTERS)


def test_every_fact_the_archive_expects_is_in_the_vocabulary(facts: dict[str, FactSpec]) -> None:
    config = load_archive_config(CONFIG / "archive.yaml")
    problems = []
    for name, by_value in config.expected_by_fact.items():
        spec = facts.get(name)
        if spec is None:
            problems.append(f"archive.yaml expected_by_fact: {name!r} is not in facts.yaml")
            continue
        allowed = {fact_key(v) for v in (spec.values or (True, False))}
        problems += [
            f"archive.yaml expected_by_fact.{name}: {v!r} is not one of {sorted(allowed)}"
            for v in by_value
            if v not in allowed
        ]
    assert set(config.arrival_modes) == set(facts["arrival_mode"].values)
    assert problems == []


def test_a_stray_value_is_caught(facts: dict[str, FactSpec]) -> None:
    assert _problem(facts, "reperfusion", "thrombolysis", "x") is not None
    assert _problem(facts, "diagnosis", "ischaemic_stroke", "x") is not None
    assert _problem(facts, "ivt", "ivt", "x") is not None
    assert _problem(facts, "iss", 80, "x") is not None
    assert _problem(facts, "nothing", True, "x") is not None
    assert _problem(facts, "reperfusion", "in_hospital_lysis", "x") is None
