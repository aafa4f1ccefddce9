"""Mapping files: load a YAML mapping, compile every template and expression once, apply it.

A mapping turns one parsed input (a `Document`) into one JSON value, usually a FHIR transaction
Bundle built from named `resources`; docs/mapping-language.md is the analysts' reference.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, MappingError
from engine.mapping.document import Document
from engine.mapping.expression import (
    Call,
    CompileContext,
    Evaluator,
    ListNode,
    PathNode,
    Scope,
    compile_node,
    is_truthy,
    parse_expression,
)
from engine.mapping.functions import ValueProblem, to_text
from engine.mapping.groups import GroupSpec, find_groups
from engine.mapping.merge import HISTORY, HOLD, MERGE_KEEP_EXTENSION, parse_keep
from engine.mapping.tables import CodeTable, load_table
from engine.mapping.templates import TemplateDef, load_template_file
from engine.mapping.yamlfile import KeyPath, PositionMap, format_key, load_yaml

__all__ = ["DEFAULT_TIMEZONE", "Mapping", "load_mapping", "parse_timezone"]

DEFAULT_TIMEZONE = timezone(timedelta(hours=8))

_TOP_KEYS = {"input", "description", "timezone", "tables", "templates", "when", "let",
             "resources", "bundle", "output"}  # fmt: skip
_DIRECTIVES = {"when", "each", "as", "let", "template", "from"}
_PLACEHOLDER = "ZZZ-1"  # the field unused templates are checked against
_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_RESERVED_NAMES = {"and", "or", "not", "in", "true", "false", "null"}
# merge mode: each kind of rule and the prefix its text travels with (engine.mapping.merge)
_MERGE_PREFIX = {"keep": "", "hold": HOLD, "history": HISTORY}
_BARE_PATH = re.compile(
    r"[A-Z][A-Z0-9]{2}(?:\[\d+\])?(?:-\d+(?:\[\d+\])?(?:\.\d+){0,2})?"
    r"|[$@](?:\.[^\s.\[\]()'\",=!<>?]+|\[(?:-?\d+|'(?:[^'\\]|\\.)*')\])*"
)
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")
_EMPTY_TYPES = (str, list, dict)
_BUNDLE_TYPES = {"transaction", "batch", "collection"}
# One step of `each` over the input: a path (OBX, PID-3) or a segment group.
_Step = str | GroupSpec


def parse_timezone(text: str) -> tzinfo:
    """`+08:00`, `-0530`, `Z`/`UTC` or an IANA name such as `Asia/Shanghai`; ValueError if not."""
    value = text.strip()
    if value in ("Z", "UTC"):
        return UTC
    match = _OFFSET.fullmatch(value)
    if match is not None:
        hours, minutes = int(match.group(2)), int(match.group(3))
        if hours > 14 or minutes > 59:
            raise ValueError("offset out of range")
        delta = timedelta(hours=hours, minutes=minutes)
        return timezone(-delta if match.group(1) == "-" else delta)
    try:
        return zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("unknown time zone") from exc


@dataclass(frozen=True, slots=True)
class _Resource:
    name: str
    resource_type: str
    build: Evaluator
    each: bool
    keep: tuple[str, ...] = ()  # merge mode: the stored resource's elements kept on a rewrite


@dataclass(frozen=True, eq=False)
class Mapping:
    """A compiled mapping file; `apply` it to any number of documents, from any thread."""

    file: str
    input: str | None
    timezone: tzinfo | None
    tables: dict[str, CodeTable]
    bundle_type: str
    _when: Evaluator | None = field(repr=False)
    _lets: tuple[tuple[str, Evaluator], ...] = field(repr=False)
    _resources: tuple[_Resource, ...] = field(repr=False)
    _output: Evaluator | None = field(repr=False)

    def matches(self, document: Document, *, timezone: tzinfo | None = None) -> bool:
        """Whether the mapping's `when` holds for `document` (true when it has none)."""
        if self._when is None:
            return True
        zone = timezone or self.timezone or DEFAULT_TIMEZONE
        return is_truthy(self._when(Scope(document, {}, zone, {})))

    def apply(self, document: Document, *, timezone: tzinfo | None = None) -> Any:
        """Map one document to its JSON output, or None when the mapping's `when` is false.

        A date/time without an offset takes `timezone` (the channel's), else the mapping's
        `timezone:`, else +08:00. Raises MappingError naming the rule and the input position.
        """
        zone = timezone or self.timezone or DEFAULT_TIMEZONE
        names: dict[str, Any] = {}
        refs: dict[str, Any] = {}
        scope = Scope(document, names, zone, refs)
        if self._when is not None and not is_truthy(self._when(scope)):
            return None
        for name, let in self._lets:
            names[name] = let(scope)
        if self._output is not None:
            return self._output(scope)
        entries: list[dict[str, Any]] = []
        written: dict[str, Any] = {}  # PUT url → resource: one entry per id (see _add_entry)
        for resource in self._resources:
            value = resource.build(scope)
            if resource.each:
                items = value or []
                refs[resource.name] = [_reference(item) for item in items] or None
            else:
                items = [value] if value else []
                refs[resource.name] = _reference(value) if value else None
            for item in items:
                self._add_entry(entries, written, resource, item)
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": self.bundle_type}
        if entries:
            bundle["entry"] = entries
        return bundle

    def _add_entry(
        self,
        entries: list[dict[str, Any]],
        written: dict[str, Any],
        resource: _Resource,
        item: dict[str, Any],
    ) -> None:
        """Append the entry, once per id. Deterministic ids make the same fact the same id (the
        same insurer in two IN1s, the same doctor in PV1-7 and PV1-17), and a transaction may
        not write one resource twice: an identical repeat is dropped; a different resource
        under a taken id is the mapping's mistake, reported naming the rule."""
        entry = _entry(resource.resource_type, item)
        url = entry["request"]["url"]
        if resource.keep and entry["request"]["method"] == "PUT":
            entry["request"]["extension"] = [
                {"url": MERGE_KEEP_EXTENSION, "valueString": rule} for rule in resource.keep
            ]
        if entry["request"]["method"] == "PUT":
            if url in written:
                if written[url] == item:
                    return
                raise MappingError(
                    f"two different {resource.resource_type} resources with the same id "
                    "(make the id from the fields that tell them apart)",
                    mapping=self.file,
                    rule=f"resources.{resource.name}.id",
                )
            written[url] = item
        entries.append(entry)


