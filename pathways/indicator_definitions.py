"""Indicator definitions, loaded from `config/pathways/` and checked before anything computes.

The folder holds the time-node catalogue (`catalogue.yaml`, the one the pathway engine reads),
the case-fact vocabulary with the named exclusions and conditions (`facts.yaml`), the expected
node order (`node-order.yaml`), and one file per center and standard version
(`<center>/<standard>.yaml`). `load_catalogue` reads them all; a mistake is a `ConfigError`
naming file, line and key (an unknown node key, fact, fact value, exclusion or operator lists
what is allowed). The format is documented in docs/quality-indicators.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from engine.errors import ConfigError
from engine.mapping import PositionMap, format_key, load_yaml
from pathways.conditions import (
    COMPARISONS,
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    FactCompare,
    FactIn,
    HasFact,
    HasNode,
    IntervalWithin,
    Limit,
    NodeChoice,
    Not,
)
from pathways.definitions import load_catalogue as load_node_catalogue
from pathways.definitions import pathways_dir
from pathways.timeline import FactValue
from pathways.vocabulary import ARRIVAL_MODES, CENTERS, Center

__all__ = [
    "NODE_CATALOGUE_FILE",
    "NODE_ORDER_FILE",
    "FACTS_FILE",
    "AggregateTargets",
    "Catalogue",
    "Exclusion",
    "FactSpec",
    "IndicatorDefinition",
    "IndicatorKind",
    "PerCaseLimit",
    "Standard",
    "default_pathways_dir",
    "load_catalogue",
]

NODE_CATALOGUE_FILE = "catalogue.yaml"
NODE_ORDER_FILE = "node-order.yaml"
FACTS_FILE = "facts.yaml"
IndicatorKind = Literal["interval", "rate", "distribution"]
_KINDS: tuple[IndicatorKind, ...] = ("interval", "rate", "distribution")
_FACT_TYPES = ("code", "boolean", "integer", "number", "text")
_CONFIDENCE = ("C", "V", "G", "U")
_TRENDS = ("decreasing", "decreasing_or_stable", "increasing", "increasing_or_stable", "stable")
_LIMIT_OPS = ("<", "<=", ">", ">=")
_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600}
_HINT = "fix the file; its format is in docs/quality-indicators.md"


@dataclass(frozen=True, slots=True)
class FactSpec:
    """One case fact of facts.yaml: its type and, for codes, the allowed values."""

    name: str
    type: Literal["code", "boolean", "integer", "number", "text"]
    values: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""

    def problem(self, value: object) -> str | None:
        """Why `value` is not a value of this fact (as stored on a case), None when it is."""
        if self.type == "code":
            if isinstance(value, str) and value in self.values:
                return None
            return f"{value!r} is not a value of {self.name}; allowed: {', '.join(self.values)}"
        if self.type == "boolean":
            return None if isinstance(value, bool) else f"{self.name} is true or false"
        if self.type == "text":
            return None if isinstance(value, str) else f"{self.name} is text"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{self.name} is a number"
        if self.type == "integer" and not float(value).is_integer():
            return f"{self.name} is a whole number"
        low, high = self.minimum, self.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            return f"{self.name} must lie within {low}..{high}"
        return None


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A named exclusion (R5): the case is excluded with this reason when `when` holds."""

    name: str
    when: Condition
    implied_by_nodes: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True, slots=True)
class PerCaseLimit:
    """The per-case limit: one for every case, or one per value of a fact (`by_fact`)."""

    default: Limit | None = None
    by_fact: str | None = None
    limits: Mapping[str, Limit] = field(default_factory=dict)

    def for_facts(self, facts: Mapping[str, FactValue]) -> Limit | None:
        if self.by_fact is None:
            return self.default
        value = facts.get(self.by_fact)
        return self.limits.get(str(value)) if value is not None else None

    @property
    def confirmed(self) -> bool:
        every = [self.default] if self.default else list(self.limits.values())
        return all(limit.confirmed for limit in every)


