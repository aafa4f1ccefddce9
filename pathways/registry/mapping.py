"""Loading a registry mapping file: checked against `mapping_file`, its FHIRPath, conditions,
code tables and node keys compiled once, every mistake reported as `file:line key: message`.

`registry_mapping("cpc")` finds `mappings/registry/cpc-*.yaml` (the working directory's, else the
installed one); a new platform version is a new file beside it, not new code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engine.errors import ConfigError
from engine.mapping import CompileContext, PositionMap, format_key, load_table, load_yaml
from engine.mapping.fhirpath import compile_path
from engine.mapping.yamlfile import validation_error_to_config_error
from engine.settings import content_root
from pathways.archive_config import node_labels
from pathways.registry.conditions import Condition, compile_condition, field_references
from pathways.registry.mapping_file import (
    FieldSpec,
    IntervalCheckSpec,
    MappingFileSpec,
    SourceSpec,
    SubBlockSpec,
    TemplateSpec,
)
from pathways.registry.prefilter import requirement_of
from pathways.vocabulary import Center

__all__ = [
    "Column",
    "RegistryField",
    "RegistryMapping",
    "load_registry_mapping",
    "registry_dir",
    "registry_mapping",
    "strftime_pattern",
]

_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")
_RESOURCE_ROOT = re.compile(r"^([A-Z][A-Za-z]+)\b")
_TARGET = re.compile(r"^[A-Za-z][A-Za-z0-9]*\.[A-Za-z_][A-Za-z0-9_]*$")
_ITEM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATTERN_TOKEN = re.compile(r"yyyy|MM|dd|HH|mm|ss")
_STRFTIME = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}

Evaluate = Callable[[Any], list[Any]]
HINT = "fix the registry mapping file (docs/registry.md); `greenchannel registry check` reads it"


@dataclass(frozen=True, slots=True)
class RegistryField:
    """One compiled target field (a block's, or a list item's)."""

    key: str  # `Block.FIELD`; a list item's field: `Block.LIST.FIELD`
    block: str
    name: str  # FIELD
    spec: FieldSpec
    line: int | None
    fhirpath: Evaluate | None = None
    root_type: str | None = None  # the resource type a rooted FHIRPath is evaluated on
    precheck: Callable[[str], bool] | None = None  # on a resource's JSON: may it match?
    when: tuple[Condition, ...] = ()  # the block's and the field's: all must hold
    required_when: Condition | None = None
    derive: Condition | None = None
    codes: Mapping[str, str] | None = None  # enum_map or the table: local value -> code
    domain: frozenset[str] | None = None
    each: Evaluate | None = None
    each_type: str | None = None
    each_precheck: Callable[[str], bool] | None = None
    items: tuple[RegistryField, ...] = ()
    fill: str = ""  # for staff: what fills the field

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def source(self) -> SourceSpec | None:
        return self.spec.source


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a file template: the field it shows and its header text."""

    field: RegistryField
    header: str


@dataclass(frozen=True, slots=True)
class RegistryMapping:
    """A compiled registry mapping file."""

    registry: str
    mapping_version: str
    spec: str
    spec_version: str
    center: Center
    file: str
    zone: tzinfo
    datetime_pattern: str  # strftime
    date_pattern: str
    block_labels: Mapping[str, str]
    fields: tuple[RegistryField, ...]
    time_order: tuple[tuple[str, ...], ...]
    interval_checks: tuple[IntervalCheckSpec, ...] = ()
    sub_blocks: tuple[SubBlockSpec, ...] = ()
    by_key: Mapping[str, RegistryField] = field(default_factory=dict)
    template: TemplateSpec | None = None  # a file-template registry (no API)
    columns: tuple[Column, ...] = ()  # the template's columns, in the file's order

    def field(self, key: str) -> RegistryField | None:
        """The field `Block.FIELD` (or `Block.LIST.FIELD`), None when the file has none."""
        return self.by_key.get(key)


def registry_dir() -> Path:
    """`./mappings/registry` when the working directory has one, else the installed copy."""
    local = Path("mappings") / "registry"
    # absolute: a record names its mapping file, and is validated later, maybe elsewhere
    return (local if local.is_dir() else content_root() / "mappings" / "registry").resolve()


