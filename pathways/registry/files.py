"""Registry file templates (registries.md B.4): one sheet of typed cells written as CSV or XLSX,
the files registry staff import by hand where a registry has no API (stroke, trauma).

Only the format lives here; the columns, headers and values come from a registry mapping file
(pathways/registry/export.py builds the `Sheet`).

- CSV: UTF-8 **with a BOM** (Excel only reads Chinese headers right with it), CRLF, one header
  row; datetimes as text in the template's pattern, numbers as plain digits, empty cells for
  "not applicable".
- XLSX (openpyxl): the header row, one row per case, cells typed: numbers as numbers, datetimes
  as Excel datetimes without offset (Beijing local time, as the templates expect) shown in the
  template's pattern, codes as text. Flagged rows (incomplete cases exported on purpose) are
  filled yellow, each wrong or missing cell red with the message as a comment, and a second
  sheet lists every problem (the validation report).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

__all__ = ["FORMATS", "Cell", "FileFormat", "Sheet", "media_type", "write_csv", "write_xlsx"]

Cell = str | int | float | datetime | date | None
FileFormat = Literal["csv", "xlsx"]
FORMATS: tuple[FileFormat, ...] = ("csv", "xlsx")
_MEDIA_TYPES: dict[FileFormat, str] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_EXCEL = {"%Y": "yyyy", "%m": "mm", "%d": "dd", "%H": "hh", "%M": "mm", "%S": "ss"}
_FLAGGED = "FFF2CC"  # fill of a row exported although incomplete
_WRONG = "F4CCCC"  # fill of a cell with a problem
REPORT_SHEET = "校验报告"


@dataclass(frozen=True, slots=True)
class Sheet:
    """One template's table: headers, rows of typed cells, and the problems to flag.

    `datetime_format` and `date_format` are strftime patterns (the template's), used for CSV
    text and as the XLSX cells' number format. `marks[row]` maps a column index to the
    message of a flagged cell; `report` rows are (row label, column header, message)."""

    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[Cell]]
    datetime_format: str = "%Y-%m-%d %H:%M:%S"
    date_format: str = "%Y-%m-%d"
    flagged: frozenset[int] = frozenset()  # row indexes exported although incomplete
    marks: Mapping[int, Mapping[int, str]] = field(default_factory=dict)
    report: Sequence[tuple[str, str, str]] = ()


def media_type(kind: FileFormat) -> str:
    """The HTTP media type of a format."""
    return _MEDIA_TYPES[kind]


def write_csv(sheet: Sheet) -> bytes:
    """The sheet as CSV bytes: UTF-8 with BOM, CRLF, the header row first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(sheet.headers)
    for row in sheet.rows:
        writer.writerow([_text(cell, sheet) for cell in row])
    return out.getvalue().encode("utf-8-sig")


def write_xlsx(sheet: Sheet) -> bytes:
    """The sheet as an XLSX workbook: the template's sheet first, the report sheet when
    there are problems to report."""
    # openpyxl costs 0.3 s to import: only for an XLSX, not for every registry command
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.comments import Comment
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    flagged = PatternFill("solid", fgColor=_FLAGGED)
    wrong = PatternFill("solid", fgColor=_WRONG)
    book = Workbook()
    page = book.active
    assert page is not None  # a new workbook always has its first sheet
    page.title = sheet.title
    page.append(list(sheet.headers))
    for cell in page[1]:
        cell.font = Font(bold=True)
    datetime_style = _excel_format(sheet.datetime_format)
    date_style = _excel_format(sheet.date_format)
    for index, row in enumerate(sheet.rows):
        page.append([_xlsx_value(cell, ILLEGAL_CHARACTERS_RE) for cell in row])
        excel_row = index + 2
        marks = sheet.marks.get(index, {})
        for column, value in enumerate(row, 1):
            cell = page.cell(excel_row, column)
            if isinstance(value, datetime):
                cell.number_format = datetime_style
            elif isinstance(value, date):
                cell.number_format = date_style
            elif isinstance(value, str):
                cell.number_format = "@"  # codes stay text ("01" is not 1)
            if index in sheet.flagged:
                cell.fill = flagged
            message = marks.get(column - 1)
            if message is not None:
                cell.fill = wrong
                cell.comment = Comment(message, "greenchannel")
    for column, header in enumerate(sheet.headers, 1):
        page.column_dimensions[get_column_letter(column)].width = max(12, len(header) * 2 + 2)
    page.freeze_panes = "A2"
    if sheet.report:
        report = book.create_sheet(REPORT_SHEET)
        report.append(["行", "列", "问题"])
        for line in sheet.report:
            report.append(list(line))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _text(cell: Cell, sheet: Sheet) -> str:
    if cell is None:
        return ""
    if isinstance(cell, datetime):
        return cell.strftime(sheet.datetime_format)
    if isinstance(cell, date):
        return cell.strftime(sheet.date_format)
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell)


def _xlsx_value(cell: Cell, illegal: re.Pattern[str]) -> Cell:
    if isinstance(cell, datetime) and cell.tzinfo is not None:
        raise ValueError("XLSX cells hold local times: give a naive datetime")
    if isinstance(cell, str):
        # XML 1.0 cannot hold control characters (a pasted name may carry one): dropped, as
        # the registry's form would never accept them either
        return str(illegal.sub("", cell))
    return cell


def _excel_format(pattern: str) -> str:
    """A strftime pattern as an Excel number format (`%Y-%m-%d %H:%M` → `yyyy-mm-dd hh:mm`)."""
    return re.sub(r"%[YmdHMS]", lambda m: _EXCEL[m.group()], pattern).replace("T", '"T"')
