"""The pathway files of `config/pathways/`, loaded, validated and compiled once.

`catalogue.yaml` lists every time-node key (with its 中文 label and centers) and the source kinds
with their default priorities; `chest_pain.yaml`, `stroke.yaml` and `trauma.yaml` say how a case
is activated, which facts are derived, how each node is captured from FHIR resources and which
clocks run (`clocks:`, parsed by `pathways.clock_rules` against the center's nodes). Every
problem is a `ConfigError` naming the file, the line and the key (unknown keys, unknown node keys
or source kinds, FHIRPath that does not parse, code tables that cannot be read). The format is
described in docs/pathways.md.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from engine.errors import ConfigError
from engine.mapping.fhirpath import compile_path
from engine.mapping.yamlfile import (
    KeyPath,
    PositionMap,
    format_key,
    load_yaml,
    validation_error_to_config_error,
)
from engine.settings import content_root
from fhir_store import FhirStoreError, parse_search
from pathways.clock_rules import ClockRule, parse_clock_rules
from pathways.vocabulary import ARRIVAL_MODES, CENTERS, ArrivalMode, Center

__all__ = [
    "Capture",
    "Catalogue",
    "CodeMatch",
    "FactRule",
    "NodeDefinition",
    "Pathway",
    "Pathways",
    "load_catalogue",
    "load_pathway",
    "load_pathways",
    "pathways_dir",
]

FhirPath = Callable[[Mapping[str, Any]], list[Any]]
FactLiteral = StrictStr | StrictBool | StrictInt

# Where each resource type keeps the codes a rule's `codes` are matched against, unless the rule
# says `code_path`.
DEFAULT_CODE_PATHS: Mapping[str, str] = {
    "Encounter": "class | type",
    "ImagingStudy": "modality",
    "MedicationAdministration": "medication",
    "MedicationRequest": "medication",
    "MedicationStatement": "medication",
    "Specimen": "type",
    "Communication": "category",
    "Patient": "{}",
}


# -- the files as written ----------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _MatchFile(_Strict):
    resource: StrictStr
    codes: list[StrictStr] = Field(default_factory=list)
    code_table: StrictStr | None = None
    code_path: StrictStr | None = None
    where: StrictStr | None = None


class _CaptureFile(_MatchFile):
    name: StrictStr | None = None
    time: StrictStr
    follow: StrictStr | None = None
    source: StrictStr
    priority: StrictInt | None = None
    arrival_modes: list[Literal["ems", "transfer", "self", "in_hospital"]] | None = None
    flag: Literal["proxy"] | None = None
    keep: Literal["latest", "earliest"] = "latest"
    performer: StrictStr | None = None


class _NodeFile(_Strict):
    select: Literal["first", "last"] = "first"
    after: StrictStr | None = None
    after_required: StrictBool = False
    arrival_modes: list[Literal["ems", "transfer", "self", "in_hospital"]] | None = None
    tolerance_s: StrictInt | None = Field(default=None, ge=0)
    captures: list[_CaptureFile] = Field(default_factory=list)


class _ActivationFile(_MatchFile):
    name: StrictStr
    time: StrictStr


class _FactFile(_MatchFile):
    name: StrictStr
    value: FactLiteral | None = None
    value_path: StrictStr | None = None
    value_map: dict[str, FactLiteral] | None = None


class _PathwayFile(_Strict):
    pathway: Literal["chest_pain", "stroke", "trauma"]
    version: StrictStr
    description: StrictStr = ""
    tolerance_s: StrictInt = Field(default=300, ge=0)
    lookback_h: StrictInt = Field(default=24, ge=0)
    alerts_late_after_min: StrictInt = Field(default=30, ge=0)
    closes_on: list[StrictStr] = Field(default_factory=list)
    activation: list[_ActivationFile] = Field(default_factory=list)
    facts: list[_FactFile] = Field(default_factory=list)
    nodes: dict[str, _NodeFile] = Field(default_factory=dict)
    clocks: list[Any] | None = None  # checked by pathways.clock_rules


class _SourceKindFile(_Strict):
    label: StrictStr
    priority: StrictInt


class _CatalogueNodeFile(_Strict):
    label: StrictStr
    centers: list[Literal["chest_pain", "stroke", "trauma"]]


class _CatalogueFile(_Strict):
    version: StrictStr
    timezone: StrictStr = Field(default="+08:00", pattern=r"^[+-]\d{2}:\d{2}$")
    source_kinds: dict[str, _SourceKindFile]
    retracting_statuses: list[StrictStr] = Field(default_factory=list)
    nodes: dict[str, _CatalogueNodeFile]


# -- compiled -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CodeMatch:
    """Which resources a rule applies to: a type, codes (`system|code`, `system|I21*` for a
    prefix) found at `code_path`, and a FHIRPath condition."""

    resource: str
    codes: frozenset[tuple[str, str]]
    prefixes: tuple[tuple[str, str], ...]
    code_path: FhirPath | None
    where: FhirPath | None

    def matches(self, resource: Mapping[str, Any]) -> bool:
        """Whether `resource` is of the type, has one of the codes and meets the condition."""
        if resource.get("resourceType") != self.resource:
            return False
        if (self.codes or self.prefixes) and self.code_path is not None:
            if not any(self._known(coding) for coding in _codings(self.code_path(resource))):
                return False
        if self.where is not None:
            result = self.where(resource)
            return bool(result) and all(item is not False for item in result)
        return True

    def _known(self, coding: tuple[str, str]) -> bool:
        if coding in self.codes:
            return True
        system, code = coding
        return any(system == s and code.startswith(p) for s, p in self.prefixes)


@dataclass(frozen=True, slots=True)
class Capture:
    """One way a node's instant is read from a FHIR resource."""

    node: str
    name: str  # unique within the node: `<node>/<name>` on the candidate
    match: CodeMatch
    time: FhirPath
    follow: FhirPath | None  # a reference whose target the `time` is read from
    # The follow element as a search parameter and the types it may point to: a change of
    # the target (a Specimen) re-derives the resources pointing to it.
    follow_element: str | None
    follow_types: frozenset[str]
    source: str
    priority: int
    arrival_modes: frozenset[ArrivalMode] | None
    proxy: bool
    keep_earliest: bool
    performer: FhirPath | None

    @property
    def rule_id(self) -> str:
        return f"{self.node}/{self.name}"