@dataclass(frozen=True, slots=True)
class AggregateTargets:
    """What the monthly figures are held to (indicators.md "Aggregate target")."""

    mean: Limit | None = None
    median: Limit | None = None
    compliance_rate_min: float | None = None
    rate_min: float | None = None
    rate_max: float | None = None
    trend: str | None = None


@dataclass(frozen=True, slots=True)
class IndicatorDefinition:
    """One indicator as one standard version defines it."""

    id: str
    name: str
    kind: IndicatorKind
    standard: str
    center: Center
    population: Condition
    exclusions: tuple[Exclusion, ...]
    confidence: str
    confirmed: bool  # the indicator and every value in it (per-case limit, targets)
    source: str
    name_zh: str = ""
    start: NodeChoice | None = None
    end: NodeChoice | None = None
    per_case: PerCaseLimit | None = None
    plausible_seconds: tuple[int, int] | None = None
    numerator: Condition | None = None
    fact: str | None = None  # distribution: the fact counted in `bins`
    bins: tuple[float, ...] = ()
    shares_within_seconds: tuple[int, ...] = ()
    aggregate: AggregateTargets = field(default_factory=AggregateTargets)
    file: str = ""
    line: int | None = None

    @property
    def nodes(self) -> tuple[str, ...]:
        return (self.start.nodes if self.start else ()) + (self.end.nodes if self.end else ())


