"""The quick structure check ahead of the fhir.resources models: what it calls valid the models
accept (on real resources edited at random, hypothesis), it calls real data valid (Synthea's
resources and every shipped mapping test's output, so they do not fall back to the slow
models), and an invalid resource is still refused with the models' own words."""

from __future__ import annotations

import bz2
import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from engine.mapping.testing import run_mapping_test
from fhir_store._models import model_of
from fhir_store._structure_check import certainly_valid
from fhir_store._validation import structure_issues

ROOT = Path(__file__).resolve().parents[2]
SYNTHEA = ROOT.parent / "shared" / "data" / "fhir" / "synthea"


@pytest.fixture(scope="module")
def real_resources() -> list[dict[str, Any]]:
    """Every 30th Synthea patient's resources, the practitioners and hospitals, and the output
    of every shipped mapping test (transaction Bundles) with each of their resources."""
    paths = sorted(SYNTHEA.glob("*.json.bz2"))
    if not paths:
        pytest.fail(f"shared data not found at {SYNTHEA}")
    chosen = [path for path in paths if "Information" in path.name] + paths[::30]
    resources = [
        entry["resource"]
        for path in chosen
        for entry in json.loads(bz2.decompress(path.read_bytes()))["entry"]
    ]
    outputs: list[Any] = []

    def keep(output: Any) -> list[str]:
        outputs.append(output)
        return []

    for test in sorted((ROOT / "mappings" / "tests").glob("*.yaml")):
        assert not run_mapping_test(test, output_checks={"keep": keep}), test.name
    bundles = [output for output in outputs if isinstance(output, dict)]
    assert len(bundles) > 30
    mapped = [entry["resource"] for bundle in bundles for entry in bundle.get("entry", [])]
    return resources + bundles + mapped


def _model(resource: dict[str, Any]) -> Any:
    model = model_of(resource["resourceType"])
    assert model is not None, resource["resourceType"]
    return model


def test_real_resources_are_certainly_valid(real_resources: list[dict[str, Any]]) -> None:
    assert len(real_resources) > 3_000
    not_sure = [
        f"{resource['resourceType']}/{resource.get('id')}"
        for resource in real_resources
        if not certainly_valid(resource, _model(resource))
    ]
    assert not_sure == []


def test_the_models_agree_that_real_resources_are_valid(
    real_resources: list[dict[str, Any]],
) -> None:
    for resource in real_resources[::7]:
        _model(resource).model_validate(resource)


# Element names met across resource types, for renaming and adding elements: choice types
# side by side, primitives and their `_` extensions, names that exist elsewhere only.
_NAMES = [
    "valueString", "valueQuantity", "valueCodeableConcept", "valueBoolean", "valueDateTime",
    "effectiveDateTime", "effectivePeriod", "onsetDateTime", "deceasedBoolean",
    "deceasedDateTime", "multipleBirthInteger", "status", "code", "system", "value", "display",
    "text", "reference", "start", "end", "id", "url", "_status", "_value", "given", "family",
    "extension", "coding", "identifier", "period", "type", "resourceType", "status__ext",
    "fhir_comments", "contained", "subject", "birthDate", "gender", "class", "bogus",
]  # fmt: skip
_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(
        [
            None, "", " ", "two words", " padded ", "x" * 65, "2020-02-30", "2021-13-01",
            "2021-03-04", "2021-03-04T25:00:00Z", "2021-03-04T10:00:00",
            "2021-03-04T10:00:00+08:00", "2021-03-04T10:00:00.123Z", "urn:uuid:not-a-uuid",
            "final", "Patient/123", "http://loinc.org", 0, -1, 2**31, 2**63, 1.5, -0.0, True,
            False, [], {}, [None], [""], {"bogus": 1}, {"extension": []}, {"id": "x"},
            {"resourceType": "Patient"}, {"resourceType": "Patient", "id": "a b"},
            {"system": "http://loinc.org", "code": "1-8"}, {"reference": "Patient/1"},
            {"start": "2021-03-04T10:00:00+08:00"},
        ]
    ),
    st.text(max_size=6),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
)  # fmt: skip