def _reference(resource: dict[str, Any]) -> str | None:
    rid = resource.get("id")
    return f"{resource['resourceType']}/{rid}" if rid else None


def _entry(resource_type: str, resource: dict[str, Any]) -> dict[str, Any]:
    rid = resource.get("id")
    if rid:
        request = {"method": "PUT", "url": f"{resource_type}/{rid}"}
    else:
        request = {"method": "POST", "url": resource_type}
    return {"resource": resource, "request": request}


def load_mapping(path: Path, *, display_name: str | None = None) -> Mapping:
    """Load and compile a mapping file; ConfigError (file:line key) for anything wrong in it.

    Code tables are read here, relative to the mapping file, and cached by path and mtime.
    """
    name = display_name if display_name is not None else str(path)
    data, positions = load_yaml(path, display_name=name)
    return _Compiler(name, path.parent, positions).mapping(data)


class _Compiler:
    """Turns the YAML data of one mapping into evaluators, checking everything it can."""

    def __init__(self, file: str, base: Path, positions: PositionMap) -> None:
        self.file = file
        self.base = base
        self.positions = positions
        self.tables: dict[str, CodeTable] = {}
        self.table_files: dict[str, str] = {}
        self.refs: frozenset[str] = frozenset()
        self.templates: dict[str, TemplateDef] = {}
        self.used_templates: set[str] = set()
        # Inside a template body: its parameter's path, the templates being expanded (to refuse
        # a template that uses itself) and where it is used, appended to every error's key.
        self.params: dict[str, str] = {}
        self.expanding: tuple[str, ...] = ()
        self.used_at = ""

    # --- errors and contexts ------------------------------------------------------------------

    def line(self, path: KeyPath) -> int | None:
        for end in range(len(path), -1, -1):
            line = self.positions.get(path[:end])
            if line is not None:
                return line
        return None

    def error(self, message: str, path: KeyPath) -> ConfigError:
        return ConfigError(
            message, file=self.file, line=self.line(path), key=format_key(path) + self.used_at
        )

    def context(self, path: KeyPath, names: dict[str, str]) -> CompileContext:
        return CompileContext(
            file=self.file,
            line=self.line(path),
            rule=format_key(path) + self.used_at,
            path_params=self.params,
            names=frozenset(names),
            tables=self.tables,
            refs=self.refs,
            name_paths={k: v for k, v in names.items() if v},
            table_loader=lambda table: self.load_table(table, path),
        )

    def load_table(self, table: str, path: KeyPath) -> CodeTable:
        relative = self.table_files.get(table, f"tables/{table}.csv")
        file = self.base / relative
        if table not in self.table_files and not file.is_file():
            raise self.error(f"unknown table '{table}' (no tables/{table}.csv)", path)
        shown = str(Path(self.file).parent / relative)
        loaded = load_table(table, file, display_name=shown)
        self.tables[table] = loaded
        return loaded

    # --- the file -----------------------------------------------------------------------------

    def mapping(self, data: Any) -> Mapping:
        if not isinstance(data, dict):
            raise self.error("a mapping file must be a set of keys (input, resources, ...)", ())
        for key in data:
            if key not in _TOP_KEYS:
                raise self.error(
                    f"unknown key (expected one of {', '.join(sorted(_TOP_KEYS))})", (key,)
                )
        media_type = data.get("input")
        if media_type is not None and not isinstance(media_type, str):
            raise self.error("must be a media type such as x-application/hl7-v2+er7", ("input",))
        zone: tzinfo | None = None
        if "timezone" in data:
            if not isinstance(data["timezone"], str):
                raise self.error('must be an offset in quotes such as "+08:00"', ("timezone",))
            try:
                zone = parse_timezone(data["timezone"])
            except ValueError:
                raise self.error(
                    'must be an offset like "+08:00" or a zone like Asia/Shanghai', ("timezone",)
                ) from None
        self.declare_tables(data.get("tables"))
        self.load_templates(data.get("templates"))
        names: dict[str, str] = {}
        when = None
        if "when" in data:
            when = self.condition(data["when"], ("when",), names)
        lets = self.lets(data.get("let"), ("let",), names)
        bundle_type = data.get("bundle", "transaction")
        if bundle_type not in _BUNDLE_TYPES:
            raise self.error(f"must be one of {', '.join(sorted(_BUNDLE_TYPES))}", ("bundle",))
        has_resources, has_output = "resources" in data, "output" in data
        if has_resources == has_output:
            raise self.error("give exactly one of `resources` or `output`", ())
        resources: list[_Resource] = []
        output = None
        if has_output:
            output = self.template(data["output"], ("output",), names)
        else:
            resources = self.resources(data["resources"], names)
        for table in self.table_files:
            if table not in self.tables:
                self.load_table(table, ("tables", table))
        for name in sorted(set(self.templates) - self.used_templates):
            self.expand(name, _PLACEHOLDER, ("templates",))  # report mistakes in unused ones too
        return Mapping(
            file=self.file,
            input=media_type,
            timezone=zone,
            tables=dict(self.tables),
            bundle_type=bundle_type,
            _when=when,
            _lets=tuple(lets),
            _resources=tuple(resources),
            _output=output,
        )

    def declare_tables(self, tables: Any) -> None:
        if tables is None:
            return
        if not isinstance(tables, dict):
            raise self.error("must map table names to CSV files", ("tables",))
        for table, relative in tables.items():
            if not isinstance(relative, str) or not relative.endswith(".csv"):
                raise self.error("must be a .csv file relative to the mapping", ("tables", table))
            self.table_files[table] = relative

    def load_templates(self, files: Any) -> None:
        if files is None:
            return
        listed = [files] if isinstance(files, str) else files
        if not isinstance(listed, list) or not all(isinstance(f, str) for f in listed):
            raise self.error("must list template files relative to the mapping", ("templates",))
        for index, relative in enumerate(listed):
            where: KeyPath = ("templates",) if isinstance(files, str) else ("templates", index)
            path = self.base / relative
            if not path.is_file():
                raise self.error(f"no template file {relative}", where)
            shown = str(Path(self.file).parent / relative)
            for name, template in load_template_file(path, display_name=shown).items():
                if name in self.templates:
                    raise self.error(
                        f"template '{name}' is defined in {self.templates[name].file} and in "
                        f"{shown}",
                        where,
                    )
                self.templates[name] = template

    # --- templates ----------------------------------------------------------------------------

    def use_template(
        self, value: dict[str, Any], path: KeyPath, names: dict[str, str]
    ) -> Evaluator:
        """`template: cx_identifier` + `from: PID-3`: the template's body, its param = PID-3."""
        name = value["template"]
        if not isinstance(name, str) or name not in self.templates:
            known = ", ".join(sorted(self.templates)) or "none; list files under `templates:`"
            raise self.error(f"unknown template {name!r} (known: {known})", path + ("template",))
        if "from" not in value:
            raise self.error(
                f"template '{name}' needs `from:`, the field it maps, e.g. from: PID-3",
                path + ("template",),
            )
        source = value["from"]
        node = None
        if isinstance(source, str) and source.strip():
            node = parse_expression(_unwrap(source).strip(), self.context(path + ("from",), names))
        if not isinstance(node, PathNode):
            raise self.error("must be a path such as PID-3 or OBX-5", path + ("from",))
        return self.expand(name, node.path, path)

    def expand(self, name: str, argument: str, path: KeyPath) -> Evaluator:
        template = self.templates[name]
        if name in self.expanding:
            raise self.error(f"template '{name}' uses itself", path)
        self.used_templates.add(name)
        child = _Compiler(template.file, self.base, template.positions)
        child.tables, child.table_files, child.refs = self.tables, self.table_files, self.refs
        child.templates, child.used_templates = self.templates, self.used_templates
        child.params = {template.param: argument}
        child.expanding = self.expanding + (name,)
        if argument == _PLACEHOLDER:
            child.used_at = f" (template '{name}', checked with from: {argument})"
        else:
            here = f"{self.file}:{self.line(path)} {format_key(path)}"
            child.used_at = f" (template '{name}' from: {argument}, used at {here})"
        body = template.body
        if isinstance(body, dict) and "each" in body:
            raise child.error(
                "a template's body cannot start with `each`; write `each:` where it is used",
                template.key + ("body", "each"),
            )
        return child.template(body, template.key + ("body",), {})

    def resources(self, data: Any, names: dict[str, str]) -> list[_Resource]:
        if not isinstance(data, dict) or not data:
            raise self.error("must name one or more resources: `patient: {...}`", ("resources",))
        resources: list[_Resource] = []
        for name, body in data.items():
            path: KeyPath = ("resources", name)
            self.check_name(name, path)
            if not isinstance(body, dict):
                raise self.error("a resource must be a set of keys", path)
            rtype = body.get("resourceType")
            if not isinstance(rtype, str) or not re.fullmatch(r"[A-Z][A-Za-z]+", rtype):
                raise self.error("needs a fixed `resourceType` such as Patient", path)
            keep = self.keep_rules(body.get("merge"), path + ("merge",))
            body = {key: value for key, value in body.items() if key != "merge"}
            build = self.template(body, path, names)
            resources.append(_Resource(name, rtype, build, "each" in body, keep))
            self.refs = self.refs | {name}
        return resources

    def keep_rules(self, merge: Any, path: KeyPath) -> tuple[str, ...]:
        """`merge: {keep: [element, "element.where(...)", ...], hold: [...], history: [...]}`:
        the stored resource's elements another writer owns, kept when this mapping rewrites the
        resource (hold: even over the mapping's value while the condition holds; history: the
        stored stays with the message's folded in)."""
        if merge is None:
            return ()
        if not isinstance(merge, dict) or not merge or set(merge) - set(_MERGE_PREFIX):
            raise self.error("must be `{keep: [...], hold: [...], history: [...]}`", path)
        found: list[str] = []
        for kind, prefix in _MERGE_PREFIX.items():
            if kind not in merge:
                continue
            rules = merge[kind]
            if not isinstance(rules, list) or not rules:
                raise self.error(f"a list of one or more {kind} rules", path + (kind,))
            for index, rule in enumerate(rules):
                where = path + (kind, index)
                if not isinstance(rule, str):
                    raise self.error(
                        f"a {kind} rule is text: `episodeOfCare` or `x.where(...)`", where
                    )
                text = prefix + rule.strip()
                try:
                    parse_keep(text)
                except ConfigError as error:
                    raise self.error(error.message, where) from None
                found.append(text)
        return tuple(found)

    def check_name(self, name: str, path: KeyPath) -> None:
        if not _NAME.fullmatch(name) or name in _RESERVED_NAMES:
            raise self.error(
                "names are lowercase letters, digits and _ (starting with a letter)", path
            )

    def lets(self, data: Any, path: KeyPath, names: dict[str, str]) -> list[tuple[str, Evaluator]]:
        """Compile `let:` in order; each name is visible to the later ones (names is updated)."""
        if data is None:
            return []
        if not isinstance(data, dict):
            raise self.error("must map names to values", path)
        lets: list[tuple[str, Evaluator]] = []
        for name, value in data.items():
            self.check_name(name, path + (name,))
            lets.append((name, self.template(value, path + (name,), names)))
            names[name] = self.bare_path(value) or ""
        return lets

    def bare_path(self, value: Any) -> str | None:
        if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
            inner = value[2:-1].strip()
            if _BARE_PATH.fullmatch(inner):
                return inner
        return None

    # --- expressions and templates -----------------------------------------------------------

    def expression(self, source: str, path: KeyPath, names: dict[str, str]) -> Evaluator:
        ctx = self.context(path, names)
        return compile_node(parse_expression(source, ctx), ctx)

    def condition(self, value: Any, path: KeyPath, names: dict[str, str]) -> Evaluator:
        if isinstance(value, bool):
            return lambda scope: value
        if not isinstance(value, str):
            raise self.error("must be a condition such as \"${PV1-2 == 'E'}\"", path)
        return self.expression(_unwrap(value), path, names)

    def template(self, value: Any, path: KeyPath, names: dict[str, str]) -> Evaluator:
        if isinstance(value, dict):
            return self.object(value, path, names)
        if isinstance(value, list):
            return self.array(value, path, names)
        if isinstance(value, str):
            return self.text(value, path, names)
        return lambda scope: value

    def text(self, value: str, path: KeyPath, names: dict[str, str]) -> Evaluator:
        parts = _split_text(value)
        if parts is None:
            raise self.error("'${' without its closing '}'", path)
        if len(parts) == 1 and isinstance(parts[0], str):
            constant = parts[0]
            return lambda scope: constant
        if len(parts) == 1:
            return self.expression(parts[0][0], path, names)
        pieces: list[str | Evaluator] = [
            part if isinstance(part, str) else self.expression(part[0], path, names)
            for part in parts
        ]
        file, rule = self.file, format_key(path)

        def interpolate(scope: Scope) -> str | None:
            out: list[str] = []
            for piece in pieces:
                if type(piece) is str:
                    out.append(piece)
                    continue
                value = piece(scope)  # type: ignore[operator]
                if value is None or value == "":
                    return None  # "Patient/${id}" with no id is no reference at all
                try:
                    out.append(to_text(value) or "")
                except ValueProblem:
                    raise MappingError(
                        "a list or object cannot be put into text",
                        mapping=file,
                        rule=rule,
                        location=scope.trail,
                    ) from None
            return "".join(out)

        return interpolate

    def array(self, value: list[Any], path: KeyPath, names: dict[str, str]) -> Evaluator:
        items: list[tuple[Evaluator, bool]] = []
        for index, item in enumerate(value):
            splice = isinstance(item, dict) and "each" in item
            items.append((self.template(item, path + (index,), names), splice))

        def build(scope: Scope) -> list[Any] | None:
            out: list[Any] = []
            for item, splice in items:
                result = item(scope)
                if splice:
                    if result:
                        out.extend(result)
                elif result or (result is not None and type(result) not in _EMPTY_TYPES):
                    out.append(result)
            return out or None

        return build

    def object(self, value: dict[str, Any], path: KeyPath, names: dict[str, str]) -> Evaluator:
        names = dict(names)
        each_source = value.get("each")
        each: tuple[tuple[_Step, ...], Evaluator | None, str] | None = None
        if "as" in value and "each" not in value:
            raise self.error("`as` names the item of an `each`", path + ("as",))
        if each_source is not None:
            each = self.each(each_source, value.get("as"), path, names)
        when = self.condition(value["when"], path + ("when",), names) if "when" in value else None
        lets = self.lets(value.get("let"), path + ("let",), names)
        if "from" in value and "template" not in value:
            raise self.error("`from` gives a template its field; add `template:`", path + ("from",))
        base = self.use_template(value, path, names) if "template" in value else None
        extra = [key for key in value if key not in _DIRECTIVES]
        if (
            base is not None
            and extra
            and not isinstance(self.templates[value["template"]].body, dict)
        ):
            raise self.error(
                f"template '{value['template']}' gives a single value; nothing can be added to it",
                path + (extra[0],),
            )
        fields: list[tuple[str, Evaluator]] = []
        for key, item in value.items():
            if key in _DIRECTIVES:
                continue
            out_key = key[1:] if key.startswith("=") else key  # "=when": a literal key `when`
            if not out_key:
                raise self.error("empty key", path + (key,))
            fields.append((out_key, self.template(item, path + (key,), names)))
        body = _object_builder(tuple(fields), tuple(lets), when, base)
        if each is None:
            return body
        return _each_builder(each, body)

    def each(
        self, source: Any, alias: Any, path: KeyPath, names: dict[str, str]
    ) -> tuple[tuple[_Step, ...], Evaluator | None, str]:
        """`each: PID-3` iterates sub-documents, `each: group(OBR, [OBX])` segment groups, a list
        of those nests (outermost first); `each: ${split(...)}` + `as: x` iterates values."""
        where = path + ("each",)
        if isinstance(source, list) and source:
            steps: list[_Step] = []
            for index, item in enumerate(source):
                step = self.each_step(item, where + (index,), names)
                if step is None:
                    raise self.error(
                        "each step of a nested each is a path (OBX) or a group(...)",
                        where + (index,),
                    )
                steps.append(step)
            if alias is not None:
                raise self.error("`as` is for each over values", path + ("as",))
            return tuple(steps), None, ""
        if not isinstance(source, str) or not source.strip():
            raise self.error(
                "must be a path such as OBX or PID-3, a group(OBR, [OBX, NTE]) or an expression",
                where,
            )
        inner = _unwrap(source).strip()
        ctx = self.context(where, names)
        node = parse_expression(inner, ctx)
        step = self.each_step(source, where, names)
        if step is not None:
            if alias is not None:
                raise self.error(
                    "`as` is for each over values; inside each over a path, use paths",
                    path + ("as",),
                )
            return (step,), None, ""
        name = "item" if alias is None else alias
        if not isinstance(name, str):
            raise self.error("must be a name", path + ("as",))
        self.check_name(name, path + ("as",))
        names[name] = ""
        return (), compile_node(node, ctx), name

    def each_step(self, source: Any, where: KeyPath, names: dict[str, str]) -> _Step | None:
        """A path or a group(...) to iterate, or None when `source` is another expression."""
        if not isinstance(source, str):
            return None
        node = parse_expression(_unwrap(source).strip(), self.context(where, names))
        if isinstance(node, PathNode):
            return node.path
        if isinstance(node, Call) and node.function == "group":
            return self.group_spec(node, where)
        return None

    def group_spec(self, node: Call, where: KeyPath) -> GroupSpec:
        usage = "write group(OBR, [OBX, NTE]): the segment that starts a group, then the list of "
        usage += "segments that may follow it (and optionally a list to stop at: [SPM])"
        lists = node.args[1:]
        if not 2 <= len(node.args) <= 3 or not all(
            isinstance(arg, ListNode) and arg.items for arg in lists
        ):
            raise self.error(usage, where)
        groups: list[list[str]] = []
        for arg_list in (
            (node.args[0],),
            *(arg.items for arg in lists if isinstance(arg, ListNode)),
        ):
            ids: list[str] = []
            for arg in arg_list:
                if not isinstance(arg, PathNode) or not _SEGMENT_ID.fullmatch(arg.path):
                    raise self.error(f"{usage} (segment ids only, such as OBX)", where)
                ids.append(arg.path)
            groups.append(ids)
        stop = tuple(groups[2]) if len(groups) > 2 else ()
        if {groups[0][0], *groups[1]} & set(stop):
            raise self.error("a segment cannot both belong to the group and stop it", where)
        return GroupSpec(groups[0][0], tuple(groups[1]), stop)