@dataclass(frozen=True, slots=True)
class Standard:
    """The indicators of one standard version for one center (one YAML file)."""

    id: str
    center: Center
    title: str
    file: str
    indicators: tuple[IndicatorDefinition, ...]

    def indicator(self, indicator_id: str) -> IndicatorDefinition:
        for definition in self.indicators:
            if definition.id == indicator_id:
                return definition
        known = ", ".join(d.id for d in self.indicators)
        raise ConfigError(
            f"standard {self.id!r} ({self.center}) has no indicator {indicator_id!r}; "
            f"it has: {known}",
            hint="",
        )


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Everything in config/pathways/ that indicators need, checked."""

    node_keys: Mapping[Center, frozenset[str]]
    facts: Mapping[str, FactSpec]
    exclusions: Mapping[str, Exclusion]
    conditions: Mapping[str, Condition]
    standards: tuple[Standard, ...]
    # R11: per center, chains of node keys in their expected order
    node_order: Mapping[Center, tuple[tuple[str, ...], ...]] = field(default_factory=dict)

    def standards_for(self, center: Center) -> list[Standard]:
        return [s for s in self.standards if s.center == center]

    def standard(self, center: Center, standard_id: str) -> Standard:
        for standard in self.standards_for(center):
            if standard.id == standard_id:
                return standard
        known = ", ".join(s.id for s in self.standards_for(center)) or "(none)"
        raise ConfigError(
            f"no standard {standard_id!r} for {center}; there are: {known}",
            hint="name one of them, or add config/pathways/<center>/<standard>.yaml",
        )


def default_pathways_dir() -> Path:
    """`config/pathways` of the working directory when there is one, else the installed one."""
    return pathways_dir()


def load_catalogue(folder: Path | None = None) -> Catalogue:
    """Read and check the node catalogue, the facts and every `<center>/*.yaml` standard."""
    folder = folder if folder is not None else default_pathways_dir()
    node_keys = _load_node_keys(folder / NODE_CATALOGUE_FILE)
    node_order = _load_node_order(folder / NODE_ORDER_FILE, node_keys)
    all_nodes = frozenset().union(*node_keys.values())
    facts_file = folder / FACTS_FILE
    data, positions = _read_yaml(facts_file)
    reader = _Reader(str(facts_file), positions)
    reader.mapping(data, (), required=("facts",), optional=("exclusions", "conditions"))
    facts = _facts(reader, data["facts"])
    vocabulary = _Vocabulary(facts, all_nodes, {}, {})
    for name, body in reader.mapping_of(data.get("conditions", {}), ("conditions",)).items():
        where = ("conditions", name)
        reader.mapping(body, where, required=("when",), optional=("description",))
        vocabulary.conditions[name] = _condition(reader, body["when"], (*where, "when"), vocabulary)
    for name, body in reader.mapping_of(data.get("exclusions", {}), ("exclusions",)).items():
        vocabulary.exclusions[name] = _exclusion(reader, name, body, vocabulary)
    standards: list[Standard] = []
    seen: dict[tuple[str, str], str] = {}
    for center in CENTERS:
        vocabulary = _Vocabulary(
            facts, node_keys[center], vocabulary.conditions, vocabulary.exclusions
        )
        for path in sorted((folder / center).glob("*.yaml")):
            standard = _load_standard(path, center, vocabulary)
            if (center, standard.id) in seen:
                raise ConfigError(
                    f"standard {standard.id!r} is also defined in {seen[center, standard.id]}",
                    file=str(path),
                    key="standard",
                    hint=_HINT,
                )
            seen[center, standard.id] = str(path)
            standards.append(standard)
    return Catalogue(
        node_keys=node_keys,
        facts=facts,
        exclusions=dict(vocabulary.exclusions),
        conditions=dict(vocabulary.conditions),
        standards=tuple(standards),
        node_order=node_order,
    )


# --- reading ------------------------------------------------------------------------------------


class _Reader:
    """Type checks on loaded YAML that fail with file:line key."""

    def __init__(self, file: str, positions: PositionMap) -> None:
        self.file = file
        self.positions = positions

    def fail(self, path: Sequence[str | int], message: str) -> ConfigError:
        line = None
        for end in range(len(path), -1, -1):
            line = self.positions.get(tuple(path[:end]))
            if line is not None:
                break
        return ConfigError(
            message, file=self.file, line=line, key=format_key(path) or None, hint=_HINT
        )

    def mapping(
        self,
        value: Any,
        path: Sequence[str | int],
        *,
        required: Sequence[str] = (),
        optional: Sequence[str] = (),
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "must be a mapping of keys to values")
        for key in required:
            if key not in value:
                raise self.fail((*path, key), "is required")
        allowed = (*required, *optional)
        for key in value:
            if key not in allowed:
                raise self.fail(
                    (*path, key),
                    f"is not a known key (check the spelling); allowed: {', '.join(allowed)}",
                )
        return value

    def mapping_of(self, value: Any, path: Sequence[str | int]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "must be a mapping of names to definitions")
        return value

    def text(self, value: Any, path: Sequence[str | int]) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, "must be text")
        return value

    def boolean(self, value: Any, path: Sequence[str | int]) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, "must be true or false")
        return value

    def number(self, value: Any, path: Sequence[str | int]) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, "must be a number")
        return float(value)

    def rate(self, value: Any, path: Sequence[str | int]) -> float:
        number = self.number(value, path)
        if not 0 <= number <= 1:
            raise self.fail(path, "must be a fraction between 0 and 1 (0.75 for 75 %)")
        return number

    def names(self, value: Any, path: Sequence[str | int]) -> tuple[str, ...]:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.fail(path, "must name at least one")
        for index, item in enumerate(items):
            self.text(item, (*path, index) if isinstance(value, list) else path)
        return tuple(items)

    def choice(self, value: Any, path: Sequence[str | int], allowed: Sequence[str]) -> str:
        if value not in allowed:
            raise self.fail(path, f"{value!r} is not allowed; use one of: {', '.join(allowed)}")
        return cast(str, value)


@dataclass(slots=True)
class _Vocabulary:
    """What a file may refer to: facts, node keys of its center, named conditions, exclusions."""

    facts: Mapping[str, FactSpec]
    node_keys: frozenset[str]
    conditions: dict[str, Condition]
    exclusions: dict[str, Exclusion]


def _read_yaml(path: Path) -> tuple[Any, PositionMap]:
    try:
        return load_yaml(path)
    except ConfigError as exc:  # syntax: say where the format is documented, not channels
        raise ConfigError(
            exc.message, file=exc.file, line=exc.line, key=exc.key, hint=_HINT
        ) from exc


def _load_node_keys(path: Path) -> dict[Center, frozenset[str]]:
    """The node keys of each center, from the pathway engine's node catalogue."""
    centers = load_node_catalogue(path).centers
    return {
        center: frozenset(key for key, where in centers.items() if center in where)
        for center in CENTERS
    }


