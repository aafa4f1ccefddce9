"""A parameter with several comma-separated values finds what its values find one by one.

Several plain tokens or references are searched as IN lists per system or target type
(`_search._matches`); every mix of value forms must keep the meaning of the single values.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from fhir_store import FhirStore, InvalidRequest, parse_search

pytestmark = pytest.mark.anyio

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


def observation(number: int, code: dict[str, Any], subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o{number}",
        "status": "final",
        "code": {"coding": [code]},
        "subject": {"reference": subject},
    }


OBSERVATIONS = [
    observation(1, {"system": LOINC, "code": "8867-4"}, "Patient/p1"),
    observation(2, {"system": SNOMED, "code": "8867-4"}, "Patient/p2"),
    observation(3, {"code": "8867-4"}, "Group/g1"),  # a code without a system
    observation(4, {"system": LOINC, "code": "2339-0"}, "Patient/p2"),
    observation(5, {"system": SNOMED, "code": "271649006"}, "Group/p1"),  # same id, other type
    observation(6, {"system": LOINC, "code": "a|b"}, "Patient/p3"),
    observation(7, {"system": LOINC, "code": "x,y"}, "Patient/p3"),  # a comma in the code
]

TOKENS = [
    "8867-4",
    f"{LOINC}|8867-4",
    f"{SNOMED}|8867-4",
    "|8867-4",
    f"{LOINC}|",
    "2339-0",
    f"{SNOMED}|271649006",
    f"{LOINC}|a|b",
    "x\\,y",
    f"{LOINC}|x\\,y",
    "missing",
]
REFERENCES = ["p1", "p2", "Patient/p1", "Patient/p2", "Group/p1", "g1", "Group/g1", "Patient/zz"]


async def found(store: FhirStore, resource_type: str, name: str, value: str) -> set[str]:
    page = await store.search(
        parse_search(resource_type, [(name, value), ("_count", "100")], strict=True)
    )
    return {json.loads(content)["id"] for content in page.contents}


@pytest.fixture
async def observations(store: FhirStore) -> FhirStore:
    for reference in ("Patient/p1", "Patient/p2", "Patient/p3", "Group/g1", "Group/p1"):
        resource_type, _, resource_id = reference.partition("/")
        group = {"type": "person", "actual": True}
        extra = group if resource_type == "Group" else {}
        await store.update(
            resource_type, resource_id, {"resourceType": resource_type, "id": resource_id, **extra}
        )
    for resource in OBSERVATIONS:
        await store.update("Observation", resource["id"], resource)
    return store


@pytest.mark.parametrize(
    ("name", "values"),
    [("code", TOKENS), ("subject", REFERENCES), ("subject:Patient", REFERENCES)],
)
async def test_several_values_find_the_union_of_each_value(
    observations: FhirStore, name: str, values: list[str]
) -> None:
    one_by_one = {value: await found(observations, "Observation", name, value) for value in values}
    assert one_by_one[values[0]], "the first value finds something: the data is loaded"
    for size in (2, 3):
        for chosen in itertools.combinations(values, size):
            together = await found(observations, "Observation", name, ",".join(chosen))
            expected = set().union(*(one_by_one[value] for value in chosen))
            assert together == expected, chosen


async def test_a_bad_reference_among_several_values_is_named(observations: FhirStore) -> None:
    with pytest.raises(InvalidRequest, match="subject"):
        parse_search("Observation", [("subject", "Patient/p1,Patient/")], strict=True)
    assert await found(observations, "Observation", "subject", "Patient/p1,Group/g1") == {
        "o1",
        "o3",
    }


async def test_an_escaped_comma_is_part_of_the_value(observations: FhirStore) -> None:
    assert await found(observations, "Observation", "code", "x\\,y") == {"o7"}
    assert await found(observations, "Observation", "code", "x\\,y,2339-0") == {"o4", "o7"}
    assert await found(observations, "Observation", "code", "x,y") == set()