def _object_builder(
    fields: tuple[tuple[str, Evaluator], ...],
    lets: tuple[tuple[str, Evaluator], ...],
    when: Evaluator | None,
    base: Evaluator | None = None,
) -> Evaluator:
    def build(scope: Scope) -> Any:
        if when is not None and not is_truthy(when(scope)):
            return None
        if lets:
            scope = Scope(
                scope.document, dict(scope.names), scope.zone, scope.refs, scope.trail,
                scope.position,
            )  # fmt: skip
            for name, let in lets:
                scope.names[name] = let(scope)
        out: dict[str, Any] = {}
        if base is not None:
            made = base(scope)
            if not isinstance(made, dict):
                return made  # a template giving text or a list: nothing else to add
            out.update(made)  # the fields written next to `template:` add to it or replace
        for key, item in fields:
            result = item(scope)
            if result or (result is not None and type(result) not in _EMPTY_TYPES):
                out[key] = result
        return out or None

    return build


def _each_builder(
    each: tuple[tuple[_Step, ...], Evaluator | None, str], body: Evaluator
) -> Evaluator:
    steps, values, alias = each
    if values is None:

        def over_documents(scope: Scope) -> list[Any] | None:
            out: list[Any] = []
            _walk(scope, steps, body, out)
            return out or None

        return over_documents

    def over_values(scope: Scope) -> list[Any] | None:
        items = values(scope)
        if items is None:
            return None
        if not isinstance(items, list):
            items = [items]
        out: list[Any] = []
        for index, item in enumerate(items, start=1):
            names = dict(scope.names)
            names[alias] = item
            child = Scope(scope.document, names, scope.zone, scope.refs, scope.trail, index)
            result = body(child)
            if result:
                out.append(result)
        return out or None

    return over_values


