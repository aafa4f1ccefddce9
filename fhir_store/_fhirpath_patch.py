"""FHIRPath Patch (http://hl7.org/fhir/R4/fhirpatch.html): a `Parameters` resource of operations.

Each `operation` parameter has a `type` (add, insert, delete, replace, move), a FHIRPath `path`
evaluated with fhirpathpy, and as the type needs a `name`, a `value` (a `value[x]`, or `part`s
for an anonymous BackboneElement), an `index`, a `source` and a `destination`. fhirpathpy tells
where each selected node is (`Patient.name[0].given[1]`); the change is made there, in a copy.
Whether an element repeats comes from the `fhir.resources` R4B models, so `add` makes a list of
a repeating element even when it is new. Every error names the operation by its index.
"""

from __future__ import annotations

import copy
import re
import types
from functools import lru_cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from fhir_store._models import model_of
from fhir_store.errors import InvalidRequest

__all__ = ["FHIRPATH_PATCH_TYPES", "apply_fhirpath_patch"]

FHIRPATH_PATCH_TYPES = ("add", "insert", "delete", "replace", "move")

_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?")
_ABSENT = object()
# FHIR element names that are FHIRPath keywords (Narrative.div, ValueSet.expansion.contains):
# clients write `Patient.text.div`, which fhirpathpy reads as the div operator unless quoted.
_KEYWORD_ELEMENT = re.compile(r"\.(div|contains)(?=$|[.\[])")

# Where a node is: its parent object, the member name there, and its index if the member repeats.
_Location = tuple[dict[str, Any], str, int | None]


def apply_fhirpath_patch(resource: dict[str, Any], parameters: object) -> dict[str, Any]:
    """The result of applying a FHIRPath Patch `Parameters` resource to a copy of `resource`.

    InvalidRequest (400) names the failing operation (`Parameters.parameter[1]`) and says what is
    wrong with it: a malformed operation, a path that is not FHIRPath, or one that selects no
    element or several where one is needed.
    """
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise InvalidRequest(
            "a FHIRPath Patch body must be a Parameters resource", expression=["Parameters"]
        )
    raw = parameters.get("parameter", [])
    if not isinstance(raw, list):
        raise InvalidRequest(
            "Parameters.parameter must be a list", expression=["Parameters.parameter"]
        )
    result = copy.deepcopy(resource)
    for index, parameter in enumerate(raw):
        _Operation(index, parameter).apply(result)
        _prune(result)  # FHIR JSON has no empty objects or arrays: a delete may leave them
    return result


