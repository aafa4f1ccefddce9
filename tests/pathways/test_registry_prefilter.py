"""The FHIRPath pre-check skips only resources the expression cannot match: checked against
fhirpathpy itself on every pre-checked expression of the CPC mapping and generated resources."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pathways.registry import registry_mapping
from pathways.registry.prefilter import requirement_of

MAPPING = registry_mapping("cpc")
CHECKED = [
    spec
    for spec in MAPPING.fields
    if (spec.precheck is not None and spec.fhirpath is not None) or spec.each_precheck is not None
]

_CODES = st.sampled_from(
    ["8867-4", "9279-1", "89579-7", "67151-1", "11524-6", "EC", "30934-4", "aspirin", "ufh",
     "lesion", "415070008", "discharge", "x"]
)  # fmt: skip
_SYSTEMS = st.sampled_from(
    ["http://loinc.org", "http://snomed.info/sct", "https://greenchannel.example.org/fhir/"
     "CodeSystem/drug-class", "https://greenchannel.example.org/fhir/CodeSystem/cath-lesion",
     "urn:x"]
)  # fmt: skip
_CONCEPT = st.fixed_dictionaries(
    {"coding": st.lists(st.fixed_dictionaries({"system": _SYSTEMS, "code": _CODES}), max_size=2)},
    optional={"text": st.sampled_from(["PCI", "x"])},
)


def _resources(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"resourceType": st.just(kind), "id": st.just("r1"), "code": _CONCEPT},
        optional={
            "category": st.lists(_CONCEPT, max_size=1),
            "medicationCodeableConcept": _CONCEPT,
            "valueQuantity": st.fixed_dictionaries({"value": st.integers(0, 200)}),
            "dosage": st.fixed_dictionaries(
                {"dose": st.fixed_dictionaries({"value": st.integers(0, 9)})}
            ),
            "bodySite": st.lists(_CONCEPT, max_size=1),
        },
    )


def test_the_mapping_has_pre_checked_expressions() -> None:
    assert len(CHECKED) > 20


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_skipped_resource_gives_nothing(data: st.DataObject) -> None:
    for field in CHECKED:
        if field.each is not None and field.each_precheck is not None:
            kind, check, evaluate = field.each_type, field.each_precheck, field.each
        else:
            kind, check, evaluate = field.root_type, field.precheck, field.fhirpath
        assert kind is not None and check is not None and evaluate is not None
        resource = data.draw(_resources(kind))
        if not check(json.dumps(resource, ensure_ascii=False)):
            assert evaluate(resource) == [], (field.key, resource)


def test_what_gets_no_pre_check() -> None:
    assert requirement_of("Condition.code.coding.where(code = 'I10').exists()") is None
    assert requirement_of("Observation.where(code.coding.code != 'x').value") is None
    assert requirement_of("Observation.where(code.exists()).value") is None
    assert requirement_of("Observation.where(a = 'x').exists()") is None
    check = requirement_of("Observation.where(code.coding.code = 'a' or code.text = 'b').value")
    assert check is not None
    assert (check('{"code": "a"}'), check('{"text": "b"}'), check('{"code": "c"}')) == (
        True, True, False,
    )  # fmt: skip