def _walk(scope: Scope, steps: tuple[_Step, ...], body: Evaluator, out: list[Any]) -> None:
    """Iterate the first step; for each item, the remaining steps inside it; `body` at the end."""
    step, rest = steps[0], steps[1:]
    prefix = f"{scope.trail} > " if scope.trail else ""
    items: list[Document]
    if isinstance(step, GroupSpec):
        items = list(find_groups(scope.document, step, scope.trail))
        label = f"{step.head} group"
    else:
        items, label = scope.document.each(step), step
    for index, sub in enumerate(items, start=1):
        child = Scope(sub, scope.names, scope.zone, scope.refs, f"{prefix}{label} #{index}", index)
        if rest:
            _walk(child, rest, body, out)
            continue
        result = body(child)
        if result:
            out.append(result)


def _unwrap(text: str) -> str:
    """`${expr}` → `expr`; text with no `${` is an expression already (for when/each)."""
    parts = _split_text(text)
    if parts is not None and len(parts) == 1 and not isinstance(parts[0], str):
        return parts[0][0]
    return text


def _split_text(text: str) -> list[str | tuple[str]] | None:
    """Split `a ${x} b` into literal text and 1-tuples of expression source; None if unclosed.

    `$${` writes a literal `${`. Quotes inside an expression may contain `}`.
    """
    if "${" not in text:
        return [text]
    parts: list[str | tuple[str]] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("$${", i):
            literal.append("${")
            i += 3
            continue
        if text.startswith("${", i):
            j = i + 2
            quote = ""
            while j < n:
                ch = text[j]
                if quote:
                    if ch == "\\":
                        j += 1
                    elif ch == quote:
                        quote = ""
                elif ch in "'\"":
                    quote = ch
                elif ch == "}":
                    break
                j += 1
            if j >= n:
                return None
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append((text[i + 2 : j],))
            i = j + 1
            continue
        literal.append(text[i])
        i += 1
    if literal:
        parts.append("".join(literal))
    return parts
