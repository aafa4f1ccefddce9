"""Strict YAML loading that remembers the line of every key, so config errors can name file:line.

Channel, mapping and settings files all go through `load_yaml`; `validation_error_to_config_error`
turns a pydantic `ValidationError` on such data into a `ConfigError` pointing at the offending line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from engine.errors import ConfigError

__all__ = [
    "KeyPath",
    "PositionMap",
    "format_key",
    "load_yaml",
    "load_yaml_text",
    "validation_error_to_config_error",
    "validation_error_to_config_errors",
]

KeyPath = tuple[str | int, ...]
# Line (1-based) of every key and list item, by its path from the document root; () is the root.
PositionMap = dict[KeyPath, int]

MAX_YAML_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000  # counted after alias expansion: stops "billion laughs" documents
MAX_DEPTH = 100

_BaseLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML11_ONLY = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}


class _Loader(_BaseLoader):  # type: ignore[misc]
    """YAML 1.2 scalars: only true/false are booleans (`no`, `on` stay text, so the code `NO`
    survives) and `12:30` is text, not the sexagesimal number 750."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in _YAML11_ONLY]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    }


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?[0-9]+[eE][-+]?[0-9]+)$"
    ),
    list("-+0123456789."),
)
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


def format_key(path: Sequence[str | int]) -> str:
    """Write a key path the way error messages do: `destinations[1].retry.max_attempts`."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif out:
            out.append(f".{part}")
        else:
            out.append(part)
    return "".join(out)


def load_yaml(path: Path, *, display_name: str | None = None) -> tuple[Any, PositionMap]:
    """Read one YAML file into plain Python data and the line of every key.

    Raises ConfigError (file, line) for unreadable files, YAML syntax errors, duplicate or
    non-string keys, and documents that expand beyond MAX_NODES through aliases.
    """
    name = display_name if display_name is not None else str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the file ({exc.strerror})", file=name) from exc
    if len(raw) > MAX_YAML_BYTES:
        raise ConfigError(f"file is larger than {MAX_YAML_BYTES} bytes", file=name)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"byte {exc.start} is not valid UTF-8", file=name) from exc
    return load_yaml_text(text, file=name)


def load_yaml_text(text: str, *, file: str) -> tuple[Any, PositionMap]:
    """Like `load_yaml`, for text already in memory; `file` names it in errors."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context
        raise ConfigError(f"YAML syntax error: {problem}", file=file, line=line) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", file=file) from exc
    positions: PositionMap = {}
    if node is None:
        return None, positions
    builder = _Builder(file, positions)
    return builder.build(node, (), 0), positions


class _Builder:
    """Walks a composed node tree into plain data, recording lines and counting nodes."""

    def __init__(self, file: str, positions: PositionMap) -> None:
        self.file = file
        self.positions = positions
        self.nodes = 0
        self.constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: KeyPath, depth: int) -> Any:
        self.nodes += 1
        line = node.start_mark.line + 1
        if self.nodes > MAX_NODES:
            raise ConfigError(
                f"document expands to more than {MAX_NODES} values (aliases?)",
                file=self.file,
                line=line,
            )
        if depth > MAX_DEPTH:
            raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", file=self.file, line=line)
        self.positions.setdefault(path, line)
        if isinstance(node, yaml.MappingNode):
            self.constructor.flatten_mapping(node)
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != (
                    "tag:yaml.org,2002:str"
                ):
                    raise ConfigError(
                        "keys must be text (quote it)",
                        file=self.file,
                        line=key_line,
                        key=format_key(path) or None,
                    )
                key = str(key_node.value)
                if key in result:
                    raise ConfigError(
                        "duplicate key",
                        file=self.file,
                        line=key_line,
                        key=format_key(path + (key,)),
                    )
                self.positions[path + (key,)] = key_line
                result[key] = self.build(value_node, path + (key,), depth + 1)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [
                self.build(item, path + (index,), depth + 1)
                for index, item in enumerate(node.value)
            ]
        if node.tag == _TIMESTAMP_TAG:
            return str(node.value)  # dates stay text; models and mappings parse them themselves
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"invalid value ({type(exc).__name__})",
                file=self.file,
                line=line,
                key=format_key(path) or None,
            ) from exc


def validation_error_to_config_errors(
    err: ValidationError, file: str, data: Any, positions: PositionMap
) -> list[ConfigError]:
    """One ConfigError per pydantic error, each with the line and key it concerns."""
    return [
        ConfigError(message, file=file, line=line, key=key)
        for line, key, message in _problems(err, data, positions)
    ]


def validation_error_to_config_error(
    err: ValidationError, file: str, data: Any, positions: PositionMap
) -> ConfigError:
    """The first pydantic error as a ConfigError with file:line key; the others are counted.

    `data` is what `load_yaml` returned (it tells union tags from keys), `positions` its lines.
    """
    problems = _problems(err, data, positions)
    line, key, message = problems[0]
    if len(problems) > 1:
        message = f"{message} (and {len(problems) - 1} more errors)"
    return ConfigError(message, file=file, line=line, key=key)


def _problems(
    err: ValidationError, data: Any, positions: PositionMap
) -> list[tuple[int | None, str | None, str]]:
    problems: list[tuple[int | None, str | None, str]] = []
    for item in err.errors(include_url=False, include_input=False):
        path = _resolve(item["loc"], data)
        message = _message(item["type"], item["msg"], item.get("ctx") or {})
        problems.append((_line_for(path, positions), format_key(path) or None, message))
    return problems


def _resolve(loc: Sequence[str | int], data: Any) -> KeyPath:
    """Drop the parts of a pydantic location that are not in the YAML (union tags, model names)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str):
            if part in node:
                path.append(part)
                node = node[part]
                continue
            if part == loc[-1]:
                path.append(part)  # a missing or unknown key: name it, line of its parent
            continue
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
            continue
        # a tag, function name or a part below a scalar: not a place in the file
    return tuple(path)


def _line_for(path: KeyPath, positions: PositionMap) -> int | None:
    for end in range(len(path), -1, -1):
        line = positions.get(path[:end])
        if line is not None:
            return line
    return None


def _message(kind: str, default: str, ctx: dict[str, Any]) -> str:
    bound = {
        "greater_than_equal": ("≥", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("≤", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bound:
        symbol, name = bound[kind]
        return f"must be {symbol} {ctx.get(name)}"
    simple = {
        "missing": "is required",
        "extra_forbidden": "is not a known key (check the spelling)",
        "string_type": "must be text",
        "int_type": "must be a whole number",
        "int_parsing": "must be a whole number",
        "float_type": "must be a number",
        "float_parsing": "must be a number",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "dict_type": "must be a mapping of keys to values",
        "list_type": "must be a list",
    }
    if kind in simple:
        return simple[kind]
    return default[0].lower() + default[1:] if default else kind