def registry_mapping(name: str, folder: Path | None = None) -> RegistryMapping:
    """The mapping of registry `name`: the file `<name>.yaml`, else the one `<name>-*.yaml`
    (`cpc` → `cpc-2.1.yaml`). ConfigError when there is none, or several to choose from."""
    folder = folder if folder is not None else registry_dir()
    exact = folder / f"{name}.yaml"
    if exact.is_file():
        return load_registry_mapping(exact)
    found = sorted(folder.glob(f"{name}-*.yaml"))
    if len(found) == 1:
        return load_registry_mapping(found[0])
    known = sorted(p.stem for p in folder.glob("*.yaml"))
    if not found:
        raise ConfigError(
            f"no registry mapping '{name}' in {folder}",
            hint=f"the registries are: {', '.join(known) or 'none'}",
        )
    raise ConfigError(
        f"registry '{name}' has several mapping files in {folder}",
        hint=f"name the version: {', '.join(p.stem for p in found)}",
    )


def load_registry_mapping(path: Path) -> RegistryMapping:
    """Read, check and compile one mapping file (cached while the file is unchanged)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read the file ({exc.strerror})", file=str(path)) from exc
    return _load(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _load(path: str, _mtime: int, _size: int) -> RegistryMapping:
    try:
        data, positions = load_yaml(Path(path))
        try:
            spec = MappingFileSpec.model_validate(data)
        except ValidationError as exc:
            raise validation_error_to_config_error(exc, path, data, positions) from exc
        return _Compiler(path, spec, positions).compile()
    except ConfigError as exc:
        exc.hint = HINT
        raise


class _Compiler:
    def __init__(self, file: str, spec: MappingFileSpec, positions: PositionMap) -> None:
        self.file = file
        self.spec = spec
        self.positions = positions
        self.tables_dir = Path(file).parent / "tables"
        self.nodes = frozenset(node_labels())
        self.by_key: dict[str, RegistryField] = {}

    def error(self, path: tuple[str | int, ...], message: str) -> ConfigError:
        line = None
        for end in range(len(path), -1, -1):
            line = self.positions.get(path[:end])
            if line is not None:
                break
        return ConfigError(message, file=self.file, line=line, key=format_key(path) or None)

    def ctx(self, path: tuple[str | int, ...]) -> CompileContext:
        line = self.positions.get(path) or self.positions.get(path[:-1])
        return CompileContext(file=self.file, line=line, rule=format_key(path))

    def compile(self) -> RegistryMapping:
        spec = self.spec
        block_when: dict[str, Condition] = {}
        for block_name, block_spec in spec.blocks.items():
            if block_spec.when is not None:
                path: tuple[str | int, ...] = ("blocks", block_name, "when")
                block_when[block_name] = self.condition(block_spec.when, path)
        fields = []
        for index, field_spec in enumerate(spec.fields):
            path = ("fields", index)
            if not _TARGET.match(field_spec.target):
                raise self.error((*path, "target"), "write the target as Block.FIELD")
            block, name = field_spec.target.split(".")
            if block not in spec.blocks:
                known = ", ".join(spec.blocks)
                raise self.error((*path, "target"), f"no block '{block}' (blocks: {known})")
            if field_spec.target in self.by_key:
                raise self.error((*path, "target"), f"{field_spec.target} is mapped twice")
            when = (block_when[block],) if block in block_when else ()
            compiled = self.field(field_spec, path, field_spec.target, block, name, when)
            fields.append(compiled)
        for chain_index, chain in enumerate(spec.time_order):
            for position, key in enumerate(chain):
                chained = self.by_key.get(key)
                if chained is None or chained.spec.type not in ("datetime", "date"):
                    raise self.error(
                        ("time_order", chain_index, position),
                        f"{key} is not a datetime field of this file",
                    )
        for check_index, check in enumerate(spec.interval_checks):
            for key in [check.field, *check.start, *check.end]:
                if key not in self.by_key:
                    raise self.error(
                        ("interval_checks", check_index), f"{key} is not a field of this file"
                    )
        for sub_index, sub in enumerate(spec.sub_blocks):
            if sub.selector not in self.by_key or sub.block not in spec.blocks:
                raise self.error(
                    ("sub_blocks", sub_index),
                    f"{sub.selector} or block {sub.block} is not in this file",
                )
        columns = self.columns(fields)
        return RegistryMapping(
            registry=spec.registry,
            mapping_version=spec.mapping_version,
            spec=spec.spec,
            spec_version=spec.spec_version,
            center=spec.center,
            file=self.file,
            zone=self.zone(),
            datetime_pattern=self.pattern(spec.datetime_format, ("datetime_format",)),
            date_pattern=self.pattern(spec.date_format, ("date_format",)),
            block_labels={name: block.label for name, block in spec.blocks.items()},
            fields=tuple(fields),
            time_order=tuple(tuple(chain) for chain in spec.time_order),
            interval_checks=tuple(spec.interval_checks),
            sub_blocks=tuple(spec.sub_blocks),
            by_key=dict(self.by_key),
            template=spec.template,
            columns=columns,
        )

    def columns(self, fields: list[RegistryField]) -> tuple[Column, ...]:
        """A file template's columns: one per field, a single value each, headers unique."""
        template = self.spec.template
        if template is None:
            return ()
        columns: list[Column] = []
        seen: dict[str, str] = {}
        for index, compiled in enumerate(fields):
            path: tuple[str | int, ...] = ("fields", index)
            if compiled.spec.type in ("list", "strings"):
                raise self.error(
                    (*path, "type"), "a file template's column holds one value: not a list"
                )
            if template.header == "key":
                header = compiled.name
            else:
                header = compiled.spec.header or compiled.label
            if header in seen:
                raise self.error(
                    (*path, "header" if compiled.spec.header else "label"),
                    f"the header '{header}' is also {seen[header]}'s: give the column its own "
                    "`header` (the template's exact text)",
                )
            seen[header] = compiled.key
            columns.append(Column(compiled, header))
        return tuple(columns)

    def zone(self) -> tzinfo:
        match = _OFFSET.match(self.spec.timezone)
        if match is None:
            raise self.error(("timezone",), "write the zone as +HH:MM")
        sign, hours, minutes = match.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        return timezone(-delta if sign == "-" else delta)

    def pattern(self, text: str, path: tuple[str | int, ...]) -> str:
        if not _PATTERN_TOKEN.search(text) or "%" in text:
            raise self.error(path, "a pattern of yyyy MM dd HH mm ss (no %)")
        return strftime_pattern(text)

    def condition(self, text: str, path: tuple[str | int, ...]) -> Condition:
        for reference in field_references(text):
            if reference.split(".")[0] not in self.spec.blocks:
                raise self.error(path, f"'{reference}' names no block of this file")
        return compile_condition(text, self.ctx(path))

    def fhirpath(self, text: str, path: tuple[str | int, ...], rooted: bool) -> Evaluate:
        evaluate = compile_path(text, where=format_key(path))
        if rooted and _RESOURCE_ROOT.match(text.strip()) is None:
            raise self.error(
                path, "start the FHIRPath with the resource type it reads (Observation.…)"
            )
        return evaluate

    def field(
        self,
        spec: FieldSpec,
        path: tuple[str | int, ...],
        key: str,
        block: str,
        name: str,
        when: tuple[Condition, ...],
        *,
        in_list: bool = False,
    ) -> RegistryField:
        if spec.when is not None:
            when = (*when, self.condition(spec.when, (*path, "when")))
        required_when = (
            self.condition(spec.required_when, (*path, "required_when"))
            if spec.required_when is not None
            else None
        )
        values: dict[str, Any] = {}
        source = spec.source
        if source is not None:
            values.update(self.source(source, (*path, "source"), in_list))
        for option in ("age_at", "days_until"):
            node = getattr(spec.transform, option) if spec.transform is not None else None
            if node is not None:
                self.check_node(node, (*path, "transform", option))
        codes = self.codes(spec, path)
        domain: set[str] | None = set(spec.values) if spec.values is not None else None
        if codes is not None:
            domain = (domain or set()) | set(codes.values())
        items: tuple[RegistryField, ...] = ()
        if spec.type == "list":
            assert spec.items is not None
            if spec.each is None and source is None:
                raise self.error(path, "a list field needs `each` (the resources of its items)")
            if spec.each is not None:
                values["each"] = self.fhirpath(spec.each, (*path, "each"), rooted=True)
                values["each_type"] = _root_type(spec.each)
                values["each_precheck"] = requirement_of(spec.each)
            compiled_items = []
            seen: set[str] = set()
            for index, item in enumerate(spec.items):
                item_path = (*path, "items", index)
                if not _ITEM.match(item.target):
                    raise self.error((*item_path, "target"), "a list item's target is FIELD")
                if item.target in seen:
                    raise self.error((*item_path, "target"), f"{item.target} is mapped twice")
                seen.add(item.target)
                compiled_items.append(
                    self.field(
                        item, item_path, f"{key}.{item.target}", block, item.target, (),
                        in_list=True,
                    )
                )  # fmt: skip
            items = tuple(compiled_items)
        compiled = RegistryField(
            key=key,
            block=block,
            name=name,
            spec=spec,
            line=self.positions.get(path),
            when=when,
            required_when=required_when,
            codes=codes,
            domain=frozenset(domain) if domain is not None else None,
            items=items,
            fill=spec.fill or _fill(spec, key),
            **values,
        )
        self.by_key[key] = compiled
        return compiled

    def source(
        self, source: SourceSpec, path: tuple[str | int, ...], in_list: bool
    ) -> dict[str, Any]:
        if source.fhirpath is not None:
            rooted = _RESOURCE_ROOT.match(source.fhirpath.strip()) is not None
            top = rooted and not in_list
            return {
                "fhirpath": self.fhirpath(source.fhirpath, (*path, "fhirpath"), rooted=False),
                "root_type": _root_type(source.fhirpath) if top else None,
                "precheck": requirement_of(source.fhirpath) if top else None,
            }
        if source.node is not None:
            self.check_node(source.node, (*path, "node"))
        if source.indicator is not None and source.indicator.count("/") != 1:
            raise self.error((*path, "indicator"), "write it as standard/indicator")
        if source.derive is not None:
            return {"derive": self.condition(source.derive, (*path, "derive"))}
        return {}

    def check_node(self, key: str, path: tuple[str | int, ...]) -> None:
        if key not in self.nodes:
            raise self.error(path, f"'{key}' is not a time-node key (config/pathways/catalogue)")

    def codes(self, spec: FieldSpec, path: tuple[str | int, ...]) -> Mapping[str, str] | None:
        if spec.enum_map is not None:
            return dict(spec.enum_map)
        if spec.table is None:
            return None
        if not _ITEM.match(spec.table):
            raise self.error((*path, "table"), "a table name is letters, digits and _")
        table_path = self.tables_dir / f"{spec.table}.csv"
        if not table_path.is_file():
            raise self.error(
                (*path, "table"), f"unknown table '{spec.table}' (no {table_path.name} in tables/)"
            )
        table = load_table(spec.table, table_path)
        return {code: row.target for code, row in table.rows.items()}


