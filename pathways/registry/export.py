"""A registry's file template filled with cases (registries.md B.4): each case's record, built
and validated by the registry's mapping file, becomes one row of the template's columns, written
as CSV or XLSX by pathways/registry/files.py.

An incomplete case (validation errors) is skipped with its reasons, or, with `incomplete="flag"`,
exported with its row marked and every problem in the report; either way the caller gets the
per-case report, so the file never goes out without its validation report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from engine.errors import GreenchannelError
from pathways.registry.files import (
    FORMATS,
    Cell,
    FileFormat,
    Sheet,
    media_type,
    write_csv,
    write_xlsx,
)
from pathways.registry.mapping import RegistryMapping
from pathways.registry.record import RegistryProblem, RegistryRecord
from pathways.registry.validate import parse_local

__all__ = ["ExportedFile", "Incomplete", "NotATemplate", "export_file", "template_sheet"]

Incomplete = Literal["skip", "flag"]
Checked = tuple[RegistryRecord, Sequence[RegistryProblem]]


class NotATemplate(GreenchannelError):
    """The registry has no file template, or not in the format asked for."""


@dataclass(frozen=True, slots=True)
class ExportedFile:
    """The file and what went into it: the rows' case ids, the cases left out with their
    problems, the cases exported although incomplete (flagged)."""

    content: bytes
    filename: str
    media_type: str
    registry: str
    mapping_version: str
    exported: tuple[str, ...]
    skipped: dict[str, list[RegistryProblem]]
    flagged: dict[str, list[RegistryProblem]]


def export_file(
    mapping: RegistryMapping,
    checked: Sequence[Checked],
    kind: str,
    *,
    incomplete: Incomplete = "skip",
    suffix: str = "",
) -> ExportedFile:
    """The template file of `checked` (records with their validation problems) in `kind`
    (csv or xlsx); NotATemplate when the mapping has no template or not that format."""
    template = mapping.template
    if template is None:
        raise NotATemplate(
            f"the {mapping.registry} registry takes records by its API, not a file template",
            hint=f"export one record as JSON: greenchannel registry export --registry "
            f"{mapping.registry} --case ID",
        )
    if kind not in FORMATS or kind not in template.formats:
        raise NotATemplate(
            f"the {mapping.registry} template is imported as {', '.join(template.formats)}, "
            f"not {kind}",
            hint=f"--format {template.formats[0]}",
        )
    fmt: FileFormat = "csv" if kind == "csv" else "xlsx"
    sheet, exported, skipped, flagged = template_sheet(mapping, checked, incomplete=incomplete)
    content = write_csv(sheet) if fmt == "csv" else write_xlsx(sheet)
    stem = f"{template.name}-{suffix}" if suffix else template.name
    return ExportedFile(
        content=content,
        filename=f"{stem}.{fmt}",
        media_type=media_type(fmt),
        registry=mapping.registry,
        mapping_version=mapping.mapping_version,
        exported=tuple(exported),
        skipped=skipped,
        flagged=flagged,
    )


def template_sheet(
    mapping: RegistryMapping, checked: Sequence[Checked], *, incomplete: Incomplete = "skip"
) -> tuple[Sheet, list[str], dict[str, list[RegistryProblem]], dict[str, list[RegistryProblem]]]:
    """The sheet of the template's columns, one row per exported case; the exported case ids,
    the skipped and the flagged cases with their problems."""
    assert mapping.template is not None
    index = {column.field.key: number for number, column in enumerate(mapping.columns)}
    rows: list[list[Cell]] = []
    exported: list[str] = []
    skipped: dict[str, list[RegistryProblem]] = {}
    flagged: dict[str, list[RegistryProblem]] = {}
    marks: dict[int, dict[int, str]] = {}
    report: list[tuple[str, str, str]] = []
    for record, problems in checked:
        errors = [p for p in problems if p.severity == "error"]
        if errors and incomplete == "skip":
            skipped[record.case_id] = list(problems)
            continue
        row_number = len(rows)
        rows.append([cell(mapping, record, column.field.key) for column in mapping.columns])
        exported.append(record.case_id)
        if problems:
            if errors:
                flagged[record.case_id] = list(problems)
            row_marks = marks.setdefault(row_number, {})
            for problem in problems:
                column = index.get(problem.key)
                header = mapping.columns[column].header if column is not None else problem.key
                if column is not None:
                    row_marks[column] = problem.message
                report.append((f"{row_number + 2} ({record.case_id})", header, problem.message))
    sheet = Sheet(
        title=mapping.template.sheet,
        headers=[column.header for column in mapping.columns],
        rows=rows,
        datetime_format=mapping.datetime_pattern,
        date_format=mapping.date_pattern,
        flagged=frozenset(i for i, case_id in enumerate(exported) if case_id in flagged),
        marks=marks,
        report=report,
    )
    return sheet, exported, skipped, flagged


def cell(mapping: RegistryMapping, record: RegistryRecord, key: str) -> Cell:
    """A record field as a typed cell: datetimes as naive local datetimes, numbers as numbers,
    codes as text; a value the type does not fit stays as the record has it (validation
    reported it)."""
    spec = mapping.field(key)
    value: Any = record.value(key)
    if spec is None or value is None or value == "":
        return None
    kind = spec.spec.type
    if kind == "datetime" and isinstance(value, str):
        instant = parse_local(value, mapping)
        return instant.replace(tzinfo=None) if instant is not None else value
    if kind == "date" and isinstance(value, str):
        try:
            return (
                datetime.strptime(value, mapping.date_pattern).replace(tzinfo=mapping.zone).date()
            )
        except ValueError:
            return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float | str | date):
        return value
    return str(value)