def _load_node_order(
    path: Path, node_keys: Mapping[Center, frozenset[str]]
) -> dict[Center, tuple[tuple[str, ...], ...]]:
    data, positions = _read_yaml(path)
    reader = _Reader(str(path), positions)
    reader.mapping(data, (), optional=CENTERS)
    order: dict[Center, tuple[tuple[str, ...], ...]] = {}
    for center in CENTERS:
        chains = data.get(center, [])
        if not isinstance(chains, list):
            raise reader.fail((center,), "must be a list of chains (lists of node keys)")
        vocabulary = _Vocabulary({}, node_keys[center], {}, {})
        checked = []
        for index, chain in enumerate(chains):
            if not isinstance(chain, list) or len(chain) < 2:
                raise reader.fail((center, index), "a chain lists at least two node keys")
            checked.append(
                tuple(
                    _check_node(reader, key, (center, index, position), vocabulary)
                    for position, key in enumerate(chain)
                )
            )
        order[center] = tuple(checked)
    return order


def _facts(reader: _Reader, data: Any) -> dict[str, FactSpec]:
    facts: dict[str, FactSpec] = {}
    for name, body in reader.mapping_of(data, ("facts",)).items():
        path = ("facts", name)
        reader.mapping(
            body,
            path,
            required=("type",),
            optional=("values", "min", "max", "description", "stored_as"),
        )
        kind = reader.choice(body["type"], (*path, "type"), _FACT_TYPES)
        values: tuple[str, ...] = ()
        if kind == "code":
            if not isinstance(body.get("values"), dict) or not body["values"]:
                raise reader.fail((*path, "values"), "a code fact lists its values (code: meaning)")
            values = tuple(str(value) for value in body["values"])
        elif "values" in body:
            raise reader.fail((*path, "values"), "only a code fact has values")
        minimum = reader.number(body["min"], (*path, "min")) if "min" in body else None
        maximum = reader.number(body["max"], (*path, "max")) if "max" in body else None
        facts[name] = FactSpec(
            name=name,
            type=cast(Any, kind),
            values=values,
            minimum=minimum,
            maximum=maximum,
            description=str(body.get("description", "")),
        )
    if "arrival_mode" not in facts or set(facts["arrival_mode"].values) != set(ARRIVAL_MODES):
        raise reader.fail(
            ("facts", "arrival_mode"),
            f"arrival_mode must be a code fact with exactly the values {', '.join(ARRIVAL_MODES)}",
        )
    return facts


def _exclusion(reader: _Reader, name: str, body: Any, vocabulary: _Vocabulary) -> Exclusion:
    path = ("exclusions", name)
    reader.mapping(body, path, required=("when",), optional=("description", "implied_by_nodes"))
    implied: tuple[str, ...] = ()
    if "implied_by_nodes" in body:
        implied = reader.names(body["implied_by_nodes"], (*path, "implied_by_nodes"))
        for index, key in enumerate(implied):
            _check_node(reader, key, (*path, "implied_by_nodes", index), vocabulary)
    return Exclusion(
        name=name,
        when=_condition(reader, body["when"], (*path, "when"), vocabulary),
        implied_by_nodes=implied,
        description=str(body.get("description", "")),
    )


def _check_node(
    reader: _Reader, key: Any, path: Sequence[str | int], vocabulary: _Vocabulary
) -> str:
    if not isinstance(key, str) or key not in vocabulary.node_keys:
        raise reader.fail(
            path,
            f"unknown time-node key {key!r}; the keys are those of {NODE_CATALOGUE_FILE} "
            "(time-nodes.md)",
        )
    return key


