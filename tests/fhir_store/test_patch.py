"""JSON Patch (RFC 6902): the official FHIR R4 JSON Patch cases and the strictness around them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_store import InvalidRequest
from fhir_store._patch import apply_json_patch

# shared/data/fhir/patch/json-patch-tests.json: FHIR/fhir-test-cases r4/patch (Apache-2.0)
CASES_FILE = Path(__file__).resolve().parents[2].parent / "shared/data/fhir/patch"
CASES: list[dict[str, Any]] = json.loads((CASES_FILE / "json-patch-tests.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[case["comment"] for case in CASES])
def test_official_json_patch_case(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises(InvalidRequest, match=r"JSON Patch operation\[\d+\]"):
            apply_json_patch(case["doc"], case["patch"])
    else:
        assert apply_json_patch(case["doc"], case["patch"]) == case["expected"]


def test_the_document_is_left_unchanged() -> None:
    document = {"a": [1, 2]}
    apply_json_patch(document, [{"op": "add", "path": "/a/-", "value": 3}])
    assert document == {"a": [1, 2]}


def test_error_names_the_failing_operation_index() -> None:
    patch = [
        {"op": "add", "path": "/a", "value": 1},
        {"op": "replace", "path": "/missing", "value": 2},
    ]
    with pytest.raises(InvalidRequest) as caught:
        apply_json_patch({}, patch)
    assert "operation[1] (replace)" in caught.value.message
    assert caught.value.expression == ["operation[1]"]


@pytest.mark.parametrize(
    "patch",
    [
        {"op": "add"},
        [{"op": "frobnicate", "path": "/a"}],
        [{"op": "add", "path": "a", "value": 1}],
        [{"op": "add", "path": "/a"}],
        [{"op": "move", "path": "/b"}],
        [{"op": "remove", "path": "/a~2"}],
        [{"op": "remove", "path": "/list/01"}],
        [{"op": "add", "path": "/list/3", "value": 1}],
        [{"op": "replace", "path": "/list/-", "value": 1}],
        [{"op": "move", "from": "/obj", "path": "/obj/inner"}],
        [{"op": "test", "path": "/flag", "value": 1}],
    ],
)
def test_malformed_or_inapplicable_patch_is_refused(patch: object) -> None:
    document = {"a": 1, "list": [0, 1], "obj": {}, "flag": True}
    with pytest.raises(InvalidRequest):
        apply_json_patch(document, patch)


def test_pointer_escapes_and_copy_move() -> None:
    document = {"a/b": {"c~d": 1}, "list": [1, 2, 3]}
    patch = [
        {"op": "copy", "from": "/a~1b/c~0d", "path": "/copied"},
        {"op": "move", "from": "/list/0", "path": "/list/-"},
        {"op": "remove", "path": "/a~1b"},
        {"op": "test", "path": "/copied", "value": 1.0},
    ]
    assert apply_json_patch(document, patch) == {"list": [2, 3, 1], "copied": 1}


def test_empty_path_replaces_the_whole_document() -> None:
    assert apply_json_patch({"a": 1}, [{"op": "replace", "path": "", "value": [1]}]) == [1]
