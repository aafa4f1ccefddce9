"""Analysts' mapping tests (`mappings/tests/*.yaml`): one input, one mapping, a list of checks.

    mapping: ../hl7v2/adt.yaml        # relative to the test file
    parser: x-application/hl7-v2+er7  # a `greenchannel.parsers` entry point
    input_file: samples/a01.hl7       # or `input: |` with the message inline
    timezone: "+08:00"                # optional
    expect:
      - {path: "entry[0].resource.gender", equals: male}
      - {path: "entry[1].resource.period.start", exists: true}
      - {path: entry, count: 3}

`run_mapping_test` returns the failures, each naming the file, line and check. FHIRPath checks
will come later; today a path is keys and `[n]` indices into the output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from engine.connectors import Parser
from engine.errors import ConfigError, GreenchannelError
from engine.mapping.mapping import load_mapping, parse_timezone
from engine.mapping.yamlfile import load_yaml

__all__ = ["MappingTestFailure", "find_parser", "resolve_output_path", "run_mapping_test"]

_TEST_KEYS = {"mapping", "parser", "input", "input_file", "charset", "timezone", "expect",
              "description", "filtered"}  # fmt: skip
_CHECKS = ("equals", "exists", "count")
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_MISSING = object()


@dataclass(frozen=True, slots=True)
class MappingTestFailure:
    """One failed check (or a test that could not run), located in its test file."""

    file: str
    line: int | None
    check: str  # "expect[2] entry[0].resource.gender" or "mapping"
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where} {self.check}: {self.message}"


def find_parser(media_type: str) -> Parser:
    """The parser registered for `media_type` under the `greenchannel.parsers` entry point."""
    for point in entry_points(group="greenchannel.parsers"):
        if point.name == media_type:
            parser: Parser = point.load()
            return parser
    raise LookupError(media_type)


def resolve_output_path(value: Any, path: str) -> Any:
    """Follow `a.b[0].c` through dicts and lists; a missing step gives a sentinel (not None)."""
    node = value
    for match in _PATH_PART.finditer(path):
        key, index = match.groups()
        if key is not None and isinstance(node, dict) and key in node:
            node = node[key]
        elif index is not None and isinstance(node, list) and int(index) < len(node):
            node = node[int(index)]
        else:
            return _MISSING
    return node


def run_mapping_test(
    path: Path,
    *,
    parsers: MappingABC[str, Parser] | None = None,
    display_name: str | None = None,
) -> list[MappingTestFailure]:
    """Run one test file; an empty list means every check passed."""
    file = display_name if display_name is not None else str(path)
    try:
        data, positions = load_yaml(path, display_name=file)
        if not isinstance(data, dict):
            raise ConfigError("a test file is a set of keys (mapping, parser, input, expect)")
        for key in data:
            if key not in _TEST_KEYS:
                raise ConfigError("unknown key", file=file, line=positions.get((key,)), key=key)
        output = _run(path, file, data, positions, parsers)
    except GreenchannelError as exc:
        line = exc.line if isinstance(exc, ConfigError) and exc.file == file else None
        return [MappingTestFailure(file, line, "test", str(exc))]
    failures: list[MappingTestFailure] = []
    if data.get("filtered") is True:
        if output is not None:
            failures.append(MappingTestFailure(file, positions.get(("filtered",)), "filtered",
                                               "the mapping produced output"))  # fmt: skip
        return failures
    if output is None:
        return [MappingTestFailure(file, None, "mapping", "the mapping's `when` was false")]
    for index, check in enumerate(data.get("expect") or []):
        line = positions.get(("expect", index))
        failure = _check(output, check)
        if failure is not None:
            target = check.get("path", "") if isinstance(check, dict) else ""
            failures.append(MappingTestFailure(file, line, f"expect[{index}] {target}", failure))
    return failures


def _run(
    path: Path,
    file: str,
    data: dict[str, Any],
    positions: dict[tuple[str | int, ...], int],
    parsers: MappingABC[str, Parser] | None,
) -> Any:
    def need(key: str) -> Any:
        if key not in data:
            raise ConfigError("is required", file=file, line=1, key=key)
        return data[key]

    mapping_file = path.parent / str(need("mapping"))
    mapping = load_mapping(mapping_file, display_name=str(Path(file).parent / need("mapping")))
    media_type = str(need("parser"))
    try:
        parser = parsers[media_type] if parsers is not None else find_parser(media_type)
    except LookupError:
        raise ConfigError(
            "no parser for this media type", file=file, line=positions.get(("parser",)),
            key="parser",
        ) from None  # fmt: skip
    if "input_file" in data:
        raw = (path.parent / str(data["input_file"])).read_bytes()
    else:
        raw = str(need("input")).encode("utf-8")
    zone = None
    if "timezone" in data:
        try:
            zone = parse_timezone(str(data["timezone"]))
        except ValueError:
            raise ConfigError("unknown time zone", file=file, key="timezone") from None
    document = parser(raw, str(data.get("charset", "utf-8")))
    return mapping.apply(document, timezone=zone)


def _check(output: Any, check: Any) -> str | None:
    if not isinstance(check, dict) or not isinstance(check.get("path"), str):
        return "a check needs a `path` and one of equals, exists, count"
    kinds = [k for k in _CHECKS if k in check]
    if len(kinds) != 1:
        return "a check needs exactly one of equals, exists, count"
    value = resolve_output_path(output, check["path"])
    kind = kinds[0]
    expected = check[kind]
    if kind == "exists":
        present = value is not _MISSING
        if present != bool(expected):
            return "expected it to exist" if expected else "expected it to be absent"
        return None
    if value is _MISSING:
        return "no such element in the output"
    if kind == "count":
        got = len(value) if isinstance(value, list) else 1
        return None if got == expected else f"expected {expected} items, got {got}"
    if value != expected:
        return f"expected {expected!r}, got {value!r}"
    return None