class _Operation:
    """One `operation` parameter, checked when built; `apply` changes the document in place."""

    def __init__(self, index: int, raw: object) -> None:
        self._where = f"Parameters.parameter[{index}]"
        self._label = f"FHIRPath Patch operation {index}"
        if not isinstance(raw, dict) or raw.get("name") != "operation":
            raise self._error("is not a parameter named 'operation'")
        parts: dict[str, dict[str, Any]] = {}
        for part in raw.get("part") or []:
            name = part.get("name") if isinstance(part, dict) else None
            if not isinstance(name, str):
                raise self._error("has a part without a name")
            if name in parts:
                raise self._error(f"has more than one '{name}' part")
            parts[name] = part
        kind = _primitive(parts.get("type"), "valueCode")
        if kind not in FHIRPATH_PATCH_TYPES:
            raise self._error("has no 'type' part of add, insert, delete, replace or move")
        self.kind: str = kind
        self._label = f"FHIRPath Patch operation {index} ({kind})"
        path = _primitive(parts.get("path"), "valueString")
        if not isinstance(path, str) or not path:
            raise self._error("has no 'path' part (a FHIRPath expression in valueString)")
        self.path = path
        self.name: str | None = None
        if kind == "add":
            name = _primitive(parts.get("name"), "valueString")
            if not isinstance(name, str) or not _SEGMENT.fullmatch(name):
                raise self._error("has no 'name' part naming the element to add")
            self.name = name
        self.value_part: dict[str, Any] | None = None
        if kind in ("add", "insert", "replace"):
            self.value_part = parts.get("value")
            if self.value_part is None or _value_key(self.value_part) is None:
                raise self._error("has no 'value' part (a value[x] or parts)")
        self.index = self._integer(parts, "index") if kind == "insert" else None
        self.source = self._integer(parts, "source") if kind == "move" else None
        self.destination = self._integer(parts, "destination") if kind == "move" else None

    def apply(self, document: dict[str, Any]) -> None:
        if self.kind == "add":
            self._add(document)
        elif self.kind == "delete":
            found = self._select(document, self.path)
            if len(found) > 1:
                raise self._error(f"path {self.path} selects {len(found)} elements; delete one")
            if found:
                _remove(*_locate(document, found[0], self._error))
        elif self.kind == "replace":
            found = self._select(document, self.path)
            if len(found) != 1:
                raise self._error(
                    f"path {self.path} selects {'no' if not found else len(found)} elements; "
                    "replace needs exactly one"
                )
            parent, key, position = _locate(document, found[0], self._error)
            self._replace(document, parent, key, position)
        else:
            self._change_list(document)

    def _add(self, document: dict[str, Any]) -> None:
        assert self.name is not None and self.value_part is not None
        found = self._select(document, self.path)
        if not found:
            raise self._error(f"no content found at {self.path} to add '{self.name}' to")
        if len(found) > 1:
            raise self._error(f"path {self.path} selects {len(found)} elements; add needs one")
        node = found[0]
        container = getattr(node, "data", None)
        if not isinstance(container, dict):
            raise self._error(f"path {self.path} selects a primitive: elements cannot be added")
        model = _model_at(document, _prop_name(node))
        key, value = self._value(model, self.name)
        repeats = _repeats(model, key)
        existing = container.get(key, _ABSENT)
        if isinstance(existing, list):
            existing.append(value)
        elif existing is _ABSENT:
            container[key] = [value] if repeats else value
        elif repeats is not False:
            container[key] = [existing, value]
        else:
            raise self._error(f"'{self.name}' already has a value at {self.path}; use replace")

    def _replace(
        self, document: dict[str, Any], parent: dict[str, Any], key: str, position: int | None
    ) -> None:
        parent_model = _model_at(document, _parent_path(parent, document))
        name = _choice_base(parent_model, key)
        new_key, value = self._value(parent_model, name)
        if position is not None:
            parent[key][position] = value
        elif new_key != key:  # a choice element changes type: valueString becomes valueInteger
            rebuilt = {
                (new_key if k == key else k): (value if k == key else v) for k, v in parent.items()
            }
            parent.clear()
            parent.update(rebuilt)
            parent.pop(f"_{key}", None)
        else:
            parent[key] = value

    def _change_list(self, document: dict[str, Any]) -> None:
        """insert and move: the path selects a repeating element, and the list is changed."""
        parent, key = self._list_owner(document)
        items = parent.get(key)
        items = items if isinstance(items, list) else []
        if self.kind == "insert":
            assert self.index is not None and self.value_part is not None
            if self.index > len(items):
                raise self._error(f"index {self.index} is past the end of {self.path}")
            _, value = self._value(_model_at(document, _parent_path(parent, document)), key)
            items.insert(self.index, value)
            parent[key] = items
            return
        assert self.source is not None and self.destination is not None
        for what, position in (("source", self.source), ("destination", self.destination)):
            if position >= len(items):
                raise self._error(f"{what} {position} is not an index of {self.path}")
        items.insert(self.destination, items.pop(self.source))

    def _list_owner(self, document: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The object holding the list the path names, and the list's member name."""
        owner_path, _, name = self.path.rpartition(".")
        if not owner_path or not _SEGMENT.fullmatch(name) or "[" in name:
            raise self._error(f"path {self.path} must end in the name of a repeating element")
        owners = self._select(document, owner_path)
        if len(owners) != 1 or not isinstance(getattr(owners[0], "data", None), dict):
            raise self._error(f"{owner_path} must select exactly one element")
        return owners[0].data, name

    def _value(self, model: type[BaseModel] | None, name: str) -> tuple[str, Any]:
        """The member name and JSON value the operation's `value` part gives element `name`."""
        assert self.value_part is not None
        key = _value_key(self.value_part)
        if key == "part":
            child = _field_model(model, name)
            return name, self._anonymous(self.value_part["part"], child)
        assert key is not None
        value = copy.deepcopy(self.value_part[key])
        suffix = key.removeprefix("value")
        if model is not None and name not in model.model_fields:
            choice = name + suffix
            if choice in model.model_fields:
                return choice, value  # a choice element: value[x] takes the value's type
        return name, value

    def _anonymous(self, parts: object, model: type[BaseModel] | None) -> dict[str, Any]:
        """A BackboneElement given as parts, each part one of its elements."""
        element: dict[str, Any] = {}
        for part in parts if isinstance(parts, list) else []:
            name = part.get("name") if isinstance(part, dict) else None
            key = _value_key(part) if isinstance(part, dict) else None
            if not isinstance(name, str) or key is None:
                raise self._error("has a value part without a name and a value")
            if key == "part":
                value: Any = self._anonymous(part["part"], _field_model(model, name))
            else:
                value = copy.deepcopy(part[key])
                suffix = key.removeprefix("value")
                if model is not None and name not in model.model_fields:
                    name = name + suffix if name + suffix in model.model_fields else name
            existing = element.get(name, _ABSENT)
            if existing is _ABSENT:
                element[name] = [value] if _repeats(model, name) else value
            elif isinstance(existing, list):
                existing.append(value)
            else:
                element[name] = [existing, value]
        return element

    def _integer(self, parts: dict[str, dict[str, Any]], name: str) -> int:
        value = _primitive(parts.get(name), "valueInteger")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self._error(f"has no '{name}' part (a valueInteger of 0 or more)")
        return value

    def _select(self, document: dict[str, Any], path: str) -> list[Any]:
        try:
            found: list[Any] = _compiled(path)(document)
        except Exception as error:  # fhirpathpy raises bare exceptions for syntax and types
            raise self._error(
                f"path {path} could not be evaluated as FHIRPath ({type(error).__name__})"
            ) from None
        for node in found:
            if _prop_name(node) is None and getattr(node, "data", None) is not document:
                raise self._error(f"path {path} selects a computed value, not an element")
        return found

    def _error(self, reason: str) -> InvalidRequest:
        return InvalidRequest(
            f"{self._label} {reason}; correct the Parameters", expression=[self._where]
        )


@lru_cache(maxsize=256)  # paths come from clients: bounded
def _compiled(path: str) -> Any:
    from fhirpathpy import compile as compile_fhirpath
    from fhirpathpy.models import models

    quoted = _KEYWORD_ELEMENT.sub(r".`\1`", path)
    return compile_fhirpath(quoted, models["r4"], {"returnRawData": True})


def _prop_name(node: Any) -> str | None:
    name = getattr(node, "propName", None)
    return name if isinstance(name, str) else None


def _locate(document: dict[str, Any], node: Any, error: Any) -> _Location:
    """Where a selected node is in the document, from its location (`Patient.name[0].given`)."""
    prop_name = _prop_name(node)
    if prop_name is None:
        raise error("cannot change the resource itself; select one of its elements")
    steps = [_SEGMENT.fullmatch(segment) for segment in prop_name.split(".")[1:]]
    parent: Any = document
    for depth, step in enumerate(steps):
        if step is None or not isinstance(parent, dict):
            raise error(f"the location {prop_name} could not be followed")
        key = _member(parent, step.group(1))
        position = int(step.group(2)) if step.group(2) is not None else None
        if depth == len(steps) - 1:
            return parent, key, position
        parent = parent[key] if position is None else parent[key][position]
    raise error(f"the location {prop_name} could not be followed")


def _member(parent: dict[str, Any], name: str) -> str:
    """The JSON member for an element name: `value` is `valueQuantity` if that is there."""
    if name in parent:
        return name
    for key in parent:
        if key.startswith(name) and len(key) > len(name) and key[len(name)].isupper():
            return key
    return name


def _remove(parent: dict[str, Any], key: str, position: int | None) -> None:
    """Remove an element with its primitive extensions (`_birthDate`); drop emptied lists."""
    if position is None:
        parent.pop(key, None)
        parent.pop(f"_{key}", None)
        return
    del parent[key][position]
    extensions = parent.get(f"_{key}")
    if isinstance(extensions, list) and position < len(extensions):
        del extensions[position]
    if not parent[key]:
        del parent[key]
        parent.pop(f"_{key}", None)


def _prune(node: Any) -> bool:
    """Drop empty objects and arrays below `node`; True if `node` itself is left empty."""
    if isinstance(node, dict):
        for key in [key for key, value in node.items() if _prune(value)]:
            del node[key]
        return not node
    if isinstance(node, list):
        node[:] = [item for item in node if not _prune(item) or not isinstance(item, dict | list)]
        return not node
    return False


def _parent_path(parent: dict[str, Any], document: dict[str, Any]) -> str | None:
    """The location of an object in the document, found by identity (objects are unique)."""
    return _find(document, parent, str(document.get("resourceType")))


def _find(node: Any, target: dict[str, Any], path: str) -> str | None:
    if node is target:
        return path
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict | list):
                found = _find(value, target, f"{path}.{key}")
                if found is not None:
                    return found
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found = _find(item, target, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _model_at(document: dict[str, Any], prop_name: str | None) -> type[BaseModel] | None:
    """The R4B model of the element at a location; None where the models do not say."""
    model = model_of(str(document.get("resourceType")))
    node: Any = document
    for segment in (prop_name or "").split(".")[1:]:
        step = _SEGMENT.fullmatch(segment)
        if step is None or not isinstance(node, dict):
            return None
        key = _member(node, step.group(1))
        node = node.get(key)
        if step.group(2) is not None and isinstance(node, list):
            node = node[int(step.group(2))]
        if isinstance(node, dict) and isinstance(node.get("resourceType"), str):
            model = model_of(node["resourceType"])  # a contained resource
        else:
            model = _field_model(model, key)
    return model


def _repeats(model: type[BaseModel] | None, name: str) -> bool | None:
    """Whether element `name` of `model` repeats; None if the model does not say."""
    if model is None or name not in model.model_fields:
        return None
    return _unwrap(model.model_fields[name].annotation)[0]


def _field_model(model: type[BaseModel] | None, name: str) -> type[BaseModel] | None:
    if model is None or name not in model.model_fields:
        return None
    inner = _unwrap(model.model_fields[name].annotation)[1]
    type_name = getattr(inner, "__name__", "")
    return model_of(type_name.removesuffix("Type")) if type_name.endswith("Type") else None


def _choice_base(model: type[BaseModel] | None, key: str) -> str:
    """The element name of a member: `value` for `valueString` of a choice element."""
    if model is None or key not in model.model_fields:
        return key
    extra = model.model_fields[key].json_schema_extra
    base = extra.get("one_of_many") if isinstance(extra, dict) else None
    return base if isinstance(base, str) else key


def _unwrap(annotation: Any) -> tuple[bool, Any]:
    """(repeats, element type) of a model field annotation such as Optional[List[X]]."""
    repeats = False
    while True:
        origin = get_origin(annotation)
        if origin in (Union, types.UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        elif origin is list:
            repeats, annotation = True, get_args(annotation)[0]
        elif origin is Annotated or origin is Literal:
            annotation = get_args(annotation)[0]
        else:
            return repeats, annotation


def _primitive(part: dict[str, Any] | None, key: str) -> Any:
    return part.get(key) if isinstance(part, dict) else None


def _value_key(part: dict[str, Any]) -> str | None:
    """The member holding a part's value: its value[x], or `part` for an anonymous type."""
    for key in part:
        if key.startswith("value") and len(key) > 5 and key[5].isupper():
            return key
    return "part" if isinstance(part.get("part"), list) else None