def strftime_pattern(pattern: str) -> str:
    """`yyyy-MM-ddTHH:mm:ss` (the registry specs' way) as a strftime format."""
    return _PATTERN_TOKEN.sub(lambda m: _STRFTIME[m.group()], pattern)


def _root_type(expression: str) -> str | None:
    match = _RESOURCE_ROOT.match(expression.strip())
    return match.group(1) if match else None


def _fill(spec: FieldSpec, key: str) -> str:
    """What fills a field, said from its source: for the completeness report."""
    source = spec.source
    if source is None:
        return "登记人员录入 (staff entry: no FHIR source)"
    if source.node is not None:
        label = node_labels().get(source.node, source.node)
        return (
            f"时间节点 {source.node} ({label}): Observation category time-node, code {source.node}"
        )
    if source.fhirpath is not None:
        return f"FHIR {spec.each + ' → ' if spec.each else ''}{source.fhirpath}"
    if source.fact is not None:
        if source.fact == "arrival_mode":
            return "来院方式: EpisodeOfCare arrival-mode extension"
        return f"病例事实 {source.fact}: EpisodeOfCare case-fact extension"
    if source.score is not None:
        return f"评分 {source.score}: score Observation of the case"
    if source.indicator is not None:
        return f"指标 {source.indicator}: computed from the case's time nodes"
    if source.param is not None:
        return f"设置 {source.param}: registry settings (environment or secrets file)"
    if source.derive is not None:
        return f"由其他字段推出: {source.derive}"
    return "常量 (constant)"