# --- conditions ---------------------------------------------------------------------------------

_COMBINATORS = ("all", "any", "not", "has_node", "has_fact", "condition", "interval")


def _condition(
    reader: _Reader, data: Any, path: Sequence[str | int], vocabulary: _Vocabulary
) -> Condition:
    """`{}` is always true; a mapping holds when every key holds (see docs)."""
    if not isinstance(data, dict):
        raise reader.fail(path, "a condition is a mapping, e.g. {diagnosis: STEMI}")
    parts: list[Condition] = []
    for key, value in data.items():
        where = (*path, key)
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                raise reader.fail(where, f"`{key}` takes a list of conditions")
            items = tuple(
                _condition(reader, item, (*where, index), vocabulary)
                for index, item in enumerate(value)
            )
            parts.append(AllOf(items) if key == "all" else AnyOf(items))
        elif key == "not":
            parts.append(Not(_condition(reader, value, where, vocabulary)))
        elif key == "has_node":
            keys = reader.names(value, where)
            for index, node in enumerate(keys):
                _check_node(
                    reader, node, (*where, index) if isinstance(value, list) else where, vocabulary
                )
            parts.append(HasNode(keys))
        elif key == "has_fact":
            names = reader.names(value, where)
            for name in names:
                _fact_spec(reader, name, where, vocabulary)
            parts.append(HasFact(names))
        elif key == "condition":
            if not isinstance(value, str) or value not in vocabulary.conditions:
                known = ", ".join(vocabulary.conditions) or "(none)"
                raise reader.fail(
                    where, f"unknown named condition {value!r}; {FACTS_FILE} defines: {known}"
                )
            parts.append(vocabulary.conditions[value])
        elif key == "interval":
            parts.append(_interval(reader, value, where, vocabulary))
        else:
            parts.append(_fact_test(reader, key, value, where, vocabulary))
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))  # AllOf(()) is true


def _fact_spec(
    reader: _Reader, name: str, path: Sequence[str | int], vocabulary: _Vocabulary
) -> FactSpec:
    spec = vocabulary.facts.get(name)
    if spec is None:
        raise reader.fail(
            path,
            f"unknown case fact {name!r}; facts are defined in {FACTS_FILE} "
            f"(or use one of {', '.join(_COMBINATORS)})",
        )
    return spec


def _fact_test(
    reader: _Reader, name: str, value: Any, path: Sequence[str | int], vocabulary: _Vocabulary
) -> Condition:
    spec = _fact_spec(reader, name, path, vocabulary)
    if isinstance(value, dict):
        if spec.type not in ("integer", "number"):
            raise reader.fail(path, f"{name} is a {spec.type} fact: compare it with = (a value)")
        tests: list[Condition] = []
        for op, bound in value.items():
            reader.choice(op, (*path, op), tuple(COMPARISONS))
            tests.append(FactCompare(name, cast(Comparison, op), reader.number(bound, (*path, op))))
        if not tests:
            raise reader.fail(path, 'give a comparison such as {">=": 16}')
        return tests[0] if len(tests) == 1 else AllOf(tuple(tests))
    values = value if isinstance(value, list) else [value]
    if not values:
        raise reader.fail(path, "give at least one value")
    checked = tuple(
        _fact_value(reader, spec, item, (*path, index) if isinstance(value, list) else path)
        for index, item in enumerate(values)
    )
    return FactIn(name, checked)


def _fact_value(
    reader: _Reader, spec: FactSpec, value: Any, path: Sequence[str | int]
) -> FactValue:
    if spec.type == "code":
        text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
        if text not in spec.values:
            raise reader.fail(
                path, f"{value!r} is not a value of {spec.name}; allowed: {', '.join(spec.values)}"
            )
        return text
    if spec.type == "boolean":
        return reader.boolean(value, path)
    if spec.type in ("integer", "number"):
        number = reader.number(value, path)
        return int(number) if spec.type == "integer" and number.is_integer() else number
    return reader.text(value, path)