@dataclass(frozen=True, slots=True)
class NodeDefinition:
    key: str
    label: str
    select: Literal["first", "last"]
    after: str | None
    arrival_modes: frozenset[ArrivalMode] | None
    tolerance_s: int
    captures: tuple[Capture, ...]
    # without its `after` node the node has no time (an angiography is post-lytic only after
    # a lysis); otherwise a missing `after` node bounds nothing
    after_required: bool = False


@dataclass(frozen=True, slots=True)
class Activation:
    name: str
    match: CodeMatch
    time: FhirPath


@dataclass(frozen=True, slots=True)
class FactRule:
    name: str
    match: CodeMatch
    value: FactLiteral | None
    value_path: FhirPath | None
    value_map: Mapping[str, FactLiteral] | None

    def value_of(self, resource: Mapping[str, Any]) -> FactLiteral | None:
        """The fact's value from a matching resource, or None when it gives none."""
        if self.value_path is None:
            return self.value
        for found in self.value_path(resource):
            if self.value_map is not None:
                mapped = self.value_map.get(str(found))
                if mapped is not None:
                    return mapped
            elif isinstance(found, str | bool | int):
                return found
        return None


@dataclass(frozen=True, slots=True)
class Pathway:
    """One center's compiled pathway file."""

    center: Center
    version: str
    file: str
    tolerance_s: int
    lookback_h: int
    closes_on: frozenset[str]
    activations: tuple[Activation, ...]
    facts: tuple[FactRule, ...]
    nodes: Mapping[str, NodeDefinition]
    clocks: tuple[ClockRule, ...] = ()  # running clocks and their alerts (docs/alerts.md)
    alerts_late_after_min: int = 30  # a deadline older than this when found: late-discovered

    def captures(self) -> list[Capture]:
        return [c for node in self.nodes.values() for c in node.captures]

    def resource_types(self) -> frozenset[str]:
        """Every resource type a rule of this pathway reads."""
        kinds = {a.match.resource for a in self.activations}
        kinds |= {f.match.resource for f in self.facts}
        kinds |= {c.match.resource for n in self.nodes.values() for c in n.captures}
        return frozenset(kinds)