def _places(node: Any) -> Iterator[tuple[Any, Any]]:
    """(container, key or index) of every value inside `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield node, key
            yield from _places(value)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield node, index
            yield from _places(value)


def _edit(draw: Callable[[st.SearchStrategy[Any]], Any], resource: dict[str, Any]) -> str:
    def new_value() -> Any:
        return copy.deepcopy(draw(_VALUES))  # a copy: later edits change it in place

    container, key = draw(st.sampled_from(list(_places(resource))))
    value = container[key]
    how: str = draw(
        st.sampled_from(["replace", "delete", "wrap", "unwrap", "rename", "add", "copy"])
    )
    if how == "replace":
        container[key] = new_value()
    elif how == "delete":
        del container[key]
    elif how == "wrap":
        container[key] = [value]
    elif how == "unwrap" and isinstance(value, list) and value:
        container[key] = value[0]
    elif how in ("rename", "add", "copy") and isinstance(container, dict):
        name = draw(st.sampled_from(_NAMES))
        if how == "rename":
            del container[key]
        container[name] = copy.deepcopy(value) if how != "add" else new_value()
    elif isinstance(container, list):  # rename or add at a list item: a second item
        container.append(copy.deepcopy(value) if how == "copy" else new_value())
    return how


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_what_the_quick_check_accepts_the_models_accept(
    real_resources: list[dict[str, Any]], data: st.DataObject
) -> None:
    original = data.draw(st.sampled_from(real_resources))
    model = _model(original)
    resource = copy.deepcopy(original)
    edits = [_edit(data.draw, resource) for _ in range(data.draw(st.integers(1, 3)))]
    if certainly_valid(resource, model):
        event("certainly valid after " + "+".join(sorted(set(edits))))
        model.model_validate(resource)  # raises ValidationError if the check let it through
    else:
        event("not sure")


def _resource_types() -> list[str]:
    from fhir.resources.R4B import fhirtypes
    from fhir_core.types import FhirBase

    found = set()
    for name in dir(fhirtypes):
        kind = getattr(fhirtypes, name)
        if isinstance(kind, type) and issubclass(kind, FhirBase) and kind is not FhirBase:
            model = kind.get_model_klass()
            if model.has_resource_base() and model.__name__ not in ("Resource", "DomainResource"):
                found.add(model.__resource_type__)
    return sorted(found)


def test_every_resource_type_is_checked_as_the_models_check_it() -> None:
    """Each of R4B's resource types (141), with an id and an extension: the check's plan of
    every type builds, and it never calls valid what the type's model refuses (most types
    have required elements these lack)."""
    types = _resource_types()
    assert len(types) > 140
    verdicts = {}
    for resource_type in types:
        resource = {
            "resourceType": resource_type,
            "id": "x",
            "extension": [{"url": "http://example.org/x", "valueString": "y"}],
        }
        model = _model(resource)
        try:
            model.model_validate(resource)
            valid = True
        except ValidationError:
            valid = False
        verdicts[resource_type] = (certainly_valid(resource, model), valid)
        assert verdicts[resource_type] in ((True, True), (False, False)), resource_type
    assert sum(quick for quick, _ in verdicts.values()) > 20


INVALID = {
    "an unknown element": ({"bogus": 1}, "Patient.bogus"),
    "two choices of deceased[x]": (
        {"deceasedBoolean": True, "deceasedDateTime": "2021-03-04"},
        "Patient",
    ),
    "a date that is no date": ({"birthDate": "2020-02-30"}, "Patient.birthDate"),
    "a number for a code": ({"gender": 7}, "Patient.gender"),
    "one name, not a list": ({"name": {"family": "张"}}, "Patient.name"),
    "a null in a list": ({"name": [None]}, "Patient.name"),
    "an id with a space": ({"id": "a b"}, "Patient.id"),
    "a contained resource without its status": (
        {"contained": [{"resourceType": "Observation", "code": {"text": "x"}}]},
        "Patient.contained",
    ),
}


@pytest.mark.parametrize("change, where", INVALID.values(), ids=INVALID.keys())
def test_an_invalid_resource_is_refused_in_the_models_words(
    change: dict[str, Any], where: str
) -> None:
    resource = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:2.16.156.10011.1.3", "value": "1"}],
        **change,
    }
    model = _model({"resourceType": "Patient"})
    assert not certainly_valid(resource, model)
    with pytest.raises(ValidationError):
        model.model_validate(resource)
    issues = structure_issues(resource)
    assert issues and any(path.startswith(where) for path, _ in issues), issues