def _interval(
    reader: _Reader, data: Any, path: Sequence[str | int], vocabulary: _Vocabulary
) -> IntervalWithin:
    reader.mapping(data, path, required=("start", "end", "op"), optional=tuple(_UNITS))
    limit = _limit(reader, data, path, extra=("start", "end"))
    return IntervalWithin(
        start=_node_choice(reader, data["start"], (*path, "start"), vocabulary),
        end=_node_choice(reader, data["end"], (*path, "end"), vocabulary),
        limit=limit,
    )


def _node_choice(
    reader: _Reader, data: Any, path: Sequence[str | int], vocabulary: _Vocabulary
) -> NodeChoice:
    if isinstance(data, str):
        return NodeChoice("node", (_check_node(reader, data, path, vocabulary),))
    rules = ("earliest_of", "later_of", "first_present")
    if not isinstance(data, dict) or len(data) != 1:
        raise reader.fail(
            path, f"give a node key, or one of {', '.join(rules)} with a list of node keys"
        )
    ((rule, keys),) = data.items()
    reader.choice(rule, (*path, rule), rules)
    if not isinstance(keys, list) or len(keys) < 2:
        raise reader.fail((*path, rule), "takes a list of at least two node keys")
    checked = tuple(
        _check_node(reader, key, (*path, rule, index), vocabulary) for index, key in enumerate(keys)
    )
    return NodeChoice(cast(Any, rule), checked)


def _limit(
    reader: _Reader, data: Any, path: Sequence[str | int], extra: Sequence[str] = ()
) -> Limit:
    reader.mapping(data, path, required=("op",), optional=(*_UNITS, "confirmed", *extra))
    op = reader.choice(data["op"], (*path, "op"), _LIMIT_OPS)
    units = [unit for unit in _UNITS if unit in data]
    if len(units) != 1:
        raise reader.fail(path, "give the amount in exactly one of: seconds, minutes, hours")
    amount = reader.number(data[units[0]], (*path, units[0]))
    seconds = amount * _UNITS[units[0]]
    if amount < 0 or not seconds.is_integer():
        raise reader.fail((*path, units[0]), "must be ≥ 0 and a whole number of seconds")
    confirmed = reader.boolean(data.get("confirmed", True), (*path, "confirmed"))
    return Limit(cast(Comparison, op), int(seconds), confirmed)


# --- standards ----------------------------------------------------------------------------------

_COMMON = ("id", "name", "name_zh", "kind", "population", "exclude", "confidence", "confirmed",
           "source", "aggregate")  # fmt: skip
_BY_KIND: dict[str, tuple[str, ...]] = {
    "interval": ("start", "end", "per_case", "plausible_minutes", "shares_within_minutes"),
    "rate": ("numerator",),
    "distribution": ("fact", "bins"),
}
_REQUIRED_BY_KIND: dict[str, tuple[str, ...]] = {
    "interval": ("start", "end", "plausible_minutes"),
    "rate": ("numerator",),
    "distribution": ("fact", "bins"),
}


def _load_standard(path: Path, center: Center, vocabulary: _Vocabulary) -> Standard:
    data, positions = _read_yaml(path)
    reader = _Reader(str(path), positions)
    reader.mapping(data, (), required=("standard", "center", "indicators"), optional=("title",))
    standard_id = reader.text(data["standard"], ("standard",))
    if data["center"] != center:
        raise reader.fail(
            ("center",), f"is {data['center']!r} but the file is in the {center}/ folder"
        )
    if path.stem != standard_id:
        raise reader.fail(("standard",), f"is {standard_id!r}; name the file {standard_id}.yaml")
    items = data["indicators"]
    if not isinstance(items, list) or not items:
        raise reader.fail(("indicators",), "must be a list of indicators")
    indicators: list[IndicatorDefinition] = []
    ids: set[str] = set()
    for index, item in enumerate(items):
        definition = _indicator(
            reader, item, ("indicators", index), standard_id, center, vocabulary
        )
        if definition.id in ids:
            raise reader.fail(("indicators", index, "id"), f"{definition.id!r} is listed twice")
        ids.add(definition.id)
        indicators.append(definition)
    return Standard(
        id=standard_id,
        center=center,
        title=str(data.get("title", standard_id)),
        file=str(path),
        indicators=tuple(indicators),
    )


