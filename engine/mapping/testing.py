"""Analysts' mapping tests (`mappings/tests/*.yaml`): one input, one mapping, a list of checks.

    mapping: ../hl7v2/adt.yaml        # relative to the test file
    parser: x-application/hl7-v2+er7  # a `greenchannel.parsers` entry point
    input_file: samples/a01.hl7       # or `input: |` with the message inline, or
                                      # `input_files: [a01.hl7, a02.hl7, ...]` (a sequence)
    timezone: "+08:00"                # optional
    expect:
      - {path: "entry[0].resource.gender", equals: male}
      - {path: "entry[1].resource.period.start", exists: true}
      - {path: entry, count: 3}
      - fhirpath: "Bundle.entry.resource.ofType(Patient).gender = 'male'"

A sequence maps each message in turn and writes it over what the earlier ones wrote, as the
FHIR destination does in merge mode (a resource with `merge:` rules keeps what they select of
its earlier version); the checks run on the last message's Bundle so merged.

`run_mapping_test` returns the failures, each naming the file, line and check: a `path` is keys
and `[n]` indices into the output; a `fhirpath` holds when its result is non-empty and has no
`false`. Output checkers registered under the `greenchannel.output_checks` entry point (e.g. a
FHIR structure validator, which the engine itself does not have) run on every output too.

`run_case_file` runs an IZ Gateway style case file (`casefile.py`): each message is mapped by the
mapping whose `when` wants it and its `@` assertions are checked, `Patient.x` meaning the
Bundle's Patients.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from engine.connectors import Parser
from engine.errors import ConfigError, GreenchannelError
from engine.mapping.casefile import load_cases
from engine.mapping.catalog import choose_mapping
from engine.mapping.document import Document
from engine.mapping.fhirpath import compile_check, rooted_at_bundle
from engine.mapping.mapping import Mapping, load_mapping, parse_timezone
from engine.mapping.merge import keep_rules_of, merge_kept
from engine.mapping.yamlfile import load_yaml
from engine.plugins import OUTPUT_CHECKS

__all__ = [
    "OUTPUT_CHECKS",
    "MappingTestFailure",
    "OutputCheck",
    "find_output_checks",
    "find_parser",
    "resolve_output_path",
    "run_case_file",
    "run_mapping_test",
]

# Takes a mapping's output; returns problems as "element: reason" (empty: fine).
OutputCheck = Callable[[Any], list[str]]

_TEST_KEYS = {"mapping", "parser", "input", "input_file", "input_files", "charset", "timezone",
              "expect", "description", "filtered"}  # fmt: skip
_CHECKS = ("equals", "exists", "count", "fhirpath")
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


def find_output_checks() -> dict[str, OutputCheck]:
    """Every checker registered under the `greenchannel.output_checks` entry point, by name."""
    return {point.name: point.load() for point in entry_points(group=OUTPUT_CHECKS)}


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
    output_checks: MappingABC[str, OutputCheck] | None = None,
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
            target = ""
            if isinstance(check, dict):
                target = str(check.get("path") or check.get("fhirpath") or "")
            failures.append(MappingTestFailure(file, line, f"expect[{index}] {target}", failure))
    failures += _output_problems(file, output, output_checks)
    return failures


def _output_problems(
    file: str, output: Any, checks: MappingABC[str, OutputCheck] | None
) -> list[MappingTestFailure]:
    found = find_output_checks() if checks is None else checks
    return [
        MappingTestFailure(file, None, f"output ({name})", problem)
        for name, check in sorted(found.items())
        for problem in check(output)
    ]


def run_case_file(
    path: Path,
    mappings: list[Mapping],
    *,
    parsers: MappingABC[str, Parser] | None = None,
    output_checks: MappingABC[str, OutputCheck] | None = None,
    charset: str = "utf-8",
    display_name: str | None = None,
) -> tuple[int, list[MappingTestFailure]]:
    """Map every message of a case file and check its assertions; (messages, failures)."""
    file = display_name if display_name is not None else str(path)
    try:
        cases = load_cases(path.read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        return 0, [MappingTestFailure(file, None, "test", f"cannot read the case file ({exc})")]

    def parse(media_type: str, raw: bytes) -> Document:
        try:
            parser = parsers[media_type] if parsers is not None else find_parser(media_type)
        except LookupError:
            raise ConfigError(f"no parser for input type {media_type!r}") from None
        return parser(raw, charset)

    failures: list[MappingTestFailure] = []
    for case in cases:
        try:
            mapping, document = choose_mapping(case.message, mappings, parse)
            output = mapping.apply(document)
        except GreenchannelError as exc:
            failures.append(MappingTestFailure(file, case.line, "message", str(exc)))
            continue
        for assertion in case.assertions:
            try:
                problem = compile_check(rooted_at_bundle(assertion.expression)).failure(output)
            except ConfigError as exc:
                problem = exc.message
            if problem is not None:
                failures.append(
                    MappingTestFailure(file, assertion.line, f"@{assertion.expression}", problem)
                )
        failures += [
            MappingTestFailure(file, case.line, failure.check, failure.message)
            for failure in _output_problems(file, output, output_checks)
        ]
    return len(cases), failures


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
    if "input_files" in data:
        names = data["input_files"]
        if not isinstance(names, list) or not names:
            line = positions.get(("input_files",))
            raise ConfigError(
                "a list of message files, in the order they arrive",
                file=file,
                line=line,
                key="input_files",
            )
        raws = [(path.parent / str(name)).read_bytes() for name in names]
    elif "input_file" in data:
        raws = [(path.parent / str(data["input_file"])).read_bytes()]
    else:
        raws = [str(need("input")).encode("utf-8")]
    zone = None
    if "timezone" in data:
        try:
            zone = parse_timezone(str(data["timezone"]))
        except ValueError:
            raise ConfigError("unknown time zone", file=file, key="timezone") from None
    written: dict[str, Any] = {}
    output: Any = None
    for raw in raws:
        document = parser(raw, str(data.get("charset", "utf-8")))
        output = mapping.apply(document, timezone=zone)
        if len(raws) > 1 and output is not None:
            output = _write_over(output, written)
    return output


def _write_over(bundle: dict[str, Any], written: dict[str, Any]) -> dict[str, Any]:
    """The Bundle with each PUT resource merged over its earlier version in `written` (by its
    keep rules, as the FHIR destination merges with the stored one), and `written` updated."""
    entries = []
    for entry in bundle.get("entry") or []:
        request = entry.get("request") or {}
        url = str(request.get("url", ""))
        resource = entry.get("resource")
        if request.get("method") == "PUT" and isinstance(resource, dict):
            earlier = written.get(url)
            if earlier is not None:
                resource = merge_kept(earlier, resource, keep_rules_of(request))
            written[url] = resource
            entry = {**entry, "resource": resource}
        entries.append(entry)
    return {**bundle, "entry": entries}


def _check(output: Any, check: Any) -> str | None:
    if isinstance(check, dict) and "fhirpath" in check:
        expression = check["fhirpath"]
        if len(check) != 1 or not isinstance(expression, str):
            return "a fhirpath check is just `fhirpath: <expression>`"
        try:
            return compile_check(expression).failure(output)
        except ConfigError as exc:
            return exc.message
    if not isinstance(check, dict) or not isinstance(check.get("path"), str):
        return "a check needs a `path` and one of equals, exists, count, or a `fhirpath`"
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