@dataclass(frozen=True, slots=True)
class Catalogue:
    version: str
    timezone: str
    labels: Mapping[str, str]  # node key -> 中文 label
    centers: Mapping[str, frozenset[Center]]  # node key -> the centers that carry it
    source_kinds: Mapping[str, tuple[str, int]]  # kind -> (label, default priority)
    retracting_statuses: frozenset[str]

    @property
    def tz(self) -> tzinfo:
        """The offset every instant is written in (+08:00)."""
        sign = -1 if self.timezone.startswith("-") else 1
        hours, _, minutes = self.timezone.lstrip("+-").partition(":")
        return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))


@dataclass(frozen=True, slots=True)
class Pathways:
    """The catalogue and the three centers' pathways."""

    catalogue: Catalogue
    by_center: Mapping[Center, Pathway]

    def resource_types(self) -> frozenset[str]:
        """Every resource type a rule reads, or a capture follows a reference to."""
        kinds: set[str] = set(self.followed_types())
        for pathway in self.by_center.values():
            kinds |= pathway.resource_types()
        return frozenset(kinds)

    def followed_types(self) -> frozenset[str]:
        """The types a capture reads its time through (a Specimen): a change of one of them
        re-derives the resources pointing to it."""
        return frozenset(
            kind
            for pathway in self.by_center.values()
            for capture in pathway.captures()
            for kind in capture.follow_types
        )

    def node_keys(self, center: Center) -> list[str]:
        """The node keys a case of `center` may carry, in catalogue order."""
        return [k for k, centers in self.catalogue.centers.items() if center in centers]


# -- loading ------------------------------------------------------------------------------------


def pathways_dir() -> Path:
    """`./config/pathways` when the working directory has one, else the installed copy."""
    local = Path("config") / "pathways"
    return local if local.is_dir() else content_root() / "config" / "pathways"


@lru_cache(maxsize=4)
def _cached(folder: str) -> Pathways:
    return _load(Path(folder))


def load_pathways(folder: Path | None = None, *, cached: bool = True) -> Pathways:
    """Load and compile the catalogue and every center's pathway file in `folder`.

    Raises ConfigError naming the file, line and key of the first problem found.
    """
    where = (folder or pathways_dir()).resolve()
    return _cached(str(where)) if cached else _load(where)


def _load(folder: Path) -> Pathways:
    catalogue = _load_catalogue(folder / "catalogue.yaml")
    by_center: dict[Center, Pathway] = {}
    for center in CENTERS:
        path = folder / f"{center}.yaml"
        if not path.is_file():
            raise ConfigError(f"the {center} pathway file is missing", file=str(path))
        by_center[center] = load_pathway(path, catalogue, center)
    return Pathways(catalogue, by_center)


def load_pathway(path: Path, catalogue: Catalogue, center: Center) -> Pathway:
    """Load and compile one center's pathway file against the catalogue."""
    return _Compiler(path, catalogue).compile(center)


def load_catalogue(path: Path) -> Catalogue:
    """Load the node catalogue (catalogue.yaml)."""
    return _load_catalogue(path)


def _parse(model: type[BaseModel], path: Path) -> tuple[Any, PositionMap]:
    data, positions = load_yaml(path)
    try:
        return model.model_validate(data), positions
    except ValidationError as error:
        raise validation_error_to_config_error(error, str(path), data, positions) from None


def _load_catalogue(path: Path) -> Catalogue:
    parsed, _ = _parse(_CatalogueFile, path)
    assert isinstance(parsed, _CatalogueFile)
    return Catalogue(
        version=parsed.version,
        timezone=parsed.timezone,
        labels={key: node.label for key, node in parsed.nodes.items()},
        centers={key: frozenset(node.centers) for key, node in parsed.nodes.items()},
        source_kinds={k: (v.label, v.priority) for k, v in parsed.source_kinds.items()},
        retracting_statuses=frozenset(parsed.retracting_statuses),
    )