def _indicator(
    reader: _Reader,
    data: Any,
    path: tuple[str | int, ...],
    standard: str,
    center: Center,
    vocabulary: _Vocabulary,
) -> IndicatorDefinition:
    if not isinstance(data, dict):
        raise reader.fail(path, "an indicator is a mapping (id, name, start, end, ...)")
    kind = reader.choice(data.get("kind", "interval"), (*path, "kind"), _KINDS)
    reader.mapping(
        data,
        path,
        required=("id", "name", "population", "confidence", "confirmed", "source",
                  *_REQUIRED_BY_KIND[kind]),
        optional=(*_COMMON, *_BY_KIND[kind]),
    )  # fmt: skip
    indicator_id = reader.text(data["id"], (*path, "id"))
    prefixes = {"chest_pain": ("cpc.", "singledisease."), "stroke": ("stroke.",),
                "trauma": ("trauma.",)}  # fmt: skip
    if not indicator_id.startswith(prefixes[center]):
        raise reader.fail(
            (*path, "id"), f"a {center} indicator id starts with {' or '.join(prefixes[center])}"
        )
    population = _condition(reader, data["population"], (*path, "population"), vocabulary)
    start = end = None
    per_case = None
    plausible = None
    shares: tuple[int, ...] = ()
    if kind == "interval":
        start = _node_choice(reader, data["start"], (*path, "start"), vocabulary)
        end = _node_choice(reader, data["end"], (*path, "end"), vocabulary)
        if "per_case" in data:
            per_case = _per_case(reader, data["per_case"], (*path, "per_case"), vocabulary)
        plausible = _plausible(reader, data["plausible_minutes"], (*path, "plausible_minutes"))
        if "shares_within_minutes" in data:
            where = (*path, "shares_within_minutes")
            values = data["shares_within_minutes"]
            if not isinstance(values, list) or not values:
                raise reader.fail(where, "must be a list of minutes")
            shares = tuple(int(reader.number(v, (*where, i)) * 60) for i, v in enumerate(values))
    exclusions = _exclusions(reader, data.get("exclude", []), (*path, "exclude"), vocabulary)
    interval_nodes = set(start.nodes if start else ()) | set(end.nodes if end else ())
    implied = [  # R1, R9: door-based and onset-based intervals carry their exclusion
        e
        for e in vocabulary.exclusions.values()
        if e not in exclusions and interval_nodes & set(e.implied_by_nodes)
    ]
    numerator = None
    if kind == "rate":
        numerator = _condition(reader, data["numerator"], (*path, "numerator"), vocabulary)
    fact = None
    bins: tuple[float, ...] = ()
    if kind == "distribution":
        spec = _fact_spec(reader, data["fact"], (*path, "fact"), vocabulary)
        if spec.type not in ("integer", "number"):
            raise reader.fail((*path, "fact"), "a distribution counts a numeric fact")
        fact = spec.name
        raw = data["bins"]
        if not isinstance(raw, list) or len(raw) < 2:
            raise reader.fail((*path, "bins"), "must be a list of at least two bin edges")
        bins = tuple(reader.number(v, (*path, "bins", i)) for i, v in enumerate(raw))
        if list(bins) != sorted(set(bins)):
            raise reader.fail((*path, "bins"), "bin edges must increase")
    aggregate = _aggregate(reader, data.get("aggregate", {}), (*path, "aggregate"), kind)
    confidence = reader.text(data["confidence"], (*path, "confidence"))
    for tag in confidence.replace(" ", "").split("/"):
        reader.choice(tag, (*path, "confidence"), _CONFIDENCE)
    confirmed = reader.boolean(data["confirmed"], (*path, "confirmed"))
    parts_confirmed = all(
        limit.confirmed for limit in (aggregate.mean, aggregate.median) if limit is not None
    ) and (per_case is None or per_case.confirmed)
    return IndicatorDefinition(
        id=indicator_id,
        name=reader.text(data["name"], (*path, "name")),
        name_zh=str(data.get("name_zh", "")),
        kind=cast(IndicatorKind, kind),
        standard=standard,
        center=center,
        population=population,
        exclusions=(*exclusions, *implied),
        confidence=confidence,
        confirmed=confirmed and parts_confirmed,
        source=reader.text(data["source"], (*path, "source")),
        start=start,
        end=end,
        per_case=per_case,
        plausible_seconds=plausible,
        numerator=numerator,
        fact=fact,
        bins=bins,
        shares_within_seconds=shares,
        aggregate=aggregate,
        file=reader.file,
        line=reader.positions.get(path),
    )


def _exclusions(
    reader: _Reader, data: Any, path: Sequence[str | int], vocabulary: _Vocabulary
) -> tuple[Exclusion, ...]:
    if not isinstance(data, list):
        raise reader.fail(path, "must be a list of exclusion names")
    found: list[Exclusion] = []
    for index, name in enumerate(data):
        if not isinstance(name, str) or name not in vocabulary.exclusions:
            raise reader.fail(
                (*path, index),
                f"unknown exclusion {name!r}; {FACTS_FILE} defines: "
                f"{', '.join(vocabulary.exclusions)}",
            )
        found.append(vocabulary.exclusions[name])
    return tuple(found)


def _per_case(
    reader: _Reader, data: Any, path: Sequence[str | int], vocabulary: _Vocabulary
) -> PerCaseLimit:
    if isinstance(data, dict) and "by_fact" in data:
        reader.mapping(data, path, required=("by_fact", "limits"))
        spec = _fact_spec(reader, data["by_fact"], (*path, "by_fact"), vocabulary)
        if spec.type != "code":
            raise reader.fail((*path, "by_fact"), "limits by fact need a code fact")
        limits = {}
        for value, body in reader.mapping_of(data["limits"], (*path, "limits")).items():
            _fact_value(reader, spec, value, (*path, "limits", value))
            limits[value] = _limit(reader, body, (*path, "limits", value))
        return PerCaseLimit(by_fact=spec.name, limits=limits)
    return PerCaseLimit(default=_limit(reader, data, path))


def _plausible(reader: _Reader, data: Any, path: Sequence[str | int]) -> tuple[int, int]:
    if not isinstance(data, list) or len(data) != 2:
        raise reader.fail(path, "must be [minimum, maximum] in minutes, e.g. [0, 1440]")
    low, high = (reader.number(v, (*path, i)) for i, v in enumerate(data))
    if not 0 <= low < high:
        raise reader.fail(path, "needs 0 ≤ minimum < maximum")
    return int(low * 60), int(high * 60)


def _aggregate(
    reader: _Reader, data: Any, path: Sequence[str | int], kind: str
) -> AggregateTargets:
    allowed = (
        ("mean", "median", "compliance_rate_min", "trend")
        if kind == "interval"
        else ("rate_min", "rate_max", "trend")
        if kind == "rate"
        else ()
    )
    reader.mapping(data, path, optional=allowed)
    return AggregateTargets(
        mean=_limit(reader, data["mean"], (*path, "mean")) if "mean" in data else None,
        median=_limit(reader, data["median"], (*path, "median")) if "median" in data else None,
        compliance_rate_min=(
            reader.rate(data["compliance_rate_min"], (*path, "compliance_rate_min"))
            if "compliance_rate_min" in data
            else None
        ),
        rate_min=reader.rate(data["rate_min"], (*path, "rate_min")) if "rate_min" in data else None,
        rate_max=reader.rate(data["rate_max"], (*path, "rate_max")) if "rate_max" in data else None,
        trend=reader.choice(data["trend"], (*path, "trend"), _TRENDS) if "trend" in data else None,
    )