class _Compiler:
    """Turns one validated pathway file into a `Pathway`, checking names against the catalogue."""

    def __init__(self, path: Path, catalogue: Catalogue) -> None:
        self.path = path
        self.catalogue = catalogue
        self.positions: PositionMap = {}

    def fail(self, message: str, key: KeyPath) -> ConfigError:
        line = None
        for depth in range(len(key), -1, -1):
            line = self.positions.get(key[:depth])
            if line is not None:
                break
        return ConfigError(message, file=str(self.path), line=line, key=format_key(key) or None)

    def compile(self, center: Center) -> Pathway:
        parsed, self.positions = _parse(_PathwayFile, self.path)
        assert isinstance(parsed, _PathwayFile)
        if parsed.pathway != center:
            raise self.fail(f"says {parsed.pathway!r}; this file is for {center!r}", ("pathway",))
        for index, key in enumerate(parsed.closes_on):
            self.node_key(key, center, ("closes_on", index))
        nodes: dict[str, NodeDefinition] = {}
        for key, node in parsed.nodes.items():
            nodes[key] = self.node(key, node, center, parsed.tolerance_s)
        for key, compiled in nodes.items():
            if compiled.after is not None and compiled.after not in self.catalogue.labels:
                raise self.fail(f"unknown node key {compiled.after!r}", ("nodes", key, "after"))
            if compiled.after_required and compiled.after is None:
                raise self.fail(
                    "after_required needs an `after` node", ("nodes", key, "after_required")
                )
        activations = tuple(
            Activation(
                rule.name,
                self.match(rule, ("activation", i)),
                self.path_of(rule.time, ("activation", i, "time")),
            )
            for i, rule in enumerate(parsed.activation)
        )
        facts = tuple(self.fact(rule, ("facts", i)) for i, rule in enumerate(parsed.facts))
        clocks = parse_clock_rules(
            parsed.clocks,
            source=str(self.path),
            positions=self.positions,
            node_keys=[k for k, c in self.catalogue.centers.items() if center in c],
        )
        return Pathway(
            center=center,
            version=parsed.version,
            file=str(self.path),
            tolerance_s=parsed.tolerance_s,
            lookback_h=parsed.lookback_h,
            closes_on=frozenset(parsed.closes_on),
            alerts_late_after_min=parsed.alerts_late_after_min,
            activations=activations,
            facts=facts,
            nodes=nodes,
            clocks=tuple(clocks),
        )

    def node_key(self, key: str, center: Center, where: KeyPath) -> None:
        centers = self.catalogue.centers.get(key)
        if centers is None:
            raise self.fail(
                f"unknown node key {key!r}; node keys are listed in catalogue.yaml", where
            )
        if center not in centers:
            raise self.fail(
                f"node {key!r} is not a {center} node in catalogue.yaml "
                f"(it is for {', '.join(sorted(centers))})",
                where,
            )

    def node(self, key: str, node: _NodeFile, center: Center, tolerance_s: int) -> NodeDefinition:
        where: KeyPath = ("nodes", key)
        self.node_key(key, center, where)
        names: set[str] = set()
        captures: list[Capture] = []
        for index, capture in enumerate(node.captures):
            at = (*where, "captures", index)
            name = capture.name or f"{capture.resource}-{index}"
            if name in names:
                raise self.fail(f"capture name {name!r} is used twice in this node", at)
            names.add(name)
            captures.append(self.capture(key, name, capture, at))
        return NodeDefinition(
            key=key,
            label=self.catalogue.labels[key],
            select=node.select,
            after=node.after,
            arrival_modes=_modes(node.arrival_modes),
            tolerance_s=node.tolerance_s if node.tolerance_s is not None else tolerance_s,
            captures=tuple(captures),
            after_required=node.after_required,
        )

    def capture(self, node: str, name: str, capture: _CaptureFile, at: KeyPath) -> Capture:
        kinds = self.catalogue.source_kinds
        if capture.source not in kinds:
            raise self.fail(
                f"unknown source kind {capture.source!r}; allowed: {', '.join(sorted(kinds))}",
                (*at, "source"),
            )
        return Capture(
            node=node,
            name=name,
            match=self.match(capture, at),
            time=self.path_of(capture.time, (*at, "time")),
            follow=self.optional_path(capture.follow, (*at, "follow")),
            follow_element=capture.follow,
            follow_types=self.reference_targets(capture, (*at, "follow")),
            source=capture.source,
            priority=capture.priority if capture.priority is not None else kinds[capture.source][1],
            arrival_modes=_modes(capture.arrival_modes),
            proxy=capture.flag == "proxy",
            keep_earliest=capture.keep == "earliest",
            performer=self.optional_path(capture.performer, (*at, "performer")),
        )

    def reference_targets(self, capture: _CaptureFile, at: KeyPath) -> frozenset[str]:
        """The resource types `follow` may point to; it must name a Reference element of the
        resource that is also a search parameter (`specimen` of an Observation)."""
        if capture.follow is None:
            return frozenset()
        problem = f"follow: {capture.follow!r} is not a searchable Reference of {capture.resource}"
        module = importlib.import_module(f"fhir.resources.R4B.{capture.resource.lower()}")
        field = getattr(module, capture.resource).model_fields.get(capture.follow)
        extra = field.json_schema_extra if field is not None else None
        targets = extra.get("enum_reference_types") if isinstance(extra, dict) else None
        if not isinstance(targets, list) or not targets:
            raise self.fail(problem, at)
        try:
            parse_search(capture.resource, [(capture.follow, "X/1")], strict=True)
        except FhirStoreError:
            raise self.fail(problem, at) from None
        return frozenset(str(t) for t in targets)

    def fact(self, rule: _FactFile, at: KeyPath) -> FactRule:
        if (rule.value is None) == (rule.value_path is None):
            raise self.fail("give either `value` or `value_path`", at)
        if rule.name == "arrival_mode":
            given = (
                [rule.value] if rule.value is not None else list((rule.value_map or {}).values())
            )
            if rule.value_path is not None and rule.value_map is None:
                raise self.fail("arrival_mode from a path needs a `value_map`", at)
            for value in given:
                if value not in ARRIVAL_MODES:
                    raise self.fail(
                        f"arrival mode {value!r} is not one of {', '.join(ARRIVAL_MODES)}", at
                    )
        return FactRule(
            name=rule.name,
            match=self.match(rule, at),
            value=rule.value,
            value_path=self.optional_path(rule.value_path, (*at, "value_path")),
            value_map=rule.value_map,
        )

    def match(self, rule: _MatchFile, at: KeyPath) -> CodeMatch:
        if importlib.util.find_spec(f"fhir.resources.R4B.{rule.resource.lower()}") is None:
            raise self.fail(f"{rule.resource!r} is not a FHIR R4 resource type", (*at, "resource"))
        codes: set[tuple[str, str]] = set()
        prefixes: list[tuple[str, str]] = []
        for index, text in enumerate(rule.codes):
            system, bar, code = text.partition("|")
            if not bar or not system or not code:
                raise self.fail(
                    f"code {text!r} is not `system|code` (or `system|prefix*`)",
                    (*at, "codes", index),
                )
            if code.endswith("*"):
                prefixes.append((system, code[:-1]))
            else:
                codes.add((system, code))
        if rule.code_table is not None:
            codes |= self.table(rule.code_table, (*at, "code_table"))
        code_path_text = rule.code_path or DEFAULT_CODE_PATHS.get(rule.resource, "code")
        code_path = self.path_of(code_path_text, (*at, "code_path"))
        where = self.optional_path(rule.where, (*at, "where"))
        return CodeMatch(rule.resource, frozenset(codes), tuple(prefixes), code_path, where)

    def table(self, name: str, at: KeyPath) -> set[tuple[str, str]]:
        path = (self.path.parent / name).resolve()
        if not path.is_relative_to(self.path.parent.resolve()):
            raise self.fail("a code table must be inside the pathways folder", at)
        try:
            with path.open(encoding="utf-8-sig", newline="") as handle:
                rows = list(csv.DictReader(r for r in handle if not r.startswith("#")))
        except OSError as error:
            raise self.fail(f"cannot read code table {name} ({error.strerror})", at) from None
        codes: set[tuple[str, str]] = set()
        for number, row in enumerate(rows, start=2):
            system, code = (row.get("system") or "").strip(), (row.get("code") or "").strip()
            if not system or not code:
                raise self.fail(f"{name} row {number}: needs columns `system` and `code`", at)
            codes.add((system, code))
        return codes

    def path_of(self, text: str, at: KeyPath) -> FhirPath:
        try:
            return compile_path(text)
        except ConfigError as error:
            raise self.fail(error.message, at) from None

    def optional_path(self, text: str | None, at: KeyPath) -> FhirPath | None:
        return None if text is None else self.path_of(text, at)


def _modes(modes: Sequence[ArrivalMode] | None) -> frozenset[ArrivalMode] | None:
    return None if modes is None else frozenset(modes)


def _codings(found: list[Any]) -> list[tuple[str, str]]:
    """The (system, code) pairs in what a code path found: Codings, CodeableConcepts, codes."""
    pairs: list[tuple[str, str]] = []
    for item in found:
        if isinstance(item, Mapping):
            for coding in item.get("coding") or [item]:
                if isinstance(coding, Mapping) and coding.get("code") is not None:
                    pairs.append((str(coding.get("system") or ""), str(coding["code"])))
    return pairs
